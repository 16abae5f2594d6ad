-- apl.eval — asking the oracle about pairs, and win-rates with their standard errors.
--
--   local eval = require "apl.eval"
--   local labels = eval.judge(oracle, { {prompt=, a=, b=} })        -- {preferred = 1|2|nil, rationale=}
--   local w = eval.winrate(oracle, prompts, policy_texts, baseline_texts)  -- {winrate, stderr, n, failed, reason}
--   local mean, se = eval.mean_stderr({0.61, 0.64, 0.58})
local M = {}

-- Asks the oracle about each pair. Returns, per pair, {preferred = 1|2|nil, rationale=, cached=}.
-- Position bias is the oracle's business: apl.oracle shows each pair as AB or BA by a hash of
-- (seed, pair), so the rationale's "A" and "B" are in the order the judge saw (see its ledger).
function M.judge(oracle, pairs)
    local labels = oracle:label(pairs)
    local out = {}
    for i = 1, #pairs do
        local got = labels[i] or {}
        out[i] = { preferred = got.preferred, rationale = got.rationale or got.reason, cached = got.cached }
    end
    return out
end

-- Mean and standard error of the mean (0 for a single value).
function M.mean_stderr(values)
    local n = #values
    if n == 0 then return nil, nil end
    local sum = 0
    for _, v in ipairs(values) do sum = sum + v end
    local mean = sum / n
    if n == 1 then return mean, 0 end
    local ss = 0
    for _, v in ipairs(values) do ss = ss + (v - mean) ^ 2 end
    return mean, math.sqrt(ss / (n - 1) / n)
end

-- The oracle's win-rate of texts over baselines on prompts; pairs the oracle could not judge are
-- left out of n and counted in failed (reason: the first one's). stderr is the binomial one,
-- sqrt(p(1-p)/n). With n = 0 there is no win-rate: winrate and stderr are nil, not 0 (a judge
-- that is down is not a policy that always loses).
function M.winrate(oracle, prompts, texts, baselines)
    local pairs = {}
    for i, p in ipairs(prompts) do pairs[i] = { prompt = p, a = texts[i], b = baselines[i] } end
    local wins, n, failed, reason = 0, 0, 0, nil
    for _, l in ipairs(M.judge(oracle, pairs)) do
        if l.preferred then
            n = n + 1
            if l.preferred == 1 then wins = wins + 1 end
        else
            failed, reason = failed + 1, reason or l.rationale
        end
    end
    if n == 0 then return { n = 0, failed = failed, reason = reason } end
    local p = wins / n
    return { winrate = p, stderr = math.sqrt(p * (1 - p) / n), n = n, failed = failed, reason = reason }
end

return M
