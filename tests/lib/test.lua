-- tests/lib/test.lua — a small tester in the manner of torch.Tester / busted. Not installed: the
-- tests require it by its path from the project root, which is on package.path.
--
--   local T = require "tests.lib.test"
--   T.case("softmax sums to one", function()
--       T.eq(apl.tensor.ones{3}:softmax(1):sum():item(), 1, 1e-6)
--   end)
--   T.case("needs cuda", function() if not cuda then T.skip("no CUDA") end ... end)
--
-- tests/run.lua loads each tests/lua/test_*.lua (they register cases), then runs them all.
local T = { cases = {} }

local SKIP = setmetatable({}, { __tostring = function() return "skip" end })

function T.case(name, fn)
    T.cases[#T.cases + 1] = { name = name, fn = fn, file = T.current_file }
end

-- Marks the running case as skipped with a printed reason.
function T.skip(reason) error({ [SKIP] = true, reason = reason }, 0) end

function T.is_skip(err) return type(err) == "table" and err[SKIP] end

local function describe(v)
    if type(v) == "string" then return string.format("%q", v) end
    return tostring(v)
end

local function deep_eq(a, b, tol, path)
    if type(a) == "number" and type(b) == "number" then
        if a == b then return true end   -- equal infinities, whose difference is NaN
        local d = math.abs(a - b)
        if d ~= d or d > (tol or 0) then
            return false, string.format("%s: %s ~= %s (diff %g, tol %g)", path, describe(a), describe(b), d, tol or 0)
        end
        return true
    end
    if type(a) == "table" and type(b) == "table" then
        for k, v in pairs(b) do
            local ok, msg = deep_eq(a[k], v, tol, path .. "[" .. tostring(k) .. "]")
            if not ok then return false, msg end
        end
        for k in pairs(a) do
            if b[k] == nil then return false, path .. "[" .. tostring(k) .. "]: unexpected " .. describe(a[k]) end
        end
        return true
    end
    if a ~= b then return false, string.format("%s: %s ~= %s", path, describe(a), describe(b)) end
    return true
end

-- Whether difference d is worse than the worst so far: larger, or NaN. math.max(0, 0/0) is 0
-- and `d > worst` is false for a NaN, so a plain fold passed all-NaN results; the first NaN stays.
local function worse(d, worst) return worst == worst and (d ~= d or d > worst) end

-- The largest |a - b| over two numbers or nested lists; NaN when any difference is NaN, infinity
-- when the lengths differ or an entry is missing. Check it with `d <= tol`, which NaN fails.
function T.max_abs_diff(a, b)
    if type(a) == "number" and type(b) == "number" then return a == b and 0 or math.abs(a - b) end
    if type(a) ~= "table" or type(b) ~= "table" then return math.huge end
    local worst = #a == #b and 0 or math.huge
    for i = 1, math.max(#a, #b) do
        local d = T.max_abs_diff(a[i], b[i])
        if worse(d, worst) then worst = d end
    end
    return worst
end

-- eq(actual, expected[, tol][, msg]): numbers within tol, tables compared deeply.
function T.eq(actual, expected, tol, msg)
    if type(tol) == "string" then tol, msg = nil, tol end
    local ok, why = deep_eq(actual, expected, tol, "value")
    if not ok then error((msg and msg .. ": " or "") .. why, 2) end
end

function T.ok(cond, msg)
    if not cond then error(msg or "assertion failed", 2) end
    return cond
end

-- fn must raise an error whose message matches pattern (a Lua pattern).
function T.assert_error_match(fn, pattern, msg)
    local ok, err = pcall(fn)
    if ok then error((msg or "expected an error") .. " matching '" .. pattern .. "', got none", 2) end
    err = tostring(err)
    if not err:find(pattern) then
        error(string.format("%serror %q does not match '%s'", msg and msg .. ": " or "", err, pattern), 2)
    end
    return err
end

-- What a C test binary printed (tests/c/check.h): its counts, and the reason of every line
-- "skipped REASON" (a whole binary skipped on a CPU without AVX-512, a probe without its library).
function T.c_output(out)
    local np, nf = out:match("(%d+) passed, (%d+) failed")
    local skips = {}
    for reason in ("\n" .. out):gmatch("\nskipped ([^\n]*)") do skips[#skips + 1] = reason end
    return { passed = tonumber(np) or 0, failed = tonumber(nf) or 0, skipped = skips, counted = np ~= nil }
end

-- Runs a command, returns its stdout; raises with the output when it exits non-zero.
function T.sh(cmd)
    local p = assert(io.popen(cmd .. " 2>&1"))
    local out = p:read("a")
    local ok, _, code = p:close()
    if not ok then error(string.format("command failed (%s): %s\n%s", tostring(code), cmd, out), 2) end
    return out
end

-- The Python that runs the NumPy references and the test servers: Debian's, which has
-- python3-numpy, unless APL_PYTHON names another (a GPU machine's venv: tools/gpu-check.sh).
T.PYTHON = os.getenv("APL_PYTHON") or "/usr/bin/python3"

-- Runs a NumPy reference under T.PYTHON.
function T.python(script, args)
    return T.sh(T.PYTHON .. " " .. script .. " " .. (args or ""))
end

-- A fresh temporary directory, removed by the runner at exit.
function T.tmpdir()
    local p = io.popen("mktemp -d /tmp/apl-test.XXXXXX")
    local d = p:read("l")
    p:close()
    T.tmpdirs = T.tmpdirs or {}
    T.tmpdirs[#T.tmpdirs + 1] = d
    return d
end

function T.root() return package.apl_root or "." end

return T
