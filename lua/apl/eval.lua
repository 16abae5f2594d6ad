-- apl.eval — asking the oracle about pairs, and win-rates with their standard errors.
--
--   local eval = require "apl.eval"
--   local labels = eval.judge(oracle, { {prompt=, a=, b=} }, rng.new(seed, t, "order"))
--   local w = eval.winrate(oracle, prompts, policy_texts, baseline_texts, r)  -- {winrate, stderr, n, failed}
--   local mean, se = eval.mean_stderr({0.61, 0.64, 0.58})
local M = {}

-- Asks the oracle about each pair, showing it in a random order (drawn from r) so position bias
-- averages out. Returns, per pair in the caller's order, {preferred = 1|2|nil, rationale=, cached=}.
function M.judge(oracle, pairs, r)
    local shown, swapped = {}, {}
    for i, p in ipairs(pairs) do
        swapped[i] = r:uniform() < 0.5
        shown[i] = swapped[i] and { prompt = p.prompt, a = p.b, b = p.a } or { prompt = p.prompt, a = p.a, b = p.b }
    end
    local labels = oracle:label(shown)
    local out = {}
    for i = 1, #shown do
        local got = labels[i] or {}
        local pref = got.preferred
        if pref and swapped[i] then pref = 3 - pref end
        out[i] = { preferred = pref, rationale = got.rationale or got.reason, cached = got.cached }
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
-- left out of n and counted in failed. stderr is the binomial one, sqrt(p(1-p)/n).
function M.winrate(oracle, prompts, texts, baselines, r)
    local pairs = {}
    for i, p in ipairs(prompts) do pairs[i] = { prompt = p, a = texts[i], b = baselines[i] } end
    local wins, n, failed = 0, 0, 0
    for _, l in ipairs(M.judge(oracle, pairs, r)) do
        if l.preferred then
            n = n + 1
            if l.preferred == 1 then wins = wins + 1 end
        else
            failed = failed + 1
        end
    end
    local p = n > 0 and wins / n or 0
    return { winrate = p, stderr = n > 0 and math.sqrt(p * (1 - p) / n) or 0, n = n, failed = failed }
end

return M
