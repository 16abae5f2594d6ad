-- bench/common.lua — what every bench/<area>.lua script shares: the --quick flag, the thread
-- count, a wall clock, peak RSS, timing with warm-up, medians and spreads, JSON-line output, and
-- the shell words and scratch folders of the benches that start processes.
--
--   local B = dofile((package.apl_root or ".") .. "/bench/common.lua")
--   local secs = B.time(function() model:forward(x) end)      -- 1 warm-up, then B.reps() runs
--   B.emit_rate("generation", "tok/s", 8 * 64, secs, { config = "B=8 prompt=16 new=64" })
--   -- prints {"name":"generation","apl":<median tok/s>,"unit":"tok/s","samples":[...],...}
--
-- bench/run.lua reads these lines; "apl" is the median of the samples, spread their range.
local cjson = require "cjson"

local B = {}

-- One shell word: single quotes, each ' written as '\''.
function B.sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- n token ids drawn uniformly from 0 .. vocab - 1 with r (an apl.rng).
function B.random_ids(r, n, vocab)
    local ids = {}
    for i = 1, n do ids[i] = r:int(0, vocab - 1) end
    return ids
end

-- np DPO pairs of random ids of length T in all: a prompt of T // 2, chosen and rejected of the rest.
function B.random_pairs(r, np, T, vocab)
    local out = {}
    for i = 1, np do
        out[i] = { prompt_ids = B.random_ids(r, T // 2, vocab), chosen_ids = B.random_ids(r, T - T // 2, vocab),
                   rejected_ids = B.random_ids(r, T - T // 2, vocab) }
    end
    return out
end

-- A new empty folder /tmp/<name>.XXXXXX (mktemp); the caller removes it.
function B.tmpdir(name)
    local p = assert(io.popen("mktemp -d /tmp/" .. name .. ".XXXXXX"))
    local dir = p:read("l")
    p:close()
    assert(dir and dir ~= "", "mktemp -d failed")
    return dir
end

-- --quick in the script's arguments (make bench QUICK=1).
function B.quick()
    for _, a in ipairs(arg or {}) do if a == "--quick" then return true end end
    return false
end

-- Timed repetitions: `full` (default 3), 2 with --quick; APL_BENCH_REPS overrides both.
function B.reps(full)
    local n = tonumber(os.getenv("APL_BENCH_REPS") or "")
    if n and n >= 1 then return math.floor(n) end
    return B.quick() and 2 or full or 3
end

local sys = require "apl.core.sys"

-- The thread count libtorch uses in this process (./apl sets it from APL_THREADS or the cores).
B.threads = sys.get_num_threads
-- Seconds on a monotonic clock.
B.clock = sys.time
-- Resident and peak resident memory of this process, MiB (nil when /proc is not there).
B.rss_mb = sys.rss_mb
B.peak_rss_mb = sys.peak_rss_mb

-- Statistics ----------------------------------------------------------------------------------

-- v when it is a number and not NaN, else nil (fields read from the areas' JSON).
function B.num(v) return type(v) == "number" and v == v and v or nil end

function B.median(xs)
    local s = {}
    for i, v in ipairs(xs) do s[i] = v end
    table.sort(s)
    local n = #s
    if n == 0 then return nil end
    if n % 2 == 1 then return s[(n + 1) // 2] end
    return (s[n // 2] + s[n // 2 + 1]) / 2
end

-- The range of the samples as a fraction of their median: 0.04 means max - min is 4% of it.
function B.spread(xs)
    if #xs < 2 then return nil end
    local lo, hi = math.huge, -math.huge
    for _, v in ipairs(xs) do lo, hi = math.min(lo, v), math.max(hi, v) end
    local m = B.median(xs)
    if m == 0 then return nil end
    return (hi - lo) / math.abs(m)
end

-- Runs fn `warmup` times untimed (default 1), then `reps` times (default B.reps()); returns the
-- seconds of each timed run.
function B.time(fn, opts)
    opts = opts or {}
    for _ = 1, opts.warmup or 1 do fn() end
    local out = {}
    for i = 1, opts.reps or B.reps() do
        local t0 = B.clock()
        fn()
        out[i] = B.clock() - t0
        collectgarbage()
    end
    return out
end

-- Output --------------------------------------------------------------------------------------

-- Prints one JSON object on its own line (and flushes, so the runner sees it even on a crash).
function B.emit(row)
    io.write(cjson.encode(row), "\n")
    io.flush()
end

local function with(row, extra)
    for k, v in pairs(extra or {}) do row[k] = v end
    return row
end

-- A rate: work units per second for each run; "apl" is the median rate.
function B.emit_rate(name, unit, work, secs, extra)
    local rates = {}
    for i, s in ipairs(secs) do rates[i] = work / s end
    B.emit(with({ name = name, apl = B.median(rates), unit = unit, samples = rates, threads = B.threads() }, extra))
end

-- A duration: "apl" is the median seconds.
function B.emit_time(name, secs, extra)
    B.emit(with({ name = name, apl = B.median(secs), unit = "s", samples = secs, threads = B.threads() }, extra))
end

return B
