-- recipes/study.lua's pieces: the noisy judge (its flip rate and self-consistency, its noiseless
-- preference), the paired-difference CI (against a textbook t table and a hand computation),
-- Figure 3 against a true preference, the STUDY.md writer, and a smoke of the whole study.
local T = require "tests.lib.test"
local fs = require "apl.fs"
local report = require "apl.report"
local judge = require "recipes.lib.study_judge"
local study_report = require "recipes.lib.study_report"

local ROOT = T.root()

-- Texts whose noiseless order is known: i positive words against j negative ones.
local function pair_texts(i)
    local pos = string.rep("great ", i % 3 + 1) -- "great great" is a fault: still more positive
    return "really good and " .. pos .. ". the plot was fun .", "rather dull . the cast was weak " .. i .. " ."
end

T.case("study judge: flip probability solves (1-e)^2 + e^2 = 0.9", function()
    T.eq((1 - judge.FLIP) ^ 2 + judge.FLIP ^ 2, 0.9, 1e-12)
    T.ok(judge.FLIP > 0.05 and judge.FLIP < 0.06, tostring(judge.FLIP))
end)

T.case("study judge: flip rate and self-consistency over many pairs, within binomial tolerance", function()
    local fn, counts = judge.new { seed = 7 }
    local n, flips, agree = 4000, 0, 0
    for i = 1, n do
        local good, bad = pair_texts(i)
        local prompt = "prompt " .. i
        T.eq(judge.truth(prompt, good, bad), 1)
        -- first call in order (good, bad), second in the other order: an order-blind judge
        local first = fn(prompt, good, bad) == "A"
        local second = fn(prompt, bad, good) == "B"
        if not first then flips = flips + 1 end
        if first == second then agree = agree + 1 end
    end
    T.eq(counts.calls, 2 * n)
    local e = judge.FLIP
    local tol_flip = 4 * math.sqrt(e * (1 - e) / n)
    T.ok(math.abs(flips / n - e) <= tol_flip, string.format("flip rate %.4f, expected %.4f ± %.4f", flips / n, e, tol_flip))
    local tol_agree = 4 * math.sqrt(0.9 * 0.1 / n)
    T.ok(math.abs(agree / n - 0.9) <= tol_agree, string.format("self-consistency %.4f, expected 0.9 ± %.4f", agree / n, tol_agree))
end)

T.case("study judge: reproducible by seed, a repeated call is a new draw, ties broken by the pair", function()
    local f1, f2, f3 = judge.new { seed = 3 }, judge.new { seed = 3 }, judge.new { seed = 4 }
    local differ, second_differs = false, false
    for i = 1, 400 do
        local good, bad = pair_texts(i)
        local a1, a2, a3 = f1("p", good, bad), f2("p", good, bad), f3("p", good, bad)
        T.eq(a1, a2)
        differ = differ or a1 ~= a3
        second_differs = second_differs or f1("p", good, bad) ~= a1
    end
    T.ok(differ, "seeds 3 and 4 flip the same pairs")
    T.ok(second_differs, "a repeated call never drew a new flip")
    -- a tie: same score both ways, the answer names the same completion in either order
    local fn = judge.new { seed = 5, flip = 0 }
    local x, y = "very good .", "quite fun ."
    T.eq(judge.truth("p", x, y), nil)
    T.eq(fn("p", x, y) == "A", fn("p", y, x) == "B")
end)

T.case("study judge: the noiseless preference, and faults of form lower a score", function()
    T.eq(judge.truth("p", "really great . i loved it .", "very boring . a waste of time ."), 1)
    T.eq(judge.truth("p", "very boring .", "really great ."), 2)
    T.eq(judge.truth("p", "not bad .", "bad ."), 1)                  -- apl.sentiment's negation
    local rows = {
        { "good and fun .", 2, 0 },
        { "good good .", 1, 1 },                                       -- a word repeated
        { "the plot was good and the plot was fun .", 0, 2 },          -- two repeated word pairs
        { "good . . fun", 1, 1 },                                      -- stray punctuation
        { ". good", 0, 1 },
    }
    for _, r in ipairs(rows) do
        local s, _, f = judge.score(r[1])
        T.eq({ s, f }, { r[2], r[3] }, nil, r[1])
    end
    T.eq(judge.truth("p", "good and fun .", "good good ."), 1)
end)

------------------------------------------------------------------------------------------------
-- Statistics

