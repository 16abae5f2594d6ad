-- tests/lua/dist_loop_script.lua — what each process of tests/lua/test_dist_loop.lua runs: one
-- apl.loop run, on the fake engine (tests/lua/fake_engine.lua) or on a tiny real GPT-2, its knobs
-- from a JSON argument. Writes what loop.run returned to <result>.<rank>.json, or the error it
-- raised to <result>.<rank>.err and exits 1.
--   apl [--nproc 2] tests/lua/dist_loop_script.lua '{"out": DIR, "result": PATH, ...}'
-- Other fields are loop knobs, or: tok (a tokenizer folder: the tiny real model instead of the
-- fake one), crash_at (the trainer raises during that step's training), fail_oracle_at (the Lua
-- oracle raises at its Nth pair).
local cjson = require "cjson"
local dist = require "apl.dist"
local fs = require "apl.fs"
local loop = require "apl.loop"
local sentiment = require "apl.sentiment"
local FE = dofile((package.apl_root or ".") .. "/tests/lua/fake_engine.lua")

local o = cjson.decode(arg[1])

local function prompts(n, prefix)
    local out = {}
    for i = 1, n do out[i] = { prompt = string.format("%s %d was", prefix, i) } end
    return out
end

-- test_loop.lua's knobs, with a sample and a test set that 2 ranks split unevenly.
local cfg = { acquisition = "certainty", budget = 8, batch = 4, sample = 9, epochs = 2, seed = 3,
              entropy_samples = 3, oversample = 2, max_new_tokens = 3, n_test = 7, quiet = true,
              pool = prompts(40, "movie"), test = prompts(7, "test") }
local calls = 0
cfg.oracle = function(p, a, b)
    calls = calls + 1
    if calls == o.fail_oracle_at then error("the judge fell over") end
    return sentiment.prefer(p, a, b)
end
if o.tok then
    cfg.tok = apl.tokenizer.load(o.tok)
    cfg.policy = apl.model.init({ model_type = "gpt2", n_layer = 1, n_embd = 32, n_head = 2,
        vocab_size = cfg.tok:vocab_size(), n_positions = 64 }, { seed = 1 })
    cfg.lr, cfg.minibatch, cfg.epochs, cfg.max_new_tokens = 1e-3, 4, 1, { 4, 8 }
    cfg.engine = o.crash_at and FE.crashing(o.crash_at) or nil
else
    cfg.policy, cfg.tok, cfg.engine = { bias = 0 }, {}, FE.new { crash_at = o.crash_at }
end
for k, v in pairs(o) do
    if k ~= "result" and k ~= "tok" and k ~= "crash_at" and k ~= "fail_oracle_at" then cfg[k] = v end
end

local ok, res = pcall(loop.run, cfg)
local path = string.format("%s.%d", o.result, dist.rank())
if not ok then
    fs.write(path .. ".err", tostring(res))
    os.exit(1)
end
fs.write(path .. ".json", cjson.encode(res))
