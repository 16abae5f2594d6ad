-- tests/run.lua — runs the C unit tests (build/tests/test_*) and the Lua tests (tests/lua/test_*.lua)
-- and ends with the line "N passed, N failed[, N skipped]". Arguments select Lua test files.
--   ./apl tests/run.lua                         everything
--   ./apl tests/run.lua tests/lua/test_tensor.lua
local T = require "tests.lib.test"
-- Each case's time is wall time (a monotonic clock): os.clock is the CPU time of every thread,
-- which libtorch's and OpenMP's pools multiply.
local clock = require("apl.core.sys").time
local root = T.root()
local passed, failed = 0, 0
local failures, skips = {}, {}

local function list(cmd)
    local out = {}
    local p = io.popen(cmd)
    for l in p:lines() do out[#out + 1] = l end
    p:close()
    return out
end

local function run_c_tests()
    for _, bin in ipairs(list("ls " .. root .. "/build/tests/test_* 2>/dev/null")) do
        io.write("== ", bin, "\n")
        local p = io.popen(bin .. " 2>&1")
        local out = p:read("a")
        local ok = p:close()
        io.write(out)
        local r = T.c_output(out)
        local nf = r.failed
        if (not ok or not r.counted) and nf == 0 then nf = 1 end
        passed, failed = passed + r.passed, failed + nf
        if nf > 0 then failures[#failures + 1] = bin end
        for _, why in ipairs(r.skipped) do skips[#skips + 1] = bin .. ": " .. why end
    end
end

local function load_lua_tests(files)
    for _, f in ipairs(files) do
        T.current_file = f
        local ok, err = xpcall(dofile, debug.traceback, f)
        if not ok then
            failed = failed + 1
            failures[#failures + 1] = f .. " (load): " .. tostring(err)
            io.write("NOT OK  loading ", f, "\n", tostring(err), "\n")
        end
    end
end

local function run_cases()
    local last_file
    for _, c in ipairs(T.cases) do
        if c.file ~= last_file then io.write("== ", c.file, "\n"); last_file = c.file end
        local t0 = clock()
        local ok, err = xpcall(c.fn, function(e)
            if T.is_skip(e) then return e end
            return debug.traceback(tostring(e), 2)
        end)
        collectgarbage()
        if ok then
            passed = passed + 1
            io.write(string.format("ok      %s (%.1fs)\n", c.name, clock() - t0))
        elseif T.is_skip(err) then
            skips[#skips + 1] = c.file .. ": " .. c.name .. ": " .. tostring(err.reason)
            io.write("skipped ", c.name, ": ", tostring(err.reason), "\n")
        else
            failed = failed + 1
            failures[#failures + 1] = c.file .. ": " .. c.name
            io.write("NOT OK  ", c.name, "\n", err, "\n")
        end
        io.flush()
    end
end

local files = {}
for i = 1, #arg do files[#files + 1] = arg[i] end
if #files == 0 then
    run_c_tests()
    files = list("ls " .. root .. "/tests/lua/test_*.lua")
end
load_lua_tests(files)
run_cases()
for _, d in ipairs(T.tmpdirs or {}) do os.execute("rm -rf '" .. d .. "'") end

-- Every skip is named at the end, next to the failures, so none goes unseen in a long log.
for _, group in ipairs { { "skipped", skips }, { "failed", failures } } do
    if #group[2] > 0 then
        io.write("\n", group[1], ":\n")
        for _, f in ipairs(group[2]) do io.write("  ", f, "\n") end
    end
end
io.write(string.format("%d passed, %d failed%s\n", passed, failed,
    #skips > 0 and string.format(", %d skipped", #skips) or ""))
os.exit(failed == 0 and 0 or 1)
