-- apl.inspect — looking at pairs and runs from the REPL.
--
--   > s = apl.inspect.load("runs/x/policy/step-5", "gpt2-large", {beta = 0.2})   -- or .session{policy=, ref=, tok=}
--   > s:pair("The movie was", " great fun.", " a bore.")
--     prints r̂(a), r̂(b), P(a ≻ b) = σ(r̂a − r̂b) and, per completion token, β·(log πθ − log π0)
--   > s:sample("The movie was")             -- two completions from the policy, then :pair
--   > r = apl.inspect.run("runs/imdb-certainty-s1")
--   > r:pairs{sort = "score", n = 10}       -- the acquired pairs as a table (sort by any field)
--   > r:pairs{step = 3, sort = "bt_prob", asc = true}
--   > r:evals()
--
-- Every method prints and also returns what it printed, as values, for further poking
-- (`rows = r:pairs{}`), followed by apl.show.printed so that the REPL does not print them again.
local report = require "apl.report"
local apl_model = require "apl.model"
local tokenizer = require "apl.tokenizer"
local score = require "apl.score"
local generate = require "apl.generate"
local printed = require("apl.show").printed
local lora = require "apl.lora"
local fs = require "apl.fs"
local C = require "apl.core.compute"

local M = {}
local Session = {}
Session.__index = Session

-- opts: policy, ref (models; ref defaults to the policy's θ0), tok, beta (DPO's default, 0.2).
function M.session(opts)
    if not (opts.policy and opts.tok) then error("apl.inspect.session: needs policy and tok", 2) end
    local ref = opts.ref == nil and opts.policy:reference() or opts.ref
    local beta = C.dpo_options({ beta = opts.beta }, "apl.inspect.session").beta
    return setmetatable({ policy = opts.policy, ref = ref, tok = opts.tok, beta = beta }, Session)
end

