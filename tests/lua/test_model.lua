-- Model loading, saving and forward passes, checked against the NumPy reference
-- (tests/ref/ref_models.py) on tiny random models of each architecture.
local T = require "apl.test"
local tensor = require "apl.tensor"
local model = require "apl.model"

local ROOT = T.root()
local REF = ROOT .. "/tests/ref/ref_models.py"
local MAKE = ROOT .. "/tests/ref/make_ckpt.py"
local TOL = 1e-4

-- Three left-padded rows of lengths 7, 4 and 1 (pad id 0); ids drawn from a fixed sequence.
local LENS, WIDTH = { 7, 4, 1 }, 7
local function batch(vocab)
    local ids, mask, rows = {}, {}, {}
    local x = 17
    for b, n in ipairs(LENS) do
        ids[b], mask[b], rows[b] = {}, {}, {}
        for t = 1, WIDTH do
            local real = t > WIDTH - n
            x = (x * 37 + 11) % vocab
            ids[b][t] = real and x or 0
            mask[b][t] = real and 1 or 0
            if real then rows[b][#rows[b] + 1] = x end
        end
    end
    return ids, mask, rows
end

-- init leaves biases 0 and norm weights 1; noise on every parameter makes each of them count.
local function random_model(cfg, seed)
    local m = model.init(cfg, { seed = seed })
    tensor.manual_seed(seed)
    for _, p in ipairs(m:parameters()) do
        p.tensor:copy_(p.tensor + tensor.randn(p.tensor:shape()) * 0.1)
    end
    return m
end

-- The batch through the KV cache: the first 3 positions at once, then one token at a time.
local function cached_logits(m, ids, mask)
    local B = #ids
    local cache <close> = m:kv_cache(B, WIDTH)
    local idt, mt = tensor(ids), tensor(mask)
    local parts = { m:forward(idt:narrow(2, 1, 3), { attention_mask = mt:narrow(2, 1, 3), cache = cache }) }
    for t = 4, WIDTH do
        parts[#parts + 1] = m:forward(idt:narrow(2, t, 1), { attention_mask = mt:narrow(2, 1, t), cache = cache })
    end
    T.eq(cache:len(), WIDTH)
    return tensor.cat(parts, 2)
end

-- Runs the reference over dir and the outputs in io; returns the worst difference.
local function ref_check(dir, io, label)
    local path = dir .. "/io.safetensors"
    model.save_tensors(path, io)
    local out = T.python(REF, "check " .. dir .. " " .. path)
    for line in out:gmatch("[^\n]+") do print("    " .. label .. ": " .. line) end
    local worst = tonumber(out:match("max_abs_diff all (%S+)"))
    T.ok(worst, "no result from the reference:\n" .. out)
    return worst
end

-- Saves m, computes its logits for the padded batch, each unpadded row and the cached path.
local function parity(m, label)
    local dir = T.tmpdir()
    m:save(dir)
    local vocab = m:info().vocab_size
    local ids, mask, rows = batch(vocab)
    local io = { ids = tensor(ids), mask = tensor(mask),
        logits = m:forward(ids, { attention_mask = mask }), cached = cached_logits(m, ids, mask) }
    for b, r in ipairs(rows) do io["row" .. (b - 1)] = m:forward(r) end
    T.ok(ref_check(dir, io, label) <= TOL, label .. ": logits differ from the reference by more than " .. TOL)
end

local CONFIGS = {
    { "gpt2", model.tiny_config("gpt2") },
    { "gpt_neox parallel residual", model.tiny_config("gpt_neox", { use_parallel_residual = true }) },
    { "gpt_neox sequential residual", model.tiny_config("gpt_neox", { use_parallel_residual = false }) },
    { "llama GQA + llama3 rope_scaling", model.tiny_config("llama", {
        rope_theta = 500000.0,
        rope_scaling = { rope_type = "llama3", factor = 8.0, low_freq_factor = 1.0,
            high_freq_factor = 4.0, original_max_position_embeddings = 16 } }) },
    { "qwen2 qkv bias, tied", model.tiny_config("qwen2") },
    { "mistral", model.tiny_config("mistral") },
    { "llama attention_bias + mlp_bias", model.tiny_config("llama", { attention_bias = true, mlp_bias = true }) },
}

for i, c in ipairs(CONFIGS) do
    T.case("parity with NumPy: " .. c[1], function()
        parity(random_model(c[2], i), c[1])
    end)
end
