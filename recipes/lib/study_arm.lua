-- recipes/lib/study_arm.lua — one arm (acquisition function, seed) of recipes/study.lua: the loop
-- on the study's SFT policy, prompts and noisy judge. recipes/sweep.lua runs it once per arm:
--   apl recipes/sweep.lua --recipe recipes/lib/study_arm.lua --acquisitions random,certainty \
--       --seeds 1-8 --out build/study/runs/x --cache build/study
-- It takes the recipes' protocol flags; the knobs below are the study's design (recipes/study.lua
-- explains each number). The prepared pieces must exist already (study.lua makes them).
local study_data = require "recipes.lib.study_data"
local study_judge = require "recipes.lib.study_judge"
local recipe = require "apl.recipe"
local tokenizer = require "apl.tokenizer"
local apl_model = require "apl.model"
local loop = require "apl.loop"

local M = {}

-- The design's loop knobs (see recipes/study.lua's header for why each).
M.KNOBS = {
    batch = 16,                 -- M: pairs labelled per step
    sample = 128,               -- S: prompts scored per step (M/S = 1/8)
    oversample = 2,             -- J: the hybrid ranks J·S prompts by entropy first
    entropy_samples = 4,        -- N: samples per prompt for predictive entropy
    epochs = 4,
    beta = 0.2,
    lr = 5e-4,
    minibatch = 16,
    temperature = { train = 0.7, test = 0.25 },
    baseline = "initial",
    gen_batch_size = 128,
    dataset = "study",
}
M.WAYPOINTS = { 32, 64, 96, 128, 192, 256 }
M.N_TEST = 300
M.MAX_NEW_TOKENS = { 12, 20 }
M.POOL = { n = 4000, seed = 11 }   -- prompt pool (train)
M.TEST = { n = 300, seed = 12 }    -- held-out prompts: all of them at every waypoint

function M.spec()
    local spec = {
        { "acquisition", "NAME", "random | entropy | certainty | hybrid | uncertainty", default = "random",
          module = "acquisition" },
        { "seed", "N", "seed of every random choice (the judge's noise too)", default = 1, integer = true },
        { "cache", "DIR", "the prepared tokenizer and policy (recipes/study.lua makes them)", default = "build/study" },
        { "out", "DIR", "run folder" },
        { "resume", "DIR", "continue the run in DIR" },
    }
    for _, s in ipairs(recipe.protocol_flags { waypoints = M.WAYPOINTS, max_new_tokens = M.MAX_NEW_TOKENS,
                                               n_test = M.N_TEST }) do
        spec[#spec + 1] = s
    end
    return spec
end

function M.knobs(a)
    local knobs = {}
    for k, v in pairs(M.KNOBS) do knobs[k] = v end
    return recipe.protocol(a, M.WAYPOINTS, knobs)
end

local function main(argv)
    local a = require("apl.args").parse(argv, M.spec())
    local knobs = M.knobs(a)
    recipe.print_config(a, knobs)
    local cache = { tok = a.cache .. "/tok", model = a.cache .. "/sft" }
    local tok = tokenizer.load(cache.tok)
    local longest = recipe.longest_prompt(tok, study_data.prompts(M.POOL), study_data.prompts(M.TEST))
    recipe.check_lengths(a, longest, study_data.MODEL.n_positions)
    knobs.tok, knobs.pool, knobs.test = tok, study_data.prompts(M.POOL), study_data.prompts(M.TEST)
    knobs.policy = apl_model.load(cache.model)
    knobs.oracle = study_judge.new { seed = knobs.seed }
    knobs.out = a.out or string.format("runs/study-%s-s%d", knobs.acquisition, knobs.seed)
    knobs.resume, knobs.args = a.resume, a
    local t0 = os.clock()
    local result = loop.run(knobs)
    knobs.policy:free()
    io.write(string.format("study arm %s-s%d: %.1f s CPU\n", knobs.acquisition, knobs.seed, os.clock() - t0))
    return result
end

-- Run as a script (the sweep's child), or required for M.KNOBS (the study and its tests).
if arg and arg[0] and arg[0]:match("study_arm%.lua$") then main(arg) end
return M
