-- apl.fs — the few file helpers the library, recipes, tests and benchmarks share.
local M = {}

function M.exists(path)
    local f = io.open(path, "r")
    if f then f:close() end
    return f ~= nil
end

-- The whole file, or nil, message when it cannot be opened.
function M.read(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local s = f:read("a")
    f:close()
    return s
end

-- Writes s to path (replacing it) and returns path; raises, naming the path, when it cannot.
function M.write(path, s)
    local f, err = io.open(path, "wb")
    if not f then error(err, 2) end
    f:write(s)
    f:close()
    return path
end

return M
