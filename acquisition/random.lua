-- acquisition/random.lua — every candidate pair equally likely (the method's baseline).
--
-- The interface of every acquisition function (one file each; a recipe names it by file name):
--   M.score(ctx, batch) -> scores      required. batch: list of {prompt=, a=, b=} (two completions
--                                      of one prompt by the current policy). Returns one number per
--                                      pair; the loop acquires the `batch` highest.
--   M.prefilter(ctx, prompts) -> prompts   optional. Runs before generation on oversample × sample
--                                      prompts ({prompt=} rows) and returns the ones to keep.
-- ctx: policy, ref (θ0), tok, beta, seed, step, config (the loop's knobs), rng (seeded by
-- (seed, step)), and helpers: ctx:entropy(prompts) -> list, ctx:implicit_rewards(batch) -> ra, rb
-- (lists of β·log πθ/π0 for completions a and b), ctx:generate(prompts, opts), ctx:top(scores, k)
-- (indices of the k highest scores).
local M = {}

function M.score(ctx, batch)
    local scores = {}
    for i = 1, #batch do scores[i] = ctx.rng:uniform() end
    return scores
end

return M
