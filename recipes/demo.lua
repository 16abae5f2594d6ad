-- recipes/demo.lua — the whole loop in a few minutes on a CPU, offline: random vs certainty
-- acquisition on a tiny GPT-2 that writes short movie reviews, judged by a word-list oracle that
-- prefers the more positive completion. `make demo` runs it.
--
-- The first run prepares, once, under build/demo/: a byte-level BPE tokenizer learned on a
-- generated review corpus, prompt folders in the aclImdb layout, and the tiny model fine-tuned
-- on the corpus (apl.sft). Later runs reuse them. Each run writes build/demo/runs/<time>/.
--   apl recipes/demo.lua [--seeds N] [--out DIR] [--online] [--budget N] [--waypoints LIST]
--       [--max-new-tokens N|A-B] [--n-test N] [--print-config]
--   apl --nproc 2 recipes/demo.lua                 # the same runs, as 2 processes (apl.dist)
local data = require "apl.data"
local demo_data = require "recipes.lib.demo_data"
local sentiment = require "apl.sentiment"
local recipe = require "apl.recipe"
local dist = require "apl.dist"

local spec = {
    { "seeds", "N", "seeds per acquisition function", default = 3, integer = true, min = 1 },
    { "out", "DIR", "folder for the runs (default build/demo/runs/<time>)" },
}
-- The paper recipes' protocol flags; the demo evaluates after every step unless given waypoints,
-- and its prepared test folder holds 100 reviews.
for _, s in ipairs(recipe.protocol_flags { max_new_tokens = 16, n_test = 100 }) do spec[#spec + 1] = s end
local a = require("apl.args").parse(arg, spec)

-- Knobs ---------------------------------------------------------------------------------------
local acquisitions = { "random", "certainty" }
local knobs = recipe.protocol(a, nil, {
    batch = 16,                 -- M
    sample = 64,                -- S
    epochs = 4,
    beta = 0.2,
    lr = 1e-3,                  -- a tiny model moves at a far larger rate than GPT-2 large's 1e-6
    minibatch = 16,
    temperature = { train = 0.7, test = 0.25 },
    baseline = "initial",
    gen_batch_size = 64,
    dataset = "demo",           -- what the report's table calls these runs (its judge is a Lua function)
})
knobs.budget = knobs.budget or 128   -- B: 8 steps of M
recipe.print_config(a, knobs)
recipe.check_lengths(a, 4, demo_data.MODEL.n_positions) -- prompts are 2-4 tokens (data.imdb below)

-- Rank 0 prepares the cached folders (the others wait for it), then every rank reads them.
local cache = dist.from_root(demo_data.prepare, (package.apl_root or ".") .. "/build/demo")
local tok = apl.tokenizer.load(cache.tok)
-- Prompts: review openings of 2–4 tokens, through the IMDB loader.
local pool = data.imdb(cache.data, { split = "train", tok = tok, seed = 1, min_tokens = 2, max_tokens = 4 })
local test = data.imdb(cache.data, { split = "test", tok = tok, seed = 1, min_tokens = 2, max_tokens = 4 })
-- rank 0's clock names the folder for all
local out = a.out or dist.broadcast_object((package.apl_root or ".") .. "/build/demo/runs/" .. os.date("%Y%m%d-%H%M%S"), 0)

-- The loop, once per acquisition function and seed ---------------------------------------------
local dirs, t0 = {}, os.time()
for _, acquisition in ipairs(acquisitions) do
    for seed = 1, a.seeds do
        local cfg = { acquisition = acquisition, seed = seed, tok = tok, pool = pool, test = test,
                      policy = apl.model.load(cache.model), oracle = sentiment.prefer,
                      out = string.format("%s/%s-s%d", out, acquisition, seed) }
        for k, v in pairs(knobs) do cfg[k] = v end
        local result = apl.loop.run(cfg)
        cfg.policy:free()
        dirs[#dirs + 1] = result.dir
    end
end

-- Results (rank 0 prints them) ----------------------------------------------------------------
if not dist.is_root() then return end
print(string.format("\nwin-rate against the initial model (%d test prompts), after %d s:",
    math.min(knobs.n_test, #test), os.time() - t0))
apl.report(dirs)
print("per run: winrate.svg and bt_hist.svg in " .. table.concat(dirs, ", "))
print("browse the acquired pairs: apl examples/inspect_run.lua " .. dirs[#dirs] .. " score")
