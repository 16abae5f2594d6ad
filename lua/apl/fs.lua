-- apl.fs — the file helpers the library, recipes, tests and benchmarks share. Everything goes
-- through apl.core.sys (lua/lsys.c), never a shell: a path holding spaces, quotes or $(...) is
-- only a path.
local sys = require "apl.core.sys"

local M = {}

function M.exists(path)
    local f = io.open(path, "r")
    if f then f:close() end
    return f ~= nil
end

-- The whole file, or nil, message when it cannot be opened.
M.read = sys.read

-- Writes s to path atomically (a reader sees the old file or the new one, never a part) and
-- returns path; raises, naming the path, when it cannot.
function M.write(path, s)
    sys.write(path, s)
    return path
end

M.isdir = sys.isdir
M.mkdir_p = sys.mkdir_p   -- raises naming the path
M.rmtree = sys.rmtree     -- rmtree(path, within): only strictly inside the folder `within`
M.run = sys.run           -- run(argv[, {stdout =, stderr =}]) -> exit status; execvp, no shell

-- The sorted names in dir (no . or ..), or nil, message.
M.listdir = sys.listdir

-- The regular files in dir whose names end with suffix, as full paths in bytewise order; {} when
-- dir is not a folder.
function M.files(dir, suffix)
    local out = {}
    for _, name in ipairs(sys.listdir(dir) or {}) do
        local path = dir .. "/" .. name
        if name:sub(-#suffix) == suffix and not sys.isdir(path) and M.exists(path) then out[#out + 1] = path end
    end
    return out
end

return M
