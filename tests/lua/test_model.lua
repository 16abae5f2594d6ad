-- Model loading, saving and forward passes, checked against the NumPy reference
-- (tests/ref/ref_models.py) on tiny random models of each architecture.
local T = require "tests.lib.test"
local tensor = require "apl.tensor"
local model = require "apl.model"

local ROOT = T.root()
local REF = ROOT .. "/tests/ref/ref_models.py"
local MAKE = ROOT .. "/tests/ref/make_ckpt.py"
local TOL = 1e-4

-- Three left-padded rows of lengths 7, 4 and 1 (pad id 0); ids drawn from a fixed sequence.
local F = dofile(T.root() .. "/tests/lua/compute_fixture.lua")
local WIDTH = F.WIDTH
local function batch(vocab) return F.padded_batch(vocab, 17) end

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

-- ---------------------------------------------------------------------------------------------
-- Checkpoints shaped like the Hub's, written by tests/ref/make_ckpt.py (not by apl)

local function maxdiff(a, b) return (a:to("f32") - b:to("f32")):abs():max():item() end

local HUB = {
    { "gpt2_hub", "GPT-2 without transformer. prefix, attn.bias buffers" },
    { "pythia_hub", "Pythia fp16 with attention.bias/masked_bias/inv_freq buffers" },
    { "llama_sharded", "Llama bf16 in two shards with index.json" },
}

for _, h in ipairs(HUB) do
    T.case("loads Hub-style checkpoint: " .. h[2], function()
        local dir = T.tmpdir()
        T.python(MAKE, h[1] .. " " .. dir)
        local m <close> = model.load(dir)
        T.eq(m:info().dtype, "f32")
        local ids, mask, rows = batch(m:info().vocab_size)
        local io = { ids = tensor(ids), mask = tensor(mask), logits = m:forward(ids, { attention_mask = mask }),
            cached = cached_logits(m, ids, mask), row0 = m:forward(rows[1]) }
        T.ok(ref_check(dir, io, h[1]) <= TOL, h[1] .. ": logits differ from the reference")
    end)
end

