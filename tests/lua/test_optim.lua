-- The optimizer (core/train.c: global-norm clipping, then AdamW with bias correction) over several
-- steps against the NumPy reference tests/ref/ref_adam.py: each option on its own, the gradient
-- norm it reports, and gradients taken by the DPO trainer at each step's new weights.
local T = require "tests.lib.test"
local cjson = require "cjson"
local F = dofile(T.root() .. "/tests/lua/compute_fixture.lua")

local REF = T.root() .. "/tests/ref/ref_adam.py"
local STEPS = 4

local function flat(t) return t:reshape({ t:numel() }):float():totable() end

local function weights(m)
    local out = {}
    for i, p in ipairs(m:parameters()) do out[i] = flat(p.tensor) end
    return out
end

local PAIRS = {
    { prompt_ids = { 3, 17, 40 }, chosen_ids = { 8, 2, 55 }, rejected_ids = { 61, 9 } },
    { prompt_ids = { 12 }, chosen_ids = { 33, 5 }, rejected_ids = { 7, 21, 4, 9 } },
}

-- STEPS optimizer steps on DPO gradients with the options o; returns what apl did (the first
-- and the last weights, each step's gradients and reported norm) and what NumPy does with them.
local function run(o)
    local tok = F.tok()
    local policy, ref = F.model(1), F.model(2)
    local opts = { policy = policy, ref = ref, tok = tok, beta = 0.5, batch_size = 2 }
    for k, v in pairs(o) do opts[k] = v end
    local tr = apl.dpo.new(opts)
    local got = { w0 = weights(policy), grads = {}, norms = {} }
    for s = 1, STEPS do
        tr:accumulate(PAIRS)
        local g = {}
        for i, t in ipairs(tr.opt:grads()) do g[i] = t and flat(t) or cjson.null end
        got.grads[s] = g
        got.norms[s] = tr.opt:step()
    end
    got.w = weights(policy)
    local path = T.tmpdir() .. "/adam.json"
    local f = assert(io.open(path, "w"))
    f:write(cjson.encode({ w0 = got.w0, grads = got.grads, lr = o.lr, beta1 = o.beta1 or 0.9, beta2 = o.beta2 or 0.999,
                           eps = o.eps or 1e-8, weight_decay = o.weight_decay or 0, grad_clip = o.grad_clip or 0 }))
    f:close()
    return got, cjson.decode(T.python(REF, path))
end

-- Measured on x86-64 (f32 engine against f64 NumPy): weights within 2.2e-7 of the reference,
-- norms within 1.3e-8 relative. The bounds leave 4.5× and 75× of margin; a wrong bias correction,
-- decay or clip is off by 1e-4 or more (the updates are about lr = 1e-2 per step).
local TOL_W, TOL_NORM = 1e-6, 1e-6

local CASES = {
    { "defaults (beta1 0.9, beta2 0.999, eps 1e-8)", { lr = 1e-2 } },
    { "beta1 0.5, beta2 0.9", { lr = 1e-2, beta1 = 0.5, beta2 = 0.9 } },
    { "weight decay 0.1", { lr = 1e-2, weight_decay = 0.1 } },
    -- eps = 0.1 keeps the update close to linear in g, so a missing clip shows in the weights
    { "gradient clipping to 0.05 (eps 0.1)", { lr = 1e-2, grad_clip = 0.05, eps = 0.1 } },
}

for _, c in ipairs(CASES) do
    T.case("optimizer: " .. STEPS .. " Adam steps match NumPy: " .. c[1], function()
        local got, want = run(c[2])
        local moved = T.max_abs_diff(got.w, got.w0)
        T.ok(moved > 1e-3, "the weights moved: " .. moved)
        local dw = T.max_abs_diff(got.w, want.w)
        local dn = 0
        for s, n in ipairs(want.norms) do dn = math.max(dn, math.abs(got.norms[s] - n) / n) end
        print(string.format("    %s: weights off by %.3g, norms by %.3g relative", c[1], dw, dn))
        T.ok(dw <= TOL_W, "weights differ from NumPy by " .. dw)
        for s, n in ipairs(want.norms) do T.eq(got.norms[s], n, TOL_NORM * n, "grad_norm of step " .. s) end
        if c[2].grad_clip then T.ok(want.norms[1] > 2 * c[2].grad_clip, "the clip is active") end
    end)
end
