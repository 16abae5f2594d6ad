-- LoRA adapters (issue 15): the adapted forward and the DPO gradient in A and B against NumPy
-- (tests/ref/ref_lora.py, float64, gradients by finite differences), a finite-difference check of
-- apl's own gradient, frozen base weights, θ0 as "adapters off", PEFT's file format both ways
-- (apl's writer, and an independent one: tests/ref/make_peft_adapter.py), errors, and merging.
local T = require "tests.lib.test"
local tensor = require "apl.tensor"
local model = require "apl.model"
local lora = require "apl.lora"
local cjson = require "cjson"

local ROOT = T.root()
local REF = ROOT .. "/tests/ref/ref_lora.py"
local MAKE = ROOT .. "/tests/ref/make_peft_adapter.py"
local PREFIX = "base_model.model."
local TOK = { eos_id = 100, pad_id = 0 } -- the trainer reads pad and eos ids only: pairs come as ids

local FAMILIES = { "gpt2", "gpt_neox", "llama" }
-- Targets beyond PEFT's defaults, so that every kind of projection carries an adapter somewhere
-- (GPT-2's Conv1D (in, out) weights, attention output, MLP in and out, an untied head).
local WIDE = {
    gpt2 = { "c_attn", "c_proj", "c_fc" },
    gpt_neox = { "query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h", "embed_out" },
    llama = { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head" },
}

-- A tiny model with noise on every parameter (biases and norms count too).
local function random_model(family, seed, dtype)
    local m = model.init(model.tiny_config(family), { seed = seed, dtype = dtype })
    tensor.manual_seed(seed)
    apl.no_grad(function()
        for _, p in ipairs(m:parameters()) do
            p.tensor:copy_(p.tensor + tensor.randn(p.tensor:shape(), { dtype = p.tensor:dtype() }) * 0.1)
        end
    end)
    return m
end

-- A trained adapter's look: B random (a fresh one is zero and changes nothing).
local function randomize_b(m, seed, scale)
    tensor.manual_seed(seed)
    apl.no_grad(function()
        for _, a in ipairs(m:lora().adapters) do
            a.B:copy_(tensor.randn(a.B:shape(), { dtype = a.B:dtype() }) * (scale or 0.3))
        end
    end)
end

local function maxdiff(a, b) return (a:to("f64") - b:to("f64")):abs():max():item() end

-- Copies of every base parameter, and of every adapter matrix ({[name] = tensor}).
local function snapshot_params(m)
    local out = {}
    for _, p in ipairs(m:parameters()) do out[p.name] = p.tensor:clone() end
    return out
end
local function snapshot_adapters(m)
    local out = {}
    for _, a in ipairs(m:lora().adapters) do
        out[PREFIX .. a.module .. ".lora_A.weight"] = a.A:clone()
        out[PREFIX .. a.module .. ".lora_B.weight"] = a.B:clone()
    end
    return out
end

-- Three left-padded rows of lengths 7, 4 and 1 (pad id 0).
local IDS, MASK, ROWS = dofile(T.root() .. "/tests/lua/compute_fixture.lua").padded_batch(101, 23)
-- Logits as scoring sees them, without autograd: with gradients on, adapters that require one
-- take libtorch's autograd kernels (1e-7 away from the fused ones, as for any trainable model)
-- and dropout acts (training).
local function fwd(m, ids, mask)
    return apl.no_grad(function() return m:forward(ids, { attention_mask = mask }) end)
end
local function logits(m) return fwd(m, IDS, MASK) end

-- ref_lora.py's logits for model dir + adapter dir against apl's for the batch; the worst diff.
local function ref_check(m, mdir, adir, label)
    local io_path = T.tmpdir() .. "/io.safetensors"
    local io = { ids = tensor(IDS), mask = tensor(MASK), logits = logits(m) }
    for b, r in ipairs(ROWS) do io["row" .. (b - 1)] = fwd(m, r) end
    model.save_tensors(io_path, io)
    local out = T.python(REF, table.concat({ "check", mdir, adir, io_path }, " "))
    local worst = tonumber(out:match("max_abs_diff all (%S+)"))
    T.ok(worst, "no result from ref_lora.py:\n" .. out)
    print(string.format("    %s: max |apl - numpy| = %.3g", label, worst))
    return worst
end

-- ------------------------------------------------------------------------------------------------
-- The adapted forward against NumPy

for i, family in ipairs(FAMILIES) do
    T.case("adapted forward matches NumPy: " .. family .. " (" .. table.concat(WIDE[family], ", ") .. ")", function()
        local m = random_model(family, i)
        local base = logits(m)
        lora.attach(m, { r = 3, alpha = 5, targets = WIDE[family], seed = i })
        randomize_b(m, 10 + i)
        T.ok(maxdiff(logits(m), base) > 0.1, "the adapters change the logits")
        local mdir, adir = T.tmpdir(), T.tmpdir()
        m:save(mdir) -- the base weights: save writes them alone
        m:save_adapter(adir)
        T.ok(ref_check(m, mdir, adir, family) <= 1e-4, family .. ": adapted logits differ from NumPy")
    end)
end

-- ------------------------------------------------------------------------------------------------
-- DPO loss and its gradient in A and B against NumPy finite differences

-- Two pairs of different lengths in one micro-batch: left padding is in the gradient too.
local PAIRS = { { prompt_ids = { 3, 17, 40 }, chosen_ids = { 8, 2, 55 }, rejected_ids = { 61, 9 } },
                { prompt_ids = { 12 }, chosen_ids = { 33, 5 }, rejected_ids = { 7, 21, 4, 9 } } }

-- Adam's first step with lr = eps = 1 moves each weight by -g / (|g| + 1) (m^ = g, v^ = g^2):
-- the step gives the gradient back exactly, g = -d / (1 - |d|). apl reads no gradient of A or B
-- out (opt:grads() lists the base tensors), so this is how a test sees it.
local function grads_by_one_step(tr, m, pairs_)
    local before = snapshot_adapters(m)
    local metrics = tr:step(pairs_)
    local g = {}
    for name, t in pairs(snapshot_adapters(m)) do
        local d = (t:to("f64") - before[name]:to("f64"))
        g[name] = d:totable()
        for r, row in ipairs(g[name]) do
            for c, v in ipairs(row) do g[name][r][c] = -v / (1 - math.abs(v)) end
        end
    end
    return g, metrics, before
end

for i, family in ipairs(FAMILIES) do
    T.case("dpo loss and gradient in every A and B match NumPy finite differences: " .. family, function()
        local m = random_model(family, 20 + i)
        lora.attach(m, { r = 2, alpha = 3, seed = i }) -- PEFT's default targets for the family
        randomize_b(m, 30 + i, 0.2)                    -- B != 0, else A has no gradient
        local mdir, adir = T.tmpdir(), T.tmpdir()
        m:save(mdir)
        m:save_adapter(adir)
        local beta = 0.5
        local p = {}
        for k, e in ipairs(PAIRS) do p[k] = { e.prompt_ids, e.chosen_ids, e.rejected_ids } end
        local in_path = T.tmpdir() .. "/in.json"
        local f = assert(io.open(in_path, "w"))
        f:write(cjson.encode({ pairs = p, beta = beta, loss = "sigmoid", fd_eps = 1e-5 }))
        f:close()
        local want = cjson.decode(T.python(REF, table.concat({ "dpo", mdir, adir, in_path }, " ")))
        local tr = apl.dpo.new { policy = m, ref = m, tok = TOK, beta = beta, lr = 1, eps = 1, batch_size = 2 }
        local got, metrics = grads_by_one_step(tr, m, PAIRS)
        T.eq(metrics.loss, want.loss, 1e-5, family .. ": loss")
        local n, worst, largest = 0, 0, 0
        for name, g in pairs(want.grads) do
            T.ok(got[name], family .. ": apl has no adapter " .. name)
            n = n + 1
            for r, row in ipairs(g) do
                for c, v in ipairs(row) do
                    local d = math.abs(got[name][r][c] - v)
                    T.ok(d <= 2e-5 + 2e-3 * math.abs(v), string.format("%s: %s[%d][%d]: apl %.6g, NumPy %.6g",
                        family, name, r, c, got[name][r][c], v))
                    if not (d <= worst) then worst = d end
                    largest = math.max(largest, math.abs(v))
                end
            end
        end
        local count = 0
        for _ in pairs(got) do count = count + 1 end
        T.eq(count, n, family .. ": as many adapter matrices as NumPy has")
        T.eq(n, 2 * #m:lora().adapters)
        T.ok(largest > 1e-2, family .. ": the loss has a gradient in the adapters (" .. largest .. ")")
        print(string.format("    %s: %d matrices, max |g| %.3g, max |apl - numpy| %.3g", family, n, largest, worst))
    end)
end

-- ------------------------------------------------------------------------------------------------
-- apl's gradient against finite differences of apl's own loss (f64)

T.case("dpo: gradient in A and B matches finite differences of apl's loss (f64 llama, head adapter too)", function()
    local m = random_model("llama", 41, "f64")
    lora.attach(m, { r = 2, alpha = 4, targets = { "q_proj", "v_proj", "down_proj", "lm_head" }, seed = 5 })
    randomize_b(m, 42, 0.2)
    local tr = apl.dpo.new { policy = m, ref = m, tok = TOK, beta = 0.5, lr = 1, eps = 1, batch_size = 2 }
    local function loss()
        local r = tr:accumulate(PAIRS)
        tr.opt:zero_grad()
        return r.loss
    end
    -- finite differences first (the step below moves the adapters)
    local picks = {}
    for k, a in ipairs(m:lora().adapters) do
        local sa, sb = a.A:shape(), a.B:shape()
        picks[#picks + 1] = { a.module, "A", a.A, { 1 + k % sa[1], 1 + (7 * k) % sa[2] } }
        picks[#picks + 1] = { a.module, "B", a.B, { 1 + (5 * k) % sb[1], 1 + k % sb[2] } }
    end
    local fd = {}
    for k, pk in ipairs(picks) do
        local t, idx = pk[3], pk[4]
        local x0, eps = t[idx[1]][idx[2]]:item(), 1e-3 -- the shim's softmax runs in f32 (test_dpo.lua)
        apl.no_grad(function() t[idx[1]][idx[2]] = x0 + eps end)
        local lp = loss()
        apl.no_grad(function() t[idx[1]][idx[2]] = x0 - eps end)
        local lm = loss()
        apl.no_grad(function() t[idx[1]][idx[2]] = x0 end)
        fd[k] = (lp - lm) / (2 * eps)
    end
    local g = grads_by_one_step(tr, m, PAIRS)
    local largest, worst = 0, 0
    for k, pk in ipairs(picks) do
        local name = PREFIX .. pk[1] .. ".lora_" .. pk[2] .. ".weight"
        local v = g[name][pk[4][1]][pk[4][2]]
        T.eq(v, fd[k], 2e-5 + 1e-3 * math.abs(fd[k]), name .. cjson.encode(pk[4]))
        largest, worst = math.max(largest, math.abs(fd[k])), math.max(worst, math.abs(v - fd[k]))
    end
    T.eq(#picks, 2 * (2 * 3 + 1)) -- 2 layers x (q_proj, v_proj, down_proj) + lm_head
    T.ok(largest > 1e-2, "the loss has a gradient here (" .. largest .. ")")
    print(string.format("    %d entries, max |fd| %.3g, max |grad - fd| %.3g", #picks, largest, worst))
end)

-- ------------------------------------------------------------------------------------------------
-- Only the adapters train

T.case("dpo with adapters: base weights bit-identical after steps; only A and B get gradients", function()
    local m = random_model("gpt2", 51)
    lora.attach(m, { r = 4, alpha = 8, targets = { "c_attn", "c_proj", "c_fc" }, seed = 3 })
    local base, adapters0 = snapshot_params(m), snapshot_adapters(m)
    -- weight decay on: decoupled, it must not reach the base weights either
    local tr = apl.dpo.new { policy = m, ref = m, tok = TOK, beta = 0.5, lr = 1e-2, batch_size = 2,
                             weight_decay = 0.1 }
    T.ok(tr.ref:is_reference_of(m), "ref = policy takes the adapters-off view")
    -- the optimizer's tensors (opt:grads() lists them) are the adapters' A and B, in order, and
    -- nothing else: the base weights have no Adam state
    tr:accumulate(PAIRS)
    local grads, adapters = tr.opt:grads(), m:lora().adapters
    T.eq(#grads, 2 * #adapters)
    for k, a in ipairs(adapters) do
        T.eq(grads[2 * k - 1]:shape(), a.A:shape(), a.module .. ": A's gradient")
        T.eq(grads[2 * k]:shape(), a.B:shape(), a.module .. ": B's gradient")
    end
    tr.opt:zero_grad()
    local first
    for s = 1, 4 do
        local r = tr:step(PAIRS)
        first = first or r
        T.ok(r.grad_norm > 0, "step " .. s .. ": a gradient")
    end
    T.eq(first.loss, math.log(2), 1e-6, "B = 0: the policy starts at the reference")
    for _, p in ipairs(m:parameters()) do
        T.eq(maxdiff(p.tensor, base[p.name]), 0, p.name .. " changed")
    end
    local moved = 0
    for name, t in pairs(snapshot_adapters(m)) do
        local d = maxdiff(t, adapters0[name])
        T.ok(d > 1e-3, name .. " did not train (" .. d .. ")")
        moved = moved + 1
    end
    T.eq(moved, 2 * 2 * 4) -- 2 layers x (c_attn, attn.c_proj, c_fc, mlp.c_proj) x (A, B)
end)

-- ------------------------------------------------------------------------------------------------
-- θ0: adapters off, the reference view, reset

for i, family in ipairs(FAMILIES) do
    T.case("theta0 is the base model exactly: fresh adapter, adapters off, reference, reset: " .. family, function()
        local m = random_model(family, 60 + i)
        local base = logits(m)
        lora.attach(m, { r = 4, targets = WIDE[family], seed = 9 })
        T.eq(m:adapters(), true)
        T.eq(maxdiff(logits(m), base), 0, "a fresh adapter (B = 0) changes nothing")
        local a0 = snapshot_adapters(m)
        local tr = apl.dpo.new { policy = m, tok = TOK, beta = 0.5, lr = 1e-2, batch_size = 2 }
        for _ = 1, 3 do tr:step(PAIRS) end
        local trained = logits(m)
        T.ok(maxdiff(trained, base) > 1e-3, "training changed the adapted model")
        T.eq(maxdiff(logits(tr.ref), base), 0, "the reference view")
        T.eq(maxdiff(logits(m:reference()), base), 0, "m:reference()")
        m:adapters(false)
        T.eq(m:adapters(), false)
        T.eq(maxdiff(logits(m), base), 0, "adapters off")
        m:adapters(true)
        T.eq(maxdiff(logits(m), trained), 0, "adapters back on")
        tr:reset()
        T.eq(tr.opt:steps(), 0)
        T.eq(maxdiff(logits(m), base), 0, "after reset")
        for name, t in pairs(snapshot_adapters(m)) do
            T.eq(maxdiff(t, a0[name]), 0, name .. " after reset: as attached (A from the seed, B zero)")
            if name:find("lora_B") then T.eq(t:abs():max():item(), 0, name .. " is zero") end
        end
        -- the same seed draws the same A on another attach; another seed another A
        m:detach_adapter()
        T.eq(m:lora(), nil)
        T.eq(maxdiff(logits(m), base), 0, "detached")
        lora.attach(m, { r = 4, targets = WIDE[family], seed = 9 })
        for name, t in pairs(snapshot_adapters(m)) do T.eq(maxdiff(t, a0[name]), 0, name .. ": same seed") end
        m:detach_adapter()
        lora.attach(m, { r = 4, targets = WIDE[family], seed = 10 })
        local a = m:lora().adapters[1]
        T.ok(maxdiff(a.A, a0[PREFIX .. a.module .. ".lora_A.weight"]) > 1e-3, "another seed, another A")
        -- A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming_uniform(a = sqrt(5)))
        for _, ad in ipairs(m:lora().adapters) do
            local bound = 1 / math.sqrt(ad.A:shape()[2])
            local amax = ad.A:abs():max():item()
            T.ok(amax <= bound and amax > 0.8 * bound, ad.module .. ": |A| max " .. amax .. ", bound " .. bound)
        end
    end)
end

T.case("dropout acts in a trainer's step only: scoring and forwards give the logits without", function()
    local m = random_model("llama", 71)
    lora.attach(m, { r = 4, dropout = 0.5, seed = 2 })
    randomize_b(m, 72)
    local with = apl.no_grad(function() return logits(m) end)
    local b = snapshot_adapters(m)
    local n = random_model("llama", 71)
    lora.attach(n, { r = 4, dropout = 0, seed = 2 })
    for _, a in ipairs(n:lora().adapters) do
        apl.no_grad(function() a.B:copy_(b[PREFIX .. a.module .. ".lora_B.weight"]) end)
    end
    T.eq(maxdiff(with, apl.no_grad(function() return logits(n) end)), 0)
    T.eq(m:lora().dropout, 0.5)
    -- a plain forward with gradients on is no training step: no dropout
    T.eq(maxdiff(m:forward(IDS, { attention_mask = MASK }), m:forward(IDS, { attention_mask = MASK })), 0)
    -- in a trainer's step dropout acts: the same pairs twice give two losses (without dropout, one)
    local function two_losses(model)
        local tr = apl.dpo.new { policy = model, tok = TOK, beta = 0.5, lr = 0, batch_size = 2 }
        local a, b = tr:accumulate(PAIRS).loss, tr:accumulate(PAIRS).loss
        tr.opt:zero_grad()
        return a, b
    end
    local a, b = two_losses(m)
    T.ok(math.abs(a - b) > 1e-6, string.format("dropout in training: %.8f vs %.8f", a, b))
    a, b = two_losses(n)
    T.eq(a, b, 0, "no dropout: the same loss")
end)

-- ------------------------------------------------------------------------------------------------
-- PEFT's format

local function read_json(path)
    local f = assert(io.open(path))
    local s = f:read("a")
    f:close()
    return cjson.decode(s)
end

for i, family in ipairs(FAMILIES) do
    T.case("save_adapter -> apl.lora.load: identical logits, PEFT's config and names: " .. family, function()
        local m = random_model(family, 80 + i)
        local fresh = m:clone()
        lora.attach(m, { r = 3, alpha = 7, dropout = 0.05, targets = WIDE[family], seed = 4 })
        randomize_b(m, 90 + i)
        local adapted = logits(m)
        local dir = T.tmpdir() .. "/adapter"
        m:save_adapter(dir)
        local c = read_json(dir .. "/adapter_config.json")
        T.eq(c.peft_type, "LORA")
        T.eq(c.task_type, "CAUSAL_LM")
        T.eq(c.bias, "none")
        T.eq(c.r, 3)
        T.eq(c.lora_alpha, 7)
        T.eq(c.lora_dropout, 0.05, 1e-12)
        T.eq(c.target_modules, WIDE[family])
        T.eq(type(c.base_model_name_or_path), "string")
        T.eq(c.fan_in_fan_out, family == "gpt2") -- PEFT's flag for GPT-2's Conv1D
        T.eq(c.use_dora, false)
        T.eq(c.use_rslora, false)
        local t = model.load_tensors(dir .. "/adapter_model.safetensors")
        local names = 0
        for _, a in ipairs(m:lora().adapters) do
            for _, which in ipairs({ "A", "B" }) do
                local saved = t[PREFIX .. a.module .. ".lora_" .. which .. ".weight"]
                T.ok(saved, "saved: " .. a.module .. " " .. which)
                T.eq(saved:shape(), a[which]:shape())
                T.eq(maxdiff(saved, a[which]), 0)
                names = names + 1
            end
        end
        for _ in pairs(t) do names = names - 1 end
        T.eq(names, 0, "no other tensors")
        local shapes = m:lora().adapters[1] -- (r, in) and (out, r), GPT-2's transposed weights too
        T.eq(shapes.A:shape()[1], 3)
        T.eq(shapes.B:shape()[2], 3)
        lora.load(fresh, dir)
        T.eq(maxdiff(logits(fresh), adapted), 0, "round trip")
        local l = fresh:lora()
        T.eq({ l.r, l.alpha, l.dropout, l.targets }, { 3, 7, 0.05, WIDE[family] }, 1e-12)
    end)
end

for i, family in ipairs(FAMILIES) do
    T.case("an adapter written by an independent PEFT-format writer loads and gives NumPy's logits: " .. family, function()
        local m = random_model(family, 100 + i)
        local base = logits(m)
        local mdir, adir = T.tmpdir(), T.tmpdir()
        m:save(mdir)
        T.python(MAKE, mdir .. " " .. adir .. " --r 4 --alpha 12 --seed " .. i)
        lora.load(m, adir)
        local l = m:lora()
        T.eq({ l.r, l.alpha, l.dropout }, { 4, 12, 0.05 }, 1e-12)
        T.ok(#l.adapters >= 4, "adapters: " .. #l.adapters)
        T.ok(maxdiff(logits(m), base) > 0.1, "the adapter changes the logits")
        T.ok(ref_check(m, mdir, adir, "peft fixture " .. family) <= 1e-5, family .. ": logits differ from NumPy")
    end)
end

-- ------------------------------------------------------------------------------------------------
-- Errors

T.case("attach: options, targets and a second attach are refused with clear messages", function()
    local m = random_model("gpt2", 111)
    local base = logits(m)
    local rows = {
        { { rank = 4 }, "apl%.lora%.attach: unknown option 'rank'" },
        { { r = 0 }, "apl%.lora%.attach: option 'r' must be an integer >= 1, got 0" },
        { { r = 2.5 }, "option 'r' must be an integer" },
        { { alpha = -1 }, "option 'alpha' must be a number > 0" },
        { { dropout = 1 }, "option 'dropout' must be in %[0, 1%)" },
        { { targets = {} }, "option 'targets' must be a non%-empty list" },
        { { targets = "c_attn" }, "option 'targets' must be a non%-empty list" },
        { { targets = { "c_attn", 3 } }, "targets%[2%] must be a string" },
        { { targets = { "q_proj" } }, "apl%.lora%.attach: lora: target \"q_proj\" matches no module of this gpt2 model %(.*c_attn.*%)" },
        { { targets = { "c_attn", "attn" } }, "target \"attn\" matches no module" }, -- a path component, not a module
        { { targets = { "h.0.attn.c_at" } }, "target \"h%.0%.attn%.c_at\" matches no module" },
    }
    for _, row in ipairs(rows) do
        T.assert_error_match(function() lora.attach(m, row[1]) end, row[2], cjson.encode(row[1]))
        T.eq(m:lora(), nil, "a refused attach leaves no adapters: " .. row[2])
    end
    T.eq(maxdiff(logits(m), base), 0)
    for family, list in pairs({ gpt2 = "c_attn, c_proj, c_fc, lm_head",
                                gpt_neox = "query_key_value, dense, dense_h_to_4h, dense_4h_to_h, embed_out",
                                llama = "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head" }) do
        local n = model.init(model.tiny_config(family), { seed = 1 })
        local err = T.assert_error_match(function() lora.attach(n, { targets = { "nope" } }) end,
            "target \"nope\" matches no module")
        for name in list:gmatch("[^, ]+") do T.ok(err:find(name, 1, true), family .. ": " .. name .. " not listed: " .. err) end
    end
    -- a full path matches one module alone
    lora.attach(m, { targets = { "transformer.h.1.attn.c_proj" } })
    T.eq(#m:lora().adapters, 1)
    T.eq(m:lora().adapters[1].module, "transformer.h.1.attn.c_proj")
    T.assert_error_match(function() lora.attach(m, { r = 2 }) end, "apl%.lora%.attach: .*adapters already")
    T.eq(#m:lora().adapters, 1)
    m:detach_adapter()
    T.assert_error_match(function() m:adapters(true) end, "apl%.model%.adapters: .*no adapters")
    T.assert_error_match(function() m:save_adapter(T.tmpdir()) end, "apl%.model%.save_adapter: the model has no adapters")
    T.assert_error_match(function() m:merge_adapter() end, "apl%.model%.merge_adapter: .*no adapters")
    T.assert_error_match(function() lora.attach(m:reference(), {}) end, "read%-only")
end)

local LOAD_FAULTS = {
    { "not_json", "adapter_config%.json: not a JSON object" },
    { "no_config", "adapter_config%.json: No such file" },
    { "peft_type", "adapter_config%.json: \"peft_type\" must be \"LORA\", got PREFIX_TUNING" },
    { "use_dora", "adapter_config%.json: \"use_dora\" %(DoRA%) is not supported" },
    { "regex_targets", "adapter_config%.json: \"target_modules\" must be a list of module names %(a regex string is not supported%)" },
    { "bad_r", "adapter_config%.json: \"r\" must be an integer >= 1" },
    { "missing_tensor", "adapter_model%.safetensors: missing \"base_model%.model%.transformer%.h%.1%.attn%.c_attn%.lora_B%.weight\"" },
    { "wrong_shape", "adapter_model%.safetensors: \"base_model%.model%.transformer%.h%.0%.attn%.c_attn%.lora_A%.weight\" is 5 x 32, the model needs 4 x 32" },
    { "extra_tensor", "adapter_model%.safetensors: holds 1 tensor%(s%) no targeted module has %(\"base_model%.model%.not%.a%.module%.lora_A%.weight\"%)" },
}

T.case("apl.lora.load: broken adapters give errors naming the file and field, and leave no adapters (" .. #LOAD_FAULTS .. " cases)", function()
    local m = random_model("gpt2", 121)
    local base = logits(m)
    local mdir, root = T.tmpdir(), T.tmpdir()
    m:save(mdir)
    for _, row in ipairs(LOAD_FAULTS) do
        local dir = root .. "/" .. row[1]
        T.python(MAKE, table.concat({ mdir, dir, row[1], "--targets c_attn" }, " "))
        local err = T.assert_error_match(function() lora.load(m, dir) end, "apl%.lora%.load: .*" .. row[2], row[1])
        T.ok(err:find(dir, 1, true), row[1] .. ": the error does not name the folder: " .. err)
        T.eq(m:lora(), nil, row[1] .. ": a failed load leaves no adapters")
        T.eq(maxdiff(logits(m), base), 0, row[1])
    end
    -- an adapter for another family: its targets are not this model's modules
    local ldir, lad = root .. "/llama_model", root .. "/llama_adapter"
    random_model("llama", 122):save(ldir)
    T.python(MAKE, ldir .. " " .. lad)
    T.assert_error_match(function() lora.load(m, lad) end, "apl%.lora%.load: " .. lad:gsub("%p", "%%%0")
        .. "/adapter_config%.json: lora: target \"q_proj\" matches no module of this gpt2 model %(.*c_attn.*%)")
    T.eq(m:lora(), nil)
    -- the good one loads; loading onto a model with adapters is refused
    local good = root .. "/good"
    T.python(MAKE, table.concat({ mdir, good, "--targets c_attn" }, " "))
    lora.load(m, good)
    T.eq(#m:lora().adapters, 2)
    T.assert_error_match(function() lora.load(m, good) end, "apl%.lora%.load: .*adapter_config%.json: .*adapters already")
    T.eq(#m:lora().adapters, 2)
end)

-- ------------------------------------------------------------------------------------------------
-- Merging

for i, family in ipairs(FAMILIES) do
    T.case("merge_adapter folds the adapters into the weights; save -> load keeps the logits: " .. family, function()
        local m = random_model(family, 130 + i)
        lora.attach(m, { r = 3, alpha = 6, targets = WIDE[family], seed = 2 })
        randomize_b(m, 140 + i)
        local adapted = logits(m)
        m:merge_adapter()
        T.eq(m:lora(), nil, "no adapters remain")
        T.eq(m:adapters(), false)
        local merged = logits(m)
        local d = maxdiff(merged, adapted)
        T.ok(d <= 1e-5, family .. ": merged logits differ from the adapted ones by " .. d)
        local dir = T.tmpdir()
        m:save(dir)
        local back <close> = model.load(dir)
        T.eq(maxdiff(logits(back), merged), 0, "merged, saved and loaded")
        print(string.format("    %s: max |merged - adapted| %.3g", family, d))
    end)
end

T.case("merge_adapter refuses a head tied to the embeddings and keeps the adapters", function()
    for _, c in ipairs({ { "gpt2", { "c_attn", "lm_head" } }, { "qwen2", { "q_proj", "lm_head" } } }) do
        local m = model.init(model.tiny_config(c[1]), { seed = 3 })
        lora.attach(m, { r = 2, targets = c[2], seed = 1 })
        randomize_b(m, 5)
        local adapted = logits(m)
        T.assert_error_match(function() m:merge_adapter() end,
            "apl%.model%.merge_adapter: lora: merge: \"lm_head\" is tied to the input embeddings %(tie_word_embeddings%)")
        T.eq(#m:lora().adapters, 3)
        T.eq(maxdiff(logits(m), adapted), 0, c[1] .. ": nothing was merged")
    end
end)

-- ------------------------------------------------------------------------------------------------
-- Devices and dtypes: the adapters follow m:to

-- A DPO step on m (made after m:to: the trainer takes the parameters as they are now) changes the
-- adapters and leaves every base weight as it was.
local function trains_adapters_only(m, label)
    local base, a0 = snapshot_params(m), snapshot_adapters(m)
    local tr = apl.dpo.new { policy = m, ref = m, tok = TOK, beta = 0.5, lr = 1e-2, batch_size = 2 }
    for s = 1, 2 do
        local r = tr:step(PAIRS)
        T.ok(r.loss == r.loss and r.grad_norm > 0, label .. ": step " .. s .. " loss " .. r.loss)
    end
    for _, p in ipairs(m:parameters()) do
        T.eq(maxdiff(p.tensor, base[p.name]), 0, label .. ": " .. p.name .. " changed")
    end
    for name, t in pairs(snapshot_adapters(m)) do
        T.ok(maxdiff(t, a0[name]) > 1e-4, label .. ": " .. name .. " did not train")
    end
end

T.case("the adapters follow the model's dtype (m:to) and keep working", function()
    local m = random_model("llama", 151)
    lora.attach(m, { r = 3, targets = WIDE.llama, seed = 1 })
    randomize_b(m, 152)
    local l32 = logits(m)
    m:to("f64")
    for _, a in ipairs(m:lora().adapters) do T.eq({ a.A:dtype(), a.B:dtype() }, { "f64", "f64" }, a.module) end
    local d = maxdiff(logits(m), l32)
    T.ok(d <= 1e-5, "f64 logits of the adapted model differ from f32 by " .. d)
    T.ok(maxdiff(logits(m), logits(m:reference())) > 0.1, "the adapters still act")
    trains_adapters_only(m, "f64")
end)

-- On a GPU: tests/lua/test_cuda.lua ("LoRA adapters follow the model to the device and bf16").
