-- acquisition/entropy.lua — predictive entropy of the policy on the prompt: the mean over N
-- samples of −Σ token log-probs (config.entropy_samples). High entropy: the model is unsure what
-- to write, so a preference there may teach it most.
-- Interface (see acquisition/random.lua): M.score(ctx, batch) -> one score per pair, highest first.
local M = {}

-- Each pair scores its own prompt's entropy; a prompt is sampled once however many pairs share it.
function M.score(ctx, batch)
    local prompts, index = {}, {}
    for _, p in ipairs(batch) do
        if not index[p.prompt] then
            prompts[#prompts + 1] = p.prompt
            index[p.prompt] = #prompts
        end
    end
    local h = ctx:entropy(prompts)
    local scores = {}
    for i, p in ipairs(batch) do scores[i] = h[index[p.prompt]] end
    return scores
end

return M
