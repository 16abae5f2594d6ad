-- recipes/apl_imdb.lua — Active Preference Learning on IMDB (the method's Table 1, IMDB column):
-- GPT-2 large continues review openings; an LLM judge (the paper's Appendix A prompt,
-- gpt-4-1106-preview by default) picks the better whole review (prompt + completion): the most
-- positive, grammatical, consistent and without repetition, choosing even when neither is good;
-- win-rate is measured against the initial model's completions.
--
--   apl recipes/apl_imdb.lua --model gpt2-large-imdb --data aclImdb --acquisition certainty --seed 1 \
--       [--judge-url https://api.openai.com/v1] [--judge-model gpt-4-1106-preview] [--online] \
--       [--n-test 1024] [--waypoints 128,256,512,768] [--budget N] [--max-new-tokens 16-24] \
--       [--out runs/imdb-certainty-s1] [--print-config]
--   apl recipes/apl_imdb.lua --resume runs/imdb-certainty-s1        # after a crash or Ctrl-C
--
-- The judge defaults to the paper's, gpt-4-1106-preview (§3.2.2). Weaker judges are less
-- self-consistent (GPT-3.5-turbo agreed with itself on ~60% of pairs, GPT-4 on >90%: the paper's
-- Figure 1), and their labels are noise to DPO; examples/judge_consistency.lua measures yours.
-- Where the paper is silent the defaults follow its authors' code (github.com/willmuldrew/
-- active-preference-learning, sh/run-imdb2.sh and direct/), and say so.
local data = require "apl.data"
local recipe = require "apl.recipe"
local dist = require "apl.dist"

-- §5.6 Table 2 / Figure 2: win-rates at 128, 256, 512 and 768 labels; the budget ends there.
local WAYPOINTS = { 128, 256, 512, 768 }

local a = require("apl.args").parse(arg, recipe.spec {
    model = "initial policy θ0 (GPT-2 large fine-tuned on IMDB, edbeeching/gpt2-large-imdb)",
    data = "the aclImdb folder", data_is_dir = true, acquisition = "certainty",
    waypoints = WAYPOINTS, max_new_tokens = { 16, 24 }, n_test = 1024,
})

-- Knobs ---------------------------------------------------------------------------------------
local knobs = recipe.protocol(a, WAYPOINTS, {
    batch = 128,                -- M: pairs acquired per step (§5.4, Table 1)
    sample = 4000,              -- S: prompts sampled from the pool per step (§5.4, Table 1)
    oversample = 8,             -- J: hybrid's entropy stage ranks J·S prompts (§5.4)
    entropy_samples = 8,        -- N: samples per entropy estimate (§5.4; the authors' script used 32)
    epochs = 50,                -- fine-tuning epochs after each step (Table 1, Appendix E)
    beta = 0.2,                 -- β of the KL term (Table 1)
    lr = 1e-6,                  -- Adam (Table 1, after the DPO paper's v1)
    minibatch = 64,             -- Table 1 (the authors' script: batch 16 × 4 accumulation steps)
    temperature = { train = 0.7, test = 0.25, oracle = 0.05 },   -- §5.3
    -- max_new_tokens (--max-new-tokens, 16-24): each completion's length drawn uniformly from
    -- 16..24 tokens, as the authors' code does (--data.completion_min_len 16 --completion_max_len
    -- 24, per completion); the paper's examples are 21–24 tokens long.
    -- n_test (--n-test, 1024): §5.5 "Each evaluation is done against 1024 test prompts", drawn
    -- from the test split by the seed alone (the authors draw their test subset right after seeding).
    baseline = "initial",       -- §5.5: win-rate against θ0's completions
})
recipe.print_config(a, knobs)
recipe.check_lengths(a, 16)          -- prompts are at most 16 tokens (Appendix B)
recipe.preflight(a, "imdb")          -- the judge answers before any model or data work

local policy = apl.model.load(a.model, { device = a.device })
local tok = apl.tokenizer.load(a.model)
-- Prompts: review openings cut to a random 8–16 tokens, seeded per review (Appendix B). Reviews
-- of 200 characters or fewer are left out, as the authors' direct/data.py does.
local pool = data.imdb(a.data, { split = "train", tok = tok, seed = a.seed, min_chars = 200 })
local test = data.imdb(a.data, { split = "test", tok = tok, seed = a.seed, min_chars = 200 })

-- The loop ------------------------------------------------------------------------------------
knobs.policy, knobs.tok, knobs.pool, knobs.test = policy, tok, pool, test
knobs.oracle = { base_url = a.judge_url, model = a.judge_model, api_key_env = a.api_key_env, template = "imdb" }
knobs.out = a.out or string.format("runs/imdb-%s-s%d", a.acquisition, a.seed)
knobs.resume, knobs.args = a.resume, a
local result = apl.loop.run(knobs)

-- Results (rank 0 prints them) ----------------------------------------------------------------
if not dist.is_root() then return end
apl.report { result.dir }
print("plots: " .. result.plots.winrate .. "  " .. result.plots.bt)
