-- apl.eval: win-rates with their binomial standard error and the count of pairs the judge could
-- not answer, and the mean ± standard error over seeds, against values computed by hand.
local T = require "tests.lib.test"
local eval = require "apl.eval"

-- A judge that answers from a script: 1, 2 or false (no answer) per pair, in order.
local function scripted(answers)
    return { label = function(_, pairs)
        local out = {}
        for i = 1, #pairs do
            out[i] = answers[i] and { preferred = answers[i], rationale = "scripted" } or { reason = "timed out" }
        end
        return out
    end }
end

local function texts(n, s)
    local out = {}
    for i = 1, n do out[i] = s .. i end
    return out
end

T.case("eval.winrate: wins over judged pairs, binomial standard error, failures left out of n and counted", function()
    -- 10 pairs: 5 wins, 3 losses, 2 without an answer
    local answers = { 1, 2, 1, false, 1, 2, 1, false, 2, 1 }
    local w = eval.winrate(scripted(answers), texts(10, "p"), texts(10, "a"), texts(10, "b"))
    T.eq({ w.winrate, w.n, w.failed }, { 5 / 8, 8, 2 }, 1e-15)
    T.eq(w.stderr, math.sqrt((5 / 8) * (3 / 8) / 8), 1e-15)   -- 0.17116...
    T.eq(w.stderr, 0.171163, 1e-6, "the number itself")
    local all = eval.winrate(scripted { 1, 1, 1 }, texts(3, "p"), texts(3, "a"), texts(3, "b"))
    T.eq({ all.winrate, all.stderr, all.n, all.failed }, { 1, 0, 3, 0 })
end)

T.case("eval.judge: the pairs reach the judge as (prompt, a = policy, b = baseline)", function()
    local seen
    local judge = { label = function(_, pairs) seen = pairs; return { { preferred = 2 } } end }
    local w = eval.winrate(judge, { "p" }, { "mine" }, { "theirs" })
    T.eq(seen, { { prompt = "p", a = "mine", b = "theirs" } })
    T.eq({ w.winrate, w.n }, { 0, 1 }, "b preferred: a loss for the policy")
end)

T.case("eval.mean_stderr: the mean and sd / sqrt(n) with the n - 1 sample variance", function()
    local mean, se = eval.mean_stderr { 0.61, 0.64, 0.58 }
    T.eq(mean, 0.61, 1e-15)
    -- deviations 0, 0.03, -0.03: variance 0.0018 / 2 = 0.0009, sd 0.03, se 0.03 / sqrt(3)
    T.eq(se, 0.03 / math.sqrt(3), 1e-15)
    T.eq({ eval.mean_stderr { 0.5 } }, { 0.5, 0 })
    T.eq(select("#", eval.mean_stderr {}), 2)
    T.eq(eval.mean_stderr {}, nil)
end)
