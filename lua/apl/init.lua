-- apl — the standard library, loaded as the global `apl`.
-- Submodules load on first use (apl.model -> require "apl.model"), so a script pays only for
-- what it touches and a missing optional module fails where it is used, with its own message.
--
--   apl.manual_seed(1)
--   local logp = apl.no_grad(function() return m:logprob(x, y) end)
--   local t0 = apl.clock(); ...; print(apl.clock() - t0, apl.rss_mb(), apl.peak_rss_mb())
--   apl.show(o:stats())   -- a table by its contents, as the REPL prints every value
local tensor = require "apl.tensor"
local sys = require "apl.core.sys"

local apl = { tensor = tensor, version = "0.1.0" }

apl.manual_seed = sys.manual_seed
apl.set_num_threads = sys.set_num_threads
apl.get_num_threads = sys.get_num_threads
apl.clock = sys.time       -- monotonic seconds, sub-microsecond resolution
apl.rss_mb = sys.rss_mb    -- resident memory now, MiB
apl.peak_rss_mb = sys.peak_rss_mb
apl.interrupted = sys.interrupted -- true once per Ctrl-C (clears the flag)
apl.fast_kernels = sys.fast_kernels -- small-row decoding kernels: fast_kernels(false) sends all to BLAS

-- apl, torch, lua, blas, blas_path, blas_detail, threads, cuda, cuda_devices
function apl.version_info()
    local v = sys.version_info()
    v.apl = apl.version
    return v
end

-- Runs fn(...) with autograd off and returns its results; the previous mode comes back even
-- when fn raises (the to-be-closed guard runs after the traceback is taken, so it stays intact).
function apl.no_grad(fn, ...)
    local prev = sys.set_grad_enabled(false)
    local guard <close> = setmetatable({}, {
        __close = function() sys.set_grad_enabled(prev) end,
    })
    return fn(...)
end

-- Functions of a submodule that stand at the top level: apl.logprob is apl.score.logprob.
local ALIASES = { logprob = "score", entropy = "score", implicit_reward = "score", preference_prob = "score" }

setmetatable(apl, {
    __index = function(t, k)
        if ALIASES[k] then
            local f = require("apl." .. ALIASES[k])[k]
            rawset(t, k, f)
            return f
        end
        local ok, mod = pcall(require, "apl." .. k)
        if not ok then
            if tostring(mod):find("module 'apl%." .. k .. "' not found") then return nil end
            error(mod, 2)
        end
        rawset(t, k, mod)
        return mod
    end,
})

return apl
