-- CUDA: generation, scoring, entropy, DPO and SFT steps in bf16 on `cuda`, and CPU-vs-CUDA parity
-- of logits and of the DPO loss. Every case is skipped with "no CUDA" where apl.tensor says there
-- is none; tools/gpu-check.sh runs them on a GPU machine.
--
-- APL_TEST_CUDA_DEVICE=cpu runs the same cases with "cpu" as the device, which checks the test code
-- itself (and bf16 on the CPU) on a machine without a GPU: the parity cases then compare the CPU
-- with itself in f32 and with its own bf16 arithmetic.
--
-- Tolerances. The references are CPU f32 forwards of the same weights (tests/lua/compute_fixture.lua,
-- plain single-row forwards).
-- * f32 on both sides: the same math in another summation order (cuBLAS tiles, no TF32: libtorch
--   leaves TF32 off for matmuls); f32 rounding (2^-24) over 2 layers of width 32 gives ~1e-6
--   relative, so 1e-4 relative to the largest |logit| leaves two orders of margin and still
--   catches a wrong mask, position or layer (those move logits by whole units).
-- * bf16: 8 significant bits (2^-9 relative rounding per op) on weights, activations and the
--   residual stream. The bf16 reference is the CPU f32 forward of the bf16-rounded weights, so the
--   weights' own rounding is not counted; what is left is the activations' rounding through two
--   blocks, a few bf16 ulps of the logit scale. libtorch's CPU bf16 (APL_TEST_CUDA_DEVICE=cpu)
--   measured 1.6% of the largest |logit| and 0.005 per token on summed log-probs. Bounds: logits
--   within 4% of the largest |logit| (about 10 ulps); summed log-probs within 0.05 per token plus
--   0.05 (a logit error of 0.1 moves a log-softmax by at most 0.2, and errors partly cancel); the
--   DPO loss within 0.02 (its log-ratios are differences of such sums, scaled by beta = 0.1 and a
--   sigmoid of slope <= 1/4). A bf16 path that fell back to garbage or mixed up rows misses these
--   by far.
local T = require "tests.lib.test"
local tensor = require "apl.tensor"
local F = dofile(T.root() .. "/tests/lua/compute_fixture.lua")

local PROMPTS = { "the movie was", "i liked", "a dull and boring plot, not worth", "great" }
local PAIRS = {
    { "the movie was", " good", " bad" },
    { "i liked", " the film a lot", " nothing" },
    { "great", " acting and a fine story", " plot" },
    { "not worth", " the ticket", " a dull and boring plot" },
}
local F32_REL, BF16_LOGIT_REL = 1e-4, 0.04
local BF16_LP_PER_TOKEN, BF16_DPO_LOSS = 0.05, 0.02

-- The device under test: "cuda", or APL_TEST_CUDA_DEVICE; skips the case when there is none.
local function device()
    local d = os.getenv("APL_TEST_CUDA_DEVICE")
    if d and d ~= "" then return d end
    if not tensor.cuda_available() then T.skip("no CUDA") end
    return "cuda"
end

-- A copy of a CPU f32 model on dev in dtype (the weights' values are the CPU model's).
local function on(dev, m, dtype)
    local c = m:clone()
    c:to(dev)
    if dtype and dtype ~= "f32" then c:to(dtype) end
    return c
end

-- The CPU f32 model whose weights are m's rounded to bf16: the bf16 cases' reference.
local function bf16_rounded(m)
    local c = m:clone()
    c:to("bf16")
    c:to("f32")
    return c
end

-- Each string's ids (encode_batch's third result: the unpadded lists).
local function encode_all(tok, list) return (select(3, tok:encode_batch(list))) end

