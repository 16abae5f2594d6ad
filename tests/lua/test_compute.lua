-- Generation, scoring and entropy on tiny models, checked against plain single-row forwards
-- (tests/lua/compute_fixture.lua): no KV cache, no padding, no batching in the references.
local T = require "tests.lib.test"
local tensor = require "apl.tensor"
local F = dofile(T.root() .. "/tests/lua/compute_fixture.lua")

local PROMPTS = { "the movie was", "i liked", "a dull and boring plot, not worth", "great" }

local function encode_all(tok, list)
    local out = {}
    for i, s in ipairs(list) do out[i] = tok:encode(s) end
    return out
end

local function strip_eos(ids, eos)
    local n = #ids
    if n > 0 and ids[n] == eos then n = n - 1 end
    return table.move(ids, 1, n, 1, {})
end

-- ------------------------------------------------------------------------------------------
-- Generation

T.case("generate: greedy equals step-by-step argmax over unpadded rows", function()
    local tok, m = F.tok(), F.model(1)
    -- No EOS stop: every row runs the full 12 steps, through padding of different widths. n = 2
    -- with batches of 3 rows: a prompt's samples share a prefill, and one prompt spans two batches.
    local out = apl.generate(m, tok, PROMPTS, { n = 2, temperature = 0, max_new_tokens = 12, batch_size = 3,
                                                eos_id = -1 })
    T.eq(#out, #PROMPTS)
    for i, ids in ipairs(encode_all(tok, PROMPTS)) do
        local want = F.ref_greedy(m, ids, 12)
        T.eq(out[i][1].ids, want, "prompt " .. i)
        T.eq(out[i][2].ids, want, "prompt " .. i .. ", sample 2")
    end
end)

-- The log-probs generation reports are the model's own (temperature 1, nothing filtered) whatever
-- the sampling options: what scoring gives for the same tokens, and what DPO trains.
T.case("generate: result fields; logprobs equal a plain forward at any temperature, top-k and top-p", function()
    local tok, m = F.tok(), F.model(2)
    for _, o in ipairs { {}, { temperature = 0.6, top_k = 5 }, { temperature = 1.4, top_p = 0.7 },
                         { temperature = 0.8, top_k = 8, top_p = 0.9 } } do
        local what = string.format("T=%s k=%s p=%s", o.temperature, o.top_k, o.top_p)
        o.n, o.max_new_tokens, o.seed, o.batch_size = 2, 10, 5, 5
        local out = apl.generate(m, tok, PROMPTS, o)
        for i, ids in ipairs(encode_all(tok, PROMPTS)) do
            T.eq(#out[i], 2)
            for _, c in ipairs(out[i]) do
                T.ok(#c.ids >= 1 and #c.ids <= 10, "length")
                T.eq(#c.logprobs, #c.ids)
                T.eq(c.text, tok:decode(strip_eos(c.ids, tok.eos_id)))
                local sum, per = F.ref_logprob(m, ids, c.ids)
                T.ok(F.max_abs_diff(c.logprobs, per) < 1e-4, what .. ": per-token log-probs")
                T.eq(c.logprob, sum, 1e-3, what)
            end
        end
    end
end)

T.case("generate: the decoding kernels and libtorch give the same completions (apl.fast_kernels)", function()
    local tok, m = F.tok(), F.model(4)
    local o = { n = 2, max_new_tokens = 12, seed = 3, temperature = 0.9, batch_size = 4 }
    local was = apl.fast_kernels()
    apl.fast_kernels(false)
    local slow = apl.generate(m, tok, PROMPTS, o)
    apl.fast_kernels(true)
    local fast = apl.generate(m, tok, PROMPTS, o)
    apl.fast_kernels(was)
    T.eq(apl.fast_kernels(), was, "the setting comes back")
    for i = 1, #PROMPTS do
        for s = 1, 2 do
            T.eq(fast[i][s].ids, slow[i][s].ids, "prompt " .. i .. ", sample " .. s)
            T.ok(F.max_abs_diff(fast[i][s].logprobs, slow[i][s].logprobs) < 1e-5, "log-probs")
        end
    end
end)

T.case("generate: same seed, same completions for any batch_size; sample s does not depend on n", function()
    local tok, m = F.tok(), F.model(3)
    local o = { n = 3, max_new_tokens = 9, seed = 11, temperature = 1.3, top_k = 50, top_p = 0.95 }
    local function ids_of(out)
        local r = {}
        for i, l in ipairs(out) do
            r[i] = {}
            for s, c in ipairs(l) do r[i][s] = c.ids end
        end
        return r
    end
    o.batch_size = 1
    local a = ids_of(apl.generate(m, tok, PROMPTS, o))
    o.batch_size = 5
    local b = ids_of(apl.generate(m, tok, PROMPTS, o))
    o.batch_size = 64
    local c = ids_of(apl.generate(m, tok, PROMPTS, o))
    T.eq(b, a)
    T.eq(c, a)
    o.n, o.batch_size = 1, 4
    local one = ids_of(apl.generate(m, tok, PROMPTS, o))
    for i = 1, #PROMPTS do T.eq(one[i][1], a[i][1]) end
    o.n, o.seed = 3, 12
    local other = ids_of(apl.generate(m, tok, PROMPTS, o))
    T.ok(not pcall(T.eq, other, a), "another seed gives other completions")
    local distinct = 0
    for i = 1, #PROMPTS do
        if not pcall(T.eq, a[i][1], a[i][2]) then distinct = distinct + 1 end
    end
    T.ok(distinct > 0, "samples of one prompt differ")
end)

-- One new token, many samples: the empirical distribution matches softmax(logits / T) restricted
-- to the top-k and the top-p nucleus, computed here from a plain forward.
local function expected_dist(m, ids, temp, top_k, top_p)
    local lp = F.logp_rows(m, ids)
    local last = lp[#ids]
    local order = {}
    for v = 1, #last do order[v] = v end
    table.sort(order, function(x, y) return last[x] > last[y] end)
    local w, total = {}, 0
    for r, v in ipairs(order) do
        if r <= top_k then w[v] = math.exp(last[v] / temp); total = total + w[v] end
    end
    local keep, mass = {}, 0
    for _, v in ipairs(order) do
        if w[v] and mass < top_p then keep[v] = w[v] / total; mass = mass + w[v] / total end
    end
    local z = 0
    for _, p in pairs(keep) do z = z + p end
    for v, p in pairs(keep) do keep[v] = p / z end
    return keep
end

T.case("generate: sampling frequencies follow temperature, top-k and top-p", function()
    local tok, m = F.tok(), F.model(4)
    local ids = tok:encode("the movie")
    for _, o in ipairs({ { temp = 1.0, k = 0, p = 1 }, { temp = 0.7, k = 5, p = 1 }, { temp = 1.5, k = 0, p = 0.6 } }) do
        local N = 4000
        local out = apl.generate(m, tok, { ids }, { n = N, max_new_tokens = 1, seed = 7, temperature = o.temp,
                                                     top_k = o.k, top_p = o.p, batch_size = N, eos_id = -1 })
        local count = {}
        for _, c in ipairs(out[1]) do count[c.ids[1] + 1] = (count[c.ids[1] + 1] or 0) + 1 end
        local want = expected_dist(m, ids, o.temp, o.k > 0 and o.k or math.huge, o.p)
        for v, n in pairs(count) do T.ok(want[v], "token " .. (v - 1) .. " was filtered out but sampled") end
        for v, p in pairs(want) do
            local sd = math.sqrt(p * (1 - p) / N)
            T.ok(math.abs((count[v] or 0) / N - p) < 5 * sd + 1e-3,
                string.format("token %d: frequency %.4f, probability %.4f", v - 1, (count[v] or 0) / N, p))
        end
    end
end)

T.case("generate: top_k = 1 and a tiny top_p are greedy", function()
    local tok, m = F.tok(), F.model(5)
    local greedy = apl.generate(m, tok, PROMPTS, { temperature = 0, max_new_tokens = 6, eos_id = -1 })
    for _, o in ipairs({ { top_k = 1 }, { top_p = 1e-6 } }) do
        o.max_new_tokens, o.seed, o.eos_id, o.temperature = 6, 3, -1, 2.0
        local s = apl.generate(m, tok, PROMPTS, o)
        for i = 1, #PROMPTS do T.eq(s[i][1].ids, greedy[i][1].ids) end
    end
end)

T.case("generate: a row stops at EOS, the others go on (finished rows leave the batch)", function()
    local tok, m = F.tok(), F.model(1)
    local prompt_ids = encode_all(tok, PROMPTS)
    local full = {}
    for i, ids in ipairs(prompt_ids) do full[i] = F.ref_greedy(m, ids, 10) end
    local eos = full[2][3] -- prompt 2's third greedy token plays EOS
    local out = apl.generate(m, tok, PROMPTS, { temperature = 0, max_new_tokens = 10, eos_id = eos, batch_size = 4 })
    for i, ids in ipairs(prompt_ids) do
        T.eq(out[i][1].ids, F.ref_greedy(m, ids, 10, eos), "prompt " .. i)
    end
    T.ok(#out[2][1].ids <= 3, "prompt 2 stopped early")
    T.eq(out[2][1].text, tok:decode(strip_eos(out[2][1].ids, eos)))
end)

T.case("generate: stop strings cut text and tokens", function()
    local tok, m = F.tok(), F.model(6)
    local base = apl.generate(m, tok, { "the movie" }, { temperature = 0, max_new_tokens = 16, eos_id = -1 })[1][1]
    local k = 0 -- a stop string: the text of greedy tokens 4..5, which first appears at/after token 4
    local stop
    for j = 4, 10 do
        stop = tok:decode({ base.ids[j], base.ids[j + 1] })
        local first = base.text:find(stop, 1, true)
        if #stop > 0 and first == #tok:decode(table.move(base.ids, 1, j - 1, 1, {})) + 1 then k = j; break end
    end
    T.ok(k > 0, "found a stop string")
    local out = apl.generate(m, tok, { "the movie" }, { temperature = 0, max_new_tokens = 16, eos_id = -1, stop = stop })[1][1]
    T.eq(out.text, tok:decode(table.move(base.ids, 1, k - 1, 1, {})))
    T.eq(out.ids, table.move(base.ids, 1, k + 1, 1, {}))
    T.eq(#out.logprobs, k + 1)
    local s = 0
    for _, l in ipairs(out.logprobs) do s = s + l end
    T.eq(out.logprob, s, 1e-9)
end)

T.case("generate: bad options raise with the function's name", function()
    local tok, m = F.tok(), F.model(1)
    T.assert_error_match(function() apl.generate(m, tok, { "a" }, { top_p = 0 }) end, "apl.generate: top_p")
    T.assert_error_match(function() apl.generate(m, tok, { "a" }, { max_new_tokens = 100 }) end,
        "apl.generate: prompt 1: .* exceed")
    T.assert_error_match(function() apl.generate(m, tok, { {} }, {}) end, "apl.generate: prompt 1 of 1 is empty")
end)

-- ------------------------------------------------------------------------------------------
-- Other families: GPT-NeoX (partial RoPE, parallel residual) and Llama (RoPE, grouped-query
-- attention). Positions come from RoPE, so left padding and the KV cache must shift nothing.

for _, family in ipairs { "gpt_neox", "llama" } do
    T.case(family .. ": greedy generation, sampled log-probs and batch scoring equal plain forwards", function()
        local tok, m = F.tok(), F.model(21, { model_type = family })
        T.eq(m:info().model_type, family)
        local ids = encode_all(tok, PROMPTS)
        local greedy = apl.generate(m, tok, PROMPTS, { n = 2, temperature = 0, max_new_tokens = 8, batch_size = 3,
                                                       eos_id = -1 })
        for i = 1, #PROMPTS do
            T.eq(greedy[i][1].ids, F.ref_greedy(m, ids[i], 8), family .. " greedy, prompt " .. i)
        end
        local sampled = apl.generate(m, tok, PROMPTS, { n = 2, temperature = 0.9, top_k = 20, max_new_tokens = 8,
                                                        seed = 3, batch_size = 5 })
        for i = 1, #PROMPTS do
            for s = 1, 2 do
                local c = sampled[i][s]
                local sum, per = F.ref_logprob(m, ids[i], c.ids)
                T.ok(F.max_abs_diff(c.logprobs, per) < 1e-4, family .. " sampled log-probs, prompt " .. i)
                T.eq(c.logprob, sum, 1e-3)
            end
        end
        local c = encode_all(tok, { " good", " the film a lot and", " story", " not worth the ticket at all" })
        local lp, per = apl.logprob(m, tok, ids, c, { batch_size = 3, per_token = true })
        for i, got in ipairs(lp:totable()) do
            local sum, ref = F.ref_logprob(m, ids[i], c[i])
            T.eq(got, sum, 1e-3, family .. " score, pair " .. i)
            T.ok(F.max_abs_diff(per[i], ref) < 1e-4, family .. " per-token scores, pair " .. i)
        end
        -- both completions of a prompt packed into one forward (preference_prob, the DPO trainer)
        local a, b = apl.score.logprob_pairs_ids(m, tok, ids, c, { c[4], c[3], c[2], c[1] })
        a, b = a:totable(), b:totable()
        for i = 1, #ids do
            T.eq(a[i], (F.ref_logprob(m, ids[i], c[i])), 1e-3, family .. " packed a, pair " .. i)
            T.eq(b[i], (F.ref_logprob(m, ids[i], c[5 - i])), 1e-3, family .. " packed b, pair " .. i)
        end
    end)
end

-- ------------------------------------------------------------------------------------------
-- Scoring

local COMPLETIONS = { " good", " the film a lot and", " story", " not worth the ticket at all" }

T.case("logprob: sums and per-token values equal plain forwards, for any batch_size", function()
    local tok, m = F.tok(), F.model(7)
    local p, c = encode_all(tok, PROMPTS), encode_all(tok, COMPLETIONS)
    for _, bs in ipairs({ 1, 3, 16 }) do
        local lp, per = apl.logprob(m, tok, PROMPTS, COMPLETIONS, { batch_size = bs, per_token = true })
        T.eq(lp:dtype(), "f32")
        T.eq(lp:shape(), { #PROMPTS })
        local got = lp:totable()
        for i = 1, #PROMPTS do
            local sum, ref = F.ref_logprob(m, p[i], c[i])
            T.eq(got[i], sum, 1e-3, "pair " .. i)
            T.ok(F.max_abs_diff(per[i], ref) < 1e-4, "per-token values of pair " .. i)
        end
    end
    local pre = apl.logprob(m, tok, nil, nil, { prompt_ids = p, completion_ids = c })
    T.eq(pre:totable(), apl.logprob(m, tok, p, c):totable())
end)

T.case("logprob: add_eos appends EOS; mismatched lists and empty prompts raise", function()
    local tok, m = F.tok(), F.model(7)
    local with = apl.logprob(m, tok, { "great" }, { " story" }, { add_eos = true }):item()
    local c = tok:encode(" story")
    c[#c + 1] = tok.eos_id
    T.eq(with, (F.ref_logprob(m, tok:encode("great"), c)), 1e-3)
    T.assert_error_match(function() apl.logprob(m, tok, { "a", "b" }, { "c" }) end, "apl.logprob: 2 prompts but 1")
    T.assert_error_match(function() apl.logprob(m, tok, { "" }, { "c" }) end, "apl.logprob: pair 1 of 1: empty prompt")
end)

T.case("entropy: each prompt's estimate is minus the mean log-prob of its own samples", function()
    local tok, m = F.tok(), F.model(8)
    -- Teach prompt 1 one fixed answer, so its samples are near-certain while prompt 2's are not:
    -- an estimate that took samples from the neighbouring prompt would be far off.
    local sft = apl.sft.new { model = m, tok = tok, lr = 3e-2, batch_size = 4 }
    for _ = 1, 40 do sft:step { { prompt = "great", completion = " acting" } } end
    local prompts = { "great", "not worth the", "i liked" }
    local n = 6
    local H, samples = apl.entropy(m, tok, prompts, { n = n, max_new_tokens = 8, seed = 2, batch_size = 4 })
    T.eq(H:shape(), { #prompts })
    local h = H:totable()
    for i, pr in ipairs(prompts) do
        T.eq(#samples[i], n)
        local s = 0
        for _, c in ipairs(samples[i]) do s = s + F.ref_logprob(m, tok:encode(pr), c.ids) end
        T.eq(h[i], -s / n, 1e-3, "prompt " .. i)
    end
    -- The case discriminates: samples taken from the neighbouring prompt would be far off.
    T.ok(h[1] < 0.1 and h[2] > 0.3, string.format("entropies %.3f and %.3f", h[1], h[2]))
end)

T.case("implicit_reward and preference_prob", function()
    local tok, policy, ref = F.tok(), F.model(9), F.model(10)
    local beta = 0.2
    local r = apl.implicit_reward(policy, ref, tok, PROMPTS, COMPLETIONS, beta):totable()
    local bare = apl.implicit_reward(policy, ref, tok, PROMPTS, COMPLETIONS, beta, { add_eos = false }):totable()
    local p, c = encode_all(tok, PROMPTS), encode_all(tok, COMPLETIONS)
    for i = 1, #PROMPTS do
        -- rewards score completion + EOS, the sequence the DPO trainer trains on
        local ce = table.move(c[i], 1, #c[i], 1, {})
        ce[#ce + 1] = tok.eos_id
        T.eq(r[i], beta * (F.ref_logprob(policy, p[i], ce) - F.ref_logprob(ref, p[i], ce)), 1e-3)
        T.eq(bare[i], beta * (F.ref_logprob(policy, p[i], c[i]) - F.ref_logprob(ref, p[i], c[i])), 1e-3)
    end
    local c2 = { " bad", " it", " plot", " great" }
    local r1, r2, prob = apl.preference_prob(policy, ref, tok, PROMPTS, COMPLETIONS, c2, beta)
    local r2ref = apl.implicit_reward(policy, ref, tok, PROMPTS, c2, beta):totable()
    T.eq(r1:totable(), r, 1e-5)
    T.eq(r2:totable(), r2ref, 1e-5)
    for i, v in ipairs(prob:totable()) do T.eq(v, 1 / (1 + math.exp(-(r[i] - r2ref[i]))), 1e-5) end
    for _, bs in ipairs({ 1, 3 }) do -- batches of packed pairs, longest first, put back in order
        local b1, b2 = apl.preference_prob(policy, ref, tok, PROMPTS, COMPLETIONS, c2, beta, { batch_size = bs })
        T.eq(b1:totable(), r, 1e-5)
        T.eq(b2:totable(), r2ref, 1e-5)
    end
    local same = apl.implicit_reward(policy, policy:clone(), tok, PROMPTS, COMPLETIONS, beta):totable()
    for _, v in ipairs(same) do T.eq(v, 0, 1e-6) end
end)

-- ------------------------------------------------------------------------------------------
-- Hostile input (issue 19): errors, never a crash

T.case("an id outside the vocabulary raises in packed forwards (logprob_pairs, dpo), no crash", function()
    local C = require "apl.core.compute"
    local tok, m = F.tok(), F.model(11)
    local bad = tok:vocab_size() + 5000
    local msg = "pair 1 of 1: completion token 1 is id " .. bad .. ", outside the model's vocabulary of "
        .. tok:vocab_size()
    T.assert_error_match(function() C.logprob_pairs(m, { { 1 } }, { { 2 } }, { { bad } }) end,
        "apl.logprob_pairs: " .. msg)
    T.assert_error_match(function() C.dpo_accumulate(m, { { 1 } }, { { 2 } }, { { bad } }, { 0 }, { 0 },
        { beta = 0.1, scale = 1 }) end, "apl.dpo: " .. msg)
    T.assert_error_match(function() C.logprob(m, { { -1 } }, { { 2 } }) end,
        "apl.logprob: pair 1 of 1: prompt token 1 is id %-1, outside")
    -- the model still works afterwards
    T.eq(#C.logprob_pairs(m, { { 1 } }, { { 2 } }, { { 3 } }):totable(), 1)
end)

-- issue 18: option tables are read by one helper (lcommon.c); every error names the function and
-- the option.
T.case("bad options name the function and the option (table-driven)", function()
    local C = require "apl.core.compute"
    local m = F.model(15)
    local P, Q = { { 1 } }, { { 2 } }
    for _, c in ipairs({
        { "generate n", function() C.generate(m, P, { n = "two" }) end, "apl%.generate: option 'n' must be an integer, got string$" },
        { "generate top_p", function() C.generate(m, P, { top_p = {} }) end, "apl%.generate: option 'top_p' must be a number, got table$" },
        { "logprob phase", function() C.logprob(m, P, Q, { phase = 1 }) end, "apl%.logprob: option 'phase' must be a string, got number$" },
        { "logprob opts", function() C.logprob(m, P, Q, "fast") end, "apl%.logprob: options must be a table, got string$" },
        { "optim lr", function() C.optim(m, { lr = "big" }) end, "apl%.optim: option 'lr' must be a number, got string$" },
        { "dpo beta", function() C.dpo_loss({ 0 }, { 0 }, { 0 }, { 0 }, { beta = "x" }) end,
          "apl%.dpo%.loss: option 'beta' must be a number, got string$" },
        { "dpo loss", function() C.dpo_accumulate(m, P, Q, { { 3 } }, { 0 }, { 0 }, { loss = "kto" }) end,
          "apl%.dpo: option 'loss' must be \"sigmoid\", \"ipo\" or \"hinge\", got \"kto\"$" },
        { "sft scale", function() C.sft_accumulate(m, P, Q, { scale = "1" .. "x" }) end, "apl%.sft: option 'scale' must be a number" },
    }) do
        T.assert_error_match(c[2], c[3], c[1])
    end
end)

-- issue 18: the DPO method's defaults live once, in lcompute.c: beta 0.2 (the paper's).
T.case("dpo_options: the method's defaults and checks, once", function()
    local C = require "apl.core.compute"
    T.eq(C.dpo_options({}), { beta = 0.2, loss = "sigmoid", label_smoothing = 0 })
    T.eq(C.dpo_options({ beta = 0.5, loss = "ipo", lr = 3 }), { beta = 0.5, loss = "ipo", label_smoothing = 0 })
    T.assert_error_match(function() C.dpo_options({ loss = "kto" }, "my.fn") end, "my%.fn: option 'loss' must be")
    -- dpo_loss without beta uses the same 0.2
    local pc, pr, rc, rr = { -3 }, { -5 }, { -4 }, { -4 }
    local l0 = C.dpo_loss(pc, pr, rc, rr, {})
    T.eq(l0, C.dpo_loss(pc, pr, rc, rr, { beta = 0.2 }), 0)
    T.eq(l0, math.log(1 + math.exp(-0.2 * ((-3 - -4) - (-5 - -4)))), 1e-6) -- -log σ(β h), h = 2
    T.ok(math.abs(l0 - C.dpo_loss(pc, pr, rc, rr, { beta = 0.1 })) > 1e-3)
end)

T.case("token lists are read raw, once: a __len that lies cannot overflow the buffer", function()
    local C = require "apl.core.compute"
    local tok, m = F.tok(), F.model(12)
    local calls = 0
    -- the first #t said 1, the second 100000: the buffer was sized from one and filled from the other
    local liar = setmetatable({ 3 }, { __len = function() calls = calls + 1; return calls == 1 and 1 or 100000 end })
    local want = C.logprob(m, { { 1 } }, { { 3 } }):totable()
    T.eq(C.logprob(m, { { 1 } }, { liar }):totable(), want)
    T.eq(calls, 0, "__len is not consulted")
end)

T.case("an optimizer whose model was moved (m:to) or freed raises instead of using freed memory", function()
    local C = require "apl.core.compute"
    local m = F.model(13)
    local opt = C.optim(m, { lr = 1e-3 })
    C.dpo_accumulate(m, { { 1 } }, { { 2 } }, { { 3 } }, { 0 }, { 0 }, { beta = 0.1, scale = 1 })
    T.ok(opt:step() > 0)
    m:to("f64")
    T.assert_error_match(function() opt:step() end, "parameters were replaced %(model:to%)")
    T.assert_error_match(function() opt:zero_grad() end, "parameters were replaced")
    local m2 = F.model(14)
    local opt2 = C.optim(m2, { lr = 1e-3 })
    m2:free()
    T.assert_error_match(function() opt2:step() end, "model was freed")
    opt2:free()
    collectgarbage() -- the optimizer and its model die in either order
end)

T.case("cuda: generation and scoring with bf16 weights", function()
    if not tensor.cuda_available() then T.skip("no CUDA") end
    local tok = F.tok()
    local m = F.model(1, { dtype = "bf16", device = "cuda" })
    local out = apl.generate(m, tok, PROMPTS, { n = 2, max_new_tokens = 8, seed = 1 })
    local lp = apl.logprob(m, tok, nil, nil, { prompt_ids = encode_all(tok, PROMPTS),
                                              completion_ids = { out[1][1].ids, out[2][1].ids, out[3][1].ids, out[4][1].ids } })
    for i, v in ipairs(lp:totable()) do T.eq(v, out[i][1].logprob, 0.05 * math.abs(v) + 0.05) end
end)
