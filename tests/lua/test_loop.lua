-- apl.loop end to end: on a fake engine (pure Lua: a one-number "model" whose completions are
-- positive or negative words), resume equivalence, the report; then 2 steps on a real tiny model.
local T = require "tests.lib.test"
local loop = require "apl.loop"
local report = require "apl.report"
local runfolder = require "apl.runfolder"
local sentiment = require "apl.sentiment"

local FE = dofile(T.root() .. "/tests/lua/fake_engine.lua")
local fake_engine, sigmoid = FE.new, FE.sigmoid

local function prompts(n, prefix)
    local out = {}
    for i = 1, n do out[i] = { prompt = string.format("%s %d was", prefix, i) } end
    return out
end

local function config(over)
    local c = { acquisition = "certainty", budget = 8, batch = 4, sample = 8, epochs = 2, seed = 3,
                entropy_samples = 3, oversample = 2, max_new_tokens = 3, n_test = 6, quiet = true,
                policy = { bias = 0 }, tok = {}, oracle = sentiment.prefer,
                pool = prompts(40, "movie"), test = prompts(6, "test") }
    for k, v in pairs(over or {}) do c[k] = v end
    return c
end

local function read_run(dir)
    local run = runfolder.open(dir)
    return run:read("acquired"), run:read("eval"), run:read("train")
end

