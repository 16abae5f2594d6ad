-- apl.generate — sample completions: apl.generate(model, tok, prompts, opts).
--
--   local out = apl.generate(model, tok, {"The movie was", "I think"},
--                            {n = 4, max_new_tokens = 48, temperature = 0.8, top_p = 0.95, seed = 1})
--   print(out[2][3].text, out[2][3].logprob)   -- prompt 2, sample 3
--
-- Returns, for each prompt, n completions {text=, ids=, logprobs=, logprob=}: ids are the tokens
-- the model produced after the prompt (EOS included when it stopped there), logprobs their
-- log-probabilities under the model at temperature 1 (a Lua list), logprob their sum; text is
-- the decoded completion without EOS and cut before the first stop string.
--
-- opts: n (1), max_new_tokens (64), temperature (1; 0 = greedy), top_k (0 = off), top_p (1 = off),
-- seed (0), stop (a string or list of strings, besides EOS), batch_size (16 rows per forward),
-- eos_id (tok.eos_id), length_seed (seed), index_offset (0). Prompts are strings or lists of
-- token ids.
--
-- max_new_tokens = {lo, hi} gives every (prompt, sample) row its own limit, drawn uniformly from
-- lo..hi by (length_seed, prompt index, sample), or by (length_seed, the prompt's ids, sample) with
-- lengths_by_prompt = true (apl.entropy sets it): the authors' code draws each completion's length
-- this way (direct/utils.py LengthSampler, 16–24 tokens for IMDB). prompts[i]'s index is
-- index_offset + i, so a block of a longer list (a rank's share, apl.loop) draws the lengths the
-- whole list would. The rows are sampled up to hi
-- and cut at their own limit, as the authors' code does; since each row has its own generator,
-- the cut row is exactly what stopping at the limit gives. Two calls with one length_seed give a
-- prompt's samples the same limits (the loop uses that to give the policy and the baseline of a
-- test prompt the same length).
--
-- The same seed gives the same completions whatever batch_size: each (prompt, sample) has its own
-- generator (core/generate.h), seeded by (seed, the prompt's ids, sample) and not by the prompt's
-- index: a prompt gets the same samples wherever it is in the list, and a prompt given twice gets
-- the same samples twice. A stop string ends generation early when its tokens (as
-- tok:encode gives them) come out; it is also found in the decoded text however the model spelled
-- it, and the completion is cut there: ids/logprobs keep the tokens up to the one that completed
-- the stop string, text ends just before it.
local C = require "apl.core.compute"
local lengths = require "apl.lengths"

local function encode_all(tok, items, what)
    local ids = {}
    for i, x in ipairs(items) do
        if type(x) == "string" then ids[i] = tok:encode(x)
        elseif type(x) == "table" then ids[i] = x
        else error(string.format("apl.generate: %s[%d] must be a string or a list of ids", what, i), 3) end
    end
    return ids
end

local function stop_strings(stop)
    if stop == nil then return {} end
    if type(stop) == "string" then return { stop } end
    return stop
end

-- Earliest position of any stop string in text, or nil.
local function find_stop(text, stops)
    local best
    for _, s in ipairs(stops) do
        local at = text:find(s, 1, true)
        if at and (not best or at < best) then best = at end
    end
    return best
end

local function sub(list, k)
    local out = {}
    for i = 1, k do out[i] = list[i] end
    return out
end

-- Cuts a row the engine returned to its first k tokens.
local function cut(row, k)
    if #row.ids <= k then return row end
    row.ids, row.logprobs = sub(row.ids, k), sub(row.logprobs, k)
    row.logprob = 0
    for _, l in ipairs(row.logprobs) do row.logprob = row.logprob + l end
    return row
end

-- Decodes a row into its text, cutting at the first stop string (and the tokens after the one
-- that completed it). The prefix search is a binary search: a longer prefix decodes to a longer
-- text, so "contains a stop string" is monotone in the prefix length.
local function finish(tok, row, eos, stops)
    local ids, n = row.ids, #row.ids
    local body = (eos and n > 0 and ids[n] == eos) and sub(ids, n - 1) or ids
    local text = tok:decode(body)
    local at = find_stop(text, stops)
    if at then
        local lo, hi = 1, #body
        while lo < hi do
            local mid = (lo + hi) // 2
            if find_stop(tok:decode(sub(body, mid)), stops) then hi = mid else lo = mid + 1 end
        end
        cut(row, lo)
        text = text:sub(1, at - 1)
    end
    row.text = text
    return row
end

local function generate(model, tok, prompts, opts)
    opts = opts or {}
    local n = opts.n or 1
    local lo, hi, err = lengths.range(opts.max_new_tokens or 64)
    if not lo then error("apl.generate: " .. err, 2) end
    local length_seed = opts.length_seed or opts.seed or 0
    local eos = opts.eos_id or tok.eos_id
    local stops = stop_strings(opts.stop)
    local stop_ids = {}
    if eos then stop_ids[1] = { eos } end
    for _, s in ipairs(stops) do
        local ids = tok:encode(s)
        if #ids > 0 then stop_ids[#stop_ids + 1] = ids end
    end
    local prompt_ids = encode_all(tok, prompts, "prompts")
    local rows = C.generate(model, prompt_ids, {
        n = n, max_new_tokens = hi, temperature = opts.temperature,
        top_k = opts.top_k, top_p = opts.top_p, seed = opts.seed, batch_size = opts.batch_size,
        stops = stop_ids, pad_id = tok.pad_id or eos,
    })
    local out = {}
    local offset = opts.index_offset or 0
    for i = 1, #prompt_ids do
        local samples, key = {}, opts.lengths_by_prompt and table.concat(prompt_ids[i], " ") or offset + i
        for s = 1, n do
            local row = rows[(i - 1) * n + s]
            if lo < hi then row = cut(row, lengths.draw(length_seed, key, s, lo, hi)) end
            samples[s] = finish(tok, row, eos, stops)
        end
        out[i] = samples
    end
    return out
end

return generate
