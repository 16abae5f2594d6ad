-- acquisition/uncertainty.lua — the opposite of certainty, for ablations: prefers pairs whose
-- Bradley–Terry probability σ(r̂1 − r̂2) is nearest 0.5.
-- Interface (see acquisition/random.lua): M.score(ctx, batch) -> one score per pair, highest first.
local bt_prob = require("apl.score").bt_prob

local M = {}

function M.score(ctx, batch)
    local ra, rb = ctx:implicit_rewards(batch)
    local scores = {}
    for i = 1, #batch do scores[i] = -math.abs(bt_prob(ra[i], rb[i]) - 0.5) end
    return scores
end

return M
