-- apl.loop — Active Preference Learning (Algorithm 1), driven by a recipe's table of knobs.
--
--   local result = apl.loop.run{
--       acquisition = "certainty", budget = 768, batch = 128, sample = 4000, epochs = 50,
--       policy = apl.model.load(dir), tok = tok, oracle = judge, pool = train, test = test,
--       out = "runs/imdb-certainty-s1",
--   }
--
-- For t = 1 .. floor(budget / batch): sample `sample` prompts (oversample × that many when the
-- acquisition function has a prefilter, which keeps `sample` of them), generate two completions
-- per prompt with the current policy, score each pair, keep the top `batch`, ask the oracle,
-- append, reset the policy to θ0 and fine-tune with DPO on every pair so far, then evaluate the
-- win-rate when the label count reaches a waypoint. online = true instead keeps the policy and
-- its Adam state and takes one gradient step on the newest batch (the method's Appendix D).
--
-- The held-out set is n_test rows drawn from cfg.test by the seed alone, so every waypoint and
-- every acquisition function of a seed is judged on the same prompts (§5.5: 1024 of them). With
-- waypoints, the run ends at the step that reaches the last one (budget defaults to it).
--
-- Every random choice of step t comes from (seed, t), and the run folder records each finished
-- step, so `resume = dir` continues a crashed run and acquires exactly what the uninterrupted
-- run would have. Engine calls go through `loop.engine` (override with cfg.engine), which is
-- what lets tests run the loop on fake models.
--
-- Several processes (apl.dist, `apl --nproc N`) run one loop: every rank runs it with the same
-- cfg, each generates and scores a block of the step's prompts (gathered back in order), and all
-- train together (the trainer all-reduces gradients). Rank 0 alone asks the oracle, writes the run
-- folder and the ledger; labels, win-rates and a resume's state come to the others from it. Since
-- every random choice is a function of (seed, step), N processes acquire what one does, up to
-- float noise (a forward's floats depend on the batch it is in and on the threads it runs on; see
-- `sharded` below).
local rng = require "apl.rng"
local eval = require "apl.eval"
local runfolder = require "apl.runfolder"
local fs = require "apl.fs"
local report = require "apl.report"
local lengths = require "apl.lengths"
local generate = require "apl.generate"
local score = require "apl.score"
local dpo = require "apl.dpo"
local apl_model = require "apl.model"
local oracle = require "apl.oracle"
local lora = require "apl.lora"
local dist = require "apl.dist"
local C = require "apl.core.compute"

local M = {}

-- The knobs and their defaults (the method's IMDB column of Table 1 where it has one).
M.defaults = {
    acquisition = "random",
    budget = 768,            -- B: labels to acquire (default with waypoints: up to the last one)
    batch = 128,             -- M: pairs acquired per step
    sample = 4000,           -- S: prompts sampled from the pool per step
    oversample = 8,          -- J: the hybrid ranks J·S prompts by entropy before generating
    entropy_samples = 8,     -- N: samples per prompt for predictive entropy
    epochs = 50,
    beta = C.dpo_options({}).beta, -- DPO's β, where its default lives (lcompute.c): the paper's 0.2
    lr = 1e-6,
    minibatch = 64,
    temperature = { train = 0.7, test = 0.25, oracle = 0.05, entropy = 1.0 },
    -- N, or {lo, hi}: each completion's length drawn uniformly from lo..hi (the authors' code,
    -- direct/utils.py LengthSampler with --data.completion_min_len 16 --data.completion_max_len 24)
    max_new_tokens = { 16, 24 },
    seed = 0,
    -- waypoints: label counts to evaluate at (default: after every step)
    baseline = "initial",    -- "initial": θ0's completions; "reference": the test rows' references
    n_test = 1024,           -- §5.5: "Each evaluation is done against 1024 test prompts"
    online = false,
    -- false: full fine-tuning. {r =, alpha =, dropout =, targets =, seed =}: LoRA adapters on the
    -- policy (apl.lora.attach; the seed defaults to the run's), θ0 is the policy with them off.
    lora = false,
    -- gen_batch_size: rows per forward in generation (apl.generate's batch_size)
}

-- Objects in cfg rather than knobs: they are not written to config.json. (args: the recipe's
-- command line, saved so that --resume needs nothing else.)
local OBJECTS = { policy = true, ref = true, tok = true, oracle = true, pool = true, test = true,
                  engine = true, resume = true, out = true, quiet = true }
-- Knobs without a default. dataset: the name apl.report groups runs by (default: the judge
-- template's, imdb or tldr).
local EXTRA = { args = true, waypoints = true, gen_batch_size = true, dataset = true }

------------------------------------------------------------------------------------------------
-- The engine adapter: every call into models, the trainer and the oracle goes through here.

M.engine = {
    generate = function(model, tok, prompts, opts) return generate(model, tok, prompts, opts) end,
    entropy = function(model, tok, prompts, opts) return score.entropy(model, tok, prompts, opts):totable() end,
    -- implicit rewards of completions a and b of each prompt: two lists
    rewards = function(policy, ref, tok, prompts, a, b, beta)
        local ra, rb = score.preference_prob(policy, ref, tok, prompts, a, b, beta)
        return ra:totable(), rb:totable()
    end,
    trainer = function(opts) return dpo.new(opts) end,
    reference = function(m) return m:reference() end, -- θ0, read-only (model.h)
    reset = function(m) m:reset() end,                 -- back to θ0
    -- an adapted policy is saved as its adapter (PEFT's format), the base stays where it was
    save = function(m, dir) if m:lora() then m:save_adapter(dir) else m:save(dir) end end,
    lora = function(m, opts) lora.ensure(m, opts) end,
    load = function(dir) return apl_model.load(dir) end,
    free = function(m) m:free() end,
    oracle_lua = function(fn, opts) return oracle.lua(fn, opts) end,
    oracle_openai = function(spec) return oracle.openai(spec) end,
}

-- The engine's generate, entropy and rewards, each rank doing a contiguous block of the list
-- (dist.map); the others as they are. A generation forward runs batch_size rows of n samples, so
-- blocks cut at lcm(batch_size, n) rows batch the rows one process batches, and give the same
-- floats at the same thread count. Without a batch_size (generate's default), and for rewards
-- (scored longest first over the whole list, core/score.h), the blocks batch differently: the
-- same up to float noise.
local function gen_align(o)
    local rows, n = o.batch_size, o.n or 1
    if not rows then return 1 end
    local lcm = rows
    while lcm % n ~= 0 do lcm = lcm + rows end
    return lcm // n
end

local function sharded(engine)
    local e = setmetatable({}, { __index = engine })
    function e.generate(model, tok, prompts, o)
        o = o or {}
        local align = gen_align(o)
        return dist.map(prompts, function(block)
            if #block == 0 then return {} end
            local mine = {}
            for k, v in pairs(o) do mine[k] = v end
            mine.index_offset = dist.shard(#prompts, align) - 1 -- lengths are drawn by index
            return engine.generate(model, tok, block, mine)
        end, align)
    end
    function e.entropy(model, tok, prompts, o)
        return dist.map(prompts, function(block)
            if #block == 0 then return {} end
            return engine.entropy(model, tok, block, o)
        end, gen_align(o))
    end
    function e.rewards(policy, ref, tok, prompts, a, b, beta)
        local idx = {}
        for i = 1, #prompts do idx[i] = i end
        return dist.map(idx, function(block)
            if #block == 0 then return {}, {} end
            local p, x, y = {}, {}, {}
            for j, i in ipairs(block) do p[j], x[j], y[j] = prompts[i], a[i], b[i] end
            return engine.rewards(policy, ref, tok, p, x, y, beta)
        end)
    end
    return e
end

------------------------------------------------------------------------------------------------
-- The context an acquisition function sees (see acquisition/random.lua for the interface).

local Ctx = {}
Ctx.__index = Ctx

-- Indices of the `m` highest scores; ties keep the earlier one.
function M.top(scores, m)
    local idx = {}
    for i = 1, #scores do idx[i] = i end
    table.sort(idx, function(x, y)
        if scores[x] ~= scores[y] then return scores[x] > scores[y] end
        return x < y
    end)
    local out = {}
    for i = 1, math.min(m, #idx) do out[i] = idx[i] end
    return out
end

function Ctx:top(scores, k) return M.top(scores, k) end

local function texts_of(prompts)
    local out = {}
    for i, p in ipairs(prompts) do out[i] = type(p) == "table" and p.prompt or p end
    return out
end

-- Predictive entropy per prompt: the mean over its own N samples of −Σ token log-probs.
function Ctx:entropy(prompts)
    local c = self.config
    return self.engine.entropy(self.policy, self.tok, texts_of(prompts), {
        n = c.entropy_samples, temperature = c.temperature.entropy, max_new_tokens = c.max_new_tokens,
        seed = rng.seed(c.seed, self.step, "entropy"), batch_size = c.gen_batch_size })
end

-- DPO implicit rewards r̂ = β·log(πθ(y|x)/π0(y|x)) of both completions of each pair. Computed once
-- per pair (kept on the pair as r_a, r_b), so the loop's records reuse the acquisition's work.
function Ctx:implicit_rewards(batch)
    local unscored, prompts, a, b = {}, {}, {}, {}
    for _, p in ipairs(batch) do
        if not p.r_a then
            unscored[#unscored + 1] = p
            prompts[#unscored], a[#unscored], b[#unscored] = p.prompt, p.a, p.b
        end
    end
    if #unscored > 0 then
        local ra, rb = self.engine.rewards(self.policy, self.ref, self.tok, prompts, a, b, self.beta)
        for i, p in ipairs(unscored) do p.r_a, p.r_b = ra[i], rb[i] end
    end
    local ra, rb = {}, {}
    for i, p in ipairs(batch) do ra[i], rb[i] = p.r_a, p.r_b end
    return ra, rb
end

function Ctx:generate(prompts, opts) return self.engine.generate(self.policy, self.tok, texts_of(prompts), opts) end

------------------------------------------------------------------------------------------------
-- Configuration

-- The paper evaluates at its waypoints and acquires nothing after the last one: without a
-- budget, the labels of the step that reaches the last waypoint (nil without waypoints).
function M.default_budget(waypoints, batch)
    local last = type(waypoints) == "table" and math.tointeger(waypoints[#waypoints])
    batch = math.tointeger(batch)
    if last and batch and batch >= 1 then return -(-last // batch) * batch end
end

local function merge_defaults(cfg)
    local c = {}
    for k, v in pairs(M.defaults) do c[k] = v end
    for k, v in pairs(cfg) do c[k] = v end
    if cfg.budget == nil then c.budget = M.default_budget(cfg.waypoints, c.batch) or c.budget end
    local temp = {}
    for k, v in pairs(M.defaults.temperature) do temp[k] = v end
    for k, v in pairs(cfg.temperature or {}) do temp[k] = v end
    c.temperature = temp
    return c
end

-- The knobs as they go to config.json: plain values only, objects described by their kind.
local function knobs_of(c)
    local out = {}
    for k, v in pairs(c) do
        if not OBJECTS[k] and type(v) ~= "function" and type(v) ~= "userdata" then out[k] = v end
    end
    local o = c.oracle
    out.oracle = type(o) == "function" and "lua function" or (type(o) == "table" and not o.label and o) or "object"
    out.pool_size, out.test_size = #c.pool, #(c.test or {})
    return out
end

local function check(c)
    local function need(cond, msg) if not cond then error("apl.loop: " .. msg, 4) end end
    for k in pairs(c) do
        need(M.defaults[k] ~= nil or OBJECTS[k] or EXTRA[k],
            string.format("unknown knob '%s'", tostring(k)))
    end
    need(c.dataset == nil or (type(c.dataset) == "string" and c.dataset ~= ""), "dataset must be a name")
    need(c.policy, "cfg.policy (the initial model θ0) is required")
    need(c.tok, "cfg.tok (the tokenizer) is required")
    need(c.oracle, "cfg.oracle (a function(prompt, a, b), a judge spec or an oracle) is required")
    need(type(c.pool) == "table" and #c.pool > 0, "cfg.pool (a list of {prompt=}) is empty or missing")
    need(c.batch >= 1 and c.budget >= c.batch, "need 1 <= batch <= budget")
    local _, _, why = lengths.range(c.max_new_tokens)
    need(not why, why)
    need(math.tointeger(c.n_test) and c.n_test >= 1, "n_test must be an integer >= 1")
    need(c.lora == false or type(c.lora) == "table", "lora must be false or a table of apl.lora.attach options")
    if c.lora then lora.check(c.lora, "apl.loop: lora") end
    if c.waypoints ~= nil then
        local ok = type(c.waypoints) == "table" and #c.waypoints > 0
        for i, w in ipairs(ok and c.waypoints or {}) do
            ok = ok and math.tointeger(w) and w >= 1 and (i == 1 or w > c.waypoints[i - 1])
        end
        need(ok, "waypoints must be a list of increasing label counts >= 1")
    end
    need(c.baseline == "initial" or c.baseline == "reference", 'baseline must be "initial" or "reference"')
    need(not c.waypoints or c.test, "waypoints need cfg.test (held-out prompts)")
    if c.baseline == "reference" and c.test then
        need(c.test[1] and c.test[1].reference, 'baseline "reference" needs test rows with a reference')
    end
end

-- Knobs that change what a run acquires; a resumed run must agree on all of them.
local SAME_ON_RESUME = { "acquisition", "budget", "batch", "sample", "oversample", "entropy_samples",
                         "epochs", "beta", "lr", "minibatch", "max_new_tokens", "seed", "online",
                         "pool_size", "n_test", "waypoints", "baseline" }

-- Equal as config.json keeps them: lists element by element (JSON gives back 16.0 for 16).
local function same(a, b)
    if type(a) ~= "table" or type(b) ~= "table" then return a == b end
    if #a ~= #b then return false end
    for i = 1, #a do if not same(a[i], b[i]) then return false end end
    return true
end

local function show(v)
    if type(v) == "table" then
        local parts = {}
        for i, x in ipairs(v) do parts[i] = show(x) end
        return "{" .. table.concat(parts, ", ") .. "}"
    end
    return tostring(math.tointeger(v) or v)
end

local function check_resume(saved, now)
    for _, k in ipairs(SAME_ON_RESUME) do
        if not same(saved[k], now[k]) then
            error(string.format("apl.loop: cannot resume: %s was %s in the saved run, now %s",
                k, show(saved[k]), show(now[k])), 3)
        end
    end
end

local function make_oracle(c, engine, ledger)
    local o = c.oracle
    if type(o) == "function" then return engine.oracle_lua(o, { ledger = ledger, seed = c.seed }) end
    if o.label then return o end
    local spec = {}
    for k, v in pairs(o) do spec[k] = v end
    spec.ledger, spec.seed = spec.ledger or ledger, spec.seed or c.seed
    spec.temperature = spec.temperature or c.temperature.oracle
    return engine.oracle_openai(spec)
end

------------------------------------------------------------------------------------------------
-- One step's pieces

-- Prompts for step t: sample S (or J·S for a prefilter) from the pool, then the prefilter.
local function candidate_prompts(s, acq, ctx, t)
    local c = s.c
    local k = acq.prefilter and c.sample * c.oversample or c.sample
    local prompts = rng.new(c.seed, t, "sample"):sample(c.pool, k)
    if acq.prefilter then prompts = acq.prefilter(ctx, prompts) end
    return prompts
end

-- Two completions per prompt with the current policy; pairs whose completions are identical
-- carry no preference and are dropped.
local function candidate_pairs(s, prompts, t)
    local c = s.c
    local texts = texts_of(prompts)
    local gens = s.engine.generate(s.policy, c.tok, texts, {
        n = 2, temperature = c.temperature.train, max_new_tokens = c.max_new_tokens,
        seed = rng.seed(c.seed, t, "generate"), batch_size = c.gen_batch_size })
    local batch = {}
    for i, g in ipairs(gens) do
        if g[1].text ~= g[2].text then
            batch[#batch + 1] = { prompt = texts[i], a = g[1].text, b = g[2].text }
        end
    end
    return batch
end

local function score_batch(acq, ctx, batch)
    local scores = acq.score(ctx, batch)
    if type(scores) ~= "table" or #scores ~= #batch then
        error(string.format("apl.loop: acquisition %q returned %s scores for %d pairs", ctx.config.acquisition,
            type(scores) == "table" and #scores or type(scores), #batch), 3)
    end
    for i, v in ipairs(scores) do
        if type(v) ~= "number" or v ~= v then
            error(string.format("apl.loop: acquisition %q: score %d is %s", ctx.config.acquisition, i, tostring(v)), 3)
        end
    end
    return scores
end

-- A step whose every label failed (a judge that is down, a key that expired) would train on
-- nothing and go on step after step: stop with the oracle's reason. The answers paid for are in
-- the ledger, and --resume redoes the step once the judge is fixed.
local function check_labelled(s, t, labels)
    if #labels == 0 then return end
    for _, l in ipairs(labels) do if l.preferred then return end end
    error(string.format("apl.loop: step %d: the oracle labelled none of the %d pairs (%s); stopping. Answers "
        .. "already paid for are kept in %s; fix the judge and continue with --resume %s", t, #labels,
        tostring(labels[1].rationale), s.dir .. "/oracle.jsonl", s.dir), 0)
end

-- Appends records to the run folder's <name>.jsonl. Rank 0 alone holds the folder (s.run is nil
-- on the others) and writes it, through dist.from_root: a write that fails there (a full disk)
-- stops every rank with its error instead of leaving them waiting for it.
local function record(s, name, records)
    dist.from_root(function() for _, r in ipairs(records) do s.run:append(name, r) end end)
end

-- Acquires step t's pairs: select, label, record. Returns the new records.
local function acquire(s, acq, t)
    local c = s.c
    local ctx = setmetatable({ policy = s.policy, ref = s.ref, tok = c.tok, beta = c.beta, seed = c.seed,
        step = t, config = c, engine = s.engine, rng = rng.new(c.seed, t, "acquisition") }, Ctx)
    local batch = candidate_pairs(s, candidate_prompts(s, acq, ctx, t), t)
    local scores = score_batch(acq, ctx, batch)
    local chosen = {}
    for i, k in ipairs(M.top(scores, c.batch)) do chosen[i] = batch[k]; batch[k].score = scores[k] end
    ctx:implicit_rewards(chosen)
    local labels = dist.from_root(eval.judge, s.oracle, chosen)
    check_labelled(s, t, labels)
    local records = {}
    for i, p in ipairs(chosen) do
        local prob = score.bt_prob(p.r_a, p.r_b)
        local l = labels[i]
        -- correct: the model's preference (a when P(a ≻ b) > 0.5) is the oracle's. Unset when
        -- unlabelled, and at exactly 0.5 (every pair of step 1, where the policy is θ0): a tie
        -- predicts nothing, as the report counts it.
        local correct
        if l.preferred and prob ~= 0.5 then correct = (prob > 0.5) == (l.preferred == 1) end
        records[i] = { step = t, prompt = p.prompt, a = p.a, b = p.b, score = p.score,
            reward_a = p.r_a, reward_b = p.r_b, bt_prob = prob, label = l.preferred,
            rationale = l.rationale, correct = correct }
    end
    record(s, "acquired", records)
    return records
end

-- The DPO pairs {prompt, chosen, rejected} of acquired records, in their order; unlabelled
-- records are left out.
function M.training_pairs(records)
    local out = {}
    for _, r in ipairs(records) do
        if r.label then
            local chosen, rejected = r.a, r.b
            if r.label == 2 then chosen, rejected = r.b, r.a end
            out[#out + 1] = { prompt = r.prompt, chosen = chosen, rejected = rejected }
        end
    end
    return out
end

-- Offline: θ ← θ0, then `epochs` passes over every pair so far, shuffled by (seed, t, epoch).
-- Resume calls this for the last finished step to rebuild its policy.
local function train_offline(s, t)
    local c = s.c
    local pairs = M.training_pairs(s.acquired)
    s.trainer:reset()   -- the policy back to θ0 and a fresh optimizer
    local metrics = {}
    if #pairs == 0 then return metrics end
    for e = 1, c.epochs do
        metrics = s.trainer:epoch(pairs, { shuffle_seed = rng.seed(c.seed, t, "epoch", e) })
    end
    return metrics
end

-- Online (Appendix D): one gradient step on the newest batch. Neither the policy nor Adam's
-- moments are reset between steps: a fresh Adam makes each step close to lr·sign(g).
local function train_online(s, new_records)
    local pairs = M.training_pairs(new_records)
    if #pairs == 0 then return {} end
    return s.trainer:step(pairs)
end

-- Resuming an online run replays its finished steps from θ0 and a fresh optimizer: the same pairs
-- in the same order give back the weights and the Adam moments (a step is cheap next to the
-- generation and labelling it follows; the saved policy alone would lose the moments).
local function replay_online(s, done)
    s.trainer:reset()
    local by_step = {}
    for _, r in ipairs(s.acquired) do
        by_step[r.step] = by_step[r.step] or {}
        table.insert(by_step[r.step], r)
    end
    for t = 1, done do train_online(s, by_step[t] or {}) end
end

local function policy_dir(s, t) return s.run:path(string.format("policy/step-%d", t)) end

local function save_online_policy(s, t)
    runfolder.mkdir(policy_dir(s, t))
    s.engine.save(s.policy, policy_dir(s, t))
    if t > 1 then fs.rmtree(policy_dir(s, t - 1), s.run.dir) end
end

------------------------------------------------------------------------------------------------
-- Evaluation at waypoints

-- The held-out prompts: n_test rows of cfg.test drawn by the seed alone (the authors' code draws
-- its test subset once, right after seeding), so the set is the same at every waypoint and for
-- every acquisition function of a seed. (All of them, shuffled, when the split is smaller.)
function M.test_rows(c)
    return rng.new(c.seed, "test-set"):sample(c.test, c.n_test)
end

-- One completion per prompt. Lengths are drawn by (seed, prompt) only, so the policy and the
-- baseline completions of a test prompt have the same length limit at every waypoint (the
-- authors' evaluation gives both the same lengths).
local function one_completion(s, model, prompts, key)
    local c = s.c
    local gens = s.engine.generate(model, c.tok, prompts, { n = 1, temperature = c.temperature.test,
        max_new_tokens = c.max_new_tokens, seed = rng.seed(c.seed, key),
        length_seed = rng.seed(c.seed, "test-lengths"), batch_size = c.gen_batch_size })
    local out = {}
    for i, g in ipairs(gens) do out[i] = g[1].text end
    return out
end

-- The baseline each evaluation compares against: θ0's completions (made once) or references.
local function baselines(s, rows, prompts)
    if s.baseline_texts then return s.baseline_texts end
    if s.c.baseline == "reference" then
        s.baseline_texts = {}
        for i, r in ipairs(rows) do s.baseline_texts[i] = r.reference end
    else
        s.baseline_texts = one_completion(s, s.ref, prompts, "baseline")
    end
    return s.baseline_texts
end

local function evaluate(s, t, labels)
    local rows = s.test_rows
    local prompts = texts_of(rows)
    local base = baselines(s, rows, prompts)
    local texts = one_completion(s, s.policy, prompts, "eval")
    local w = dist.from_root(eval.winrate, s.oracle, prompts, texts, base)
    if w.n == 0 then -- no win-rate: a failure, never a win-rate of 0 in eval.jsonl
        error(string.format("apl.loop: evaluation at step %d: the oracle judged none of the %d test pairs (%s); "
            .. "fix the judge and continue with --resume %s", t, #prompts, tostring(w.reason), s.dir), 0)
    end
    -- labels: what the judge labelled; pairs: what was acquired (the waypoint's count when every
    -- label came back).
    w.step, w.labels, w.pairs, w.acquisition, w.seed = t, labels, #s.acquired, s.c.acquisition, s.c.seed
    record(s, "eval", { w })
    return w
end

-- Acquisition steps: floor(B / M), ending early at the step that reaches the last waypoint.
function M.steps(c)
    local steps = c.budget // c.batch
    if c.waypoints then steps = math.min(steps, -(-c.waypoints[#c.waypoints] // c.batch)) end
    return steps
end

local function is_waypoint(c, before, after)
    if not c.test then return false end
    if not c.waypoints then return true end
    for _, w in ipairs(c.waypoints) do
        if w > before and w <= after then return true end
    end
    return false
end

------------------------------------------------------------------------------------------------
-- Resume: keep the finished steps, drop the rest, rebuild the policy of the last finished step.

-- Rank 0 reads and trims the folder; every rank gets the finished steps and their records.
local function read_finished(run)
    local train = run:read("train")
    local done = 0
    for _, r in ipairs(train) do done = math.max(done, math.tointeger(r.step)) end
    local function upto(list)
        local out = {}
        for _, r in ipairs(list) do if r.step <= done then out[#out + 1] = r end end
        return out
    end
    local acquired = upto(run:read("acquired"))
    run:rewrite("acquired", acquired)
    run:rewrite("eval", upto(run:read("eval")))
    run:rewrite("train", upto(train))
    return done, acquired
end

local function resume_state(s)
    local done
    done, s.acquired = dist.from_root(read_finished, s.run)
    if done > 0 then
        if s.c.online then replay_online(s, done) else train_offline(s, done) end
    end
    return done
end

local function say(s, fmt, ...)
    if not s.c.quiet and dist.is_root() then io.write(string.format(fmt, ...), "\n"); io.flush() end
end

local function summary(m, w)
    local parts = {}
    if m.loss then parts[#parts + 1] = string.format("loss %.4f", m.loss) end
    if m["rewards/accuracies"] then parts[#parts + 1] = string.format("acc %.2f", m["rewards/accuracies"]) end
    if w then parts[#parts + 1] = string.format("win-rate %.3f ± %.3f (n=%d)", w.winrate, w.stderr, w.n) end
    return table.concat(parts, "  ")
end

------------------------------------------------------------------------------------------------

-- What the loop opened is released however it ends (an error, Ctrl-C), so the same process can
-- resume the run: the oracle's ledger lock, the log files, the θ0 view. A run that did not finish
-- first puts θ0 back into cfg.policy: the policy is trained in place, and a resume with the same
-- object would otherwise take part-trained weights as its θ0 and acquire another set.
local function release(s)
    if s.ref and not s.finished then s.engine.reset(s.policy) end
    if s.run then s.run:close() end
    if s.own_oracle and s.oracle and s.oracle.close then s.oracle:close() end
    if s.ref then s.engine.free(s.ref); s.ref = nil end
end

-- Runs the loop; returns {dir=, evals=, acquired=, config=, plots=}. cfg.policy is trained in
-- place (θ0 is its reference, model.h); when the run stops early (an error, Ctrl-C) it holds θ0 again.
-- With several processes every rank calls it with the same cfg and gets the same result (rank 0's
-- evals, and the paths of the plots it wrote).
function M.run(cfg)
    local c = merge_defaults(cfg)
    check(c)
    local engine = setmetatable(cfg.engine or {}, { __index = M.engine })
    local acq = require("acquisition." .. c.acquisition)
    local knobs = knobs_of(c)
    local run -- rank 0's alone
    local dir, saved = dist.from_root(function()
        if cfg.resume then
            run = runfolder.open(cfg.resume)
        else
            run = runfolder.create(c.out or string.format("runs/%s-s%d-%s", c.acquisition, c.seed, os.date("%Y%m%d-%H%M%S")), knobs)
        end
        return run.dir, run.config
    end)
    if cfg.resume then check_resume(saved, knobs) end
    local s = { c = c, engine = sharded(engine), run = run, dir = dir, policy = c.policy, acquired = {},
                own_oracle = type(c.oracle) ~= "table" or not c.oracle.label }
    local _ <close> = setmetatable({}, { __close = function() release(s) end })
    dist.from_root(function() -- rank 0 alone opens the oracle: it holds the ledger's lock
        s.oracle = make_oracle(c, engine, run:path("oracle.jsonl"))
        if s.oracle.preflight then s.oracle:preflight() end -- a judge that is down fails before model work
    end)
    if c.lora then
        local o = {}
        for k, v in pairs(c.lora) do o[k] = v end
        o.seed = o.seed or c.seed
        engine.lora(c.policy, o)
    end
    s.ref = engine.reference(c.policy)
    s.trainer = engine.trainer { policy = s.policy, ref = s.ref, tok = c.tok, beta = c.beta, lr = c.lr,
                                 batch_size = c.minibatch, cache_file = dir .. "/ref_logps.jsonl" }
    s.test_rows = c.test and M.test_rows(c)
    local steps = M.steps(c)
    local done = cfg.resume and resume_state(s) or 0
    if done > 0 then say(s, "resuming %s after step %d (%d labels)", dir, done, #M.training_pairs(s.acquired)) end
    for t = done + 1, steps do
        local t0 = os.time()
        local before = #s.acquired
        local new = acquire(s, acq, t)
        table.move(new, 1, #new, #s.acquired + 1, s.acquired)
        local metrics = c.online and train_online(s, new) or train_offline(s, t)
        if c.online then dist.from_root(save_online_policy, s, t) end
        local labelled = #M.training_pairs(s.acquired) -- what the judge really labelled
        local w = is_waypoint(c, before, #s.acquired) and evaluate(s, t, labelled) or nil
        local rec = { step = t, labels = labelled, pairs = #s.acquired, seconds = os.time() - t0 }
        for k, v in pairs(metrics) do rec[k] = v end
        if s.oracle and s.oracle.stats then rec.oracle = s.oracle:stats() end -- requests, labels, cached, cost
        record(s, "train", { rec }) -- written last: a step is finished once its train line exists
        say(s, "%s step %d/%d  labels %d  %s", c.acquisition, t, steps, rec.labels, summary(metrics, w))
    end
    s.finished = true
    local evals, plots = dist.from_root(function()
        run:close()
        return run:read("eval"), report.run_plots(dir)
    end)
    return { dir = dir, evals = evals, acquired = s.acquired, config = knobs, plots = plots }
end

return M
