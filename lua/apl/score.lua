-- apl.score — log-probabilities, predictive entropy and DPO's implicit rewards.
--
--   local lp = apl.logprob(model, tok, {"Q: 2+2? A:"}, {" 4"})            -- Tensor (1) f32
--   local lp, per_tok = apl.logprob(model, tok, prompts, comps, {per_token = true})
--   local lp = apl.logprob(model, tok, nil, nil, {prompt_ids = {{1, 2}}, completion_ids = {{3}}})
--   local H, samples = apl.entropy(model, tok, prompts, {n = 8, max_new_tokens = 32, seed = 1})
--   local r = apl.implicit_reward(policy, ref, tok, prompts, comps, 0.2)   -- beta (log pi - log pi0)
--   local r1, r2, p = apl.preference_prob(policy, ref, tok, prompts, c1, c2, 0.2)
--
-- Prompts and completions are lists of strings (encoded separately, as TRL does) or of token-id
-- lists. opts: batch_size (16 pairs per forward), per_token, add_eos (append tok.eos_id to each
-- completion; default false for log-probs, true for rewards), prompt_ids/completion_ids.
local C = require "apl.core.compute"
local tensor = require "apl.tensor"
local generate = require "apl.generate"

local M = {}

local function encode(tok, items, what, fname)
    local ids = {}
    for i, x in ipairs(items) do
        if type(x) == "string" then ids[i] = tok:encode(x)
        elseif type(x) == "table" then ids[i] = x
        else error(string.format("%s: %s[%d] must be a string or a list of ids", fname, what, i), 4) end
    end
    return ids
end

-- The (prompt ids, completion ids) lists the engine scores, from strings or ids.
function M.encode_pairs(tok, prompts, completions, opts, fname)
    opts = opts or {}
    local p = opts.prompt_ids or encode(tok, prompts or {}, "prompts", fname)
    local c = opts.completion_ids or encode(tok, completions or {}, "completions", fname)
    if #p ~= #c then error(string.format("%s: %d prompts but %d completions", fname, #p, #c), 3) end
    if opts.add_eos then
        if not tok.eos_id then error(fname .. ": add_eos needs tok.eos_id", 3) end
        local with = {}
        for i, ids in ipairs(c) do
            with[i] = table.move(ids, 1, #ids, 1, {})
            with[i][#ids + 1] = tok.eos_id
        end
        c = with
    end
    return p, c
end

local function engine_opts(tok, opts, phase)
    opts = opts or {}
    return { batch_size = opts.batch_size, pad_id = tok and (tok.pad_id or tok.eos_id),
             per_token = opts.per_token, phase = phase }
end

-- Summed log-probs (N) of already encoded pairs, with a progress line.
function M.logprob_ids(model, tok, prompt_ids, completion_ids, opts, phase)
    return C.logprob(model, prompt_ids, completion_ids, engine_opts(tok, opts, phase))
end

-- Summed log-probs of two encoded completions per prompt (N each): one forward per prompt packs
-- both completions after it, so the prompt is computed once (see core/score.h).
function M.logprob_pairs_ids(model, tok, prompt_ids, a_ids, b_ids, opts, phase)
    return C.logprob_pairs(model, prompt_ids, a_ids, b_ids, engine_opts(tok, opts, phase))
end

function M.logprob(model, tok, prompts, completions, opts)
    local p, c = M.encode_pairs(tok, prompts, completions, opts, "apl.logprob")
    return M.logprob_ids(model, tok, p, c, opts, "logprob")
end

-- Monte-Carlo predictive entropy: H(p) ~ -mean over n samples of log pi(y | x), each prompt from
-- its own n samples. Returns the estimates (P) and the samples (apl.generate's result).
--
-- An estimate is a function of (seed, prompt, sample) only, so the same prompt gets the same
-- estimate in any batch at any position (the loop's candidate prompts differ from step to step):
-- the samples' generators are keyed by the prompt's ids (core/generate.c), and so are their
-- length limits when max_new_tokens is a range (apl.generate's lengths_by_prompt).
function M.entropy(model, tok, prompts, opts)
    opts = opts or {}
    local n = opts.n or 8
    local gopts = {}
    for k, v in pairs(opts) do gopts[k] = v end
    gopts.n = n
    gopts.lengths_by_prompt = true
    local samples = generate(model, tok, prompts, gopts)
    local h = {}
    for i, list in ipairs(samples) do
        local s = 0
        for _, c in ipairs(list) do s = s + c.logprob end
        h[i] = -s / n
    end
    return tensor(h, { dtype = "f32" }), samples
end

-- The DPO trainer scores chosen + EOS (as TRL does); rewards must score the same sequences, or
-- the acquisition would rank pairs by a quantity the training never moves. add_eos = false opts out.
local function reward_opts(tok, opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    if o.add_eos == nil then o.add_eos = tok ~= nil and tok.eos_id ~= nil end
    return o
end

-- beta (log pi(c|p) - log pi0(c|p)) per pair (N); completions get EOS appended (see reward_opts).
function M.implicit_reward(policy, ref, tok, prompts, completions, beta, opts)
    opts = reward_opts(tok, opts)
    local p, c = M.encode_pairs(tok, prompts, completions, opts, "apl.implicit_reward")
    local lp = M.logprob_ids(policy, tok, p, c, opts, "reward: policy")
    local l0 = M.logprob_ids(ref, tok, p, c, opts, "reward: ref")
    return (lp - l0) * beta
end

-- The Bradley-Terry probability that the first of two completions is preferred, from their
-- implicit rewards: sigma(r1 - r2), of two numbers, or of two tensors (N) elementwise.
function M.bt_prob(r1, r2)
    if type(r1) == "number" then return 1 / (1 + math.exp(r2 - r1)) end
    return (r1 - r2):sigmoid()
end

-- Rewards of two completions per prompt and the Bradley-Terry probability that the first is
-- preferred: r1 (N), r2 (N), sigma(r1 - r2) (N). Each model scores both completions of a prompt
-- in one packed forward.
function M.preference_prob(policy, ref, tok, prompts, c1, c2, beta, opts)
    opts = reward_opts(tok, opts)
    local fname = "apl.preference_prob"
    local p, ids1 = M.encode_pairs(tok, prompts, c1, opts, fname)
    local _, ids2 = M.encode_pairs(tok, prompts, c2, opts, fname)
    local a, b = M.logprob_pairs_ids(policy, tok, p, ids1, ids2, opts, "reward: policy")
    local a0, b0 = M.logprob_pairs_ids(ref, tok, p, ids1, ids2, opts, "reward: ref")
    local r1, r2 = (a - a0) * beta, (b - b0) * beta
    return r1, r2, M.bt_prob(r1, r2)
end

return M
