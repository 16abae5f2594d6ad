-- DPO and SFT training: the loss formulas against the NumPy reference (tests/ref/ref_dpo.py),
-- parameter gradients against finite differences, gradient accumulation, the reference cache,
-- reset, and that training moves the model the right way.
local T = require "tests.lib.test"
local tensor = require "apl.tensor"
local cjson = require "cjson"
local rng = require "apl.rng"
local F = dofile(T.root() .. "/tests/lua/compute_fixture.lua")

local REF = T.root() .. "/tests/ref/ref_dpo.py"

-- Runs ref_dpo.py on per-sequence log-probs; returns its {loss=, d_pc=, d_pr=}.
local function numpy_dpo(pc, pr, rc, rr, beta, loss, ls)
    local path = T.tmpdir() .. "/in.json"
    local f = assert(io.open(path, "w"))
    f:write(cjson.encode({ pc = pc, pr = pr, rc = rc, rr = rr, beta = beta, loss = loss, label_smoothing = ls }))
    f:close()
    return cjson.decode(T.python(REF, path))
end

local LOSSES = { { "sigmoid", 0 }, { "sigmoid", 0.1 }, { "ipo", 0 }, { "hinge", 0 } }

T.case("dpo loss and its gradient in the log-probs match ref_dpo.py", function()
    local r = rng.new(1, "dpo-ref")
    local n = 7
    local pc, pr, rc, rr = {}, {}, {}, {}
    for i = 1, n do -- h spread over [-6, 6], so hinge's kink is crossed both ways
        rc[i], rr[i] = -20 * r:uniform() - 5, -20 * r:uniform() - 5
        pc[i] = rc[i] + 6 * r:uniform() - 3
        pr[i] = rr[i] - (6 * r:uniform() - 3)
    end
    for _, l in ipairs(LOSSES) do
        for _, beta in ipairs({ 0.1, 0.5 }) do
            local want = numpy_dpo(pc, pr, rc, rr, beta, l[1], l[2])
            local loss, dpc, dpr = apl.dpo.loss(pc, pr, rc, rr, { beta = beta, loss = l[1], label_smoothing = l[2] })
            local what = string.format("%s ls=%g beta=%g", l[1], l[2], beta)
            T.eq(loss, want.loss, 1e-5 * math.max(1, math.abs(want.loss)), what .. " loss")
            T.eq(dpc, want.d_pc, 1e-5, what .. " d/d pc")
            T.eq(dpr, want.d_pr, 1e-5, what .. " d/d pr")
        end
    end
end)

local function encode_pairs(tok, list)
    local out = {}
    for i, p in ipairs(list) do
        out[i] = { prompt_ids = tok:encode(p[1]), chosen_ids = tok:encode(p[2]), rejected_ids = tok:encode(p[3]) }
    end
    return out
end

local PAIRS = {
    { "the movie was", " good", " bad" },
    { "i liked", " the film a lot", " nothing" },
    { "great", " acting and a fine story", " plot" },
    { "not worth", " the ticket", " a dull and boring plot" },
}

