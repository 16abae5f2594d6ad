-- acquisition/hybrid.lua — the method's hybrid: rank oversample × sample prompts by predictive
-- entropy, keep the `sample` highest, generate pairs for those, then rank pairs by certainty.
-- Interface (see acquisition/random.lua): prefilter(ctx, prompts) before generation, then score.
local certainty = require "acquisition.certainty"

local M = {}

function M.prefilter(ctx, prompts)
    local keep = {}
    for i, k in ipairs(ctx:top(ctx:entropy(prompts), ctx.config.sample)) do keep[i] = prompts[k] end
    return keep
end

M.score = certainty.score

return M
