-- tests/lua/fake_engine.lua — the loop's fake engine (pure Lua: a one-number "model" whose
-- completions are positive or negative words), for test_loop.lua and the sweep's test recipe.
--
--   local FE = dofile(root .. "/tests/lua/fake_engine.lua")
--   local e = FE.new { crash_at = 2 }      -- loop.run{ engine = e, ... }
--   local e = FE.crashing(2)               -- the real engine, its trainer raising at step 2
local rng = require "apl.rng"

local POS, NEG = { "good", "great", "lovely" }, { "bad", "awful", "dull" }
local function sigmoid(x) return 1 / (1 + math.exp(-x)) end

local function npos(text)
    local n = 0
    for w in text:gmatch("%a+") do
        for _, p in ipairs(POS) do if w == p then n = n + 1 end end
    end
    return n
end

-- log-prob of a completion under a fake model with P(positive word) = sigmoid(bias).
local function logp(model, text)
    local p, lp = sigmoid(model.bias), 0
    for w in text:gmatch("%a+") do
        lp = lp + math.log(1 / 3) + math.log(npos(w) > 0 and p or 1 - p)
    end
    return lp
end

-- opts.crash_at: the trainer raises during the training of that step (after its labels are in):
-- offline training resets once per step, online training takes one step per step. Offline, the
-- crash comes at epoch opts.crash_epoch (default 1) of that step: past 1, the policy is part-trained.
local function new(opts)
    opts = opts or {}
    local e = { resets = 0, steps = 0, oracle_calls = 0, judged = {}, judged_pairs = {} }
    function e.generate(model, _, prompts, o)
        local out = {}
        for i, prompt in ipairs(prompts) do
            out[i] = {}
            for j = 1, o.n do
                local r, words = rng.new(o.seed, prompt, j), {}
                for k = 1, 3 do
                    local list = r:uniform() < sigmoid(model.bias) and POS or NEG
                    words[k] = list[r:int(1, 3)]
                end
                local text = " " .. table.concat(words, " ")
                out[i][j] = { text = text, logprob = logp(model, text) }
            end
        end
        return out
    end
    function e.entropy(model, tok, prompts, o)
        local h = {}
        for i, list in ipairs(e.generate(model, tok, prompts, o)) do
            h[i] = 0
            for _, c in ipairs(list) do h[i] = h[i] - c.logprob / #list end
        end
        return h
    end
    function e.rewards(policy, ref, _, _, a, b, beta)
        local ra, rb = {}, {}
        for i = 1, #a do
            ra[i] = beta * (logp(policy, a[i]) - logp(ref, a[i]))
            rb[i] = beta * (logp(policy, b[i]) - logp(ref, b[i]))
        end
        return ra, rb
    end
    -- The fake optimizer has a momentum, as Adam has moments: a run that lost it (a reset
    -- between online steps, a resume that restores only the weights) moves differently.
    function e.trainer(o)
        local tr, momentum, epochs = {}, 0, 0
        function tr:reset() e.resets = e.resets + 1; o.policy.bias = o.ref.bias; momentum = 0; epochs = 0 end
        local function train(pairs, seed)
            local order = rng.new(seed or 0):sample(pairs, #pairs)
            local right = 0
            for _, p in ipairs(order) do
                local d = npos(p.chosen) - npos(p.rejected)
                momentum = 0.5 * momentum + 0.05 * d
                o.policy.bias = o.policy.bias * 0.999 + momentum
                if d > 0 then right = right + 1 end
            end
            return { loss = math.exp(-o.policy.bias), ["rewards/accuracies"] = right / #pairs }
        end
        function tr:epoch(pairs, eo)
            epochs = epochs + 1
            if opts.crash_at == e.resets and epochs == (opts.crash_epoch or 1) then error("simulated crash") end
            return train(pairs, eo and eo.shuffle_seed)
        end
        function tr:step(pairs)
            e.steps = e.steps + 1
            if opts.crash_at == e.steps then error("simulated crash") end
            return train(pairs)
        end
        return tr
    end
    e.reference = function(m) m.theta0 = m.bias; return { bias = m.bias } end
    e.reset = function(m) m.bias = m.theta0 end
    e.free = function() end
    e.save = function(m, dir)
        local f = assert(io.open(dir .. "/bias.txt", "w"))
        f:write(string.format("%.17g", m.bias))
        f:close()
    end
    e.load = function(dir)
        local f = assert(io.open(dir .. "/bias.txt"))
        local b = tonumber(f:read("a"))
        f:close()
        return { bias = b }
    end
    e.oracle_lua = function(fn)
        return { label = function(_, pairs)
            local out = {}
            for i, p in ipairs(pairs) do
                e.oracle_calls = e.oracle_calls + 1
                e.judged[#e.judged + 1] = p.prompt
                e.judged_pairs[#e.judged_pairs + 1] = p
                local pick, why = fn(p.prompt, p.a, p.b)
                out[i] = { preferred = pick == "A" and 1 or 2, rationale = why }
            end
            return out
        end }
    end
    return e
end

-- The real DPO trainer, raising during the training of step `at` (offline training resets once
-- per step; online training takes one step per step).
local function crashing(at)
    local resets, steps = 0, 0
    return { trainer = function(o)
        local tr = apl.dpo.new(o)
        return {
            reset = function() resets = resets + 1; tr:reset() end,
            epoch = function(_, pairs, eo)
                if resets == at then error("simulated crash") end
                return tr:epoch(pairs, eo)
            end,
            step = function(_, pairs)
                steps = steps + 1
                if steps == at then error("simulated crash") end
                return tr:step(pairs)
            end,
        }
    end }
end

return { new = new, crashing = crashing, npos = npos, sigmoid = sigmoid }
