-- apl.train — what the DPO and SFT trainers share: the optimizer options, minibatch slicing,
-- epochs with a progress line, and averaging per-step metrics.
--
--   local train = require "apl.train"
--   local opt = train.optim(model, o, 1e-6)                -- Adam from {lr=, weight_decay=, ...}
--   for chunk in train.slices(list, 4) do ... end          -- consecutive slices of at most 4
--   local mean = train.epoch(trainer, data, {shuffle_seed = 1}, "dpo")   -- calls trainer:step
local C = require "apl.core.compute"
local progress = require "apl.progress"
local rng = require "apl.rng"

local M = {}

-- Adam over model from the trainer's options: lr (default_lr), weight_decay, grad_clip, and
-- Adam's beta1, beta2, eps (0.9, 0.999, 1e-8).
function M.optim(model, o, default_lr)
    return C.optim(model, { lr = o.lr or default_lr, weight_decay = o.weight_decay,
                            grad_clip = o.grad_clip, beta1 = o.beta1, beta2 = o.beta2, eps = o.eps })
end

-- Batch sizes from the constructor's options; micro_batch_size defaults to batch_size.
function M.sizes(o, fname)
    local bs = o.batch_size or 64
    local mbs = o.micro_batch_size or bs
    if math.type(bs) ~= "integer" or bs < 1 or math.type(mbs) ~= "integer" or mbs < 1 then
        error(fname .. ": batch_size and micro_batch_size must be integers >= 1", 3)
    end
    return bs, mbs
end

-- Iterates over consecutive slices of list with at most k items: first index, slice.
function M.slices(list, k)
    local i = 1
    return function()
        if i > #list then return nil end
        local first = i
        local s = table.move(list, i, math.min(i + k - 1, #list), 1, {})
        i = i + k
        return first, s
    end
end

-- Mean of each numeric field over a list of metric tables, weighted by w[i] (or equally).
function M.mean(list, w)
    local sum, total = {}, 0
    for i, m in ipairs(list) do
        local wi = w and w[i] or 1
        total = total + wi
        for k, v in pairs(m) do sum[k] = (sum[k] or 0) + wi * v end
    end
    for k, v in pairs(sum) do sum[k] = v / total end
    return sum
end

-- One pass over data in minibatches of trainer.batch_size (shuffled when opts.shuffle_seed is
-- set); returns the metrics averaged over steps weighted by minibatch size, and the step list.
function M.epoch(trainer, data, opts, phase)
    opts = opts or {}
    local order = {}
    for i = 1, #data do order[i] = data[i] end
    if opts.shuffle_seed then rng.new(opts.shuffle_seed, phase, "shuffle"):shuffle(order) end
    local steps, sizes = {}, {}
    local p = progress.new(phase, #order)
    for first, batch in M.slices(order, trainer.batch_size) do
        local m = trainer:step(batch)
        steps[#steps + 1], sizes[#sizes + 1] = m, #batch
        p:update(first + #batch - 1, string.format("loss %.4f", m.loss))
    end
    p:done()
    return M.mean(steps, sizes), steps
end

return M
