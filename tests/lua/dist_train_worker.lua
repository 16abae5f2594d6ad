-- tests/lua/dist_train_worker.lua — what test_dist_train.lua runs in each of several processes,
-- and in one process alone for the reference: DPO and SFT steps on tiny models. Writes what it
-- got to OUT/result.RANK (apl.dist.encode: numbers bit for bit).
--   ./apl tests/lua/dist_train_worker.lua OUT TOKENIZER_DIR
local T = require "tests.lib.test"
local dist = require "apl.dist"
local F = dofile(T.root() .. "/tests/lua/compute_fixture.lua")

local out, tok = arg[1], F.tok(arg[2])

local function pair(p, c, r) return { prompt = p, chosen = c, rejected = r } end
-- 7 pairs, so 2 ranks get uneven blocks (1..3, 4..7). Pair 5 repeats pair 2's chosen sequence
-- (rank 0 scores it, not rank 1), pair 4's chosen is its rejected, pair 6 repeats pair 1's prompt.
local DATA = {
    pair("the movie was", " good", " bad"),
    pair("i liked", " the film a lot", " nothing"),
    pair("great", " acting and a fine story", " plot"),
    pair("a dull", " plot", " plot"),
    pair("i liked", " the film a lot", " a dull and boring plot"),
    pair("the movie was", " not worth the ticket", " fine"),
    pair("not worth", " the ticket", " a dull and boring plot"),
}
-- The second step: pairs the cache has, pairs it has not.
local DATA2 = { DATA[7], DATA[1], pair("the film", " was good", " was bad"),
                pair("a fine", " story", " ticket"), DATA[3] }

local function dpo_trainer(o)
    local t = { policy = F.model(3), ref = F.model(13), tok = tok, beta = 0.3, lr = 1e-2, eps = 1,
                batch_size = 7, micro_batch_size = 2 }
    for k, v in pairs(o or {}) do t[k] = v end
    return apl.dpo.new(t)
end

local function sft_examples(pairs_)
    local ex = {}
    for i, p in ipairs(pairs_) do ex[i] = { prompt = p.prompt, completion = p.chosen } end
    return ex
end

local r = { w0 = F.flat_params(F.model(3)) }

-- DPO: two steps with a cache file, then a new trainer that reads it back (a torn last line in it).
local cache = out .. "/ref_logps.jsonl"
local tr = dpo_trainer { cache_file = cache }
r.dpo = { steps = { tr:step(DATA), tr:step(DATA2) }, ref_forwards = tr.ref_forwards, w = F.flat_params(tr.policy) }
if dist.is_root() then
    local f = assert(io.open(cache, "a"))
    f:write('{"key":"torn')
    f:close()
end
local tr2 = dpo_trainer { cache_file = cache }
r.reread = { warning = tr2.cache_warning, loss = tr2:step(DATA).loss, ref_forwards = tr2.ref_forwards }
-- A cache file rank 0 cannot open: the error on every rank.
r.bad_cache = select(2, pcall(dpo_trainer, { cache_file = out .. "/no/such/folder/ref_logps.jsonl" }))

-- SFT: two steps.
local sft = apl.sft.new { model = F.model(3), tok = tok, lr = 1e-2, eps = 1, batch_size = 7, micro_batch_size = 2 }
r.sft = { steps = { sft:step(sft_examples(DATA)), sft:step(sft_examples(DATA2)) }, w = F.flat_params(sft.model) }

-- A minibatch smaller than the number of ranks: rank 0's block is empty (1..0), and it still steps.
local one = dpo_trainer()
r.one = { steps = { one:step({ DATA[2] }) }, ref_forwards = one.ref_forwards, w = F.flat_params(one.policy) }
local sft1 = apl.sft.new { model = F.model(3), tok = tok, lr = 1e-2, eps = 1, batch_size = 7, micro_batch_size = 2 }
r.sft_one = { steps = { sft1:step(sft_examples({ DATA[3] })) }, w = F.flat_params(sft1.model) }

-- dist = false: rank 0 trains alone on the whole minibatch while rank 1 has finished. Last, so
-- that a collective it should not make finds no partner and fails.
if dist.is_root() then
    local alone = dpo_trainer { dist = false }
    r.alone = { steps = { alone:step(DATA) }, w = F.flat_params(alone.policy) }
end

local f = assert(io.open(string.format("%s/result.%d", out, dist.rank()), "wb"))
f:write(dist.encode(r))
f:close()
