-- Data-parallel DPO and SFT (issue 16): 2 processes joined by Gloo on 127.0.0.1 each step with the
-- same whole minibatch and compute their block of it; their weights after the steps must be one
-- process's (relative difference <= 1e-5: the largest weight difference over the largest
-- weight), the same on both ranks bit for bit, with one process's metrics and reference forwards.
-- tests/lua/dist_train_worker.lua does the training, alone and as each rank.
local T = require "tests.lib.test"
local cjson = require "cjson"
local dist = require "apl.dist"
local F = dofile(T.root() .. "/tests/lua/compute_fixture.lua")

local ROOT = T.root()

T.case("dist train: option dist is a boolean; a single process is never distributed", function()
    local tok, m = F.tok(), F.model(1)
    T.assert_error_match(function() apl.dpo.new { policy = m, tok = tok, dist = "no" } end,
        "^[^\n]*test_dist_train%.lua:%d+: apl%.dpo%.new: option 'dist' must be a boolean, got string")
    T.assert_error_match(function() apl.sft.new { model = m, tok = tok, dist = 0 } end,
        "apl%.sft%.new: option 'dist' must be a boolean, got number")
    T.eq(apl.dpo.new { policy = m, tok = tok }.dist, false)
    T.eq(apl.sft.new { model = m, tok = tok, dist = true }.dist, false)
end)

-- The worker's results: alone (single) and from 2 ranks ([0], [1]); run once for all cases.
local results
local function run()
    if not require("apl.core.dist").has_gloo then
        T.skip("apl.core.dist was built without Gloo (libgloo-dev): no process group between CPUs")
    end
    if results then
        if results.err then error(results.err, 0) end
        return results
    end
    F.tok()
    local dir = T.tmpdir()
    -- One thread each (2 ranks on 2 cores); a rank that waits for another fails within 30 s.
    local worker = string.format("%s/tests/lua/dist_train_worker.lua", ROOT)
    local cmd = string.format("export APL_THREADS=1 APL_DIST_TIMEOUT=30; mkdir %s/single %s/multi && " ..
        "timeout 120 %s/apl %s %s/single %s && timeout 120 %s/apl --nproc 2 %s %s/multi %s",
        dir, dir, ROOT, worker, dir, F.tok_dir, ROOT, worker, dir, F.tok_dir)
    local ok, err = pcall(T.sh, "(" .. cmd .. ")")
    if not ok then
        results = { err = err }
        error(err, 0)
    end
    local function load(path)
        local f = assert(io.open(path, "rb"))
        local s = f:read("a")
        f:close()
        return dist.decode(s)
    end
    results = { dir = dir, single = load(dir .. "/single/result.0"), load(dir .. "/multi/result.1") }
    results[0] = load(dir .. "/multi/result.0")
    return results
end

local function rel_diff(got, want)
    local big = 0
    for _, v in ipairs(want) do big = math.max(big, math.abs(v)) end
    return T.max_abs_diff(got, want) / big
end

-- Scenario k of the worker: 2 ranks trained as one process did.
local function same_training(k)
    local R = run()
    local s, a, b = R.single[k], R[0][k], R[1][k]
    T.ok(T.max_abs_diff(s.w, R.single.w0) > 1e-3, k .. ": the steps moved the weights")
    local d = rel_diff(a.w, s.w)
    T.ok(d <= 1e-5, k .. ": weights of 2 processes against one's, relative difference " .. d)
    T.eq(b.w, a.w, 0, k .. ": rank 1's weights are rank 0's")
    T.eq(a.steps, s.steps, 1e-5, k .. ": metrics of 2 processes against one's")
    T.eq(b.steps, a.steps, 0, k .. ": rank 1's metrics are rank 0's")
    return s, a, b
end

T.case("2 processes: DPO on 7 pairs (uneven blocks, micro-batches of 2), two steps, equals one process", function()
    local s, a, b = same_training("dpo")
    T.eq(s.ref_forwards, 16) -- 12 distinct sequences in the first minibatch, 4 more in the second
    T.eq({ a.ref_forwards, b.ref_forwards }, { 16, 16 }, "each rank counts every rank's reference forwards")
end)

T.case("2 processes: the reference cache is written once, by rank 0, and read (or failed) by rank 0 for both", function()
    local R = run()
    local function entries(path)
        local out, n = {}, 0
        for line in io.lines(path) do
            local ok, e = pcall(cjson.decode, line)
            if ok then out[e.key], n = e.logp, n + 1 end
        end
        return out, n
    end
    local want, n = entries(R.dir .. "/single/ref_logps.jsonl")
    local got, m = entries(R.dir .. "/multi/ref_logps.jsonl")
    T.eq(n, 16)
    T.eq(m, n, "one line per sequence: rank 1 appended nothing")
    T.eq(got, want, 1e-5, "the same keys and log-probs")
    -- A new trainer on the file (a torn last line appended by rank 0): no forward on either rank,
    -- and the warning rank 0 read reaches rank 1.
    local single = R.single.reread
    T.ok(single.warning:find("ref_logps.jsonl:17: truncated last line skipped", 1, true), single.warning)
    for r = 0, 1 do
        local x = R[r].reread
        T.eq(x.warning, (single.warning:gsub("/single/", "/multi/")), "rank " .. r .. "'s cache_warning")
        T.eq(x.ref_forwards, 0, "rank " .. r .. " read every entry")
        T.eq(x.loss, single.loss, 1e-5)
        local bad = R[r].bad_cache
        T.ok(tostring(bad):find("^apl%.dpo%.new: cache_file: .*/multi/no/such/folder/ref_logps%.jsonl"),
            "rank " .. r .. " raises rank 0's error: " .. tostring(bad))
    end
end)

T.case("2 processes: SFT on 7 examples, two steps, equals one process", function()
    local s = same_training("sft")
    T.ok(s.steps[1].tokens > 7, "tokens " .. s.steps[1].tokens)
end)

T.case("2 processes: a minibatch of one (rank 0's block empty) steps as one process does", function()
    local _, a, b = same_training("one")
    T.eq({ a.ref_forwards, b.ref_forwards }, { 2, 2 })
    same_training("sft_one")
end)

T.case("2 processes: a trainer with dist = false trains alone on rank 0, waiting for no rank", function()
    local R = run()
    T.eq(R[1].alone, nil)
    T.eq(R[0].alone.steps, R.single.alone.steps, 1e-6)
    local d = rel_diff(R[0].alone.w, R.single.alone.w)
    T.ok(d <= 1e-6, "the whole minibatch on rank 0, relative difference " .. d)
end)