-- Two-sided 95% t quantiles (the 97.5% point), df 1..30, from a printed table (e.g. NIST's
-- Engineering Statistics Handbook, 1.3.6.7.2).
local T975 = { 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
               2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
               2.052, 2.048, 2.045, 2.042 }

T.case("report: t quantiles against the printed table (df 1..30), and the 99% level", function()
    for df, want in ipairs(T975) do T.eq(report.t_quantile(df), want, 6e-4, "df " .. df) end
    T.eq(report.t_quantile(7, 0.99), 3.499, 6e-4)
    T.eq(report.t_quantile(1, 0.90), 6.314, 6e-4)
    T.eq(report.t_abs_cdf(0, 5), 0, 1e-15)
    T.assert_error_match(function() report.t_quantile(0) end, "df must be an integer")
end)

T.case("report: the paired-difference CI against a hand computation", function()
    local d = { 0.02, -0.01, 0.03, 0.00, 0.01, 0.04, -0.02, 0.01 }
    local n, sum = #d, 0
    for _, v in ipairs(d) do sum = sum + v end
    local mean, ss = sum / n, 0
    for _, v in ipairs(d) do ss = ss + (v - mean) ^ 2 end
    local se = math.sqrt(ss / (n - 1)) / math.sqrt(n)
    local c = report.paired_ci(d)
    T.eq({ c.n, c.df }, { 8, 7 })
    T.eq(c.mean, mean, 1e-12)
    T.eq(c.se, se, 1e-12)
    T.eq(c.lo, mean - T975[7] * se, 1e-5)
    T.eq(c.hi, mean + T975[7] * se, 1e-5)
    T.eq(report.paired_ci({ 0.1 }).lo, nil)
end)

-- A loaded run, as report.load gives it.
local function fake_run(acq, seed, rates)
    local evals = {}
    for i, w in ipairs(rates) do evals[i] = { labels = 16 * i, pairs = 16 * i, winrate = w, stderr = 0.02 } end
    return { dir = acq .. "-s" .. seed, config = { acquisition = acq, seed = seed, dataset = "study" }, evals = evals, acquired = {} }
end

