-- recipes/apl_imdb.lua — Active Preference Learning on IMDB (the method's Table 1, IMDB column):
-- GPT-2 large continues review openings; an LLM judge prefers the more positive continuation;
-- win-rate is measured against the initial model's completions.
--
--   apl recipes/apl_imdb.lua --model gpt2-large --data aclImdb --judge-url https://api.openai.com/v1 \
--       --judge-model gpt-4o-mini --acquisition certainty --seed 1 --out runs/imdb-certainty-s1
--   apl recipes/apl_imdb.lua --resume runs/imdb-certainty-s1        # after a crash or Ctrl-C
local data = require "apl.data"

local a = require("apl.args").parse(arg, {
    { "model", "DIR", "initial policy θ0 (GPT-2 large, Hugging Face folder)", env = "APL_MODEL", required = true, dir = true },
    { "data", "DIR", "the aclImdb folder", env = "APL_DATA", required = true, dir = true },
    { "judge-url", "URL", "OpenAI-compatible endpoint", env = "APL_JUDGE_URL", required = true },
    { "judge-model", "NAME", "judge model", env = "APL_JUDGE_MODEL", required = true },
    { "api-key-env", "VAR", "variable holding the API key", default = "OPENAI_API_KEY", env_var = true },
    { "acquisition", "NAME", "random | entropy | certainty | hybrid | uncertainty", default = "certainty", module = "acquisition" },
    { "seed", "N", "seed of every random choice", default = 1, number = true },
    { "device", "DEV", "cpu or cuda", env = "APL_DEVICE" },
    { "out", "DIR", "run folder (default runs/imdb-<acquisition>-s<seed>)" },
    { "resume", "DIR", "continue the run in DIR" },
})

-- Knobs ---------------------------------------------------------------------------------------
local knobs = {
    acquisition = a.acquisition,
    budget = 1280,              -- B: labels acquired in all (10 steps of M)
    batch = 128,                -- M: pairs acquired per step
    sample = 4000,              -- S: prompts sampled from the pool per step
    oversample = 8,             -- J: hybrid's entropy stage ranks J·S prompts
    entropy_samples = 8,        -- N
    epochs = 50,
    beta = 0.2,
    lr = 1e-6,
    minibatch = 64,
    temperature = { train = 0.7, test = 0.25, oracle = 0.05 },
    max_new_tokens = 64,
    seed = a.seed,
    waypoints = { 128, 256, 384, 512, 640, 768, 896, 1024, 1152, 1280 },
    baseline = "initial",       -- win-rate against θ0's completions
    n_test = 512,
}

local policy = apl.model.load(a.model, { device = a.device })
local tok = apl.tokenizer.load(a.model)
-- Prompts: review openings cut to a random 8–16 tokens (seeded per review).
local pool = data.imdb(a.data, { split = "train", tok = tok, seed = a.seed })
local test = data.imdb(a.data, { split = "test", tok = tok, seed = a.seed, limit = knobs.n_test })

-- The loop ------------------------------------------------------------------------------------
knobs.policy, knobs.tok, knobs.pool, knobs.test = policy, tok, pool, test
knobs.oracle = { base_url = a.judge_url, model = a.judge_model, api_key_env = a.api_key_env, template = "imdb" }
knobs.out = a.out or string.format("runs/imdb-%s-s%d", a.acquisition, a.seed)
knobs.resume, knobs.args = a.resume, a
local result = apl.loop.run(knobs)

-- Results -------------------------------------------------------------------------------------
apl.report { result.dir }
print("plots: " .. result.plots.winrate .. "  " .. result.plots.bt)
