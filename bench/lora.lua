-- bench/lora.lua — a DPO step on GPT-2 124M's config (random fp32 weights) with LoRA adapters
-- (r = 16 on c_attn, c_proj and c_fc: attention and MLP) against the same step training every
-- weight, each in its own process so that each peak RSS is that step's own:
--   dpo_step_lora      step time, LoRA (apl) vs full (baseline)                       s
--   dpo_step_lora_rss  peak RSS of the process, LoRA vs full (no θ0 copy, no Adam state
--                      for the base weights)                                          MB
--
--   ./apl bench/lora.lua [--quick]          prints JSON lines {"name":..,"apl":..,"baseline":..}
--   ./apl bench/lora.lua --one full|lora    one side, as a JSON line (what the first runs twice)
local B = dofile((package.apl_root or ".") .. "/bench/common.lua")
local cjson = require "cjson"
local rng = require "apl.rng"

local CFG = { model_type = "gpt2", n_layer = 12, n_embd = 768, n_head = 12, vocab_size = 50257,
              n_positions = 1024 }
local LORA = { r = 16, alpha = 32, targets = { "c_attn", "c_proj", "c_fc" }, seed = 1 }
local TOK = { eos_id = 50256, pad_id = 50256 }

-- One side: the model, its reference (the adapters off, or a copy of the weights), Adam, and the
-- step timed as bench/compute.lua times the full one (the reference cache cleared each run).
local function one(kind)
    local quick = B.quick()
    local np, T = quick and 1 or 4, quick and 64 or 128
    local model = apl.model.init(CFG, { seed = 0 })
    if kind == "lora" then apl.lora.attach(model, LORA) end
    local tr = apl.dpo.new { policy = model, ref = model, tok = TOK, beta = 0.1, lr = 1e-6, batch_size = np }
    local batch = B.random_pairs(rng.new(4, "bench-lora"), np, T, CFG.vocab_size)
    local samples = B.time(function()
        tr.ref_cache = {}
        tr:step(batch)
    end)
    print(cjson.encode { kind = kind, secs = B.median(samples), samples = samples, peak_rss_mb = B.peak_rss_mb(),
                         config = string.format("B=%d pairs T=%d", np, T) })
end

local function run_side(kind)
    local root = package.apl_root or "."
    local cmd = string.format("%s/apl %s/bench/lora.lua --one %s%s", root, root, kind, B.quick() and " --quick" or "")
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    p:close()
    local line = out:match("(%b{})%s*$")
    return assert(line and cjson.decode(line), "bench/lora.lua --one " .. kind .. " printed no result:\n" .. out)
end

local function main()
    for i, a in ipairs(arg or {}) do
        if a == "--one" then return one(arg[i + 1]) end
    end
    local full, lora = run_side("full"), run_side("lora")
    local config = string.format("%s, r=%d on %s", lora.config, LORA.r, table.concat(LORA.targets, ","))
    print(cjson.encode { name = "dpo_step_lora", apl = lora.secs, baseline = full.secs, unit = "s",
                         samples = lora.samples, baseline_samples = full.samples, config = config })
    print(cjson.encode { name = "dpo_step_lora_rss", apl = lora.peak_rss_mb, baseline = full.peak_rss_mb,
                         unit = "MB", config = config })
end

main()
