-- bench/dist.lua — the DPO step of bench/compute.lua (GPT-2 124M's config, random fp32 weights,
-- 4 pairs of T = 128, policy and reference forwards, Adam) in one process and in two data-parallel
-- ranks (`apl --nproc 2`, apl.dist over Gloo on 127.0.0.1: each rank computes 2 of the 4 pairs and
-- the optimizer sums the gradients over the ranks before its update). Each side is a process of
-- its own; the three take turns, in 3 rounds (1 with --quick) whose order rotates, and each figure is
-- the median over all their timed steps (a slow spell of a shared machine then weighs on every side):
--   one process, the bench's threads (APL_THREADS, all the cores)
--   one process, 1 thread                       (the scaling per core)
--   two processes, threads / 2 each (1 on 2 cores, what `apl --nproc 2` gives them)
-- APL_THREADS sets libtorch's threads, not the pool of a pthread OpenBLAS (Debian's
-- libopenblas0-pthread), which runs its matmuls on every core whatever it says: each side sets
-- OPENBLAS_NUM_THREADS to its thread count as well, so that "1 thread" is one core's work.
-- Rows (bench/run.lua's table; "baseline" is the one-process step):
--   dist_step     2 processes vs 1 process on the same cores                              s
--   dist_step_1t  2 processes vs 1 process on 1 thread                                    s
-- and, in dist_step's details, per step (the median over the timed steps): the time the ranks
-- spend in the gradient all-reduces and in the other collectives (dist.stats()), the bytes
-- all-reduced (4 bytes per f32 parameter and 4 per parameter tensor, the flags that say which have
-- a gradient: checked against the model), whether both ranks end with the same weights bit for
-- bit, and how far the 2-process losses are from one process's.
--
--   ./apl bench/dist.lua [--quick]             prints JSON lines {"name":..,"apl":..,"baseline":..}
--   ./apl bench/dist.lua --one OUT [--quick]   one side (run by the first, alone or under --nproc):
--                                              rank 0 writes every rank's figures to OUT
--
-- --quick: a 2-layer GPT-2 (C = 64, V = 512), 4 pairs of T = 32, lr 1e-3 (so that the steps move
-- the weights and the losses check the updates): a few seconds, for tests/lua/test_bench.lua.
local B = dofile((package.apl_root or ".") .. "/bench/common.lua")
local cjson = require "cjson"
local dist = require "apl.dist"
local rng = require "apl.rng"

local quick = B.quick()
local CFG = quick
    and { model_type = "gpt2", n_layer = 2, n_embd = 64, n_head = 4, vocab_size = 512, n_positions = 128 }
    or { model_type = "gpt2", n_layer = 12, n_embd = 768, n_head = 12, vocab_size = 50257, n_positions = 1024 }
local NP, T = 4, quick and 32 or 128
local LR = quick and 1e-3 or 1e-6
local TOK = { eos_id = CFG.vocab_size - 1, pad_id = CFG.vocab_size - 1 }
local STEPS = B.reps() -- timed in each process, after one warm-up step
local ROUNDS = quick and 1 or 3

-- ---------------------------------------------------------------------------------------------
-- One side: every rank steps with the same whole minibatch (apl.dpo splits it).

-- Parameters whose values differ from rank 0's (0 in a single process): each tensor broadcast
-- from rank 0 and compared element by element, after the timed steps.
local function differing_from_root(model)
    if not dist.active() then return 0 end
    local n = 0
    for _, p in ipairs(model:parameters()) do
        local root = dist.broadcast(p.tensor:clone(), 0)
        n = n + p.tensor:ne(root):sum():item()
        root:free()
    end
    return n
end

local function one(out)
    local model = apl.model.init(CFG, { seed = 0 })
    local tr = apl.dpo.new { policy = model, ref = model, tok = TOK, beta = 0.1, lr = LR, batch_size = NP }
    local batch = B.random_pairs(rng.new(4, "bench-dist"), NP, T, CFG.vocab_size)
    local function step()
        tr.ref_cache = {} -- the reference forward every step, as bench/compute.lua times it
        return tr:step(batch)
    end
    step() -- warm-up
    local steps = {}
    for i = 1, STEPS do
        local s0, t0 = dist.stats(), B.clock()
        local m = step()
        local secs, s1 = B.clock() - t0, dist.stats()
        steps[i] = { secs = secs, loss = m.loss, grad_norm = m.grad_norm,
                     grad_s = s1.grad_seconds - s0.grad_seconds, grad_bytes = s1.grad_bytes - s0.grad_bytes,
                     coll_s = (s1.seconds - s0.seconds) - (s1.grad_seconds - s0.grad_seconds),
                     coll_bytes = (s1.bytes - s0.bytes) - (s1.grad_bytes - s0.grad_bytes),
                     collectives = s1.collectives - s0.collectives }
        collectgarbage()
    end
    local mine = { rank = dist.rank(), threads = B.threads(), steps = steps, peak_rss_mb = B.peak_rss_mb(),
                   n_params = model:num_params(), n_tensors = #model:parameters(),
                   differing = differing_from_root(model) }
    local ranks = dist.all_gather_object(mine)
    if dist.is_root() then
        local f = assert(io.open(out, "wb"))
        f:write(dist.encode { world_size = dist.world_size(), ranks = ranks })
        f:close()
    end
end

-- ---------------------------------------------------------------------------------------------
-- The sides, and the rows.

local root = package.apl_root or "."


-- Runs one side in its own process(es) with `threads` threads each; rank 0's file, decoded.
local function run_side(dir, name, threads, nproc)
    local out = dir .. "/" .. name
    local cmd = string.format("APL_THREADS=%d OPENBLAS_NUM_THREADS=%d timeout 1800 %s %s%s --one %s%s 2>&1",
        threads, threads,
        B.sh_quote(root .. "/apl"), nproc and string.format("--nproc %d ", nproc) or "",
        B.sh_quote(root .. "/bench/dist.lua"), B.sh_quote(out), quick and " --quick" or "")
    local p = assert(io.popen(cmd))
    local text = p:read("a")
    local ok = p:close()
    local f = io.open(out, "rb")
    if not ok or not f then
        if f then f:close() end
        error(string.format("bench/dist.lua: side %s failed:\n%s", name, text), 0)
    end
    local r = dist.decode(f:read("a"))
    f:close()
    return r
end

local function load_avg()
    local f = io.open("/proc/loadavg")
    if not f then return nil end
    local v = tonumber(f:read("a"):match("^(%S+)"))
    f:close()
    return v
end

local function field(steps, key, from)
    local out = {}
    for i, s in ipairs(steps) do out[i] = from and from(s, i) or s[key] end
    return out
end

-- The largest relative difference between two lists of numbers (each against the larger of 1e-12
-- and |b|).
local function max_rel(a, b)
    local d = 0
    for i = 1, math.max(#a, #b) do
        local x, y = a[i], b[i]
        if not x or not y or x ~= x or y ~= y then return 1e300 end -- (JSON has no inf)
        d = math.max(d, math.abs(x - y) / math.max(1e-12, math.abs(y)))
    end
    return d
end

local function main()
    local threads = B.threads()
    local per_rank = math.max(1, threads // 2)
    local dir = B.tmpdir("apl-bench-dist")
    local load = load_avg()
    local sides = { { "full", threads }, { "one_thread", 1 }, { "two", per_rank, 2 } }
    local got = { full = {}, one_thread = {}, two = {} } -- each round's ranks, per side
    local ok, err = pcall(function()
        for round = 1, ROUNDS do
            for k = 1, #sides do
                local side = sides[(k + round - 2) % #sides + 1]
                local r = run_side(dir, side[1] .. round, side[2], side[3])
                table.insert(got[side[1]], r.ranks)
            end
        end
    end)
    os.execute("rm -rf " .. B.sh_quote(dir))
    if not ok then error(err, 0) end
    -- One rank's figures over all rounds: the steps in round order, the differing values summed,
    -- the highest peak RSS.
    local function over_rounds(side, rank)
        local out = { steps = {}, differing = 0, peak_rss_mb = 0 }
        for _, ranks in ipairs(got[side]) do
            local r = ranks[rank + 1]
            table.move(r.steps, 1, #r.steps, #out.steps + 1, out.steps)
            out.differing = out.differing + r.differing
            out.peak_rss_mb = math.max(out.peak_rss_mb, r.peak_rss_mb or 0)
            out.threads, out.n_params, out.n_tensors = r.threads, r.n_params, r.n_tensors
        end
        return out
    end
    local full, one1 = over_rounds("full", 0), over_rounds("one_thread", 0)
    local r0, r1 = over_rounds("two", 0), over_rounds("two", 1)
    local sfull, sone, stwo = field(full.steps, "secs"), field(one1.steps, "secs"), field(r0.steps, "secs")
    -- Per step, the faster rank's time in the collectives: the rank that arrives last waits for
    -- no one, so this is the transfer; the other rank's also holds its wait for the slower one.
    local function over_ranks(key, pick)
        return field(r0.steps, nil, function(s, i) return pick(s[key], r1.steps[i][key]) end)
    end
    local grad_min, grad_max = over_ranks("grad_s", math.min), over_ranks("grad_s", math.max)
    local coll_min = over_ranks("coll_s", math.min)
    local compute = field(r0.steps, nil, function(s, i) return s.secs - grad_min[i] - coll_min[i] end)
    local expected = 4 * r0.n_params + 4 * r0.n_tensors
    local details = {
        model = quick and string.format("GPT-2 L=%d C=%d V=%d", CFG.n_layer, CFG.n_embd, CFG.vocab_size)
            or "GPT-2 124M",
        pairs = NP, T = T, lr = LR, steps = STEPS * ROUNDS, rounds = ROUNDS, threads = threads, threads_per_rank = r0.threads,
        load_avg_1min = load,
        step_s = { full = B.median(sfull), one_thread = B.median(sone), two = B.median(stwo) },
        step_samples = { full = sfull, one_thread = sone, two = stwo },
        grad_allreduce_s = B.median(grad_min), grad_allreduce_waiting_s = B.median(grad_max),
        other_collectives_s = B.median(coll_min), compute_s = B.median(compute),
        grad_bytes = B.median(field(r0.steps, "grad_bytes")),
        grad_bytes_rank1 = B.median(field(r1.steps, "grad_bytes")),
        other_bytes = B.median(field(r0.steps, "coll_bytes")),
        collectives = B.median(field(r0.steps, "collectives")),
        n_params = r0.n_params, n_tensors = r0.n_tensors, expected_grad_bytes = expected,
        grad_bytes_as_expected = B.median(field(r0.steps, "grad_bytes")) == expected,
        one_process_grad_bytes = B.median(field(full.steps, "grad_bytes")),
        differing_params = r0.differing + r1.differing,
        ranks_equal = r0.differing == 0 and r1.differing == 0,
        -- the 2-process steps' metrics against one process's (1 thread), step by step
        loss_rel_diff = max_rel(field(r0.steps, "loss"), field(one1.steps, "loss")),
        grad_norm_rel_diff = max_rel(field(r0.steps, "grad_norm"), field(one1.steps, "grad_norm")),
        losses = { one_thread = field(one1.steps, "loss"), two = field(r0.steps, "loss"),
                   two_rank1 = field(r1.steps, "loss") },
        peak_rss_mb = { full = full.peak_rss_mb, rank0 = r0.peak_rss_mb, rank1 = r1.peak_rss_mb },
    }
    local config = string.format("%s, B=%d pairs T=%d, %d threads vs 2 ranks x %d", details.model, NP, T,
        threads, r0.threads)
    B.emit { name = "dist_step", apl = details.step_s.two, baseline = details.step_s.full, unit = "s",
             samples = stwo, baseline_samples = sfull, config = config, details = details }
    B.emit { name = "dist_step_1t", apl = details.step_s.two, baseline = details.step_s.one_thread, unit = "s",
             samples = stwo, baseline_samples = sone, config = config }
end

for i, a in ipairs(arg or {}) do
    if a == "--one" then
        one(assert(arg[i + 1], "bench/dist.lua --one OUT: the file rank 0 writes"))
        return
    end
end
main()