-- Logits of one unpadded row as a flat Lua list (f32, on the CPU).
local function flat_logits(m, ids)
    local rows = apl.no_grad(function() return m:forward({ ids })[1]:float():to("cpu"):totable() end)
    local out = {}
    for _, r in ipairs(rows) do table.move(r, 1, #r, #out + 1, out) end
    return out
end

local function max_abs(xs)
    local m = 0
    for _, v in ipairs(xs) do m = math.max(m, math.abs(v)) end
    return m
end

-- Asserts that m's logits on dev are within rel × the largest |reference logit| of ref's (CPU).
local function check_logits(m, ref, tok, rel, what)
    for i, ids in ipairs(encode_all(tok, PROMPTS)) do
        local want, got = flat_logits(ref, ids), flat_logits(m, ids)
        local bound = rel * max_abs(want)
        local d = F.max_abs_diff(got, want)
        T.ok(d <= bound, string.format("%s, prompt %d: logits differ by %.3g (bound %.3g)", what, i, d, bound))
    end
end

-- ------------------------------------------------------------------------------------------
-- Parity

T.case("cuda: logits equal the CPU's (f32 tight, bf16 within a few ulps of the logit scale)", function()
    local dev, tok, cpu = device(), F.tok(), F.model(11)
    check_logits(on(dev, cpu, "f32"), cpu, tok, F32_REL, "f32")
    check_logits(on(dev, cpu, "bf16"), bf16_rounded(cpu), tok, BF16_LOGIT_REL, "bf16")
    local m = on(dev, cpu, "bf16")
    T.eq(m:parameters()[1].tensor:dtype(), "bf16")
    T.ok(m:parameters()[1].tensor:device():find(dev, 1, true) == 1, "the weights are on " .. dev)
end)

local function dpo_pairs()
    local data = {}
    for i, p in ipairs(PAIRS) do data[i] = { prompt = p[1], chosen = p[2], rejected = p[3] } end
    return data
end

-- The first step's metrics (measured before the update) of a DPO trainer on dev in dtype; the
-- policy and the reference differ, so the loss is not log 2 and its parity means something.
local function first_dpo_step(dev, dtype)
    local policy, ref = F.model(12), F.model(13)
    if dtype == "bf16" and dev == "cpu-reference" then
        policy, ref = bf16_rounded(policy), bf16_rounded(ref)
    elseif dev ~= "cpu-reference" then
        policy, ref = on(dev, policy, dtype), on(dev, ref, dtype)
    end
    local tr = apl.dpo.new { policy = policy, ref = ref, tok = F.tok(), beta = 0.1, lr = 1e-3, batch_size = 4 }
    return tr:step(dpo_pairs())
end

T.case("cuda: the DPO loss equals the CPU's (f32 to 1e-5, bf16 to 0.02)", function()
    local dev = device()
    local want = first_dpo_step("cpu-reference", "f32")
    T.ok(math.abs(want.loss - math.log(2)) > 1e-3, "policy and reference differ")
    local got = first_dpo_step(dev, "f32")
    T.eq(got.loss, want.loss, 1e-5, "f32 loss")
    T.eq(got["rewards/margins"], want["rewards/margins"], 1e-4, "f32 margins")
    T.eq(got.grad_norm, want.grad_norm, 1e-3 * want.grad_norm, "f32 gradient norm")
    local want16 = first_dpo_step("cpu-reference", "bf16")
    local got16 = first_dpo_step(dev, "bf16")
    T.eq(got16.loss, want16.loss, BF16_DPO_LOSS, "bf16 loss")
end)

-- ------------------------------------------------------------------------------------------
-- bf16 on the device: each engine path

-- Summed log-prob bound for a completion of n tokens in bf16.
local function lp_tol(n) return BF16_LP_PER_TOKEN * n + 0.05 end

T.case("cuda: greedy generation in f32 gives the CPU's tokens; bf16 samples score as the CPU scores them", function()
    local dev, tok, cpu = device(), F.tok(), F.model(14)
    local o = { n = 1, temperature = 0, max_new_tokens = 10, eos_id = -1 }
    local want = apl.generate(cpu, tok, PROMPTS, o)
    local got = apl.generate(on(dev, cpu, "f32"), tok, PROMPTS, o)
    for i = 1, #PROMPTS do T.eq(got[i][1].ids, want[i][1].ids, "f32 greedy, prompt " .. i) end
    local m, ref = on(dev, cpu, "bf16"), bf16_rounded(cpu)
    local out = apl.generate(m, tok, PROMPTS, { n = 3, max_new_tokens = 10, seed = 4, temperature = 0.9 })
    for i, p in ipairs(encode_all(tok, PROMPTS)) do
        T.eq(#out[i], 3)
        for _, c in ipairs(out[i]) do
            T.ok(#c.ids >= 1 and #c.ids <= 10, "length")
            local s = 0
            for _, v in ipairs(c.logprobs) do s = s + v end
            T.eq(c.logprob, s, 1e-3, "logprob is the sum of logprobs")
            T.eq(c.logprob, (F.ref_logprob(ref, p, c.ids)), lp_tol(#c.ids), "prompt " .. i)
        end
    end
end)

T.case("cuda: bf16 scoring equals the CPU's summed log-probs", function()
    local dev, tok, cpu = device(), F.tok(), F.model(15)
    local comps = { " good", " the film a lot and", " story", " not worth the ticket at all" }
    local m, ref = on(dev, cpu, "bf16"), bf16_rounded(cpu)
    local p, c = encode_all(tok, PROMPTS), encode_all(tok, comps)
    local lp = apl.logprob(m, tok, PROMPTS, comps, { batch_size = 3 })
    T.eq(lp:dtype(), "f32")
    for i, v in ipairs(lp:float():to("cpu"):totable()) do
        T.eq(v, (F.ref_logprob(ref, p[i], c[i])), lp_tol(#c[i]), "pair " .. i)
    end
end)

T.case("cuda: bf16 entropy is minus the mean CPU log-prob of its own samples", function()
    local dev, tok, cpu = device(), F.tok(), F.model(16)
    local m, ref = on(dev, cpu, "bf16"), bf16_rounded(cpu)
    local n = 4
    local H, samples = apl.entropy(m, tok, PROMPTS, { n = n, max_new_tokens = 8, seed = 2, batch_size = 4 })
    local h = H:float():to("cpu"):totable()
    for i, pr in ipairs(encode_all(tok, PROMPTS)) do
        T.eq(#samples[i], n)
        local s, len = 0, 0
        for _, c in ipairs(samples[i]) do s, len = s + F.ref_logprob(ref, pr, c.ids), len + #c.ids end
        T.ok(h[i] > 0, "entropy of prompt " .. i .. " is positive")
        T.eq(h[i], -s / n, lp_tol(len / n), "prompt " .. i)
    end
end)

T.case("cuda: bf16 DPO steps lower the loss and keep the weights in bf16 on the device", function()
    local dev, tok = device(), F.tok()
    local ref = on(dev, F.model(17), "bf16")
    local tr = apl.dpo.new { policy = ref:clone(), ref = ref, tok = tok, beta = 0.1, lr = 1e-3, batch_size = 4,
                             micro_batch_size = 2 }
    local first = tr:step(dpo_pairs())
    T.eq(first.loss, math.log(2), 1e-2, "policy = reference")
    local last
    for _ = 1, 4 do last = tr:step(dpo_pairs()) end
    T.ok(last.loss < first.loss - 1e-3, string.format("loss %.4f -> %.4f", first.loss, last.loss))
    T.ok(last["rewards/margins"] > 0, "chosen pulled above rejected")
    local w = tr.policy:parameters()[1].tensor
    T.eq(w:dtype(), "bf16")
    T.ok(w:device():find(dev, 1, true) == 1, "policy stays on " .. dev)
end)

T.case("cuda: a bf16 SFT step's loss is the CPU's mean completion NLL, and training lowers it", function()
    local dev, tok, cpu = device(), F.tok(), F.model(18)
    local ref = bf16_rounded(cpu)
    local examples, nll, tokens = {}, 0, 0
    for i, p in ipairs(PAIRS) do
        examples[i] = { prompt = p[1], completion = p[2] }
        local c = tok:encode(p[2])
        c[#c + 1] = tok.eos_id
        nll, tokens = nll - F.ref_logprob(ref, tok:encode(p[1]), c), tokens + #c
    end
    local tr = apl.sft.new { model = on(dev, cpu, "bf16"), tok = tok, lr = 1e-2, batch_size = 4 }
    local first = tr:step(examples)
    T.eq(first.tokens, tokens)
    T.eq(first.loss, nll / tokens, BF16_LP_PER_TOKEN, "mean NLL per token")
    local last
    for _ = 1, 5 do last = tr:step(examples) end
    T.ok(last.loss < 0.9 * first.loss, string.format("loss %.3f -> %.3f", first.loss, last.loss))
end)

-- Issue 15: LoRA adapters follow the model's device and dtype (attached after the move, or moved
-- with it), the adapted logits match the CPU's, and bf16 DPO steps train A and B alone.
T.case("cuda: LoRA adapters follow the model to the device and bf16, and train there", function()
    local dev, tok = device(), F.tok()
    local cpu = F.model(19)
    apl.lora.attach(cpu, { r = 4, alpha = 8, seed = 2 })
    for _, a in ipairs(cpu:lora().adapters) do a.B:copy_(tensor.randn(a.B:shape()) * 0.05) end
    local moved = F.model(19)
    apl.lora.attach(moved, { r = 4, alpha = 8, seed = 2 })
    for i, a in ipairs(moved:lora().adapters) do a.B:copy_(cpu:lora().adapters[i].B) end
    moved:to(dev)
    local ad = moved:lora().adapters[1]
    T.ok(ad.A:device():find(dev, 1, true) == 1 and ad.B:device():find(dev, 1, true) == 1, "adapters on " .. dev)
    check_logits(moved, cpu, tok, F32_REL, "f32 adapted")
    moved:adapters(false)
    cpu:adapters(false)
    check_logits(moved, cpu, tok, F32_REL, "f32 adapters off")
    moved:adapters(true)
    local m = on(dev, F.model(20), "bf16")
    apl.lora.attach(m, { r = 4, alpha = 8, seed = 2 })
    T.eq(m:lora().adapters[1].A:dtype(), "bf16")
    local base = m:parameters()[1].tensor:float():to("cpu"):totable()
    local tr = apl.dpo.new { policy = m, ref = m, tok = tok, beta = 0.1, lr = 1e-2, batch_size = 4 }
    local first = tr:step(dpo_pairs())
    T.eq(first.loss, math.log(2), 1e-2, "fresh adapters: policy = reference")
    local last
    for _ = 1, 4 do last = tr:step(dpo_pairs()) end
    T.ok(last.loss < first.loss - 1e-3, string.format("loss %.4f -> %.4f", first.loss, last.loss))
    T.eq(m:parameters()[1].tensor:float():to("cpu"):totable(), base, 0, "the base weights never move")
end)
