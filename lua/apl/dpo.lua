-- apl.dpo — Direct Preference Optimisation: a trainer holding the policy, the frozen reference
-- (theta0) and an Adam optimizer.
--
--   local tr = apl.dpo.new{policy = policy, ref = ref, tok = tok, beta = 0.2, lr = 1e-6,
--                          loss = "sigmoid", batch_size = 64, micro_batch_size = 8,
--                          cache_file = run.dir .. "/ref_logps.jsonl"}
--   local m = tr:step{{prompt = "Q", chosen = " good", rejected = " bad"}, ...}
--   print(m.loss, m["rewards/margins"], m.grad_norm)
--   local mean = tr:epoch(dataset, {shuffle_seed = 3})
--   tr:reset()                       -- policy back to theta0, optimizer cleared, no disk read
--
-- ref is theta0, the policy's reference: ref = policy (or none) takes policy:reference(), which
-- for a model with LoRA adapters is the same weights with the adapters off (no second copy) and
-- otherwise a copy of the weights as they are now; reset puts the policy back there (the adapters
-- re-drawn from their seed, or the copy restored). Another model given as ref is copied into the
-- policy by reset. Pairs are {prompt=, chosen=, rejected=} strings
-- (chosen/rejected get tok.eos_id appended, as TRL does; add_eos = false turns that off) or
-- {prompt_ids=, chosen_ids=, rejected_ids=} used as given.
--
-- Reference log-probs are computed once per sequence and kept in memory keyed by a hash of the
-- token ids, and appended to cache_file (JSONL {"key":..,"logp":..}, fsynced; a torn or corrupt
-- line is skipped and reported in tr.cache_warning) when given, which a new trainer reads back:
-- later epochs, reset rounds and resumed runs never repeat the reference forward.
-- tr.ref_forwards counts the sequences the reference has scored.
--
-- Several processes (apl.dist): every rank steps with the same whole minibatch and computes its
-- block of it (apl.train says how the update stays the one of a single process). Each rank scores
-- the reference on the new sequences of its block and the ranks exchange them, so every rank's
-- cache holds them all and tr.ref_forwards counts them all; rank 0 alone reads and appends
-- cache_file and sends what it read to the others. The metrics are the whole minibatch's.
--
-- Options: beta (0.2), lr (1e-6), loss ("sigmoid" | "ipo" | "hinge"), label_smoothing (0),
-- batch_size (64), micro_batch_size (= batch_size; gradients accumulate, the update is the one
-- a single batch gives), weight_decay (0, decoupled), grad_clip (none), beta1/beta2/eps (Adam's),
-- cache_file, add_eos, dist (apl.train: false for a trainer one rank uses alone).
-- Step metrics use TRL's names: loss, rewards/chosen, rewards/rejected, rewards/margins,
-- rewards/accuracies, logps/chosen, logps/rejected, and grad_norm (before clipping).
local C = require "apl.core.compute"
local cjson_safe = require "cjson.safe"
local dist = require "apl.dist"
local sys = require "apl.core.sys"
local score = require "apl.score"
local train = require "apl.train"

local M = {}
local Trainer = {}
Trainer.__index = Trainer
local SEP = { -1 } -- after each part of a key: no token id is -1

-- The key of a sequence: FNV-1a 64 over the ids, one whole word each, with -1 (no id) after the
-- prompt and after the completion, and the lengths. Existing caches hold these keys: changing
-- them would orphan every one (tests/lua/test_dpo.lua checks them against the first Lua loop).
local function hash_ids(prompt, completion)
    local h
    for _, ids in ipairs({ prompt, completion }) do h = sys.fnv1a_ids(SEP, sys.fnv1a_ids(ids, h)) end
    return string.format("%016x:%d:%d", h, #prompt, #completion)
end
M.hash_ids = hash_ids

-- The cache is a journal (apl.core.sys): lines {"key":..,"logp":..}, each on disk before the
-- step goes on. It is lenient: a torn last line (a killed run) or any corrupt line only costs
-- recomputing that sequence, so it is skipped and reported, never an error that loses a run.
-- With several ranks, rank 0 alone opens it; the others get its entries, warning or error.
function Trainer:open_cache()
    local function read()
        local ok, j, lines, warning = pcall(sys.journal_open, self.cache_file, { lenient = true, noun = "cache line" })
        if not ok then return nil, tostring(j):gsub("^apl%.sys%.journal_open: ", "") end
        self.cache_journal = j
        if warning then io.stderr:write("apl.dpo: ", warning, "\n") end
        local cache, decode = {}, cjson_safe.decode
        for _, line in ipairs(lines) do
            local r = decode(line)
            if r and type(r.key) == "string" and math.type(r.logp) then cache[r.key] = r.logp end
        end
        return cache, warning
    end
    local cache, warning
    if self.dist then cache, warning = dist.from_root(read) else cache, warning = read() end
    if not cache then error("apl.dpo.new: cache_file: " .. warning, 3) end
    self.ref_cache, self.cache_warning = cache, warning
end

-- Appends entries {key, logp} in one write and one fsync. A non-finite log-prob has no JSON
-- spelling: it stays in memory only.
function Trainer:save_cache(entries)
    if not self.cache_journal or #entries == 0 then return end
    local lines = {}
    for _, e in ipairs(entries) do
        local v = e[2]
        if v == v and v ~= math.huge and v ~= -math.huge then
            lines[#lines + 1] = string.format('{"key":"%s","logp":%.9g}', e[1], v)
        end
    end
    self.cache_journal:append(lines)
end

local function ids_of(tok, pair, text_key, ids_key, add_eos, i)
    if pair[ids_key] then return pair[ids_key] end
    local s = pair[text_key]
    if type(s) ~= "string" then
        error(string.format("apl.dpo: pair %d needs %s (string) or %s (ids)", i, text_key, ids_key), 4)
    end
    local ids = tok:encode(s)
    if add_eos and text_key ~= "prompt" then ids[#ids + 1] = tok.eos_id end
    return ids
end

-- {p=, c=, r=, kc=, kr=} for each pair: token ids and the keys of prompt + chosen and prompt +
-- rejected. Made once per pair table and kept (weakly) for the trainer's life: later steps,
-- epochs and reset rounds neither re-tokenise nor re-hash. A pair is read once: change a pair's
-- text and it must be a new table.
function Trainer:encode(batch)
    local out, memo = {}, self.encoded
    for i, pr in ipairs(batch) do
        local e = memo[pr]
        if not e then
            e = {
                p = ids_of(self.tok, pr, "prompt", "prompt_ids", self.add_eos, i),
                c = ids_of(self.tok, pr, "chosen", "chosen_ids", self.add_eos, i),
                r = ids_of(self.tok, pr, "rejected", "rejected_ids", self.add_eos, i),
            }
            e.kc, e.kr = hash_ids(e.p, e.c), hash_ids(e.p, e.r)
            memo[pr] = e
        end
        out[i] = e
    end
    return out
end

-- The sequences of enc[first..last] the reference has not scored: pairs with both unseen (scored
-- packed, the prompt once) and lone sequences {key, prompt ids, completion ids}. A sequence
-- belongs to the first pair that has it, even one before first: the ranks' blocks together
-- score exactly the sequences one process scores, each once.
function Trainer:unscored(enc, first, last)
    local both, lone, seen = {}, {}, {}
    local function new(k) return self.ref_cache[k] == nil and not seen[k] end
    for i = 1, last do
        local e = enc[i]
        if i < first then -- an earlier block's: seen, not ours to score
        elseif e.kc ~= e.kr and new(e.kc) and new(e.kr) then
            both[#both + 1] = e
        else
            if new(e.kc) then lone[#lone + 1] = { e.kc, e.p, e.c } end
            seen[e.kc] = true -- chosen == rejected: scored once
            if new(e.kr) then lone[#lone + 1] = { e.kr, e.p, e.r } end
        end
        seen[e.kc], seen[e.kr] = true, true
    end
    return both, lone
end

-- Fills e.rc, e.rr (reference log-probs) for each encoded pair. Scores the unseen sequences of
-- the block first..last (default all); distributed, the other ranks score the rest, and every
-- rank gets every rank's new log-probs.
function Trainer:ref_logps(enc, first, last)
    local both, lone = self:unscored(enc, first or 1, last or #enc)
    local new = {} -- {key, logp}
    local function keep(k, v) new[#new + 1] = { k, v } end
    if #both > 0 then
        local p, c, r = {}, {}, {}
        for i, e in ipairs(both) do p[i], c[i], r[i] = e.p, e.c, e.r end
        local lc, lr = score.logprob_pairs_ids(self.ref, self.tok, p, c, r,
            { batch_size = self.micro_batch_size }, "dpo: reference")
        lc, lr = lc:totable(), lr:totable()
        for i, e in ipairs(both) do keep(e.kc, lc[i]); keep(e.kr, lr[i]) end
    end
    if #lone > 0 then
        local p, c = {}, {}
        for i, s in ipairs(lone) do p[i], c[i] = s[2], s[3] end
        local lp = score.logprob_ids(self.ref, self.tok, p, c, { batch_size = 2 * self.micro_batch_size },
            "dpo: reference"):totable()
        for i, s in ipairs(lone) do keep(s[1], lp[i]) end
    end
    if self.dist then -- every rank's new entries, in rank order, on every rank
        local all = {}
        for _, part in ipairs(dist.all_gather_object(new)) do table.move(part, 1, #part, #all + 1, all) end
        new = all
    end
    for _, kv in ipairs(new) do self.ref_cache[kv[1]] = kv[2] end
    self.ref_forwards = self.ref_forwards + #new
    self:save_cache(new)
    for _, e in ipairs(enc) do e.rc, e.rr = self.ref_cache[e.kc], self.ref_cache[e.kr] end
end

local METRICS = { "loss", "rewards/chosen", "rewards/rejected", "rewards/margins",
                  "rewards/accuracies", "logps/chosen", "logps/rejected" }

-- Forward and backward over a minibatch of pairs (any size; micro-batches accumulate into the
-- policy's gradients, scaled so that they sum to the minibatch mean's); returns the metrics.
-- Distributed, this rank's block alone, with the same scale: the ranks' gradients sum to the
-- minibatch mean's. The whole minibatch is encoded on every rank (its keys tell which rank scores
-- a shared sequence; a bad pair raises on every rank alike).
function Trainer:accumulate(batch)
    if #batch == 0 then error("apl.dpo: a step needs at least one pair", 3) end
    local enc = self:encode(batch)
    local first, last = train.shard(self, #enc)
    self:ref_logps(enc, first, last)
    local sum = { 0, 0, 0, 0, 0, 0, 0 } -- METRICS' order
    for _, mb in train.slices(table.move(enc, first, last, 1, {}), self.micro_batch_size) do
        local p, c, r, rc, rr = {}, {}, {}, {}, {}
        for i, e in ipairs(mb) do p[i], c[i], r[i], rc[i], rr[i] = e.p, e.c, e.r, e.rc, e.rr end
        local out = C.dpo_accumulate(self.policy, p, c, r, rc, rr, {
            beta = self.beta, loss = self.loss, label_smoothing = self.label_smoothing,
            scale = 1 / #enc, pad_id = self.tok.pad_id or self.tok.eos_id,
        })
        sum[1] = sum[1] + out.loss_sum
        for i = 1, #mb do
            local wc, wr = out.reward_chosen[i], out.reward_rejected[i]
            sum[2], sum[3], sum[4] = sum[2] + wc, sum[3] + wr, sum[4] + (wc - wr)
            sum[5] = sum[5] + (wc > wr and 1 or 0)
            sum[6], sum[7] = sum[6] + out.logp_chosen[i], sum[7] + out.logp_rejected[i]
        end
    end
    local m = {}
    for i, v in ipairs(train.sum(self, sum)) do m[METRICS[i]] = v / #enc end
    return m
end

-- One optimizer step over a minibatch of pairs.
function Trainer:step(batch)
    local m = self:accumulate(batch)
    m.grad_norm = self.opt:step()
    return m
end

function Trainer:epoch(dataset, opts)
    return train.epoch(self, dataset, opts, "dpo")
end

-- Policy back to theta0 (in memory, no disk read) and a fresh optimizer state.
function Trainer:reset()
    if self.ref:is_reference_of(self.policy) then
        self.policy:reset()
    else
        self.policy:copy_from(self.ref)
    end
    self.opt:reset()
end

function M.new(o)
    local fname = "apl.dpo.new"
    if not (o and o.policy and o.tok) then error(fname .. ": needs policy and tok", 2) end
    local d = C.dpo_options(o, fname) -- beta, loss, label_smoothing: defaults and checks (lcompute.c)
    local self = setmetatable({
        policy = o.policy, tok = o.tok, beta = d.beta,
        ref = (o.ref == nil or rawequal(o.ref, o.policy)) and o.policy:reference() or o.ref,
        loss = d.loss, label_smoothing = d.label_smoothing,
        add_eos = o.add_eos ~= false,
        cache_file = o.cache_file, ref_cache = {}, ref_forwards = 0,
        encoded = setmetatable({}, { __mode = "k" }),
    }, Trainer)
    if self.add_eos and not o.tok.eos_id then self.add_eos = false end
    train.setup(self, o.policy, o, 1e-6, fname)
    if self.cache_file then self:open_cache() end
    return self
end

-- The loss formula alone, for checks: mean loss over pairs and its gradient in the policy
-- log-probs, from per-sequence log-probs (lists). opts: beta, loss, label_smoothing.
M.loss = C.dpo_loss

return M