T.case("report: paired differences are paired by seed (a seed without random is left out)", function()
    local runs = {
        fake_run("random", 1, { 0.60, 0.70 }), fake_run("random", 2, { 0.50, 0.65 }),
        fake_run("certainty", 1, { 0.62, 0.75 }), fake_run("certainty", 2, { 0.55, 0.66 }),
        fake_run("certainty", 3, { 0.90, 0.90 }),
    }
    local rows = report.paired(runs, "random")
    T.eq(#rows, 2)
    T.eq({ rows[1].column, rows[1].labels, rows[1].n, rows[1].seeds }, { "certainty", 16, 2, { 1, 2 } })
    T.eq(rows[1].diffs, { 0.02, 0.05 }, 1e-12)
    T.eq(rows[2].mean, (0.05 + 0.01) / 2, 1e-12)
    T.eq(rows[2].hi - rows[2].mean, T975[1] * math.sqrt(((0.05 - 0.03) ^ 2 + (0.01 - 0.03) ^ 2) / 1 / 2), 1e-3)
end)

T.case("report: Figure 3 against a true preference counts a flipped label as the truth says", function()
    -- two pairs: the policy favours a (0.8) in both; truth prefers a in both; the labels say a, then b (flipped)
    local acquired = { { step = 2, a = "x", b = "y", bt_prob = 0.8, label = 1 }, { step = 2, a = "x", b = "z", bt_prob = 0.8, label = 2 } }
    local right, wrong = report.bt_split(acquired)
    T.eq({ #right, #wrong }, { 1, 1 })
    local truth = function() return 1 end
    right, wrong = report.bt_split(acquired, truth)
    T.eq({ #right, #wrong }, { 2, 0 })
    T.eq(report.truth_prob(acquired[2], function() return 2 end), 0.2, 1e-12)
    T.eq(report.truth_prob(acquired[2], function() return nil end), nil)
    local svg = report.bt_panel(acquired, { title = "t", truth = truth })
    T.ok(svg:find("truly preferred", 1, true), "the axis names the truth")
end)

------------------------------------------------------------------------------------------------
-- STUDY.md

local function fake_result(lo, hi)
    local t = report.table2 { fake_run("random", 1, { 0.6 }), fake_run("certainty", 1, { 0.62 }) }
    return {
        title = "fake", date = "2026-12-06", command = "apl recipes/study.lua", design = { "- a design line" },
        seeds = 8, base = "random", fns = { "certainty" }, table2 = t, level = 0.95,
        paired = { { dataset = "study", column = "certainty", labels = 256, n = 8, mean = (lo + hi) / 2, se = 0.01,
                     df = 7, lo = lo, hi = hi } },
        figures = { { name = "Figure 2", path = "figure2.svg", caption = "cap" } },
        times = { { phase = "total", seconds = 12 } },
        changes = { { version = "v1", date = "2026-12-06", what = "the initial design" } },
    }
end

T.case("STUDY.md: a CI that covers 0 says no difference; one that does not names the function", function()
    local md = study_report.markdown(fake_result(-0.01, 0.03))
    T.ok(md:find("certainty vs random: no difference", 1, true), md)
    T.ok(md:find("[-1.0, +3.0]", 1, true), "the CI in points")
    T.ok(md:find("- v1 (2026-12-06): the initial design", 1, true), "design changes")
    T.ok(md:find("![Figure 2](figure2.svg)", 1, true), "the figure")
    md = study_report.markdown(fake_result(0.01, 0.05))
    T.ok(md:find("certainty vs random: better than random at 256 labels", 1, true), md)
    T.ok(md:find("certainty ahead", 1, true), md)
    md = study_report.markdown(fake_result(-0.05, -0.01))
    T.ok(md:find("worse than random at 256 labels", 1, true), md)
    T.ok(md:find("random ahead", 1, true), md)
    T.eq(study_report.verdict { lo = 0, hi = 0.1 }, "no difference")
    T.eq(study_report.verdict {}, "no CI")
end)

------------------------------------------------------------------------------------------------
-- The whole study, on a tiny budget

local function smoke(out, ...)
    local code = fs.run({ ROOT .. "/apl", "--threads", "2", ROOT .. "/recipes/study.lua", "--smoke", "--out", out, ... },
        { stdout = out .. "/study.log", stderr = out .. "/study.err" })
    T.eq(code, 0, nil, (fs.read(out .. "/study.err") or "") .. (fs.read(out .. "/sweeps.log") or ""))
end

T.case("study: --smoke runs the pipeline end to end (two sweeps side by side) and writes STUDY.md", function()
    local out = T.tmpdir()
    smoke(out)
    -- two sweeps under xargs, one per seed, their arguments NUL-separated
    local args = assert(fs.read(out .. "/sweeps.args"))
    T.ok(args:find("\0--seeds\0" .. "1-1\0", 1, true) and args:find("\0--seeds\0" .. "2-2\0", 1, true), args)
    local md = assert(fs.read(out .. "/STUDY.md"))
    T.ok(md:find("Smoke run", 1, true))
    T.ok(md:find("Runs: 4 of 4 finished.", 1, true), md)
    T.ok(md:find("## Paired difference to random", 1, true))
    T.ok(md:find("certainty vs random:", 1, true), md)
    T.ok(md:find("- v1 (", 1, true))
    for _, f in ipairs { "figure2.svg", "figure3.svg", "figure3_truth.svg", "figure_paired.svg", "paired.csv",
                         "table2.md", "report.html", "random-s1/eval.jsonl", "certainty-s2/eval.jsonl" } do
        T.ok(fs.exists(out .. "/" .. f), f)
    end
    local csv = fs.read(out .. "/paired.csv")
    T.ok(csv:find("\nstudy,certainty,16,2,", 1, true) and csv:find("\nstudy,certainty,32,2,", 1, true), csv)
end)

T.case("study: --smoke --jobs 1 runs one sweep, and a rerun keeps the finished arms", function()
    local out = T.tmpdir()
    smoke(out, "--jobs", "1", "--md", out .. "/elsewhere/STUDY.md")
    T.ok(not fs.exists(out .. "/sweeps.args"), "one job needs no xargs")
    local md = assert(fs.read(out .. "/elsewhere/STUDY.md"))
    T.ok(md:find("](" .. out .. "/figure2.svg)", 1, true), "a figure outside the md's folder keeps its path")
    local before = fs.read(out .. "/random-s1/eval.jsonl")
    smoke(out, "--jobs", "1")
    T.eq(fs.read(out .. "/random-s1/eval.jsonl"), before)
    T.ok(fs.read(out .. "/sweeps.log"):find("skipped (finished)", 1, true), "the sweep skipped the finished arms")
end)
