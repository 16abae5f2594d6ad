-- tests/platform/arm64_smoke.lua — the arm64 build against the x86 one (tools/platform.sh arm64).
--
--   ./apl tests/platform/arm64_smoke.lua write DIR    on x86: tiny models, tokenizer and results
--   ./apl tests/platform/arm64_smoke.lua check DIR    on arm64 (qemu-user): the same computations
--
-- For a GPT-2 and a Llama (RoPE, grouped-query heads) model: the logits of a forward, a greedy
-- generation, one DPO step (its loss and the updated weights), and one DPO step of LoRA adapters
-- on every projection (the reference: the adapters off; the updated A and B). Both sides load the same
-- checkpoint files, so only the arithmetic differs (OpenBLAS kernels, no AVX-512 kernels on
-- arm64). Ends with "N passed, N failed".
local cjson = require "cjson"
local bpe = require "recipes.lib.bpe_train"
local fs = require "apl.fs"

local mode, dir = arg[1], arg[2]
if not (mode == "write" or mode == "check") or not dir then
    io.stderr:write("usage: apl tests/platform/arm64_smoke.lua write|check DIR\n")
    os.exit(2)
end

-- f32 results differ by the order of sums only (OpenBLAS kernels): up to 9e-6 in the logits
-- measured under qemu-user; 1e-4 leaves a margin
local TOL = 1e-4
local CORPUS = { "the movie was good", "the movie was bad", "i liked the film a lot",
                 "a dull and boring plot", "great acting and a fine story", "not worth the ticket" }
local PROMPTS = { "the movie", "a dull", "great acting" }
local PAIRS = { { "the movie was", " good", " bad" }, { "i liked", " the film a lot", " nothing" } }

local LORA_TARGETS = { gpt2 = { "c_attn", "c_proj", "c_fc", "lm_head" },
                       llama = { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" } }

local function flat(t) return t:reshape({ t:numel() }):float():totable() end

local function checkpoint(kind, tok)
    local path = dir .. "/" .. kind
    if mode == "write" then
        local over = { vocab_size = tok:vocab_size(), eos_token_id = tok.eos_id }
        local m = apl.model.init(apl.model.tiny_config(kind, over), { seed = 7 })
        -- noise on every weight spreads the logits: greedy decoding then has no near-ties
        apl.tensor.manual_seed(7)
        apl.no_grad(function()
            for _, p in ipairs(m:parameters()) do p.tensor:copy_(p.tensor + apl.tensor.randn(p.tensor:shape()) * 0.3) end
        end)
        m:save(path)
    end
    return apl.model.load(path)
end

local function results(kind, tok)
    local m, ref = checkpoint(kind, tok), checkpoint(kind, tok)
    local r = { kind = kind }
    r.logits = apl.no_grad(function() return flat(m:forward({ tok:encode(CORPUS[5]) })) end)
    r.greedy = {}
    for i, out in ipairs(apl.generate(m, tok, PROMPTS, { max_new_tokens = 8, temperature = 0 })) do
        r.greedy[i] = out[1].ids
    end
    local batch = {}
    for i, p in ipairs(PAIRS) do batch[i] = { prompt = p[1], chosen = p[2], rejected = p[3] } end
    -- eps = 1: the step is lr·g/(|g| + 1), nearly linear in the gradient, so tiny gradients whose
    -- sign rounding decides do not become full-size steps
    local tr = apl.dpo.new { policy = m, ref = ref, tok = tok, beta = 0.2, lr = 0.1, eps = 1, batch_size = #batch }
    r.dpo_loss = tr:step(batch).loss
    r.weights = {}
    for _, p in ipairs(m:parameters()) do r.weights[#r.weights + 1] = flat(p.tensor) end
    local adapted = checkpoint(kind, tok)
    apl.lora.attach(adapted, { r = 4, targets = LORA_TARGETS[kind], seed = 3 })
    local ltr = apl.dpo.new { policy = adapted, ref = adapted, tok = tok, beta = 0.2, lr = 0.1, eps = 1,
                              batch_size = #batch }
    ltr:step(batch) -- B = 0 before it: the first step moves B alone; the second moves A too
    r.lora_loss = ltr:step(batch).loss
    r.adapters = {}
    for _, a in ipairs(adapted:lora().adapters) do
        r.adapters[#r.adapters + 1] = flat(a.A)
        r.adapters[#r.adapters + 1] = flat(a.B)
    end
    return r
end

local function max_diff(a, b)
    local d = 0
    for i = 1, math.max(#a, #b) do
        local x = math.abs((a[i] or math.huge) - (b[i] or math.huge))
        if x ~= x or x > d then d = x end -- NaN counts as the largest difference
    end
    return d
end

local passed, failed = 0, 0
local function check(ok, what, detail)
    if ok then passed = passed + 1 else failed = failed + 1 end
    print(string.format("%-7s %s%s", ok and "ok" or "NOT OK", what, detail and ("  " .. detail) or ""))
end

local function compare(want, got)
    local k = want.kind
    local d = max_diff(want.logits, got.logits)
    check(d <= TOL, k .. ": logits equal x86's", string.format("max diff %.2e", d))
    for i = 1, #PROMPTS do
        check(cjson.encode(want.greedy[i]) == cjson.encode(got.greedy[i]), k .. ": greedy completion " .. i,
            cjson.encode(got.greedy[i]))
    end
    d = math.abs(want.dpo_loss - got.dpo_loss)
    check(d <= TOL, k .. ": DPO loss equals x86's", string.format("%.6f vs %.6f", got.dpo_loss, want.dpo_loss))
    d = 0
    for i, w in ipairs(want.weights) do d = math.max(d, max_diff(w, got.weights[i] or {})) end
    check(d <= TOL, k .. ": weights after the DPO step equal x86's", string.format("max diff %.2e", d))
    d = math.abs(want.lora_loss - got.lora_loss)
    check(d <= TOL, k .. ": LoRA DPO loss equals x86's", string.format("%.6f vs %.6f", got.lora_loss, want.lora_loss))
    d = #want.adapters == #got.adapters and 0 or math.huge
    for i, w in ipairs(want.adapters) do d = math.max(d, max_diff(w, got.adapters[i] or {})) end
    check(d <= TOL, k .. ": LoRA A and B after two steps equal x86's", string.format("max diff %.2e", d))
end

if mode == "write" then bpe.write(dir .. "/tok", CORPUS, { merges = 40 }) end
local tok = apl.tokenizer.load(dir .. "/tok")
local kinds = { "gpt2", "llama" }
if mode == "write" then
    local out = {}
    for i, k in ipairs(kinds) do out[i] = results(k, tok) end
    fs.write(dir .. "/x86.json", cjson.encode(out))
    print("wrote " .. dir .. "/x86.json")
    os.exit(0)
end
local want = cjson.decode(fs.read(dir .. "/x86.json"))
for i, k in ipairs(kinds) do compare(want[i], results(k, tok)) end
print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
