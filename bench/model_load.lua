-- bench/model_load.lua — time and peak memory of loading a GPT-2 124M checkpoint (random weights,
-- written once under build/bench/ by a separate process, so that writing it does not count).
--
--   ./apl bench/model_load.lua [--quick]
--   {"name":"model_load","apl_s":0.05,"peak_rss_mb":560,"ckpt_mb":498,...}
--
-- The loader maps the file (copy-on-write) and wraps its bytes without copying, so the load alone
-- touches almost nothing; peak_rss_mb is measured after a forward pass has read every weight,
-- which is the figure that matters (target: <= 1.2x the checkpoint).
local cjson = require "cjson"
local root = package.apl_root or "."
local B = dofile(root .. "/bench/common.lua")

local GPT2_124M = { model_type = "gpt2", vocab_size = 50257, n_embd = 768, n_layer = 12, n_head = 12,
    n_positions = 1024, eos_token_id = 50256, bos_token_id = 50256 }

local exists = require("apl.fs").exists

if arg[1] == "--write" then
    os.execute("mkdir -p '" .. arg[2] .. "'")
    apl.model.init(GPT2_124M, { seed = 0 }):save(arg[2])
    return
end

local dir = root .. "/build/bench/gpt2-124m"
local ckpt = dir .. "/model.safetensors"
if not exists(ckpt) or not exists(dir .. "/config.json") then
    local ok = os.execute("'" .. root .. "/apl' '" .. root .. "/bench/model_load.lua' --write '" .. dir .. "'")
    assert(ok, "bench/model_load.lua: could not write " .. ckpt)
end

local f = assert(io.open(ckpt, "rb"))
local ckpt_mb = f:seek("end") / 2 ^ 20
f:close()

local before = B.rss_mb()
local t0 = B.clock()
local m = apl.model.load(dir)
local secs = B.clock() - t0
local after_load = B.rss_mb()
m:forward({ { 464, 2068, 7586, 21831, 18045, 625, 262, 16931 } }) -- reads every weight once
local peak = B.peak_rss_mb()
-- peak_rss_mb counts the process's start-up (libtorch alone is ~150 MB); the load's own share is
-- the peak over what the process held before it
print(cjson.encode({ name = "model_load", apl_s = secs, peak_rss_mb = peak, ckpt_mb = ckpt_mb,
    rss_before_mb = before, peak_over_before_mb = peak - before, rss_after_load_mb = after_load,
    n_params = m:num_params(), ckpt = ckpt,
    config = "GPT-2 124M f32, load + one 8-token forward" }))
m:free()
