-- apl.entropy — see apl.score (loaded as a top-level apl function by apl/init.lua).
--
-- An estimate is a function of (seed, prompt, sample) only, so the same prompt gets the same
-- estimate in any batch at any position (the loop's candidate prompts differ from step to step):
-- the samples' generators are keyed by the prompt's ids (core/generate.c), and so are their
-- length limits when max_new_tokens is a range (apl.generate's lengths_by_prompt).
local score = require "apl.score"

return function(model, tok, prompts, opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.lengths_by_prompt = true
    return score.entropy(model, tok, prompts, o)
end
