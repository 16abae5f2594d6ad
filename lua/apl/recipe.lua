-- apl.recipe — what the paper's recipes share: their command line and how the protocol flags
-- (--seed, --n-test, --budget, --waypoints, --max-new-tokens, --online) become loop knobs.
--
--   local recipe = require "apl.recipe"
--   local a = require("apl.args").parse(arg, recipe.spec {
--       model = "initial policy θ0 (GPT-2 large)", data = "the aclImdb folder", data_is_dir = true,
--       acquisition = "certainty", waypoints = { 128, 256, 512, 768 }, max_new_tokens = { 16, 24 } })
--   local knobs = recipe.protocol(a, { 128, 256, 512, 768 }, { batch = 128, ... })
--   recipe.print_config(a, knobs)      -- --print-config: the knobs as JSON, then exit
--   recipe.check_lengths(a, 16)        -- prompts of <= 16 tokens + --max-new-tokens fit the model
--   recipe.check_lengths(a, recipe.longest_prompt(tok, pool, test))   -- prompts measured
--   recipe.preflight(a, "imdb")        -- the judge answers, before any model or data work
--
-- recipes/sweep.lua drives the recipes through these flags' names, so they stay as they are.
local cjson = require "cjson"
local fs = require "apl.fs"
local lengths = require "apl.lengths"
local dist = require "apl.dist"
local loop = require "apl.loop"

local M = {}

M.JUDGE_URL = "https://api.openai.com/v1"
-- The paper's judge (its §3.2.2 footnote). Weaker judges are less self-consistent: GPT-4 agreed
-- with itself on >90% of pairs, GPT-3.5-turbo on ~60% (its Figure 1); a judge that contradicts
-- itself teaches DPO noise (examples/judge_consistency.lua measures yours).
M.JUDGE_MODEL = "gpt-4-1106-preview"

local function show_lengths(m)
    return type(m) == "table" and string.format("%d-%d", m[1], m[2]) or tostring(m)
end

-- A problem found while checking the arguments: the message, and exit status 2 as for a bad flag.
local function refuse(msg)
    io.stderr:write("apl ", arg and arg[0] or "recipe", ": ", msg, "\n")
    os.exit(2)
end