T.case("fake engine: 2 steps write the run folder, acquire the top pairs, evaluate at waypoints", function()
    local dir = T.tmpdir() .. "/run"
    local res = loop.run(config { out = dir, engine = fake_engine(), waypoints = { 4, 8 } })
    local acquired, evals, train = read_run(dir)
    T.eq(#acquired, 8)
    T.eq(#train, 2)
    T.eq({ evals[1].labels, evals[2].labels }, { 4, 8 })
    T.eq(res.evals[2].n, 6)
    for _, f in ipairs { "config.json", "winrate.svg", "bt_hist.svg" } do
        T.ok(runfolder.exists(dir .. "/" .. f), f .. " written")
    end
    for i, r in ipairs(acquired) do
        T.eq(r.step, i <= 4 and 1 or 2)
        T.eq(r.score, math.abs(r.reward_a - r.reward_b), 1e-9, "certainty score")
        T.eq(r.bt_prob, sigmoid(r.reward_a - r.reward_b), 1e-9)
        local sa, sb = sentiment.score(r.a), sentiment.score(r.b)
        if sa ~= sb then T.eq(r.label, sa > sb and 1 or 2, "oracle label") end
        T.ok(r.rationale:find("scores"), "rationale kept")
        if r.step == 1 then
            T.eq(r.bt_prob, 0.5, 0, "step 1: policy = θ0")
            T.eq(r.correct, nil, "a tie (P = 0.5) is neither right nor wrong")
        else
            T.eq(r.correct, (r.bt_prob > 0.5) == (r.label == 1), "correct: the model's preference is the oracle's")
        end
        if i > 1 and r.step == acquired[i - 1].step then T.ok(r.score <= acquired[i - 1].score, "sorted") end
    end
    T.eq(acquired[1].score, 0, 1e-12, "step 1: policy = θ0, so every implicit reward is 0")
    T.ok(acquired[5].score > 0, "step 2 scores come from the trained policy")
    T.ok(acquired[5].correct ~= nil, "step 2: a prediction, right or wrong")
    T.ok(evals[2].winrate > 0.5, "training toward positive words wins over θ0")
    T.eq(runfolder.open(dir).config.acquisition, "certainty")
    T.assert_error_match(function() loop.run(config { out = dir, engine = fake_engine() }) end, "already holds a run")
end)

T.case("fake engine: hybrid prefilters by entropy from N samples per prompt", function()
    local e = fake_engine()
    local calls = {}
    for _, name in ipairs { "generate", "entropy" } do
        local f = e[name]
        e[name] = function(m, tok, ps, o) calls[#calls + 1] = { n = o.n, prompts = #ps }; return f(m, tok, ps, o) end
    end
    loop.run(config { acquisition = "hybrid", budget = 4, out = T.tmpdir() .. "/h", engine = e })
    T.eq(calls[1], { n = 3, prompts = 16 }, "entropy over oversample × sample prompts")
    T.eq(calls[3], { n = 2, prompts = 8 }, "pairs for the sample kept")
end)

-- crash: the fake engine's crash options; same_process: the resume gets the policy object the
-- crashed run trained (else a fresh θ0, as a new process loading the model would).
-- The evaluations' pairs as the fake oracle saw them (a: the policy's text, b: the baseline),
-- one list per evaluation.
local function eval_pairs(e, n_test)
    local sets, cur = {}, nil
    for _, p in ipairs(e.judged_pairs) do
        if p.prompt:find("^test") then
            if not cur or #cur == n_test then cur = {}; sets[#sets + 1] = cur end
            cur[#cur + 1] = p
        end
    end
    return sets
end

-- The win-rate from the definition: the judge (sentiment.prefer) takes a unless b scores higher.
local function expected_winrate(pairs)
    local wins = 0
    for _, p in ipairs(pairs) do
        if sentiment.score(p.a) >= sentiment.score(p.b) then wins = wins + 1 end
    end
    local w = wins / #pairs
    return { winrate = w, stderr = math.sqrt(w * (1 - w) / #pairs), n = #pairs }
end

T.case("fake engine: each win-rate and its standard error are the judge's verdicts on that evaluation's pairs", function()
    local e = fake_engine()
    local res = loop.run(config { out = T.tmpdir() .. "/w", engine = e, waypoints = { 4, 8 }, epochs = 1,
                                  test = prompts(30, "test"), n_test = 30 })
    local sets = eval_pairs(e, 30)
    T.eq(#sets, 2)
    for k, w in ipairs(res.evals) do
        local want = expected_winrate(sets[k])
        T.eq({ w.winrate, w.stderr, w.n, w.failed }, { want.winrate, want.stderr, want.n, 0 }, 1e-12, "evaluation " .. k)
    end
    for _, w in ipairs(res.evals) do T.ok(w.winrate > 0 and w.winrate < 1, "the policy wins some and loses some") end
end)

T.case("baseline = \"reference\": the policy is judged against each test row's reference text", function()
    local test = prompts(6, "test")
    for i, r in ipairs(test) do r.reference = i % 2 == 0 and " great lovely good" or " awful dull bad" end
    local by_prompt = {}
    for _, r in ipairs(test) do by_prompt[r.prompt] = r.reference end
    local e = fake_engine()
    local generated = {}
    local gen = e.generate
    e.generate = function(m, tok, ps, o) generated[#generated + 1] = o.temperature; return gen(m, tok, ps, o) end
    local res = loop.run(config { out = T.tmpdir() .. "/ref", engine = e, test = test, baseline = "reference" })
    local sets = eval_pairs(e, 6)
    T.eq(#sets, 2)
    for k, set in ipairs(sets) do
        for _, p in ipairs(set) do T.eq(p.b, by_prompt[p.prompt], "evaluation " .. k .. ": " .. p.prompt) end
        T.eq(res.evals[k].winrate, expected_winrate(set).winrate, 1e-12)
    end
    local test_gens = 0
    for _, t in ipairs(generated) do if t == 0.25 then test_gens = test_gens + 1 end end
    T.eq(test_gens, 2, "only the policy's completions are generated at the test temperature, one per waypoint")
    T.assert_error_match(function()
        loop.run(config { out = T.tmpdir() .. "/x", engine = fake_engine(), baseline = "reference" })
    end, 'baseline "reference" needs test rows with a reference')
end)

local function resume_case(online, crash, same_process)
    local base = T.tmpdir()
    local full = loop.run(config { budget = 12, online = online, out = base .. "/full", engine = fake_engine() })
    local dir = base .. "/crashed"
    local policy = { bias = 0 }
    T.assert_error_match(function()
        loop.run(config { budget = 12, online = online, out = dir, policy = policy, engine = fake_engine(crash) })
    end, "simulated crash")
    local partial = read_run(dir)
    T.eq(#partial, 8, "step 2 was labelled before the crash")
    T.eq(policy.bias, 0, "the crashed run put θ0 back into cfg.policy")
    local e = fake_engine()
    local res = loop.run(config { budget = 12, online = online, resume = dir, engine = e,
                                  policy = same_process and policy or { bias = 0 } })
    T.eq(e.oracle_calls, 8 + 6 * 2, "steps 2 and 3 labelled again (the ledger makes that free), plus 2 evaluations")
    local a1, ev1 = read_run(base .. "/full")
    local a2, ev2 = read_run(dir)
    T.eq(#a2, 12)
    T.eq(a2, a1, 0, "acquired set identical to the uninterrupted run")
    T.eq(ev2, ev1, 1e-12)
    T.eq(res.evals[3].winrate, full.evals[3].winrate)
end

T.case("resume after a crash acquires exactly what an uninterrupted run does (offline)", function()
    resume_case(false, { crash_at = 2 })
end)

T.case("resume restores the saved policy in the online variant", function()
    resume_case(true, { crash_at = 2 })
end)

-- The crash comes after the policy has moved away from θ0 (epoch 2 of step 2 offline; online,
-- step 1 has trained it): the resume must still start from θ0, not from those weights.
for _, process in ipairs { "the same process", "a new process" } do
    T.case("resume after a crash in the middle of training, in " .. process .. " (offline)", function()
        resume_case(false, { crash_at = 2, crash_epoch = 2 }, process == "the same process")
    end)
    T.case("resume after a crash in the middle of training, in " .. process .. " (online)", function()
        resume_case(true, { crash_at = 2 }, process == "the same process")
    end)
end

T.case("resume refuses a run whose knobs changed", function()
    local dir = T.tmpdir() .. "/r"
    loop.run(config { budget = 4, out = dir, engine = fake_engine() })
    T.assert_error_match(function() loop.run(config { budget = 4, batch = 2, resume = dir, engine = fake_engine() }) end,
        "cannot resume: batch was 4 in the saved run, now 2")
end)

-- The prompts judged at each evaluation, in order (acquired prompts start with "movie").
local function eval_prompts(e, n_test)
    local sets = eval_pairs(e, n_test)
    for _, set in ipairs(sets) do
        for i, p in ipairs(set) do set[i] = p.prompt end
    end
    return sets
end

-- Whether two lists hold the same items, in any order.
local function same_set(a, b)
    local seen = {}
    for _, x in ipairs(a) do seen[x] = true end
    for _, x in ipairs(b) do if not seen[x] then return false end end
    return #a == #b
end

T.case("test set: n_test rows drawn by the seed alone, the same at every waypoint and for every acquisition function", function()
    local base, test = T.tmpdir(), prompts(30, "test")
    local function judged(acquisition, seed)
        local e = fake_engine()
        loop.run(config { acquisition = acquisition, seed = seed, test = test, n_test = 5, waypoints = { 4, 8 },
                          out = string.format("%s/%s-%d", base, acquisition, seed), engine = e })
        return eval_prompts(e, 5)
    end
    local c3 = judged("certainty", 3)
    T.eq(#c3, 2, "one evaluation per waypoint")
    local seen = {}
    for _, p in ipairs(c3[1]) do T.ok(not seen[p], "distinct rows"); seen[p] = true end
    T.eq(#c3[1], 5)
    T.eq(c3[2], c3[1], 0, "the same prompts at both waypoints")
    T.eq(judged("random", 3), c3, 0, "the same prompts for another acquisition function of the seed")
    local first5 = {}
    for i = 1, 5 do first5[i] = test[i].prompt end
    T.ok(not same_set(c3[1], first5), "drawn at random, not the first rows of the split")
    T.ok(not same_set(judged("certainty", 4)[1], c3[1]), "another seed, another test set")
end)

T.case("test set: 1024 prompts by default (§5.5)", function()
    local c = config { test = prompts(1100, "test"), budget = 4, out = T.tmpdir() .. "/n", engine = fake_engine() }
    c.n_test = nil
    T.eq(loop.run(c).evals[1].n, 1024)
end)

T.case("waypoints: the budget defaults to the last one and nothing is acquired past it", function()
    local function run(over)
        local c = config(over)
        c.out, c.engine = T.tmpdir() .. "/w", fake_engine()
        if over.budget == false then c.budget = nil end
        local res = loop.run(c)
        local labels = {}
        for i, w in ipairs(res.evals) do labels[i] = w.labels end
        return #res.acquired, labels
    end
    T.eq({ run { budget = false, waypoints = { 4, 12 } } }, { 12, { 4, 12 } }, 0, "budget = last waypoint")
    T.eq({ run { budget = 40, waypoints = { 4, 8 } } }, { 8, { 4, 8 } }, 0, "stops at the last waypoint")
    T.eq({ run { budget = false, waypoints = { 6 } } }, { 8, { 8 } }, 0, "a waypoint between steps: the step that reaches it")
    T.assert_error_match(function() run { waypoints = { 8, 4 } } end, "waypoints must be a list of increasing label counts")
end)

T.case("completion lengths: {16, 24} by default; a test prompt gets one length draw for the policy and the baseline", function()
    local e = fake_engine()
    local calls, f = {}, e.generate
    e.generate = function(m, tok, ps, o) calls[#calls + 1] = o; return f(m, tok, ps, o) end
    local c = config { out = T.tmpdir() .. "/len", engine = e, waypoints = { 4, 8 } }
    c.max_new_tokens = nil
    loop.run(c)
    local eval_calls = {}
    for _, o in ipairs(calls) do
        T.eq(o.max_new_tokens, { 16, 24 })
        if o.temperature == 0.25 then eval_calls[#eval_calls + 1] = o end
    end
    T.eq(#eval_calls, 3, "the baseline once, the policy at 2 waypoints")
    for _, o in ipairs(eval_calls) do T.eq(o.length_seed, eval_calls[1].length_seed, 0, "one length per test prompt") end
    T.ok(eval_calls[1].seed ~= eval_calls[2].seed, "the baseline and the policy sample with their own seeds")
    T.assert_error_match(function() loop.run(config { max_new_tokens = { 24, 16 } }) end,
        "apl.loop: max_new_tokens must be an integer >= 1 or a range")
end)

T.case("resume refuses another length range or test set size", function()
    local dir = T.tmpdir() .. "/r"
    loop.run(config { budget = 4, max_new_tokens = { 2, 4 }, out = dir, engine = fake_engine() })
    T.assert_error_match(function()
        loop.run(config { budget = 4, max_new_tokens = { 2, 5 }, resume = dir, engine = fake_engine() })
    end, "cannot resume: max_new_tokens was {2, 4} in the saved run, now {2, 5}")
    T.assert_error_match(function()
        loop.run(config { budget = 4, max_new_tokens = { 2, 4 }, n_test = 3, resume = dir, engine = fake_engine() })
    end, "cannot resume: n_test was 6")
end)

T.case("config errors name the knob", function()
    T.assert_error_match(function() loop.run(config { pool = {} }) end, "apl.loop: cfg.pool")
    T.assert_error_match(function() loop.run(config { baseline = "human" }) end, 'baseline must be')
    T.assert_error_match(function() loop.run(config { epoch = 3 }) end, "unknown knob 'epoch'")
    T.assert_error_match(function() loop.run(config { acquisition = "nope", out = T.tmpdir() .. "/x", engine = fake_engine() }) end,
        "acquisition.nope")
end)

T.case("report: mean ± standard error over seeds, one column per acquisition function", function()
    local base = T.tmpdir()
    local dirs = {}
    for _, acq in ipairs { "random", "certainty" } do
        for seed = 1, 2 do
            local d = string.format("%s/%s-s%d", base, acq, seed)
            loop.run(config { acquisition = acq, seed = seed, out = d, engine = fake_engine() })
            dirs[#dirs + 1] = d
        end
    end
    local r = report(dirs, { quiet = true })
    T.eq(r.columns, { "random", "certainty" })
    T.eq(r.rows, { 4, 8 })
    local w = {}
    for i = 3, 4 do w[#w + 1] = runfolder.open(dirs[i]):read("eval")[2].winrate end
    local mean = (w[1] + w[2]) / 2
    local se = math.abs(w[1] - w[2]) / 2   -- sd/sqrt(2) for two values
    T.eq(r.cells[2].certainty.mean, mean, 1e-12)
    T.eq(r.cells[2].certainty.se, se, 1e-12)
    T.ok(r.text:find("certainty %(2 seeds%)"), r.text)
    T.ok(runfolder.exists(base .. "/compare.svg"), "comparison plot")
end)

T.case("plots: well-formed SVG with ticks, legend, error bars and histogram bars", function()
    local plot = require "apl.plot"
    local dir = T.tmpdir()
    local f = plot.lines { file = dir .. "/l.svg", title = "a < b & c", xlabel = "labels acquired", ylabel = "win-rate",
        series = { { name = "random", x = { 128, 256 }, y = { 0.5, 0.6 }, err = { 0.02, 0.03 } },
                   { name = "certainty", x = { 128, 256 }, y = { 0.55, 0.7 }, err = { 0.02, 0.03 } } } }
    local h = plot.histogram { file = dir .. "/h.svg", range = { 0, 1 }, bins = 10, xlabel = "p",
        groups = { { name = "correct", values = { 0.05, 0.95, 0.97, 1.0 } }, { name = "incorrect", values = { 0.5 } } } }
    T.python("-c 'import sys, xml.dom.minidom as m; [m.parse(f) for f in sys.argv[1:]]'", f .. " " .. h)
    local text = io.open(f):read("a")
    for _, want in ipairs { ">random<", ">certainty<", ">labels acquired<", ">a &lt; b &amp; c<", ">0.5<", ">0.7<", ">200<" } do
        T.ok(text:find(want, 1, true), want .. " in the line plot")
    end
    local _, bars = text:gsub('<path d="M', "")
    T.eq(bars, 4, "one error bar per point")
    T.eq(plot.bin_counts({ 0.05, 0.95, 0.97, 1.0, -1 }, 10, 0, 1), { 2, 0, 0, 0, 0, 0, 0, 0, 0, 3 })
    T.eq(plot.ticks(0.43, 0.71), { 0.4, 0.5, 0.6, 0.7, 0.8 }, 1e-12)
    T.ok(io.open(h):read("a"):find(">correct %(4%)<"), "histogram legend with counts")
end)

------------------------------------------------------------------------------------------------
-- The real engine: a tiny GPT-2 with the demo's tokenizer, 2 steps, a Lua oracle.

local function tiny_setup()
    local demo_data = require "recipes.lib.demo_data"
    local texts = {}
    for i, r in ipairs(demo_data.reviews { n = 300, seed = 1 }) do texts[i] = r.text end
    local dir = T.tmpdir()
    require("recipes.lib.bpe_train").write(dir .. "/tok", texts, { merges = 100 })
    local tok = apl.tokenizer.load(dir .. "/tok")
    local function theta0()
        return apl.model.init({ model_type = "gpt2", n_layer = 1, n_embd = 32, n_head = 2,
            vocab_size = tok:vocab_size(), n_positions = 64 }, { seed = 1 })
    end
    return tok, theta0, dir
end

local function tiny_config(tok, model, over)
    local c = config { policy = model, tok = tok, lr = 1e-3, minibatch = 4, epochs = 1, max_new_tokens = 6,
                       n_test = 4, test = prompts(4, "the film") }
    c.engine = nil
    for k, v in pairs(over) do c[k] = v end
    return c
end

T.case("real tiny model: 2 steps of certainty with a Lua oracle", function()
    local tok, theta0, dir = tiny_setup()
    local res = loop.run(tiny_config(tok, theta0(), { out = dir .. "/run" }))
    local acquired, evals = read_run(dir .. "/run")
    T.eq(#acquired, 8)
    T.eq(#evals, 2)
    for _, r in ipairs(acquired) do
        T.ok(r.a ~= r.b and r.label, "distinct completions, labelled")
        T.eq(r.score, math.abs(r.reward_a - r.reward_b), 1e-5)
    end
    T.eq(acquired[1].score, 0, 1e-5, "step 1: policy = θ0")
    T.ok(res.evals[2].winrate >= 0 and res.evals[2].winrate <= 1 and res.evals[2].n == 4)
    T.ok(runfolder.exists(dir .. "/run/oracle.jsonl"), "oracle ledger")
    local train = runfolder.open(dir .. "/run"):read("train")
    T.eq(train[2].oracle.labels, 8 + 4 * 2, "oracle stats: 8 acquired, 4 test prompts at 2 waypoints")
    T.ok(train[2].loss and train[2]["rewards/accuracies"], "DPO metrics under TRL's names")
    local hybrid = loop.run(tiny_config(tok, theta0(), { acquisition = "hybrid", budget = 4, out = dir .. "/hybrid" }))
    T.eq(#hybrid.acquired, 4, "hybrid: entropy prefilter on the engine, then certainty")
end)

local function real_resume_case(online)
    local tok, theta0, dir = tiny_setup()
    loop.run(tiny_config(tok, theta0(), { budget = 12, online = online, out = dir .. "/full" }))
    T.assert_error_match(function()
        loop.run(tiny_config(tok, theta0(), { budget = 12, online = online, out = dir .. "/crash",
                                              engine = FE.crashing(2) }))
    end, "simulated crash")
    T.eq(#read_run(dir .. "/crash"), 8, "step 2 labelled before the crash")
    loop.run(tiny_config(tok, theta0(), { budget = 12, online = online, resume = dir .. "/crash" }))
    local a1, e1 = read_run(dir .. "/full")
    local a2, e2 = read_run(dir .. "/crash")
    T.eq(#a2, 12)
    for i, r in ipairs(a1) do
        T.eq({ a2[i].prompt, a2[i].a, a2[i].b, a2[i].label }, { r.prompt, r.a, r.b, r.label }, 0, "pair " .. i)
        T.eq(a2[i].score, r.score, 1e-4, "score " .. i)
    end
    T.eq(e2[3].winrate, e1[3].winrate)
end

T.case("real tiny model: a crashed run resumed from its folder acquires what an uninterrupted one does", function()
    real_resume_case(false)
end)

T.case("real tiny model: online variant resumes with the policy and Adam's moments of its last step", function()
    real_resume_case(true)
end)

-- Issue 15: with the lora knob the loop trains adapters only; θ0 (the reference, the reset point)
-- is the policy with them off, the base weights never move, and the run resumes the same way.
T.case("real tiny model: lora = {...} trains adapters alone, saves them, and resumes", function()
    local tok, theta0, dir = tiny_setup()
    local policy = theta0()
    local base = {}
    for _, p in ipairs(policy:parameters()) do base[p.name] = p.tensor:clone() end
    local knob = { r = 2, alpha = 8, targets = { "c_attn", "c_fc" } }
    loop.run(tiny_config(tok, policy, { budget = 8, online = true, lora = knob, out = dir .. "/lora" }))
    for _, p in ipairs(policy:parameters()) do
        T.eq((p.tensor - base[p.name]):abs():max():item(), 0, p.name .. " moved")
    end
    local l, saved = policy:lora(), runfolder.open(dir .. "/lora")
    T.eq({ l.r, l.alpha, l.seed, #l.adapters }, { 2, 8, saved.config.seed, 2 }, 0, "attached with the knob, the run's seed")
    T.ok(l.adapters[1].B:abs():max():item() > 0, "the adapters trained")
    T.eq(saved.config.lora, knob, 0, "config.json keeps the knob")
    T.ok(runfolder.exists(dir .. "/lora/policy/step-2/adapter_model.safetensors"), "the online policy is its adapter")
    -- a resume with the same object accepts its adapters (back at θ0) and ends where it was
    local trained = policy:forward({ { 1, 2, 3 } })
    -- apl.inspect loads the saved adapter onto θ0's folder; its reference is the adapter off
    theta0():save(dir .. "/base")
    local s = apl.inspect.load(dir .. "/lora/policy/step-2", dir .. "/base", { tok = dir .. "/tok" })
    -- (1e-7 apart: the trained adapters require gradients, so their forward takes autograd's kernels)
    T.eq((s.policy:forward({ { 1, 2, 3 } }) - trained):abs():max():item(), 0, 1e-6, "the saved adapter")
    T.eq((s.ref:forward({ { 1, 2, 3 } }) - theta0():forward({ { 1, 2, 3 } })):abs():max():item(), 0, 0, "θ0")
    loop.run(tiny_config(tok, policy, { budget = 8, online = true, lora = knob, resume = dir .. "/lora" }))
    T.eq((policy:forward({ { 1, 2, 3 } }) - trained):abs():max():item(), 0, 0, "the same adapters again")
    T.assert_error_match(function()
        loop.run(tiny_config(tok, policy, { budget = 8, lora = { r = 4 }, out = dir .. "/other" }))
    end, "has adapters already, with other options")
    T.assert_error_match(function() loop.run(tiny_config(tok, theta0(), { lora = { rank = 2 } })) end,
        "apl%.loop: lora: unknown option 'rank'")
end)

-- Runs fn with io.write going to a file; returns fn's result and the text written.
local function captured(fn)
    local path = T.tmpdir() .. "/out.txt"
    io.output(path)
    local ok, res = pcall(fn)
    io.output():close()
    io.output(io.stdout)
    if not ok then error(res, 0) end
    return res, io.open(path):read("a")
end

-- β·(log πθ − log π0) of completion + EOS after prompt, per token and summed, each log-prob from
-- a plain forward of the unpadded row (compute_fixture), not from apl's scoring.
local F = dofile(T.root() .. "/tests/lua/compute_fixture.lua")

local function ref_rewards(policy, ref, tok, prompt, completion, beta)
    local p, c = tok:encode(prompt), tok:encode(completion)
    c[#c + 1] = tok.eos_id
    local lp, per = F.ref_logprob(policy, p, c)
    local l0, per0 = F.ref_logprob(ref, p, c)
    local tokens = {}
    for i = 1, #c do tokens[i] = beta * (per[i] - per0[i]) end
    return beta * (lp - l0), tokens
end

T.case("inspect: rewards and per-token rewards against a plain forward; load; run pairs sorted by score; evals", function()
    local tok, theta0, dir = tiny_setup()
    local policy = theta0()
    loop.run(tiny_config(tok, policy, { out = dir .. "/run" }))
    local ref = theta0()
    policy:save(dir .. "/policy")
    ref:save(dir .. "/ref")
    local sessions = { session = apl.inspect.session { policy = policy, ref = ref, tok = tok, beta = 0.2 },
                       load = apl.inspect.load(dir .. "/policy", dir .. "/ref", { tok = dir .. "/tok", beta = 0.2 }) }
    for how, s in pairs(sessions) do
        local out, text = captured(function() return s:pair("the movie", " was great .", " was awful .") end)
        for _, side in ipairs { { "a", " was great ." }, { "b", " was awful ." } } do
            local r, per = ref_rewards(policy, ref, tok, "the movie", side[2], 0.2)
            T.ok(math.abs(r) > 1e-3, "the trained policy differs from θ0")
            T.eq(out["r_" .. side[1]], r, 1e-5, how .. ": r̂(" .. side[1] .. ")")
            local got = {}
            for i, t in ipairs(out["tokens_" .. side[1]]) do got[i] = t.reward end
            T.eq(got, per, 1e-5, how .. ": per-token rewards of " .. side[1])
        end
        T.eq(out.p, 1 / (1 + math.exp(out.r_b - out.r_a)), 1e-6)
        T.ok(text:find("P%(a ≻ b%)"), text)
    end
    local r = apl.inspect.run(dir .. "/run")
    local rows, table_text = captured(function() return r:pairs { sort = "score", limit = 5 } end)
    T.eq(#rows, 5)
    for i = 2, #rows do T.ok(rows[i].score <= rows[i - 1].score, "sorted by score") end
    T.ok(table_text:find("5 of 8 pairs"), table_text)
    local evals, evals_text = captured(function() return r:evals() end)
    local saved = runfolder.open(dir .. "/run"):read("eval")
    T.eq(evals, saved, 0, "the run's evaluations")
    for _, e in ipairs(saved) do
        T.ok(evals_text:find(string.format("%8d %8.3f %8.3f %6d", e.labels, e.winrate, e.stderr, e.n), 1, true), evals_text)
    end
end)

T.case("real tiny model: the loop asks an OpenAI-style judge (local test server) at the oracle temperature", function()
    local tok, theta0, dir = tiny_setup()
    local server = dofile(T.root() .. "/tests/lua/oracle_server.lua")
    local s = server.start {}
    local ok, err = pcall(function()
        -- The test server ignores the key; HOME is simply a variable that is always set.
        local spec = { base_url = s.url, model = "judge", template = "imdb", api_key_env = "HOME", timeout = 10 }
        local res = loop.run(tiny_config(tok, theta0(), { budget = 4, oracle = spec, out = dir .. "/http" }))
        T.eq(#res.acquired, 4)
        for _, r in ipairs(res.acquired) do T.ok(r.label == 1 or r.label == 2, "labelled by the judge") end
        local reqs = s:requests()
        T.ok(#reqs >= 4 + 4, "4 acquired pairs and 4 test prompts judged")
        T.eq(require("cjson").decode(reqs[1].body).temperature, 0.05, 1e-9)
        T.eq(runfolder.open(dir .. "/http").config.oracle.template, "imdb")
    end)
    s:stop()
    if not ok then error(err, 0) end
end)

-- ------------------------------------------------------------------------------------------
-- A judge that is down: the run stops with the reason instead of learning nothing for hours.

-- An apl.oracle.lua judge that answers "A"/"B" by sentiment, except for prompts where fails(prompt).
local function flaky_oracle(fails)
    return apl.oracle.lua(function(prompt, a, b)
        if fails(prompt) then return "judge is down" end
        return sentiment.prefer(prompt, a, b)
    end)
end

T.case("a step where every label failed stops the run; --resume continues after the fix", function()
    local dir = T.tmpdir() .. "/run"
    local e = fake_engine()
    local err = T.assert_error_match(function()
        loop.run(config { out = dir, engine = e, oracle = flaky_oracle(function() return true end) })
    end, "apl%.loop: step 1: the oracle labelled none of the 4 pairs")
    T.ok(err:find("judge is down", 1, true) and err:find("--resume " .. dir, 1, true), err)
    T.eq(e.resets, 0, "nothing was trained")
    local _, _, train = read_run(dir)
    T.eq(#train, 0, "no step finished")
    local res = loop.run(config { resume = dir, engine = fake_engine(), oracle = flaky_oracle(function() return false end) })
    T.eq(#res.acquired, 8)
end)

T.case("labels written are the labels the judge gave; an evaluation it could not judge is an error", function()
    local dir = T.tmpdir() .. "/run"
    local n = 0 -- every other acquisition pair fails
    local half = flaky_oracle(function(prompt) n = n + 1; return not prompt:find("^test") and n % 2 == 0 end)
    loop.run(config { out = dir, engine = fake_engine(), oracle = half, waypoints = { 4, 8 } })
    local acquired, evals, train = read_run(dir)
    local labelled = 0
    for _, r in ipairs(acquired) do if r.label then labelled = labelled + 1 end end
    T.ok(labelled < #acquired, "some pairs failed")
    T.eq({ train[2].labels, train[2].pairs }, { labelled, 8 })
    T.eq({ evals[2].labels, evals[2].pairs }, { labelled, 8 })
    local no_test = flaky_oracle(function(prompt) return prompt:find("^test") ~= nil end)
    T.assert_error_match(function()
        loop.run(config { out = T.tmpdir() .. "/run", engine = fake_engine(), oracle = no_test, waypoints = { 4 } })
    end, "apl%.loop: evaluation at step 1: the oracle judged none of the 6 test pairs %(judge function returned")
end)

T.case("an HTTP judge that refuses connections fails its preflight before any model work", function()
    local e = fake_engine()
    local cloned = false
    e.reference = function(m) cloned = true; return { bias = m.bias } end
    local spec = { base_url = "http://127.0.0.1:9/v1", model = "judge", template = "imdb", timeout = 2, backoff = 0.01 }
    local err = T.assert_error_match(function()
        loop.run(config { out = T.tmpdir() .. "/run", engine = e, oracle = spec })
    end, "apl%.oracle%.preflight: the judge at http://127%.0%.0%.1:9/v1/chat/completions %(model 'judge'%) cannot be used: the connection was refused")
    T.ok(not cloned and e.oracle_calls == 0, "no model work before the judge answered: " .. err)
end)

T.case("a key-shaped value in a judge spec is refused before the run folder is made", function()
    local dir = T.tmpdir() .. "/run"
    local spec = { base_url = "http://127.0.0.1:9/v1", model = "judge", template = "imdb", api_key = "sk-proj-0123456789abcdefghijKLMN" }
    local err = T.assert_error_match(function()
        loop.run(config { out = dir, engine = fake_engine(), oracle = spec })
    end, "config field 'oracle%.api_key' looks like an API key")
    T.ok(not err:find("0123456789", 1, true), "the key is not repeated: " .. err)
    T.ok(not runfolder.exists(dir .. "/config.json"), "nothing saved")
end)
