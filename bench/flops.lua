-- bench/flops.lua — FLOPs, MFU and the memory-bandwidth bound of the benchmark's GPT-2 shapes:
-- what bench/run.lua derives from the measured rows and states in BENCHMARKS.md's method.
--
--   local F = dofile(root .. "/bench/flops.lua")
--   F.forward_flops(F.GPT2, B, T); F.derive(rows, quick) -> { peak_gflops, dpo_mfu_apl, ... }
local B = dofile((package.apl_root or ".") .. "/bench/common.lua")
local num = B.num

local F = {}

F.GPT2 = { n_layer = 12, n_embd = 768, n_head = 12, vocab = 50257, n_positions = 1024 }

-- Matmul parameters of GPT-2: the blocks' four projections and the tied lm_head.
function F.matmul_params(c)
    return 12 * c.n_layer * c.n_embd * c.n_embd + c.vocab * c.n_embd
end

-- All parameters (what a decoding step reads): embeddings, blocks with biases and LayerNorms.
function F.n_params(c)
    local C, L = c.n_embd, c.n_layer
    local block = 12 * C * C + 13 * C -- qkv, proj, fc, proj weights and biases; 2 LayerNorms
    return c.vocab * C + c.n_positions * C + L * block + 2 * C
end

-- Forward FLOPs of `batch` sequences of `T` tokens: 2 per matmul parameter per token, plus
-- 4*T*C per layer per token for QK^T and AV (the full T x T, not halved for the causal mask).
function F.forward_flops(c, batch, T)
    return batch * T * (2 * F.matmul_params(c) + 4 * c.n_layer * T * c.n_embd)
end

-- DPO step: policy forward+backward (3x forward) on 2B sequences and a reference forward on them.
function F.dpo_flops(c, pairs, T) return 4 * F.forward_flops(c, 2 * pairs, T) end
-- The DPO step as apl runs it (bench/compute.lua's pairs: a T/2-token prompt, T/2-token
-- completions): each pair is one packed row, prompt ++ chosen ++ rejected (the prompt once), and
-- the head runs only at the completions' positions; policy 3x forward, reference 1x.
function F.apl_dpo_flops(c, pairs, T)
    local P, C, L, E = T // 2, T - T // 2, c.n_layer, c.n_embd
    local Tp = P + 2 * C
    local blocks = Tp * (2 * 12 * L * E * E + 4 * L * Tp * E)
    local head = 2 * C * 2 * c.vocab * E
    return 4 * pairs * (blocks + head)
end
-- SFT step: forward+backward on B sequences.
function F.sft_flops(c, batch, T) return 3 * F.forward_flops(c, batch, T) end

-- Reads B and T from a row: fields batch/B/pairs and T/seq_len/tokens, else its config text.
function F.shape_of(row, default_b, default_t)
    if not row then return default_b, default_t end
    local b = num(row.pairs) or num(row.batch) or num(row.B)
    local t = num(row.T) or num(row.seq_len) or num(row.seq)
    local cfg = type(row.config) == "string" and row.config or ""
    b = b or tonumber(cfg:match("B=(%d+)"))
    t = t or tonumber(cfg:match("T=(%d+)"))
    return b or default_b, t or default_t
end

-- Derived figures: MFU of the training steps against the machine's measured matmul peak (the
-- better of apl's and torch's 2048^3 matmul: the same libtorch), generation against the
-- memory-bandwidth bound.
function F.derive(rows, quick)
    local by = {}
    for _, r in ipairs(rows) do by[r.name] = r end
    local d = {}
    local function best(r)
        if not r then return nil end
        if r.apl and r.baseline then return math.max(r.apl, r.baseline) end
        return r.apl or r.baseline
    end
    d.peak_gflops = best(by.matmul_peak)
    d.bandwidth_gbs = best(by.mem_bandwidth)
    local c = F.GPT2
    local steps = {
        { key = "dpo", row = by.dpo_step, flops = F.dpo_flops, b = quick and 1 or 4, t = quick and 64 or 128 },
        { key = "sft", row = by.sft_step, flops = F.sft_flops, b = quick and 2 or 8, t = quick and 64 or 128 },
    }
    for _, s in ipairs(steps) do
        local b, t = F.shape_of(s.row, s.b, s.t)
        local f = s.flops(c, b, t)
        if s.key == "dpo" then
            d.dpo_gflop_apl = F.apl_dpo_flops(c, b, t) / 1e9
            if d.peak_gflops and s.row and s.row.apl then
                d.dpo_hw_apl = d.dpo_gflop_apl / s.row.apl / d.peak_gflops
            end
        end
        d[s.key .. "_gflop"] = f / 1e9
        d[s.key .. "_shape"] = { b, t }
        if d.peak_gflops and s.row then
            if s.row.apl then d[s.key .. "_mfu_apl"] = f / 1e9 / s.row.apl / d.peak_gflops end
            if s.row.baseline then d[s.key .. "_mfu_baseline"] = f / 1e9 / s.row.baseline / d.peak_gflops end
        end
    end
    local g = by.generation
    local gb = F.shape_of(g, 8, 16)
    d.weight_bytes = 4 * F.n_params(c)
    d.gen_batch = gb
    if d.bandwidth_gbs then
        d.gen_bound_tok_s = gb * d.bandwidth_gbs * 1e9 / d.weight_bytes
        if g and g.apl then d.gen_bound_frac_apl = g.apl / d.gen_bound_tok_s end
        if g and g.baseline then d.gen_bound_frac_baseline = g.baseline / d.gen_bound_tok_s end
    end
    return d
end

return F
