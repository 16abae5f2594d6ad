-- apl.train — what the DPO and SFT trainers share: the optimizer options, minibatch slicing,
-- data parallelism over apl.dist's ranks, epochs with a progress line, and averaging metrics.
--
--   local train = require "apl.train"
--   train.setup(trainer, model, o, 1e-6, "apl.dpo.new")   -- batch sizes, dist, Adam (trainer.opt)
--   for chunk in train.slices(list, 4) do ... end          -- consecutive slices of at most 4
--   local first, last = train.shard(trainer, #batch)       -- this rank's block of a minibatch
--   local sums = train.sum(trainer, {loss_sum, n})         -- summed over the ranks
--   local mean = train.epoch(trainer, data, {shuffle_seed = 1}, "dpo")   -- calls trainer:step
--
-- Data parallelism: in a run of several processes (apl.dist) every rank calls tr:step with the
-- same whole minibatch. Each computes the gradients of its block (train.shard), scaled by the
-- whole minibatch, and opt:step all-reduces them (a sum) before clipping and Adam, so every rank
-- applies the update one process computes on the whole minibatch. Option dist = false makes a
-- trainer that one rank uses alone: it computes everything itself and waits for no other rank.
local C = require "apl.core.compute"
local dist = require "apl.dist"
local progress = require "apl.progress"
local rng = require "apl.rng"

local M = {}

-- Sets trainer.batch_size and trainer.micro_batch_size (default batch_size), trainer.dist (the
-- trainer works with the other ranks) and trainer.opt: Adam over model from lr (default_lr),
-- weight_decay, grad_clip, and Adam's beta1, beta2, eps (0.9, 0.999, 1e-8).
function M.setup(trainer, model, o, default_lr, fname)
    local bs = o.batch_size or 64
    local mbs = o.micro_batch_size or bs
    if math.type(bs) ~= "integer" or bs < 1 or math.type(mbs) ~= "integer" or mbs < 1 then
        error(fname .. ": batch_size and micro_batch_size must be integers >= 1", 3)
    end
    if o.dist ~= nil and type(o.dist) ~= "boolean" then
        error(fname .. ": option 'dist' must be a boolean, got " .. type(o.dist), 3)
    end
    trainer.batch_size, trainer.micro_batch_size = bs, mbs
    trainer.dist = o.dist ~= false and dist.active()
    trainer.opt = C.optim(model, { lr = o.lr or default_lr, weight_decay = o.weight_decay,
                                   grad_clip = o.grad_clip, beta1 = o.beta1, beta2 = o.beta2, eps = o.eps })
    if trainer.dist then
        dist.join()
        trainer.opt:set_dist(true)
    end
end

-- This rank's block first..last of a minibatch of n items (last < first when it has none: it
-- still steps, with no gradient of its own); 1..n for a trainer that is not distributed.
function M.shard(trainer, n)
    if not trainer.dist then return 1, n end
    return dist.shard(n)
end

-- A list of numbers summed over the ranks (one collective); the list itself when not distributed.
function M.sum(trainer, list)
    return trainer.dist and dist.all_reduce_numbers(list) or list
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