-- Loads θ0 from ref_dir (a Hugging Face folder) and the policy from policy_dir: a model folder,
-- or a LoRA adapter (a LoRA run's saved policy), attached to θ0's weights, whose reference is
-- then the same model with the adapter off. The tokenizer comes from ref_dir (or opts.tok, a
-- folder). opts: beta, dtype, device, tok.
function M.load(policy_dir, ref_dir, opts)
    opts = opts or {}
    local mopts = { dtype = opts.dtype, device = opts.device }
    local tok = tokenizer.load(opts.tok or ref_dir)
    if fs.exists(policy_dir .. "/adapter_config.json") then
        local policy = lora.load(apl_model.load(ref_dir, mopts), policy_dir)
        return M.session { policy = policy, tok = tok, beta = opts.beta }
    end
    return M.session { policy = apl_model.load(policy_dir, mopts), ref = apl_model.load(ref_dir, mopts),
                       tok = tok, beta = opts.beta }
end

-- β·(log πθ − log π0) of each token of completion, with the token's text; like the implicit
-- reward, the completion ends with EOS (when the tokenizer has one), the token DPO trains too.
function Session:token_rewards(prompt, completion)
    local ids = self.tok:encode(completion)
    local eos = self.tok.eos_id ~= nil
    if eos then ids[#ids + 1] = self.tok.eos_id end
    local opts = { per_token = true, add_eos = eos }
    local _, lp = score.logprob(self.policy, self.tok, { prompt }, { completion }, opts)
    local _, l0 = score.logprob(self.ref, self.tok, { prompt }, { completion }, opts)
    local out = {}
    for i, id in ipairs(ids) do
        out[i] = { token = self.tok:decode { id }, policy = lp[1][i], ref = l0[1][i],
                   reward = self.beta * (lp[1][i] - l0[1][i]) }
    end
    return out
end

local function print_tokens(name, toks)
    io.write(string.format("  %s: %-18s %10s %10s %10s\n", name, "token", "log πθ", "log π0", "β·diff"))
    for _, t in ipairs(toks) do
        io.write(string.format("     %-18s %10.4f %10.4f %+10.4f\n", string.format("%q", t.token), t.policy, t.ref, t.reward))
    end
end

-- Implicit rewards of both completions, the Bradley–Terry probability that a is preferred, and
-- the per-token differences. Returns {r_a, r_b, p, tokens_a, tokens_b}.
function Session:pair(prompt, a, b)
    local r1, r2, p = score.preference_prob(self.policy, self.ref, self.tok, { prompt }, { a }, { b }, self.beta)
    local out = { r_a = r1:totable()[1], r_b = r2:totable()[1], p = p:totable()[1],
                  tokens_a = self:token_rewards(prompt, a), tokens_b = self:token_rewards(prompt, b) }
    io.write(string.format("prompt: %q\n  a: %q\n  b: %q\n", prompt, a, b))
    io.write(string.format("r̂(a) = %+.4f   r̂(b) = %+.4f   P(a ≻ b) = %.4f   |r̂a − r̂b| = %.4f\n",
        out.r_a, out.r_b, out.p, math.abs(out.r_a - out.r_b)))
    print_tokens("a", out.tokens_a)
    print_tokens("b", out.tokens_b)
    return out, printed
end

-- Two completions of prompt from the policy (opts: temperature 0.7, max_new_tokens 48, seed 0),
-- then :pair on them.
function Session:sample(prompt, opts)
    opts = opts or {}
    local g = generate(self.policy, self.tok, { prompt }, { n = 2, temperature = opts.temperature or 0.7,
        max_new_tokens = opts.max_new_tokens or 48, seed = opts.seed or 0 })[1]
    return self:pair(prompt, g[1].text, g[2].text)
end

------------------------------------------------------------------------------------------------
-- Run folders

local Run = {}
Run.__index = Run

-- r.dir, r.config, r.records = {acquired=, evals=} as read from the folder.
function M.run(dir)
    local loaded = report.load(dir)
    return setmetatable({ dir = dir, config = loaded.config, records = loaded }, Run)
end

local function clip(s, n)
    s = tostring(s or ""):gsub("%s+", " ")
    if #s > n then return s:sub(1, n - 1) .. "…" end
    return s
end

local function num(v) return v and string.format("%.3f", v) or "-" end

local PAIRS_OPTS = { sort = true, asc = true, step = true, n = true, limit = true, width = true }

-- opts: sort (a record field, e.g. "score", "bt_prob", "reward_a"; descending unless asc = true),
-- step, n (rows, 20; `limit` is its older name), width (column width for texts, 28). Returns the
-- rows shown. An unknown option is an error: a misspelt one silently showing 20 rows misleads.
function Run:pairs(opts)
    opts = opts or {}
    for k in pairs(opts) do
        if not PAIRS_OPTS[k] then
            error(string.format("r:pairs: unknown option '%s' (sort, asc, step, n, width)", tostring(k)), 2)
        end
    end
    local rows = {}
    for _, r in ipairs(self.records.acquired) do
        if not opts.step or r.step == opts.step then rows[#rows + 1] = r end
    end
    if opts.sort then
        local k = opts.sort
        table.sort(rows, function(x, y)
            local a, b = x[k] or -math.huge, y[k] or -math.huge
            if opts.asc then return a < b end
            return a > b
        end)
    end
    local limit, w = opts.n or opts.limit or 20, opts.width or 28
    local fmt = "%4s %8s %8s %8s %6s %5s  %-" .. w .. "s %-" .. w .. "s %-" .. w .. "s\n"
    io.write(string.format(fmt, "step", "score", "r_a", "r_b", "P(a>b)", "label", "prompt", "a", "b"))
    local shown = {}
    for i = 1, math.min(limit, #rows) do
        local r = rows[i]
        shown[i] = r
        local label = r.label and (r.label == 1 and "a" or "b") or "-"
        if r.correct == false then label = label .. "!" end
        io.write(string.format(fmt, math.tointeger(r.step) or r.step, num(r.score), num(r.reward_a), num(r.reward_b),
            num(r.bt_prob), label, clip(r.prompt, w), clip(r.a, w), clip(r.b, w)))
    end
    io.write(string.format("%d of %d pairs (label: oracle's choice; ! = the model predicted the other)\n", #shown, #rows))
    return shown, printed
end

-- The evaluations of the run: labels acquired, win-rate ± standard error ("-" where the judge
-- answered none), n.
function Run:evals()
    io.write(string.format("%8s %8s %8s %6s\n", "labels", "win-rate", "± se", "n"))
    for _, e in ipairs(self.records.evals) do
        io.write(string.format("%8d %8s %8s %6d\n", math.tointeger(e.labels) or 0, num(e.winrate), num(e.stderr),
            math.tointeger(e.n) or 0))
    end
    return self.records.evals, printed
end

return M
