-- apl.sft — supervised fine-tuning: next-token NLL on completions, prompts masked.
--
--   local tr = apl.sft.new{model = m, tok = tok, lr = 1e-4, batch_size = 16, micro_batch_size = 4}
--   local m = tr:step{{prompt = "Review: ", completion = "a fine film"}, ...}   -- {loss=, grad_norm=, tokens=}
--   local mean = tr:epoch(examples, {shuffle_seed = 1})
--
-- loss is the mean NLL per completion token over the minibatch (micro-batches accumulate to the
-- same gradient). Completions get tok.eos_id appended (add_eos = false turns that off), so the
-- model learns to stop. Examples may be pre-tokenized: {prompt_ids=, completion_ids=}.
-- Options: lr (1e-5), batch_size (64), micro_batch_size (= batch_size), weight_decay (0),
-- grad_clip (none), beta1/beta2/eps (Adam's), add_eos (true), dist (apl.train: false for a trainer
-- one rank uses alone). With several processes (apl.dist) every rank steps with the same whole
-- minibatch and computes its block, scaled by the whole minibatch's completion tokens.
local C = require "apl.core.compute"
local score = require "apl.score"
local train = require "apl.train"

local M = {}
local Trainer = {}
Trainer.__index = Trainer

function Trainer:encode(examples)
    local prompts, comps, texts_p, texts_c = {}, {}, {}, {}
    for i, e in ipairs(examples) do
        if e.prompt_ids then prompts[i], comps[i] = e.prompt_ids, e.completion_ids
        else texts_p[#texts_p + 1], texts_c[#texts_c + 1] = e.prompt, e.completion end
    end
    if #texts_p > 0 then
        local p, c = score.encode_pairs(self.tok, texts_p, texts_c, { add_eos = self.add_eos }, "apl.sft")
        local j = 0
        for i, e in ipairs(examples) do
            if not e.prompt_ids then
                j = j + 1
                prompts[i], comps[i] = p[j], c[j]
            end
        end
    end
    return prompts, comps
end

function Trainer:step(examples)
    if #examples == 0 then error("apl.sft: step needs at least one example", 2) end
    local prompts, comps = self:encode(examples)
    local tokens = 0
    for _, c in ipairs(comps) do tokens = tokens + #c end
    if tokens == 0 then error("apl.sft: the completions have no tokens", 2) end
    local lo, hi = train.shard(self, #examples) -- this rank's block, scaled by the whole's tokens
    prompts, comps = table.move(prompts, lo, hi, 1, {}), table.move(comps, lo, hi, 1, {})
    local nll = 0
    for first, p in train.slices(prompts, self.micro_batch_size) do
        local c = table.move(comps, first, first + #p - 1, 1, {})
        nll = nll + C.sft_accumulate(self.model, p, c, {
            scale = 1 / tokens, pad_id = self.tok.pad_id or self.tok.eos_id })
    end
    nll = train.sum(self, { nll })[1]
    return { loss = nll / tokens, grad_norm = self.opt:step(), tokens = tokens }
end

function Trainer:epoch(examples, opts)
    return train.epoch(self, examples, opts, "sft")
end

function M.new(o)
    local fname = "apl.sft.new"
    if not (o and o.model and o.tok) then error(fname .. ": needs model and tok", 2) end
    local self = setmetatable({
        model = o.model, tok = o.tok,
        add_eos = o.add_eos ~= false and o.tok.eos_id ~= nil,
    }, Trainer)
    train.setup(self, o.model, o, 1e-5, fname)
    return self
end

return M
