-- recipes/lib/study_judge.lua — the study's local judge: a known preference with label noise
-- like GPT-4's (the paper's Figure 1: two calls on the same pair agree ~90% of the time).
--
--   local judge = require "recipes.lib.study_judge"
--   judge.score("really great . the plot was great great .")   --> 3 - 1 = 2 (lexicon - faults)
--   judge.truth(prompt, a, b)        --> 1 (a), 2 (b) or nil (a tie): the noiseless preference
--   local fn = judge.new { seed = 3 } -- fn(prompt, first, second) -> "A"|"B", why  (apl.oracle.lua)
--
-- Noiseless preference: the completion with the higher score, where score = apl.sentiment's
-- lexicon score (more positive is better, as the paper's IMDB prompt asks) minus one point per
-- fault of form, as the paper's judge prompt also asks for fluent text: a word repeated right
-- after itself ("great great"), a word pair seen earlier in the completion, and punctuation with
-- no word before it (". ." or ", .").
--
-- Noise: each call answers the noiseless preference, flipped with probability FLIP, decided by
-- a hash of (seed, pair, call) — call = how many times this judge was asked about this pair,
-- so a repeated question is a new, independent draw, and a rerun draws the same flips. Two calls
-- agree with probability (1 - e)^2 + e^2; FLIP solves that for AGREEMENT = 0.9:
-- e = (1 - sqrt(2·0.9 - 1)) / 2 ≈ 0.0528. A tie has no noiseless preference: the judge then
-- picks one by a hash of (seed, pair) alone (an arbitrary but repeatable preference), and the
-- flip applies on top, so every pair has the same self-consistency.
local rng = require "apl.rng"
local sentiment = require "apl.sentiment"

local M = {}

M.AGREEMENT = 0.9
M.FLIP = (1 - math.sqrt(2 * M.AGREEMENT - 1)) / 2

-- Faults of form in a text: {repeats =, bigrams =, punctuation =}, and their total.
function M.faults(text)
    local toks = {}
    for t in text:lower():gmatch("[%a']+") do toks[#toks + 1] = t end
    local repeats, bigrams, seen = 0, 0, {}
    for i = 2, #toks do
        if toks[i] == toks[i - 1] then repeats = repeats + 1 end
        local bg = toks[i - 1] .. " " .. toks[i]
        if seen[bg] then bigrams = bigrams + 1 end
        seen[bg] = true
    end
    local punct = 0
    for _ in text:gmatch("[%.,!?;:]%s*[%.,!?;:]") do punct = punct + 1 end
    if text:match("^%s*[%.,!?;:]") then punct = punct + 1 end
    return { repeats = repeats, bigrams = bigrams, punctuation = punct }, repeats + bigrams + punct
end

-- The judge's score of a completion: lexicon sentiment minus faults of form.
function M.score(text)
    local s = sentiment.score(text)
    local _, f = M.faults(text)
    return s - f, s, f
end

-- The noiseless preference between completions a and b: 1, 2, or nil for a tie.
function M.truth(_, a, b)
    local sa, sb = M.score(a), M.score(b)
    if sa > sb then return 1 elseif sb > sa then return 2 end
    return nil
end

-- The pair's key, the same in either order.
local function pair_key(prompt, x, y)
    if y < x then x, y = y, x end
    return prompt, x, y
end

-- opts: seed (the run's), flip (default FLIP). Returns fn(prompt, first, second) for
-- apl.oracle.lua / apl.loop's oracle, and a table of counts {calls =, flips =, ties =}.
function M.new(opts)
    local seed = assert(opts and opts.seed, "study_judge.new: needs seed")
    local flip = opts.flip or M.FLIP
    local asked, counts = {}, { calls = 0, flips = 0, ties = 0 }
    local function judge(prompt, first, second)
        local p, x, y = pair_key(prompt, first, second)
        local key = p .. "\0" .. x .. "\0" .. y
        local call = (asked[key] or 0) + 1
        asked[key] = call
        local sf, ss = M.score(first), M.score(second)
        local first_wins
        if sf ~= ss then first_wins = sf > ss
        else
            counts.ties = counts.ties + 1
            -- the tie's arbitrary winner: the one that sorts first under this seed's coin
            local coin = rng.new(seed, "study-judge tie", p, x, y):uniform() < 0.5
            first_wins = (first == x) == coin
        end
        local flipped = rng.new(seed, "study-judge flip", p, x, y, call):uniform() < flip
        if flipped then first_wins = not first_wins; counts.flips = counts.flips + 1 end
        counts.calls = counts.calls + 1
        return first_wins and "A" or "B", string.format("A scores %d, B scores %d%s%s", sf, ss,
            sf == ss and " (tie)" or "", flipped and "; flipped" or "")
    end
    return judge, counts
end

return M