T.case("dpo: parameter gradients match finite differences (f64 tiny model, left padding, each loss)", function()
    local tok = F.tok()
    local policy, ref = F.model(1, { dtype = "f64" }), F.model(2, { dtype = "f64" })
    -- f64, so that differences of the loss are exact enough. Both pairs in one micro-batch, whose
    -- packed rows (prompt ++ chosen ++ rejected: 8 and 7 tokens) are left-padded: the gradient
    -- through the padding mask is checked too (finite and right in f64).
    local pairs_ = { { prompt_ids = { 3, 17, 40 }, chosen_ids = { 8, 2, 55 }, rejected_ids = { 61, 9 } },
                     { prompt_ids = { 12 }, chosen_ids = { 33, 5 }, rejected_ids = { 7, 21, 4, 9 } } }
    local params = policy:parameters()
    local picks = {} -- (parameter name, entry): embeddings of used tokens, attention, MLP, norms
    for _, pk in ipairs({ { "transformer.wte.weight", { 9, 7 } }, { "transformer.wpe.weight", { 2, 5 } },
                          { "transformer.h.0.attn.c_attn.weight", { 3, 10 } },
                          { "transformer.h.1.mlp.c_proj.bias", { 4 } }, { "transformer.ln_f.weight", { 11 } } }) do
        for i, p in ipairs(params) do if p.name == pk[1] then picks[#picks + 1] = { i, pk[2] } end end
    end
    T.eq(#picks, 5)
    -- beta 0.05 keeps hinge's margins z = beta h inside its kink (1 - z > 0), where it has a gradient
    for _, l in ipairs({ { "sigmoid", 0.1, 0.5 }, { "ipo", 0, 0.5 }, { "hinge", 0, 0.05 } }) do
        local tr = apl.dpo.new { policy = policy, ref = ref, tok = tok, beta = l[3], loss = l[1],
                                 label_smoothing = l[2], batch_size = 2, micro_batch_size = 2 }
        local function loss()
            local m = tr:accumulate(pairs_)
            tr.opt:zero_grad()
            return m.loss
        end
        tr:accumulate(pairs_)
        local grads = tr.opt:grads()
        tr.opt:zero_grad()
        local largest = 0
        for _, pk in ipairs(picks) do
            local p, idx = params[pk[1]].tensor, pk[2]
            local function at(t) for _, i in ipairs(idx) do t = t[i] end return t end
            local function set(v) apl.no_grad(function() if #idx == 1 then p[idx[1]] = v else p[idx[1]][idx[2]] = v end end) end
            -- eps 1e-3: the shim's attention softmax runs in f32 even for f64 models, whose
            -- rounding (1e-7) over a smaller step would swamp the difference
            local x0, eps = at(p):item(), 1e-3
            set(x0 + eps)
            local lp = loss()
            set(x0 - eps)
            local lm = loss()
            set(x0)
            local fd, g = (lp - lm) / (2 * eps), at(grads[pk[1]]):item()
            T.eq(g, fd, 2e-5 + 1e-3 * math.abs(fd), string.format("%s: %s%s", l[1], params[pk[1]].name,
                cjson.encode(idx)))
            largest = math.max(largest, math.abs(fd))
        end
        T.ok(largest > 1e-3, l[1] .. ": the loss has a gradient here (" .. largest .. ")")
    end
end)

local flat_params = F.flat_params

T.case("dpo: micro-batches accumulate to the update of one batch", function()
    local tok = F.tok()
    local base = F.model(3)
    local ref = F.model(13) -- not theta0: rewards far from 0, so accuracies are not decided by rounding
    -- eps = 1 makes Adam's first step -lr g / (|g| + 1), nearly linear in g: the updates compare
    -- the accumulated gradients themselves rather than their signs.
    local o = { ref = ref, tok = tok, beta = 0.3, lr = 1e-2, eps = 1, batch_size = 4 }
    local data = {}
    for i, p in ipairs(PAIRS) do data[i] = { prompt = p[1], chosen = p[2], rejected = p[3] } end
    local runs = {}
    for _, mbs in ipairs({ 4, 1, 3 }) do
        o.policy, o.micro_batch_size = base:clone(), mbs
        local tr = apl.dpo.new(o)
        runs[#runs + 1] = { m = tr:step(data), w = flat_params(o.policy) }
    end
    local before = flat_params(base)
    T.ok(F.max_abs_diff(runs[1].w, before) > 1e-4, "the step changed the weights")
    for i = 2, #runs do
        local d = F.max_abs_diff(runs[i].w, runs[1].w)
        T.ok(d < 1e-6, "same weights after the step, max diff " .. d) -- f32 rounding: 1.2e-7
        T.eq(runs[i].m, runs[1].m, 1e-4)
    end
end)

-- Summed log-probs of each (prompt, completion) from a plain forward per row (compute_fixture).
local function ref_logprobs(m, prompts, completions)
    local out = {}
    for i = 1, #prompts do out[i] = F.ref_logprob(m, prompts[i], completions[i]) end
    return out
end

T.case("dpo: step metrics and loss are TRL's, from log-probs of a plain forward", function()
    local tok = F.tok()
    local ref = F.model(4)
    local pairs_ = encode_pairs(tok, PAIRS)
    local p, c, r = {}, {}, {}
    for i, e in ipairs(pairs_) do p[i], c[i], r[i] = e.prompt_ids, e.chosen_ids, e.rejected_ids end
    local rc, rr = ref_logprobs(ref, p, c), ref_logprobs(ref, p, r)
    for _, l in ipairs(LOSSES) do
        local policy = F.model(5)
        local pc, pr = ref_logprobs(policy, p, c), ref_logprobs(policy, p, r)
        local beta = 0.25
        local tr = apl.dpo.new { policy = policy, ref = ref, tok = tok, beta = beta, loss = l[1],
                                 label_smoothing = l[2], batch_size = 4, micro_batch_size = 2, lr = 1e-3 }
        local m = tr:step(pairs_)
        if l[1] == "ipo" then -- TRL's IPO averages log-probs over completion tokens
            for i = 1, #p do pc[i], rc[i], pr[i], rr[i] = pc[i] / #c[i], rc[i] / #c[i], pr[i] / #r[i], rr[i] / #r[i] end
        end
        local want = numpy_dpo(pc, pr, rc, rr, beta, l[1], l[2])
        local e = { loss = want.loss, grad_norm = m.grad_norm }   -- grad_norm: test_optim.lua, against NumPy
        local keys = { "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected" }
        for _, k in ipairs(keys) do e[k] = 0 end
        for i = 1, #p do
            local wc, wr = beta * (pc[i] - rc[i]), beta * (pr[i] - rr[i])
            e["rewards/chosen"] = e["rewards/chosen"] + wc / #p
            e["rewards/rejected"] = e["rewards/rejected"] + wr / #p
            e["rewards/margins"] = e["rewards/margins"] + (wc - wr) / #p
            e["rewards/accuracies"] = e["rewards/accuracies"] + (wc > wr and 1 or 0) / #p
            e["logps/chosen"] = e["logps/chosen"] + pc[i] / #p
            e["logps/rejected"] = e["logps/rejected"] + pr[i] / #p
        end
        T.eq(m, e, 1e-4, l[1])
        T.ok(m.grad_norm > 0, "grad_norm")
        if l[1] == "ipo" then -- undo for the next loss type
            for i = 1, #p do rc[i], rr[i] = rc[i] * #c[i], rr[i] * #r[i] end
        end
    end
end)

T.case("dpo: reference log-probs are computed once, cached in memory and in cache_file", function()
    local tok = F.tok()
    local ref = F.model(6)
    local data = {}
    for i = 1, 6 do -- prompt "the movie was" repeats with the same chosen: 2 sequences shared
        local p = PAIRS[(i - 1) % #PAIRS + 1]
        data[i] = { prompt = p[1], chosen = p[2], rejected = p[3] .. (i > 4 and " again" or "") }
    end
    local unique = 10 -- 4 chosen + 6 distinct rejected
    local file = T.tmpdir() .. "/ref_logps.jsonl"
    local tr = apl.dpo.new { policy = ref:clone(), ref = ref, tok = tok, batch_size = 4, micro_batch_size = 2,
                             lr = 1e-3, cache_file = file }
    local e1 = tr:epoch(data, { shuffle_seed = 1 })
    T.eq(tr.ref_forwards, unique)
    tr:epoch(data, { shuffle_seed = 2 })
    tr:reset()
    local again = tr:epoch(data, { shuffle_seed = 1 })
    T.eq(tr.ref_forwards, unique, "no reference forward after the first epoch")
    T.eq(again, e1, 1e-6)
    local lines = 0
    for _ in io.lines(file) do lines = lines + 1 end
    T.eq(lines, unique)
    local tr2 = apl.dpo.new { policy = ref:clone(), ref = ref, tok = tok, batch_size = 4, micro_batch_size = 2,
                              lr = 1e-3, cache_file = file }
    T.eq(tr2:epoch(data, { shuffle_seed = 1 }), e1, 1e-6)
    T.eq(tr2.ref_forwards, 0, "a new trainer reads the cache file")
end)

-- The key of a sequence as the first cache files wrote it: FNV-1a 64 in a Lua loop (integers
-- wrapping modulo 2^64), one word per id, -1 after each part, then the lengths. Cache files hold
-- these keys; a trainer computing others would silently never hit an existing cache.
local function old_key(prompt, completion)
    local h = 0xcbf29ce484222325
    for _, ids in ipairs({ prompt, completion }) do
        for i = 1, #ids do h = (h ~ ids[i]) * 0x100000001b3 end
        h = (h ~ -1) * 0x100000001b3
    end
    return string.format("%016x:%d:%d", h, #prompt, #completion)
end

T.case("dpo: cache keys are the first Lua FNV loop's, for given ids and through a cache file", function()
    for _, row in ipairs {
        { {}, {} }, { { 0 }, {} }, { {}, { 0 } }, { { 1, 2, 3 }, { 4 } }, { { 1, 2 }, { 3, 4 } },
        { { 50256, 0, 7 }, { 2 ^ 40 // 1, 0x7fffffffffffffff } }, { { 5 }, { 5, 5, 5, 5 } },
    } do
        T.eq(apl.dpo.hash_ids(row[1], row[2]), old_key(row[1], row[2]))
    end
    T.ok(apl.dpo.hash_ids({ 1, 2 }, { 3 }) ~= apl.dpo.hash_ids({ 1 }, { 2, 3 }), "part boundaries count")
    -- Through the trainer: every key it writes is old_key of the pair's token ids.
    local tok, ref = F.tok(), F.model(6)
    local data, want = {}, {}
    for i, p in ipairs(PAIRS) do
        data[i] = { prompt = p[1], chosen = p[2], rejected = p[3] }
        local ids = tok:encode(p[1])
        for _, c in ipairs { p[2], p[3] } do
            local cids = tok:encode(c)
            cids[#cids + 1] = tok.eos_id
            want[old_key(ids, cids)] = true
        end
    end
    local file = T.tmpdir() .. "/ref_logps.jsonl"
    local tr = apl.dpo.new { policy = ref:clone(), ref = ref, tok = tok, batch_size = 4, cache_file = file }
    tr:step(data)
    local n = 0
    for line in io.lines(file) do
        local r = cjson.decode(line)
        T.ok(want[r.key], "key " .. r.key .. " is the old loop's")
        T.ok(type(r.logp) == "number" and r.logp < 0, line)
        n = n + 1
    end
    T.eq(n, 2 * #PAIRS)
end)

T.case("dpo: a torn or corrupt line in the reference cache is skipped and reported; training goes on", function()
    local tok, ref = F.tok(), F.model(6)
    local data = {}
    for i, p in ipairs(PAIRS) do data[i] = { prompt = p[1], chosen = p[2], rejected = p[3] } end
    local file = T.tmpdir() .. "/ref_logps.jsonl"
    local function trainer()
        return apl.dpo.new { policy = ref:clone(), ref = ref, tok = tok, batch_size = 4, lr = 1e-3, cache_file = file }
    end
    local tr = trainer()
    local m1 = tr:step(data)
    T.eq(tr.ref_forwards, 8)
    local text = io.open(file):read("a")
    local lines = {}
    for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
    T.eq(#lines, 8, "every entry on disk when the step returned")
    -- A run killed while appending: the last entry cut mid-line.
    local f = assert(io.open(file, "wb"))
    f:write(table.concat(lines, "\n", 1, 7), "\n", lines[8]:sub(1, 12))
    f:close()
    local tr2 = trainer()
    T.ok(tr2.cache_warning and tr2.cache_warning:find("ref_logps.jsonl:8: truncated last line skipped", 1, true),
        tostring(tr2.cache_warning))
    T.eq(tr2:step(data).loss, m1.loss, 1e-6)
    T.eq(tr2.ref_forwards, 1, "only the cut entry is scored again")
    local tr3 = trainer()
    T.eq(tr3.cache_warning, nil, "the cut line was replaced by a whole one")
    tr3:step(data)
    T.eq(tr3.ref_forwards, 0)
    -- A corrupt line in the middle (an old cache's crash, appended over): skipped, named, not fatal.
    f = assert(io.open(file, "wb"))
    f:write(lines[1], "\n", '{"key":"ab{"key":"x","logp":-1}', "\n", table.concat(lines, "\n", 2, 8), "\n")
    f:close()
    local tr4 = trainer()
    T.ok(tr4.cache_warning and tr4.cache_warning:find("ref_logps.jsonl:2: corrupt cache line skipped", 1, true),
        tostring(tr4.cache_warning))
    tr4:step(data)
    T.eq(tr4.ref_forwards, 0, "every whole line was read")
end)

T.case("dpo: an epoch tokenises and hashes each pair once, however many epochs and resets", function()
    local tok, ref = F.tok(), F.model(6)
    local calls = 0
    local counting = setmetatable({ encode = function(_, s) calls = calls + 1; return tok:encode(s) end },
        { __index = tok })
    local data = {}
    for i = 1, 6 do
        local p = PAIRS[(i - 1) % #PAIRS + 1]
        data[i] = { prompt = p[1], chosen = p[2], rejected = p[3] .. " " .. i }
    end
    local tr = apl.dpo.new { policy = ref:clone(), ref = ref, tok = counting, batch_size = 4, micro_batch_size = 2,
                             lr = 1e-3 }
    local e1 = tr:epoch(data, { shuffle_seed = 1 })
    T.eq(calls, 3 * #data, "prompt, chosen and rejected once per pair")
    tr:epoch(data, { shuffle_seed = 2 })
    tr:reset()
    T.eq(tr:epoch(data, { shuffle_seed = 1 }), e1, 1e-6)
    T.eq(calls, 3 * #data, "no pair tokenised again")
    -- The keys are the ones a fresh encoding gives.
    local e = tr:encode({ data[1] })[1]
    local p, c = tok:encode(data[1].prompt), tok:encode(data[1].chosen)
    c[#c + 1] = tok.eos_id
    T.eq(e.kc, old_key(p, c))
    -- A new pair table is a new pair.
    tr:step({ { prompt = PAIRS[1][1], chosen = PAIRS[1][2], rejected = " other" } })
    T.eq(calls, 3 * #data + 3)
end)

T.case("dpo: reference log-probs of packed pairs, lone sequences and chosen == rejected equal a plain forward", function()
    local tok, ref = F.tok(), F.model(8)
    local tr = apl.dpo.new { policy = ref:clone(), ref = ref, tok = tok, batch_size = 4 }
    local batch = { { prompt = "the movie was", chosen = " great", rejected = " dull" },      -- packed
                    { prompt = "the movie was", chosen = " great", rejected = " long" },      -- lone rejected
                    { prompt = "i liked", chosen = " it", rejected = " it" },                 -- the same twice
                    { prompt = "a plot", chosen = " that works", rejected = " that fails" } } -- packed
    local enc = tr:encode(batch)
    tr:ref_logps(enc)
    T.eq(tr.ref_forwards, 6)
    for i, e in ipairs(enc) do
        T.eq(e.rc, F.ref_logprob(ref, e.p, e.c), 1e-4, "pair " .. i .. " chosen")
        T.eq(e.rr, F.ref_logprob(ref, e.p, e.r), 1e-4, "pair " .. i .. " rejected")
    end
end)

T.case("dpo: reset restores theta0 and clears Adam; training separates chosen from rejected", function()
    local tok = F.tok()
    local ref = F.model(7)
    local policy = ref:clone()
    local data = {}
    for i, p in ipairs(PAIRS) do data[i] = { prompt = p[1], chosen = p[2], rejected = p[3] } end
    local tr = apl.dpo.new { policy = policy, ref = ref, tok = tok, beta = 0.5, lr = 1e-2, batch_size = 4 }
    local first = tr:step(data)
    T.eq(first.loss, math.log(2), 1e-6) -- policy = ref: h = 0
    local last
    for _ = 1, 15 do last = tr:step(data) end
    T.ok(last.loss < 0.3 and last["rewards/accuracies"] == 1 and last["rewards/margins"] > 0,
        string.format("loss %.3f, accuracy %.2f", last.loss, last["rewards/accuracies"]))
    T.ok(F.max_abs_diff(flat_params(policy), flat_params(ref)) > 1e-3, "trained away from theta0")
    tr:reset()
    T.eq(tr.opt:steps(), 0)
    T.eq(F.max_abs_diff(flat_params(policy), flat_params(ref)), 0)
    T.eq(tr:step(data), first, 1e-6) -- same first step: moments and step count were cleared
end)

T.case("dpo: options are checked", function()
    local tok, m = F.tok(), F.model(1)
    T.assert_error_match(function() apl.dpo.new { policy = m } end, "apl.dpo.new: needs policy and tok")
    T.assert_error_match(function() apl.dpo.new { policy = m, ref = m:clone(), tok = tok, loss = "kto" } end,
        "apl%.dpo%.new: option 'loss' must be \"sigmoid\", \"ipo\" or \"hinge\", got \"kto\"")
    T.assert_error_match(function() apl.dpo.new { policy = m, ref = m:clone(), tok = tok, beta = "0.1x" } end,
        "apl%.dpo%.new: option 'beta' must be a number, got string")
    T.assert_error_match(function() apl.dpo.new { policy = m, ref = m:clone(), tok = tok, batch_size = 0 } end,
        "batch_size")
    local tr = apl.dpo.new { policy = m, ref = m:clone(), tok = tok }
    T.assert_error_match(function() tr:step { { prompt = "a", chosen = 3 } } end, "apl.dpo: pair 1 needs chosen")
end)

-- issue 18: the trainer and apl.dpo.loss take the method's defaults from one place (beta 0.2,
-- the paper's; sigmoid; no label smoothing).
T.case("dpo: the trainer and apl.dpo.loss share the defaults", function()
    local tok, m = F.tok(), F.model(1)
    local tr = apl.dpo.new { policy = m, ref = m:clone(), tok = tok }
    T.eq({ tr.beta, tr.loss, tr.label_smoothing }, { 0.2, "sigmoid", 0 })
    local pc, pr, rc, rr = { -3, -7 }, { -5, -6 }, { -4, -6.5 }, { -4, -6 }
    local want = numpy_dpo(pc, pr, rc, rr, 0.2, "sigmoid", 0)
    local loss = apl.dpo.loss(pc, pr, rc, rr, {})
    T.eq(loss, want.loss, 1e-5)
    T.eq(loss, apl.dpo.loss(pc, pr, rc, rr, { beta = tr.beta, loss = tr.loss, label_smoothing = tr.label_smoothing }), 0)
end)

-- ------------------------------------------------------------------------------------------
-- SFT

T.case("sft: loss is the mean completion-token NLL; micro-batches accumulate; loss falls", function()
    local tok = F.tok()
    local examples = {}
    for i, p in ipairs(PAIRS) do examples[i] = { prompt = p[1], completion = p[2] } end
    local base = F.model(8)
    local nll, tokens = 0, 0
    for _, e in ipairs(examples) do
        local c = tok:encode(e.completion)
        c[#c + 1] = tok.eos_id
        nll, tokens = nll - F.ref_logprob(base, tok:encode(e.prompt), c), tokens + #c
    end
    local runs = {}
    for _, mbs in ipairs({ 4, 1 }) do
        local m = base:clone()
        local tr = apl.sft.new { model = m, tok = tok, lr = 1e-2, eps = 1, batch_size = 4, micro_batch_size = mbs }
        local s = tr:step(examples)
        T.eq(s.loss, nll / tokens, 1e-4)
        T.eq(s.tokens, tokens)
        runs[#runs + 1] = flat_params(m)
    end
    T.ok(F.max_abs_diff(runs[1], runs[2]) < 1e-7, "same update with 4 micro-batches")
    local tr = apl.sft.new { model = base, tok = tok, lr = 1e-2, batch_size = 2 }
    local first = tr:epoch(examples, { shuffle_seed = 1 })
    local last
    for e = 2, 10 do last = tr:epoch(examples, { shuffle_seed = e }) end
    T.ok(last.loss < 0.5 * first.loss, string.format("loss %.3f -> %.3f", first.loss, last.loss))
end)

T.case("cuda: a DPO step with bf16 weights", function()
    if not tensor.cuda_available() then T.skip("no CUDA") end
    local tok = F.tok()
    local ref = F.model(1, { dtype = "bf16", device = "cuda" })
    local tr = apl.dpo.new { policy = ref:clone(), ref = ref, tok = tok, lr = 1e-3, batch_size = 4, micro_batch_size = 2 }
    local data = {}
    for i, p in ipairs(PAIRS) do data[i] = { prompt = p[1], chosen = p[2], rejected = p[3] } end
    local m1 = tr:step(data)
    T.eq(m1.loss, math.log(2), 1e-2)
    local m2 = tr:step(data)
    T.ok(m2.loss < m1.loss and m2.grad_norm > 0, "the bf16 policy moved")
end)

-- The online variant (the method's Appendix D): one gradient step per acquired batch, with the
-- policy and Adam's moments carried from step to step.
T.case("online loop: two steps keep Adam's moments, as two trainer steps by hand do", function()
    local loop = require "apl.loop"
    local runfolder = require "apl.runfolder"
    local tok = F.tok()
    local pool = {}
    for i, text in ipairs(F.CORPUS) do pool[i] = { prompt = text:match("^%S+ %S+") } end
    local policy, dir = F.model(5), T.tmpdir()
    loop.run { acquisition = "random", budget = 8, batch = 4, sample = #pool, seed = 2, online = true,
               lr = 1e-2, minibatch = 4, max_new_tokens = 4, policy = policy, tok = tok, pool = pool,
               oracle = function(_, a, b) return #a >= #b and "A" or "B", "the longer one" end,
               out = dir .. "/run", quiet = true }
    local steps = { {}, {} }
    for _, r in ipairs(runfolder.open(dir .. "/run"):read("acquired")) do table.insert(steps[r.step], r) end
    T.eq({ #steps[1], #steps[2] }, { 4, 4 })
    local function by_hand(clear_adam_between)
        local p = F.model(5)
        local tr = apl.dpo.new { policy = p, ref = F.model(5), tok = tok, beta = 0.2, lr = 1e-2, batch_size = 4 }
        tr:step(loop.training_pairs(steps[1]))
        if clear_adam_between then tr.opt:reset() end
        tr:step(loop.training_pairs(steps[2]))
        return flat_params(p)
    end
    local got, kept, cleared = flat_params(policy), by_hand(false), by_hand(true)
    local d = F.max_abs_diff(got, kept)
    T.ok(d < 1e-6, "the loop's two online steps are two Adam steps with the moments kept, max diff " .. d)
    T.ok(F.max_abs_diff(got, cleared) > 1e-4, "clearing Adam between the steps would give other weights")
end)