-- The protocol flags, for any recipe. d: waypoints (the default list, or nil for "after every
-- step"), max_new_tokens (N or {lo, hi}), n_test (1024).
function M.protocol_flags(d)
    local wp = d.waypoints and table.concat(d.waypoints, ",") or "after every step"
    return {
        { "n-test", "N", "held-out prompts per evaluation, drawn by the seed", default = d.n_test or 1024,
          integer = true, min = 1 },
        { "waypoints", "LIST", "label counts to evaluate at, e.g. 128,256 (default " .. wp .. ")", list = true },
        { "budget", "N", "labels to acquire (default: the last waypoint)", integer = true, min = 1 },
        { "max-new-tokens", "N|A-B", "completion length, or a range drawn per completion",
          default = show_lengths(d.max_new_tokens), lengths = true },
        { "online", nil, "no reset: one gradient step per batch, Adam kept (Appendix D)", flag = true, default = false },
        { "lora-r", "N", "train LoRA adapters of rank N, not every weight (θ0: adapters off)", integer = true, min = 1 },
        { "lora-alpha", "A", "LoRA's scale is alpha / r (default alpha: 2·r)", number = true },
        { "lora-targets", "LIST", "modules to adapt, e.g. c_attn,c_proj (default: PEFT's for the family)" },
        { "print-config", nil, "print the loop's knobs as JSON and exit", flag = true, default = false },
    }
end

-- The whole command line of a paper recipe. d: model and data (help texts), data_is_dir (the
-- data is a folder, else a file or folder), acquisition (default), and protocol_flags' fields.
function M.spec(d)
    local spec = {
        { "model", "DIR", d.model, env = "APL_MODEL", required = true, dir = true },
        { "data", d.data_is_dir and "DIR" or "PATH", d.data, env = "APL_DATA", required = true,
          dir = d.data_is_dir or nil, exists = not d.data_is_dir or nil },
        { "judge-url", "URL", "OpenAI-compatible endpoint", env = "APL_JUDGE_URL", default = M.JUDGE_URL },
        { "judge-model", "NAME", "judge model (the paper's; weaker judges agree with themselves less)",
          env = "APL_JUDGE_MODEL", default = M.JUDGE_MODEL },
        { "api-key-env", "VAR", "variable holding the API key", default = "OPENAI_API_KEY", env_var = true },
        { "acquisition", "NAME", "random | entropy | certainty | hybrid | uncertainty", default = d.acquisition,
          module = "acquisition" },
        { "seed", "N", "seed of every random choice (the test set's too)", default = 1, integer = true },
    }
    for _, s in ipairs(M.protocol_flags(d)) do spec[#spec + 1] = s end
    for _, s in ipairs {
        { "device", "DEV", "cpu or cuda", env = "APL_DEVICE" },
        { "out", "DIR", "run folder (default runs/<dataset>-<acquisition>-s<seed>)" },
        { "resume", "DIR", "continue the run in DIR" },
    } do spec[#spec + 1] = s end
    for _, s in ipairs(d.extra or {}) do spec[#spec + 1] = s end
    return spec
end

-- Budget and waypoints from the flags. --waypoints alone: the budget is the last one (the loop's
-- default). --budget alone: the default waypoints up to it, and the budget itself when it lies
-- past them, so the last labels bought are evaluated. Both: as given (the loop stops at the
-- last waypoint).
function M.plan(a, default_waypoints)
    if a.waypoints or not default_waypoints then return a.budget, a.waypoints end
    local wp = {}
    for _, w in ipairs(default_waypoints) do
        if not a.budget or w <= a.budget then wp[#wp + 1] = w end
    end
    if a.budget and (#wp == 0 or wp[#wp] < a.budget) then wp[#wp + 1] = a.budget end
    return a.budget, wp
end

-- The knobs with the protocol flags applied: seed, n_test, budget, waypoints, max_new_tokens,
-- online (and the acquisition when the recipe has the flag). The budget is spelled out as the
-- loop would derive it, so --print-config shows it.
function M.protocol(a, default_waypoints, knobs)
    knobs.budget, knobs.waypoints = M.plan(a, default_waypoints)
    knobs.budget = knobs.budget or loop.default_budget(knobs.waypoints, knobs.batch or loop.defaults.batch)
    knobs.seed = a.seed or knobs.seed
    knobs.acquisition = a.acquisition or knobs.acquisition
    knobs.n_test, knobs.max_new_tokens, knobs.online = a.n_test, a.max_new_tokens, a.online
    knobs.lora = M.lora(a)
    return knobs
end

-- The loop's lora knob from --lora-r, --lora-alpha and --lora-targets: false without --lora-r.
function M.lora(a)
    if not a.lora_r then
        if a.lora_alpha or a.lora_targets then refuse("--lora-alpha and --lora-targets need --lora-r") end
        return false
    end
    local targets
    if a.lora_targets then
        targets = {}
        for t in a.lora_targets:gmatch("[^,]+") do targets[#targets + 1] = t end
    end
    return { r = a.lora_r, alpha = a.lora_alpha or 2 * a.lora_r, targets = targets }
end

-- With --print-config: writes the knobs (plain values only) as JSON and exits, before anything
-- is loaded; sweeps and users see what a run would be given.
function M.print_config(a, knobs)
    if not a.print_config then return end
    local plain = {}
    for k, v in pairs(knobs) do
        if type(v) ~= "userdata" and type(v) ~= "function" then plain[k] = v end
    end
    io.write(cjson.encode(plain), "\n")
    os.exit(0)
end


-- The positions a model folder's config.json allows (n_positions for GPT-2,
-- max_position_embeddings for the others), or nil when it does not say.
local function model_positions(dir)
    local ok, cfg = pcall(cjson.decode, fs.read(dir .. "/config.json") or "")
    if not ok or type(cfg) ~= "table" then return nil end
    return math.tointeger(cfg.n_positions or cfg.max_position_embeddings or cfg.n_ctx)
end

-- Refuses (exit 2) a run whose longest prompt (prompt_tokens: the recipe's bound, or
-- longest_prompt's measure) plus the longest completion (--max-new-tokens) does not fit the
-- model's positions: found with the arguments, before the model loads, not as a traceback from
-- inside generation. positions: the model's, or read from --model's config.json when nil. hint:
-- another way out the recipe offers (a flag that shortens its prompts), added to the message.
function M.check_lengths(a, prompt_tokens, positions, hint)
    positions = positions or model_positions(a.model)
    local _, hi = lengths.range(a.max_new_tokens)
    if not (positions and hi) or prompt_tokens + hi <= positions then return end
    local room = positions - prompt_tokens
    local fixes = {}
    if room >= 1 then fixes[1] = string.format("--max-new-tokens of at most %d", room) end
    fixes[#fixes + 1] = hint
    refuse(string.format("--max-new-tokens %s: prompts of up to %d tokens and %d new tokens need %d positions; "
        .. "the model%s has %d%s", show_lengths(a.max_new_tokens), prompt_tokens, hi, prompt_tokens + hi,
        a.model and " in " .. a.model or "", positions,
        #fixes > 0 and "; use " .. table.concat(fixes, ", or ") or "; use a model with more positions"))
end

-- The longest prompt of the lists (rows {prompt=}, or strings) as tok encodes it, for
-- check_lengths when the prompts' length is known only once the data are read: its length in
-- tokens (0 for no prompts). GPT-2's tokenizer encodes ~30 MB/s: seconds for TL;DR's posts.
function M.longest_prompt(tok, ...)
    local most = 0
    for _, list in ipairs { ... } do
        for _, r in ipairs(list) do
            local p = type(r) == "table" and r.prompt or r
            local n = #tok:encode(p)
            if n > most then most = n end
        end
    end
    return most
end

-- One small request to the judge with the run's URL, key and model (apl.oracle's preflight), so a
-- judge that is down, a wrong key or an unknown model stops the recipe before any model work,
-- with a message naming the URL and what failed (exit 1). With several processes rank 0 alone
-- asks, and every rank stops when it fails (rank 0 says why).
function M.preflight(a, template)
    local ok, err = pcall(dist.from_root, function()
        local o <close> = require("apl.oracle").openai { base_url = a.judge_url, model = a.judge_model,
            api_key_env = a.api_key_env, template = template, progress = false }
        o:preflight()
    end)
    if not ok then
        if dist.is_root() then io.stderr:write("apl ", arg and arg[0] or "recipe", ": ", tostring(err), "\n") end
        os.exit(1)
    end
end

return M
