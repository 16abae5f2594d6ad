-- bench/compute.lua — generation, log-prob scoring, a DPO step and an SFT step on GPT-2 124M's
-- config with random fp32 weights, the workloads of bench/baseline.py:
--   generation  B=8 prompts of 16 tokens, 64 new tokens, greedy          tok/s (new tokens)
--               (generation_blas: the same with apl.fast_kernels(false))
--   logprob     B=8 rows of T=128 (quick 4, 64), second half scored     tok/s (all tokens)
--   dpo_step    4 pairs, T=128 (quick 1, 64), policy and reference forwards, Adam      s
--   sft_step    B=8, T=128 (quick 2, 64), Adam                                         s
--
--   ./apl bench/compute.lua [--quick]        prints JSON lines {"name":..,"apl":..,"unit":..}
--
-- The DPO step clears the trainer's reference cache before each run, so the reference forward is
-- timed as the baseline times it; in training apl computes it once per pair (see apl.dpo).
local B = dofile((package.apl_root or ".") .. "/bench/common.lua")
local C = require "apl.core.compute"
local rng = require "apl.rng"

local CFG = { model_type = "gpt2", n_layer = 12, n_embd = 768, n_head = 12, vocab_size = 50257,
              n_positions = 1024 }
local quick = B.quick()
local TOK = { eos_id = 50256, pad_id = 50256 } -- ids are made here; nothing is encoded

local function rows(seed, n, len)
    local r, out = rng.new(seed, "bench-compute"), {}
    for i = 1, n do out[i] = B.random_ids(r, len, CFG.vocab_size) end
    return out
end

local model = apl.model.init(CFG, { seed = 0 })

-- Then again with the decoding kernels off (apl.fast_kernels(false)): every product through BLAS.
local function bench_generation()
    local nb, prompt, new = 8, 16, 64
    local prompts = rows(1, nb, prompt)
    local config = string.format("B=%d prompt=%d new=%d greedy", nb, prompt, new)
    for _, name in ipairs({ "generation", "generation_blas" }) do
        local was = apl.fast_kernels(name == "generation")
        local secs = B.time(function()
            C.generate(model, prompts, { max_new_tokens = new, temperature = 0, batch_size = nb })
        end)
        apl.fast_kernels(was)
        B.emit_rate(name, "tok/s", nb * new, secs, { config = config })
    end
end

local function bench_logprob()
    local nb, T = quick and 4 or 8, quick and 64 or 128
    local p, c = rows(2, nb, T // 2), rows(3, nb, T - T // 2)
    local secs = B.time(function() C.logprob(model, p, c, { batch_size = nb }) end)
    B.emit_rate("logprob", "tok/s", nb * T, secs, { config = string.format("B=%d T=%d", nb, T) })
end

local function bench_dpo()
    local np, T = quick and 1 or 4, quick and 64 or 128
    local p, c, r = rows(4, np, T // 2), rows(5, np, T - T // 2), rows(6, np, T - T // 2)
    local pairs = {}
    for i = 1, np do pairs[i] = { prompt_ids = p[i], chosen_ids = c[i], rejected_ids = r[i] } end
    local ref = model:clone()
    local tr = apl.dpo.new { policy = model, ref = ref, tok = TOK, beta = 0.1, lr = 1e-6, batch_size = np }
    local secs = B.time(function()
        tr.ref_cache = {}
        tr:step(pairs)
    end)
    B.emit_time("dpo_step", secs, { config = string.format("B=%d pairs T=%d, policy+reference forwards, Adam", np, T),
                                    peak_rss_mb = B.peak_rss_mb() })
    tr:reset()
    ref:free()
end

local function bench_sft()
    local nb, T = quick and 2 or 8, quick and 64 or 128
    local p, c = rows(7, nb, T // 2), rows(8, nb, T - T // 2)
    local ex = {}
    for i = 1, nb do ex[i] = { prompt_ids = p[i], completion_ids = c[i] } end
    local tr = apl.sft.new { model = model, tok = TOK, lr = 1e-6, batch_size = nb }
    local secs = B.time(function() tr:step(ex) end)
    B.emit_time("sft_step", secs, { config = string.format("B=%d T=%d, Adam", nb, T) })
    tr.opt:free() -- its moments (2 x 500 MB) are not needed by the DPO step
end

bench_generation()
bench_logprob()
bench_sft()
bench_dpo()
