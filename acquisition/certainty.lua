-- acquisition/certainty.lua — preference certainty |r̂(x, y1) − r̂(x, y2)| under the DPO implicit
-- reward r̂ = β·log(πθ(y|x)/π0(y|x)): acquire the pairs the model is most sure about (the method
-- finds these teach most, since confidently wrong pairs get corrected).
-- Interface (see acquisition/random.lua): M.score(ctx, batch) -> one score per pair, highest first.
local M = {}

function M.score(ctx, batch)
    local ra, rb = ctx:implicit_rewards(batch)
    local scores = {}
    for i = 1, #batch do scores[i] = math.abs(ra[i] - rb[i]) end
    return scores
end

return M