T.case("save writes save_pretrained names; round trip gives identical logits", function()
    local src = T.tmpdir()
    T.python(MAKE, "gpt2_hub " .. src)
    local m <close> = model.load(src)
    local out = T.tmpdir()
    m:save(out)
    local names = {}
    for k in pairs(model.load_tensors(out .. "/model.safetensors")) do names[#names + 1] = k end
    table.sort(names)
    T.eq(#names, 2 + 2 * 12 + 2)
    T.eq(names[1], "transformer.h.0.attn.c_attn.bias")
    T.eq(names[#names], "transformer.wte.weight")
    local m2 <close> = model.load(out)
    T.eq(m2:config().architectures[1], "GPT2LMHeadModel")
    T.eq(m2:config().torch_dtype, "float32")
    local ids = { { 5, 6, 7, 8 } }
    T.eq(maxdiff(m:forward(ids), m2:forward(ids)), 0)
    -- a fp16 save stays fp16 on disk and in config.json
    local m16 <close> = model.load(src, { dtype = "f16" })
    T.eq(m16:parameters()[1].tensor:dtype(), "f16")
    local out16 = T.tmpdir()
    m16:save(out16)
    T.eq(model.load_tensors(out16 .. "/model.safetensors")["transformer.wte.weight"]:dtype(), "f16")
    T.eq(model.load(out16):config().torch_dtype, "float16")
end)

-- ---------------------------------------------------------------------------------------------
-- Broken checkpoints: each must raise an error naming the file and the field

local BAD = {
    { "truncated", "model%.safetensors: tensor \"[^\"]+\": data_offsets .* outside the data" },
    { "tiny_file", "model%.safetensors: truncated file" },
    { "header_too_long", "model%.safetensors: header length %d+ exceeds the file" },
    { "header_not_json", "model%.safetensors: header is not a JSON object" },
    { "offsets_out_of_range", "model%.safetensors: tensor \"ln_f%.weight\": data_offsets %[1000000000" },
    { "overlap", "model%.safetensors: tensors \"h%.0%.ln_1%.weight\" and \"h%.0%.ln_1%.bias\" overlap" },
    { "unknown_dtype", "model%.safetensors: tensor \"wte%.weight\": unknown dtype \"Q4\"" },
    { "size_mismatch", "model%.safetensors: tensor \"ln_f%.weight\": data_offsets hold 128 bytes" },
    { "missing_tensor", "missing tensor \"transformer%.h%.1%.mlp%.c_fc%.bias\"" },
    { "wrong_shape", "model%.safetensors: tensor \"wpe%.weight\" has shape %(64, 32%), config%.json implies %(32, 32%)" },
    { "unexpected_tensor", "model%.safetensors: unexpected tensor \"h%.0%.attn%.q_proj%.weight\"" },
    { "int_weight", "model%.safetensors: tensor \"ln_f%.bias\": dtype I64 is not a float type" },
    { "config_missing_field", "config%.json: missing \"n_layer\"" },
    { "config_bad_type", "config%.json: \"n_head\" must be a positive integer" },
    { "unknown_model_type", "config%.json: \"model_type\": \"bert\" is not supported" },
    { "config_not_json", "config%.json: not a JSON object" },
    { "no_config", "config%.json: No such file" },
    { "no_weights", "no model%.safetensors or model%.safetensors%.index%.json" },
    { "missing_shard", "model%-00002%-of%-00002%.safetensors: No such file" },
    { "index_wrong_shard", "index%.json: tensor \"model%.norm%.weight\" not found in its shard" },
    -- issue 19: hostile checkpoints that crashed, hung or loaded wrong
    { "overlap_zero_size", "model%.safetensors: tensors \"wte%.weight\" and \"empty\" overlap" },
    { "duplicate_name", "model%.safetensors: tensor \"h%.0%.ln_1%.bias\" appears twice" },
    { "nan_weight", "model%.safetensors: tensor \"ln_f%.weight\": element 3 is NaN or infinite" },
    { "weights_fifo", "model%.safetensors: not a regular file" },
    { "config_fifo", "config%.json: not a regular file" },
    { "eos_huge", "config%.json: \"eos_token_id\" must be token ids below vocab_size %(101%)" },
    { "eos_beyond_vocab", "config%.json: \"eos_token_id\" must be token ids below vocab_size" },
    { "eos_list_beyond_vocab", "config%.json: \"eos_token_id\" must be token ids below vocab_size" },
    { "negative_epsilon", "config%.json: \"layer_norm_epsilon\" must be non%-negative" },
    { "n_layer_wraps", "config%.json: 357913942 layers need %d+ tensors, more than the checkpoint holds %(32%)" },
    { "n_layer_3e9", "config%.json: \"n_layer\" must be a positive integer %(at most 2147483647%)" },
    { "n_layer_1e7", "config%.json: 10000000 layers need %d+ tensors, more than the checkpoint holds" },
    { "n_layer_one_more", "config%.json: 3 layers need 40 tensors, more than the checkpoint holds %(32%)" },
}

T.case("broken checkpoints give clear errors (" .. #BAD .. " cases)", function()
    local root = T.tmpdir()
    for _, c in ipairs(BAD) do
        local dir = root .. "/" .. c[1]
        T.python(MAKE, "bad " .. c[1] .. " " .. dir)
        local err = T.assert_error_match(function() model.load(dir) end, "apl%.model%.load: .*" .. c[2], c[1])
        T.ok(err:find(dir, 1, true), c[1] .. ": the error does not name the folder: " .. err)
    end
end)

T.case("init: config errors name the field", function()
    T.assert_error_match(function() model.init({ model_type = "llama", vocab_size = 10 }) end,
        "apl%.model%.init: config: missing \"hidden_size\"")
    T.assert_error_match(function() model.init(model.tiny_config("llama", { num_key_value_heads = 3 })) end,
        "not a multiple of \"num_key_value_heads\"")
    T.assert_error_match(function()
        model.init(model.tiny_config("llama", { rope_scaling = { rope_type = "yarn", factor = 2 } }))
    end, "rope_type \"yarn\" is not supported")
    T.assert_error_match(function() model.init(model.tiny_config("gpt2"), { dtype = "i64" }) end,
        "not a float type")
    -- issue 19: numbers that wrapped the spec count, looped forever or allocated gigabytes
    for _, n in ipairs({ 357913942, 2147483647, 1e7 }) do
        T.assert_error_match(function() model.init(model.tiny_config("gpt2", { n_layer = n })) end,
            "config: %d+ layers need %d+ tensors, more than apl builds")
    end
    T.assert_error_match(function() model.init(model.tiny_config("gpt2", { n_embd = 4e14, n_head = 1 })) end,
        "config: \"n_embd\" must be a positive integer %(at most 2147483647%)")
    T.assert_error_match(function()
        model.init(model.tiny_config("llama", { num_attention_heads = 2e9, num_key_value_heads = 1, head_dim = 2e9 }))
    end, "config: \"model%.layers%.0%.self_attn%.q_proj%.weight\" %(4000000000000000000 x 32%) is too large")
    T.assert_error_match(function() model.init(model.tiny_config("gpt2", { layer_norm_epsilon = -1 })) end,
        "\"layer_norm_epsilon\" must be non%-negative")
    T.assert_error_match(function() model.init(model.tiny_config("llama", { rope_theta = 0 })) end,
        "\"rope_theta\" must be positive")
    T.assert_error_match(function() model.init(model.tiny_config("gpt2", { eos_token_id = 1e300 })) end,
        "\"eos_token_id\" must be token ids below vocab_size %(101%)")
    T.assert_error_match(function() model.init(model.tiny_config("gpt2", { eos_token_id = 1.5 })) end,
        "\"eos_token_id\" must be token ids")
end)

-- ---------------------------------------------------------------------------------------------
-- The Lua API

T.case("parameters, num_params, config, info", function()
    local m <close> = model.init(model.tiny_config("gpt_neox"), { seed = 3 })
    local ps = m:parameters()
    T.eq(#ps, 1 + 2 * 12 + 2 + 1)
    T.eq(ps[1].name, "gpt_neox.embed_in.weight")
    T.eq(ps[#ps].name, "embed_out.weight")
    T.eq(ps[1].tensor:shape(), { 101, 32 })
    local n = 0
    for _, p in ipairs(ps) do n = n + p.tensor:numel() end
    T.eq(m:num_params(), n)
    T.eq(m:config().rotary_pct, 0.25)
    T.eq(m:config().use_parallel_residual, true)
    T.eq(m:info(), { model_type = "gpt_neox", vocab_size = 101, max_positions = 64, eos_id = 100,
        dtype = "f32", device = "cpu" })
    -- init follows HF: normal(0, 0.02) weights, LayerNorm weight 1 and bias 0
    local std = math.sqrt(ps[1].tensor:square():mean():item())
    T.ok(std > 0.018 and std < 0.022, "embedding std " .. std)
    T.eq(ps[2].tensor:min():item(), 1)
    T.eq(ps[3].tensor:abs():max():item(), 0)
end)

T.case("init is deterministic in seed; ids as tables or tensors", function()
    local cfg = model.tiny_config("llama")
    local a <close> = model.init(cfg, { seed = 7 })
    local b <close> = model.init(cfg, { seed = 7 })
    local c <close> = model.init(cfg, { seed = 8 })
    local ids = { { 1, 2, 3 }, { 4, 5, 6 } }
    local la = a:forward(ids)
    T.eq(la:shape(), { 2, 3, 101 })
    T.eq(maxdiff(la, b:forward(tensor(ids))), 0)
    T.ok(maxdiff(la, c:forward(ids)) > 1e-4)
    T.eq(a:forward({ 1, 2, 3 }):shape(), { 1, 3, 101 })
    T.assert_error_match(function() a:forward(tensor({ 1.5, 2 })) end, "ids must be a %(B, T%) i64 tensor")
    T.assert_error_match(function() a:forward(ids, { attention_mask = { { 1, 1 } } }) end,
        "attention_mask must be %(2, 3%)")
    T.assert_error_match(function() a:forward({ { 1, 2, 3 } }, { cache = a:kv_cache(2, 8) }) end,
        "cache was made for another")
    local long = {}
    for i = 1, 65 do long[i] = 1 end
    T.assert_error_match(function() a:forward(long) end, "65 positions exceed the model's 64")
end)

T.case("clone and copy_from reset to theta0 without disk", function()
    local m <close> = model.init(model.tiny_config("qwen2"), { seed = 4 })
    local theta0 <close> = m:clone()
    local ids = { { 3, 1, 4, 1, 5 } }
    local before = m:forward(ids)
    for _, p in ipairs(m:parameters()) do p.tensor:copy_(p.tensor * 1.5) end
    T.ok(maxdiff(before, m:forward(ids)) > 1e-3, "changing parameters changes logits")
    T.eq(maxdiff(before, theta0:forward(ids)), 0, "the clone owns its weights")
    m:copy_from(theta0)
    T.eq(maxdiff(before, m:forward(ids)), 0)
    local other <close> = model.init(model.tiny_config("llama"))
    T.assert_error_match(function() m:copy_from(other) end, "different configs")
end)

T.case("loaded weights are writable copy-on-write; the file never changes", function()
    local dir = T.tmpdir()
    T.python(MAKE, "gpt2_hub " .. dir)
    local ids = { { 9, 8, 7 } }
    local m <close> = model.load(dir)
    local before = m:forward(ids)
    for _, p in ipairs(m:parameters()) do p.tensor:fill_(0.5) end
    T.ok(maxdiff(before, m:forward(ids)) > 1e-3)
    m:free()
    local again <close> = model.load(dir)
    T.eq(maxdiff(before, again:forward(ids)), 0)
end)

T.case("the file stays mapped while any of its tensors lives", function()
    local dir = T.tmpdir()
    T.python(MAKE, "gpt2_hub " .. dir)
    local function mapped()
        local n = 0
        for l in io.lines("/proc/self/maps") do
            if l:find(dir .. "/model.safetensors", 1, true) then n = n + 1 end
        end
        return n
    end
    local m = model.load(dir)
    local ps = m:parameters()
    T.eq(mapped(), 1)
    m:free()
    T.eq(mapped(), 1, "a parameter held by Lua keeps the mapping")
    T.eq(ps[1].tensor:shape(), { 101, 32 })
    ps = nil
    collectgarbage()
    collectgarbage()
    T.eq(mapped(), 0, "unmapped with the last tensor")
end)

T.case("to(dtype), free twice, __close", function()
    local m = model.init(model.tiny_config("gpt2"), { seed = 5 })
    local ids = { { 1, 2, 3, 4 } }
    local l32 = m:forward(ids)
    m:to("f64")
    T.eq(m:info().dtype, "f64")
    T.eq(m:forward(ids):dtype(), "f64")
    T.ok(maxdiff(l32, m:forward(ids)) < 1e-5)
    m:to("f32")
    T.ok(maxdiff(l32, m:forward(ids)) < 1e-5)
    T.assert_error_match(function() m:to("tpu") end, "apl%.model%.to: 'tpu' is neither a dtype nor a device")
    m:free()
    m:free()
    T.assert_error_match(function() m:forward(ids) end, "model was freed")
    do local c <close> = model.init(model.tiny_config("gpt2")) end
    T.ok(tostring(m):find("freed"))
end)

-- issue 18: apl.model parses dtype and device names with apl.tensor's helper (lcommon.c): the same
-- names, the same errors, and CUDA is checked before anything is read or allocated.
T.case("dtype and device errors name the function and the value (table-driven)", function()
    local cfg = model.tiny_config("gpt2")
    local m <close> = model.init(cfg)
    local rows = {
        { "init unknown dtype", function() model.init(cfg, { dtype = "f8" }) end,
          "apl%.model%.init: unknown dtype 'f8' %(f32, f16, bf16, f64%)$" },
        { "init int dtype", function() model.init(cfg, { dtype = "i64" }) end,
          "apl%.model%.init: dtype 'i64' is not a float type %(f32, f16, bf16, f64%)$" },
        { "init unknown device", function() model.init(cfg, { device = "tpu" }) end,
          "apl%.model%.init: unknown device 'tpu' %(cpu, cuda, cuda:N%)$" },
        { "load unknown dtype", function() model.load("/nonexistent", { dtype = "f8" }) end,
          "apl%.model%.load: unknown dtype 'f8'" },
        { "to int dtype", function() m:to("long") end, "apl%.model%.to: dtype 'long' is not a float type" },
        { "to nonsense", function() m:to("cuda:x") end, "apl%.model%.to: 'cuda:x' is neither a dtype nor a device" },
    }
    if not tensor.cuda_available() then
        for _, c in ipairs({
            { "init cuda", function() model.init(cfg, { device = "cuda" }) end, "init" },
            { "load cuda", function() model.load("/nonexistent", { device = "cuda:0" }) end, "load" },
            { "to cuda", function() m:to("cuda") end, "to" },
        }) do
            rows[#rows + 1] = { c[1], c[2], "apl%.model%." .. c[3] .. ": CUDA is not available in this libtorch build$" }
        end
    end
    for _, c in ipairs(rows) do T.assert_error_match(c[2], c[3], c[1]) end
    T.eq(m:info().dtype, "f32", "a refused to() leaves the model as it was")
    T.eq(m:info().device, "cpu")
    m:to("float64") -- torch's names work for models too
    T.eq(m:info().dtype, "f64")
end)

T.case("KV cache: select_rows, reset, overflow", function()
    local m <close> = model.init(model.tiny_config("llama"), { seed = 6 })
    local ids = { { 1, 2, 3 }, { 4, 5, 6 }, { 7, 8, 9 } }
    local full = m:forward({ { 4, 5, 6, 10 } })
    local cache <close> = m:kv_cache(3, 4)
    m:forward(ids, { cache = cache })
    cache:select_rows({ 2 })
    T.eq(cache:len(), 3)
    local step = m:forward({ { 10 } }, { cache = cache })
    T.ok(maxdiff(step, full:narrow(2, 4, 1)) < 1e-5)
    T.assert_error_match(function() m:forward({ { 1 } }, { cache = cache }) end,
        "5 positions exceed the cache's 4")
    cache:reset()
    T.eq(cache:len(), 0)
    cache:free()
    cache:free()
end)

T.case("half precision on the CPU: bf16 near f32; f16 near f32 on libtorch 2.x, a clear error on 1.13", function()
    local dir = T.tmpdir()
    T.python(MAKE, "pythia_hub " .. dir)
    local ids = { { 1, 2, 3, 4, 5 } }
    local f32 <close> = model.load(dir)
    local want = f32:forward(ids)
    local bf <close> = model.load(dir, { dtype = "bf16" })
    T.eq(bf:info().dtype, "bf16")
    local got = bf:forward(ids)
    T.eq(got:dtype(), "bf16")
    -- measured on logits up to 1.6: 0.014 (libtorch 1.13), 0.017 (2.6); 0.04 leaves a margin
    local d = maxdiff(got, want)
    T.ok(d < 0.04, "bf16 logits near f32's: " .. d)
    local h <close> = model.load(dir, { dtype = "f16" })
    if apl.version_info().torch:match("^1%.") then
        -- 1.13 has no CPU LayerNorm for Half: an error naming the op, not a crash
        T.assert_error_match(function() h:forward(ids) end, "apl%.model%.forward: .*not implemented for 'Half'")
    else
        d = maxdiff(h:forward(ids), want)
        T.ok(d < 0.005, "f16 logits near f32's (0.0014 measured on 2.6): " .. d)
    end
end)
