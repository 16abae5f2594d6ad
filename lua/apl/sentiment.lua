-- apl.sentiment — a word-list sentiment scorer, the demo's local oracle.
--
--   local sentiment = require "apl.sentiment"
--   sentiment.score("not bad, really great")      --> 2   (+1 great, +1 for the negated "bad")
--   local o = apl.oracle.lua(sentiment.prefer)     -- prefers the more positive completion
--
-- Deliberately simple: +1 per positive word, -1 per negative word, the sign flipped when one of
-- the two words before it is a negator. It stands in for the method's LLM judge on IMDB.
local M = {}

M.positive = {
    "good", "great", "wonderful", "brilliant", "funny", "beautiful", "moving", "charming",
    "clever", "delightful", "superb", "fresh", "excellent", "touching", "lovely", "perfect",
    "enjoyable", "warm", "gripping", "fun", "best", "amazing", "love", "loved", "enjoyed",
    "adored", "liked", "recommend", "masterpiece", "gem", "smart", "sweet", "strong",
}

M.negative = {
    "bad", "boring", "dull", "awful", "terrible", "slow", "silly", "weak", "poor", "messy",
    "predictable", "lifeless", "painful", "bland", "tedious", "clumsy", "forgettable", "worst",
    "hated", "disliked", "regretted", "skip", "mess", "waste", "flat", "cheap", "annoying",
    "hate", "mediocre", "stupid", "ugly", "wooden",
}

M.negators = { "not", "never", "no", "hardly", "isn't", "wasn't", "didn't", "don't", "nothing" }

local function set_of(list)
    local s = {}
    for _, w in ipairs(list) do s[w] = true end
    return s
end

local POS, NEG, NOT = set_of(M.positive), set_of(M.negative), set_of(M.negators)

-- Returns the score and the words that counted (with their signs), for the oracle's rationale.
function M.score(text)
    local words = {}
    for w in text:lower():gmatch("[%a']+") do words[#words + 1] = w end
    local score, hits = 0, {}
    for i, w in ipairs(words) do
        local s = POS[w] and 1 or NEG[w] and -1 or 0
        if s ~= 0 then
            if NOT[words[i - 1] or ""] or NOT[words[i - 2] or ""] then s = -s end
            score = score + s
            hits[#hits + 1] = (s > 0 and "+" or "-") .. w
        end
    end
    return score, hits
end

-- An oracle judgement in apl.oracle.lua's shape: "A" or "B", and why. Ties go to "A"; the
-- oracle shows the pair in random order, so a tie is a coin flip.
function M.prefer(_, a, b)
    local sa, ha = M.score(a)
    local sb, hb = M.score(b)
    local why = string.format("A scores %d (%s), B scores %d (%s)", sa, table.concat(ha, " "),
        sb, table.concat(hb, " "))
    return sb > sa and "B" or "A", why
end

return M
