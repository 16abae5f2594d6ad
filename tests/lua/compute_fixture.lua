-- Shared by test_compute.lua and test_dpo.lua: a tiny byte-level BPE tokenizer, tiny GPT-2 models
-- with peaked (not near-uniform) output distributions, and independent reference computations
-- that use only m:forward on unpadded single rows (no KV cache, no batching, no engine scoring).
local T = require "tests.lib.test"
local tensor = require "apl.tensor"
local bpe = require "recipes.lib.bpe_train"

local F = {}

-- Three left-padded rows of lengths 7, 4 and 1 (pad id 0), ids from a fixed sequence started at
-- x0: ids, mask (B, 7) and each row's real ids.
F.LENS, F.WIDTH = { 7, 4, 1 }, 7
function F.padded_batch(vocab, x0)
    local ids, mask, rows = {}, {}, {}
    local x = x0
    for b, n in ipairs(F.LENS) do
        ids[b], mask[b], rows[b] = {}, {}, {}
        for t = 1, F.WIDTH do
            local real = t > F.WIDTH - n
            x = (x * 37 + 11) % vocab
            ids[b][t] = real and x or 0
            mask[b][t] = real and 1 or 0
            if real then rows[b][#rows[b] + 1] = x end
        end
    end
    return ids, mask, rows
end

F.CORPUS = { "the movie was good", "the movie was bad", "i liked the film a lot",
             "a dull and boring plot", "great acting and a fine story", "not worth the ticket" }

-- The tokenizer, trained once per process into F.tok_dir. A test's child processes load their
-- parent's folder (F.tok(dir)): no training, and no temporary folder that the runner, which
-- removes its own, would leave behind.
function F.tok(dir)
    if not F._tok then
        if not dir then
            dir = T.tmpdir()
            bpe.write(dir, F.CORPUS, { merges = 40 })
        end
        F._tok, F.tok_dir = apl.tokenizer.load(dir), dir
    end
    return F._tok
end

-- The tiny models' configurations: GPT-2 (learned positions), and GPT-NeoX (partial RoPE,
-- parallel residual) and Llama (RoPE, grouped-query attention) from apl.model.tiny_config.
local function config(model_type)
    if model_type == "gpt2" then
        return { model_type = "gpt2", n_layer = 2, n_embd = 32, n_head = 4, vocab_size = F.tok():vocab_size(),
                 n_positions = 64 }
    end
    return apl.model.tiny_config(model_type, { vocab_size = F.tok():vocab_size(), eos_token_id = F.tok().eos_id })
end

-- A tiny GPT-2 (opts.model_type: another family); noise on every parameter gives logits a
-- spread, so sampling tests see a distribution far from uniform and greedy decoding has no
-- near-ties.
function F.model(seed, opts)
    opts = opts or {}
    local m = apl.model.init(config(opts.model_type or "gpt2"), { seed = seed, dtype = opts.dtype, device = opts.device })
    tensor.manual_seed(seed)
    apl.no_grad(function()
        for _, p in ipairs(m:parameters()) do
            local noise = tensor.randn(p.tensor:shape(), { dtype = p.tensor:dtype(), device = p.tensor:device() })
            p.tensor:copy_(p.tensor + noise * (opts.noise or 0.3))
        end
    end)
    return m
end

-- log_softmax of the logits for one unpadded row (T, V), as a Lua matrix.
function F.logp_rows(m, ids)
    return apl.no_grad(function()
        return m:forward({ ids })[1]:float():log_softmax(2):totable()
    end)
end

-- Summed and per-token log-probs of completion c after prompt p, from one plain forward.
function F.ref_logprob(m, p, c)
    local ids = table.move(c, 1, #c, #p + 1, table.move(p, 1, #p, 1, {}))
    local lp = F.logp_rows(m, ids)
    local sum, per = 0, {}
    for j = 1, #c do
        per[j] = lp[#p + j - 1][c[j] + 1]
        sum = sum + per[j]
    end
    return sum, per
end

-- Greedy decoding by full recomputation: argmax of the last row, k times (stops after eos).
function F.ref_greedy(m, p, k, eos)
    local ids, out = table.move(p, 1, #p, 1, {}), {}
    for _ = 1, k do
        local lp = F.logp_rows(m, ids)
        local last, best = lp[#ids], 1
        for v = 2, #last do if last[v] > last[best] then best = v end end
        ids[#ids + 1], out[#out + 1] = best - 1, best - 1
        if best - 1 == eos then break end
    end
    return out
end

-- All parameters of a model as one flat Lua list (tiny models only).
function F.flat_params(m)
    local out = {}
    for _, p in ipairs(m:parameters()) do
        for _, v in ipairs(p.tensor:reshape({ p.tensor:numel() }):float():totable()) do out[#out + 1] = v end
    end
    return out
end

-- NaN-aware: a NaN anywhere makes every `d < tol` check fail (see tests/lib/test.lua).
F.max_abs_diff = T.max_abs_diff

return F
