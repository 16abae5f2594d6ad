-- apl.model — causal language models from Hugging Face folders (GPT-2, GPT-NeoX/Pythia, Llama,
-- Mistral, Qwen2), run by the C engine.
--
--   local m <close> = apl.model.load("pythia-160m/", { dtype = "f32", device = "cpu" })
--   local logits = m:forward({ { 0, 0, 5, 6 }, { 1, 2, 3, 4 } },
--                            { attention_mask = { { 0, 0, 1, 1 }, { 1, 1, 1, 1 } } })  -- (B, T, V)
--   local cache = m:kv_cache(2, 64)           -- incremental decoding
--   m:forward(prompt_ids, { cache = cache }); m:forward(next_ids, { cache = cache })
--   for _, p in ipairs(m:parameters()) do print(p.name, p.tensor:shape()) end
--   m:save("out/")                             -- config.json + model.safetensors, HF names
--
--   local tiny = apl.model.init(apl.model.tiny_config("llama"), { seed = 1 })
--
-- Models are "apl.Model" userdata: m:free() (also __gc and __close) releases the weights now.
local core = require "apl.core.model"
local tensor = require "apl.tensor"

local M = {}
local Model = core.Model

-- ids may be an i64 tensor (B, T), a list of ids (one row) or a list of equal-length lists.
local function as_batch(x, what)
    if type(x) ~= "table" then return x end
    if #x == 0 then error("apl.model.forward: " .. what .. " is empty", 3) end
    if type(x[1]) ~= "table" then x = { x } end
    local t = tensor(x)
    if t:dtype() ~= "i64" then t = t:to("i64") end
    return t
end

-- m:forward(ids, { attention_mask = ..., cache = ... }) -> logits (B, T, V), in the model's dtype
function Model:forward(ids, opts)
    opts = opts or {}
    return self:_forward(as_batch(ids, "ids"), as_batch(opts.attention_mask, "attention_mask"),
        opts.cache)
end

-- apl.model.load(dir, { dtype = "f32", device = "cpu" })
function M.load(dir, opts)
    opts = opts or {}
    return core.load(dir, opts.dtype, opts.device)
end

-- apl.model.init(config, { seed = 0, dtype = "f32", device = "cpu" }): config is a table (or
-- JSON text) with HF's field names; weights are drawn like HF's init, normal(0, 0.02).
function M.init(config, opts)
    opts = opts or {}
    return core.init(config, opts.seed, opts.dtype, opts.device)
end

local TINY = {
    gpt2 = { model_type = "gpt2", vocab_size = 101, n_embd = 32, n_layer = 2, n_head = 4,
        n_positions = 64, eos_token_id = 100 },
    gpt_neox = { model_type = "gpt_neox", vocab_size = 101, hidden_size = 32, num_hidden_layers = 2,
        num_attention_heads = 4, intermediate_size = 64, rotary_pct = 0.25,
        max_position_embeddings = 64, use_parallel_residual = true, eos_token_id = 100 },
    llama = { model_type = "llama", vocab_size = 101, hidden_size = 32, num_hidden_layers = 2,
        num_attention_heads = 4, num_key_value_heads = 2, intermediate_size = 64,
        max_position_embeddings = 64, rms_norm_eps = 1e-5, eos_token_id = 100 },
    mistral = { model_type = "mistral", vocab_size = 101, hidden_size = 32, num_hidden_layers = 2,
        num_attention_heads = 4, num_key_value_heads = 1, intermediate_size = 64,
        max_position_embeddings = 64, rms_norm_eps = 1e-5, eos_token_id = 100 },
    qwen2 = { model_type = "qwen2", vocab_size = 101, hidden_size = 32, num_hidden_layers = 2,
        num_attention_heads = 4, num_key_value_heads = 2, intermediate_size = 64,
        max_position_embeddings = 64, rms_norm_eps = 1e-6, tie_word_embeddings = true,
        eos_token_id = 100 },
}

-- A small config of the given model_type (2 layers, width 32, vocabulary 101) for tests and
-- demos; fields in `over` replace its own.
function M.tiny_config(model_type, over)
    local base = TINY[model_type]
    if not base then error("apl.model.tiny_config: unknown model_type '" .. tostring(model_type) .. "'", 2) end
    local c = {}
    for k, v in pairs(base) do c[k] = v end
    for k, v in pairs(over or {}) do c[k] = v end
    return c
end

M.save_tensors = core.save_tensors
M.load_tensors = core.load_tensors
M.Model = Model
M.KVCache = core.KVCache

require "apl.lora" -- m:save_adapter()

return M
