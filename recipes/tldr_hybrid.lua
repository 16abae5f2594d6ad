-- recipes/tldr_hybrid.lua — Active Preference Learning on TL;DR summarisation (the method's
-- Table 1, TLDR column): Pythia 1B SFT writes summaries of Reddit posts; an LLM judge picks the
-- better summary; win-rate is measured against the human-written references.
--
--   apl recipes/tldr_hybrid.lua --model pythia-1b-sft --data tldr/ --judge-url https://api.openai.com/v1 \
--       --judge-model gpt-4o-mini --acquisition hybrid --seed 1 --out runs/tldr-hybrid-s1
--   apl recipes/tldr_hybrid.lua --resume runs/tldr-hybrid-s1        # after a crash or Ctrl-C
-- --data: a folder with train.jsonl and test.jsonl (or valid.jsonl), or one JSONL file to split;
-- rows have subreddit, title, post and summary.
local data = require "apl.data"

local a = require("apl.args").parse(arg, {
    { "model", "DIR", "initial policy θ0 (Pythia 1B SFT, Hugging Face folder)", env = "APL_MODEL", required = true, dir = true },
    { "data", "PATH", "TL;DR JSONL file or folder", env = "APL_DATA", required = true, exists = true },
    { "judge-url", "URL", "OpenAI-compatible endpoint", env = "APL_JUDGE_URL", required = true },
    { "judge-model", "NAME", "judge model", env = "APL_JUDGE_MODEL", required = true },
    { "api-key-env", "VAR", "variable holding the API key", default = "OPENAI_API_KEY", env_var = true },
    { "acquisition", "NAME", "random | entropy | certainty | hybrid | uncertainty", default = "hybrid", module = "acquisition" },
    { "seed", "N", "seed of every random choice", default = 1, number = true },
    { "device", "DEV", "cpu or cuda", env = "APL_DEVICE" },
    { "out", "DIR", "run folder (default runs/tldr-<acquisition>-s<seed>)" },
    { "resume", "DIR", "continue the run in DIR" },
})

-- Knobs ---------------------------------------------------------------------------------------
local knobs = {
    acquisition = a.acquisition,
    budget = 1280,              -- B: labels acquired in all (10 steps of M)
    batch = 128,                -- M
    sample = 2048,              -- S
    oversample = 4,             -- J
    entropy_samples = 8,        -- N
    epochs = 70,
    beta = 0.2,
    lr = 1e-6,
    minibatch = 64,
    temperature = { train = 0.7, test = 0.25, oracle = 0.05 },
    max_new_tokens = 128,
    seed = a.seed,
    waypoints = { 128, 256, 384, 512, 640, 768, 896, 1024, 1152, 1280 },
    baseline = "reference",     -- win-rate against the human summaries
    n_test = 512,
}

local policy = apl.model.load(a.model, { device = a.device })
local tok = apl.tokenizer.load(a.model)
-- Posts of 200–1000 characters, formatted "SUBREDDIT: r/..\nTITLE: ..\nPOST: ..\nTL;DR:".
local pool, test = data.tldr_splits(a.data, { n_test = knobs.n_test, seed = a.seed })

-- The loop ------------------------------------------------------------------------------------
knobs.policy, knobs.tok, knobs.pool, knobs.test = policy, tok, pool, test
knobs.oracle = { base_url = a.judge_url, model = a.judge_model, api_key_env = a.api_key_env, template = "tldr" }
knobs.out = a.out or string.format("runs/tldr-%s-s%d", a.acquisition, a.seed)
knobs.resume, knobs.args = a.resume, a
local result = apl.loop.run(knobs)

-- Results -------------------------------------------------------------------------------------
apl.report { result.dir }
print("plots: " .. result.plots.winrate .. "  " .. result.plots.bt)
