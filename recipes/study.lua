-- recipes/study.lua — a CPU-scale study of the paper's question: at an equal label budget, does
-- an acquisition function (entropy, certainty, hybrid) beat random? `make study` runs it (about
-- 25 minutes on 2 cores, alone on the machine: v1's 32 runs took 24 min); --smoke runs a tiny
-- version in seconds. v1's STUDY.md, figures and tables are in study/v1/.
--
--   apl recipes/study.lua [--seeds N] [--acquisitions LIST] [--jobs 1|2] [--out DIR] [--md FILE]
--   apl recipes/study.lua --smoke          # the pipeline on a tiny budget (tests)
--
-- It prepares (once, cached under build/study/) a tokenizer and an SFT policy, runs every
-- (function, seed) arm through recipes/sweep.lua (recipes/lib/study_arm.lua is the arm's
-- recipe), then writes into --out: Table 2 (table2.*), Figure 2 (figure2.svg), Figure 3 against
-- the labels (figure3.svg) and against the judge's noiseless preference (figure3_truth.svg), the
-- paired differences to random (paired.csv, figure_paired.svg), report.html and STUDY.md. Run the
-- same command again after a crash or Ctrl-C: finished arms are kept, cut-short ones resumed.
--
-- Design (v1; each number is fixed before any result, and a change of it is a new version listed
-- in M.CHANGES below and in STUDY.md's "Design changes"):
-- - Task: movie reviews. A prompt is a neutral opening that ends where the verdict must follow
--   ("i saw the film on tv and it was"); 5 opening templates × subjects, times, nouns give about
--   3,600 distinct prompts (pool: 4000 draws, test: 300 other draws of the same templates). Completions are 12–20 tokens (the corpus's verdicts are 8–20 tokens:
--   "rather dull . the villain was forgettable ..."), long enough for two or three sentiment words.
-- - Policy: GPT-2, 4 layers, 128 wide, 4 heads (the demo's is 2 × 64: 8× the parameters of its
--   blocks), SFT-trained here with apl.sft for 2 epochs on 6000 generated reviews, half positive,
--   half negative, a fifth with a contrary detail (recipes/lib/study_data.lua). θ0 is this SFT
--   policy for every arm, so the baseline of the win-rate is θ0's own completions.
-- - Judge (recipes/lib/study_judge.lua): a known preference, apl.sentiment's lexicon score minus
--   one point per fault of form (a word repeated, a repeated word pair, stray punctuation), as the
--   paper's prompt asks for the more positive and fluent completion; each call flipped with
--   probability e = (1 − √0.8)/2 ≈ 0.0528, so two calls agree 90% of the time (the paper's Figure 1
--   for GPT-4), by a hash of (seed, pair, call): reproducible, and the same noise on the same pair
--   for every function of a seed. Ties are broken by a hash of (seed, pair). The same noisy judge
--   labels and evaluates, as GPT-4 does in the paper.
-- - Loop (study_arm.KNOBS): M = 16 pairs per step from S = 128 prompts (M/S = 1/8; the paper's
--   IMDB is 128/4000), 16 steps to B = 256 labels, offline (θ0 + DPO on all pairs each step, the
--   paper's Algorithm 1), 4 epochs, β = 0.2, lr 5e-4, minibatch 16, temperatures 0.7 (train) and
--   0.25 (test), hybrid J = 2, entropy N = 4. lr: half the demo's 1e-3, whose 2-layer model's
--   curves flattened early (a run in build/demo/runs: 0.75 at 16 labels, 0.90 at 112 of 128); a
--   bigger model at half the rate with twice the budget should flatten inside 256 labels.
--   Waypoints 32, 64, 96, 128, 192, 256.
-- - Evaluation: 300 held-out prompts (all of them, the same for every arm and seed), one
--   completion each against θ0's, judged by the noisy judge; the paper's binomial SE at n = 300 is
--   ≤ 0.029 per run.
-- - Statistics: 8 seeds per function, paired by seed (the seed draws the prompts of each step, the
--   generation noise, the judge's noise; the pool, test prompts and θ0 are the same for all). Per
--   waypoint: mean win-rate ± SE over seeds, and per function the paired difference to random
--   (function − random, seed by seed) with a 95% CI, mean ± t(0.975, 7)·SE (apl.report.paired).
--   8 seeds, not 9 as in the paper: the time budget (below) holds 32 runs.
-- - Sizing (pilot of 2026-12-06 on this machine, 2 cores shared with other work: load 3–7). Two
--   arms side by side, 1 thread each, seed 1, the full knobs: random 120 s and certainty 120 s
--   wall; then entropy 170 s and hybrid 200 s (CPU 76, 77, 78, 96 s). One arm with 2 threads:
--   random 110 s wall (CPU 107 s: a model this small gains little from a second thread), so two
--   processes of one thread run 2 arms in the time 1 × 2 runs ~1.1: M.JOBS = 2. Prediction:
--   8 seeds × (120 + 120 + 170 + 200) s / 2 processes ≈ 41 min of runs under that load, ~22 min
--   from the CPU times alone on an idle machine, plus the preparation (47 s measured) and the
--   report (< 1 min). End to end through this script (--seeds 2 --acquisitions random,certainty,
--   two sweeps side by side, load 4–6): 4 runs in 283 s (random 107 s, certainty 170 s per run),
--   report 0 s. The smoke (--smoke: 2 seeds × 2 functions, 2 steps): 22 s. The pilot's
--   logs show win-rates; no knob was set or changed on them (the design above predates them).
local fs = require "apl.fs"
local report = require "apl.report"
local runfolder = require "apl.runfolder"
local plot = require "apl.plot"
local study_arm = require "recipes.lib.study_arm"
local study_data = require "recipes.lib.study_data"
local study_judge = require "recipes.lib.study_judge"
local study_report = require "recipes.lib.study_report"

local M = {}

-- Every change of design gets a line here (and so in STUDY.md), with its date.
M.CHANGES = {
    { version = "v1", date = "2026-12-06", what = "the initial design (recipes/study.lua's header)" },
}
M.FNS = { "random", "entropy", "certainty", "hybrid" }
M.SEEDS = 8
M.JOBS = 2       -- processes side by side, 1 thread each (~1.8× faster than 1 × 2 in the pilot)
M.LEVEL = 0.95
-- --smoke: the pipeline end to end in seconds; its numbers mean nothing.
M.SMOKE = { seeds = 2, fns = "random,certainty",
            arm_args = { "--waypoints", "16,32", "--n-test", "16", "--max-new-tokens", "6-10" } }

local root = package.apl_root or "."

local spec = {
    { "seeds", "N", "seeds per acquisition function (1..N)", default = M.SEEDS, integer = true, min = 2 },
    { "acquisitions", "LIST", "functions to run; random must be one", default = table.concat(M.FNS, ",") },
    { "jobs", "N", "arms run side by side, each with 1 thread (1: one process with every core)",
      default = M.JOBS, integer = true, min = 1 },
    { "out", "DIR", "study folder (default build/study/runs/v<version>)" },
    { "md", "FILE", "where STUDY.md goes (default <out>/STUDY.md)" },
    { "smoke", nil, "a tiny budget, to check the pipeline (seconds)", flag = true, default = false },
}

------------------------------------------------------------------------------------------------
-- Running the arms

-- The sweep's argv for seeds lo..hi (after the apl binary).
local function sweep_args(o, lo, hi)
    local argv = { root .. "/recipes/sweep.lua", "--recipe", root .. "/recipes/lib/study_arm.lua",
                   "--acquisitions", o.fns_list, "--seeds", string.format("%d-%d", lo, hi), "--out", o.out,
                   "--cache", o.cache }
    for _, x in ipairs(o.arm_args) do argv[#argv + 1] = x end
    return argv
end

-- Splits seeds 1..n into `jobs` contiguous chunks and runs one sweep per chunk. Side by side, the
-- sweeps run under GNU xargs -P (execvp all the way, no shell: the arguments go NUL-separated
-- through a file), each process with 1 thread (APL_THREADS, which the sweep's arms inherit), and
-- their output goes, interleaved, to <out>/sweeps.log. One job: the sweep with every core.
-- Returns the exit status (xargs: 123 when a sweep failed) and the log.
local function run_arms(o)
    local jobs = math.min(o.jobs, o.seeds)
    local per = -(-o.seeds // jobs)
    local chunks = {}
    for j = 1, jobs do
        local lo, hi = (j - 1) * per + 1, math.min(j * per, o.seeds)
        if lo <= hi then chunks[#chunks + 1] = sweep_args(o, lo, hi) end
    end
    local log = o.out .. "/sweeps.log"
    io.write("study: the runs' progress goes to ", log, " (tail -f it)\n")
    if #chunks == 1 then
        local argv = { root .. "/apl", table.unpack(chunks[1]) }
        io.write("study: ", table.concat(argv, " "), "\n"); io.flush()
        return fs.run(argv, { stdout = log, stderr = log }), log
    end
    local items = {}
    for _, c in ipairs(chunks) do
        for _, x in ipairs(c) do
            assert(not x:find("\0", 1, true), "study: an argument holds a NUL byte")
            items[#items + 1] = x
        end
        io.write("study: APL_THREADS=1 ", root, "/apl ", table.concat(c, " "), "\n")
    end
    io.flush()
    local list = fs.write(o.out .. "/sweeps.args", table.concat(items, "\0") .. "\0")
    return fs.run({ "xargs", "-0", "-a", list, "-P", tostring(#chunks), "-n", tostring(#chunks[1]),
                    "env", "APL_THREADS=1", root .. "/apl" }, { stdout = log, stderr = log }), log
end

------------------------------------------------------------------------------------------------
-- Results

local function truth_of(r) return study_judge.truth(r.prompt, r.a, r.b) end

-- Per function: acquired pairs after step 1 with a true preference, and how many of them the
-- policy had wrong (BT probability of the truly preferred completion < 0.5).
function M.wrong_share(runs)
    local out = {}
    for _, r in ipairs(runs) do
        local fn = report.label(r.config)
        local w = out[fn] or { wrong = 0, n = 0 }
        out[fn] = w
        for _, p in ipairs(r.acquired) do
            local pp = p.step > 1 and report.truth_prob(p, truth_of)
            if pp and pp ~= 0.5 then
                w.n = w.n + 1
                if pp < 0.5 then w.wrong = w.wrong + 1 end
            end
        end
    end
    return out
end

-- The paired differences as a figure: mean difference to random vs labels, the CI as a band.
function M.figure_paired(paired, fns, level)
    local series = {}
    for _, fn in ipairs(fns) do
        local s = { name = fn .. " − random", x = {}, y = {}, err = {} }
        for _, r in ipairs(paired) do
            if r.column == fn and r.lo then
                s.x[#s.x + 1], s.y[#s.y + 1], s.err[#s.err + 1] = r.labels, r.mean, r.hi - r.mean
            end
        end
        if #s.x > 0 then series[#series + 1] = s end   -- report.paired's rows come by ascending labels
    end
    return plot.lines_svg { title = string.format("Paired difference to random (%d%% CI)", math.floor(100 * level + 0.5)),
        xlabel = "labels acquired", ylabel = "win-rate difference", band = true, hline = 0, series = series }
end

function M.paired_csv(paired)
    local lines = { "dataset,function,labels,n,mean,se,df,lo,hi" }
    local function f(x) return x and string.format("%.15g", x) or "" end
    for _, r in ipairs(paired) do
        lines[#lines + 1] = table.concat({ r.dataset, r.column, tostring(r.labels), tostring(r.n), f(r.mean), f(r.se),
            r.df and tostring(r.df) or "", f(r.lo), f(r.hi) }, ",")
    end
    return table.concat(lines, "\n") .. "\n"
end

local function arm_seconds(dir)
    local s = 0
    for _, t in ipairs(runfolder.open(dir):read("train")) do s = s + (t.seconds or 0) end
    return s
end

-- An absolute form of path (relative ones against the working directory).
local function absolute(path)
    if path:sub(1, 1) == "/" then return path end
    local cwd = os.getenv("PWD") or "."
    if path == "." then return cwd end
    return cwd .. "/" .. path:gsub("^%./", "")
end

-- path as STUDY.md in md_dir links it: relative when it lies below md_dir.
local function rel(path, md_dir)
    path, md_dir = absolute(path), absolute(md_dir)
    if path:sub(1, #md_dir + 1) == md_dir .. "/" then return path:sub(#md_dir + 2) end
    return path
end

-- The setup section of STUDY.md, from the design's constants.
function M.design_lines(o)
    local K, D, S = study_arm.KNOBS, study_data.MODEL, o.smoke and study_data.SMALL or study_data.SFT
    local function fmt_list(l) local t = {} for i, x in ipairs(l) do t[i] = tostring(x) end return table.concat(t, ", ") end
    return {
        string.format("- Policy: GPT-2, %d layers, %d wide, %d heads, %d positions; SFT with apl.sft, %d epochs on %d "
            .. "generated reviews (both sentiments), cached in `%s`. θ0 = this policy for every arm.",
            D.n_layer, D.n_embd, D.n_head, D.n_positions, S.epochs, S.reviews, rel(o.cache, root)),
        "- Prompts: neutral review openings ending where the verdict must follow; completions of "
            .. (o.max_new_tokens or string.format("%d–%d", study_arm.MAX_NEW_TOKENS[1], study_arm.MAX_NEW_TOKENS[2]))
            .. " tokens.",
        string.format("- Judge: lexicon sentiment score minus faults of form (repetition, stray punctuation); each call "
            .. "flipped with probability %.4f by a hash of (seed, pair, call), so two calls agree %.0f%% of the time "
            .. "(the paper's GPT-4). It labels and evaluates.", study_judge.FLIP, 100 * study_judge.AGREEMENT),
        string.format("- Loop: M = %d, S = %d, J = %d, N = %d, %d epochs, β = %g, lr = %g, minibatch %d, offline; "
            .. "waypoints %s.", K.batch, K.sample, K.oversample, K.entropy_samples, K.epochs, K.beta, K.lr,
            K.minibatch, o.waypoints or fmt_list(study_arm.WAYPOINTS)),
        string.format("- Evaluation: %s held-out prompts, one completion each vs θ0's.", o.n_test or tostring(study_arm.N_TEST)),
        string.format("- Functions: %s; seeds 1–%d each, paired by seed; 95%% CIs from the t distribution with "
            .. "seeds − 1 degrees of freedom.", table.concat(o.fns, ", "), o.seeds),
    }
end


function M.main(argv)
    local a = require("apl.args").parse(argv, spec)
    local o = { seeds = a.seeds, jobs = a.jobs, fns_list = a.acquisitions, arm_args = {}, smoke = a.smoke,
                cache = root .. "/build/study" }
    if a.smoke then
        o.seeds, o.fns_list, o.arm_args = M.SMOKE.seeds, M.SMOKE.fns, M.SMOKE.arm_args
        o.cache = root .. "/build/study-smoke"
        o.waypoints, o.n_test, o.max_new_tokens = "16, 32", "16", "6–10"
    end
    o.fns = {}
    for fn in o.fns_list:gmatch("[^,%s]+") do o.fns[#o.fns + 1] = fn end
    local has_random = false
    for _, fn in ipairs(o.fns) do has_random = has_random or fn == "random" end
    if not has_random then io.stderr:write("apl recipes/study.lua: --acquisitions must include random\n"); os.exit(2) end
    o.out = a.out or string.format("%s/runs/%s", o.cache, M.CHANGES[#M.CHANGES].version)
    runfolder.mkdir(o.out)
    local times, t0 = {}, os.time()

    io.write("study: preparing the tokenizer and the SFT policy in ", o.cache, "\n"); io.flush()
    study_data.prepare(o.cache, { small = a.smoke })
    times[#times + 1] = { phase = "prepare (cached after the first run)", seconds = os.time() - t0 }

    local t1 = os.time()
    local code, log = run_arms(o)
    times[#times + 1] = { phase = string.format("%d runs (%d side by side)", o.seeds * #o.fns, math.min(o.jobs, o.seeds)),
                          seconds = os.time() - t1 }

    local t2 = os.time()
    local dirs, arm_times = {}, {}
    for _, fn in ipairs(o.fns) do
        local sum, n = 0, 0
        for seed = 1, o.seeds do
            local d = string.format("%s/%s-s%d", o.out, fn, seed)
            if report.state(d) == "finished" then
                dirs[#dirs + 1] = d
                sum, n = sum + arm_seconds(d), n + 1
            end
        end
        if n > 0 then arm_times[fn] = sum / n end
    end
    if #dirs == 0 then io.stderr:write("apl recipes/study.lua: no run finished; see ", log, "\n"); return 1 end
    local w = report.write(dirs, o.out, { quiet = true, title = "apl study: does certainty beat random?" })
    local runs = {}
    for i, d in ipairs(dirs) do runs[i] = report.load(d) end
    local paired = report.paired(runs, "random", M.LEVEL)
    local cmp = {}
    for _, fn in ipairs(o.fns) do if fn ~= "random" then cmp[#cmp + 1] = fn end end
    local files = w.files
    files.truth = fs.write(o.out .. "/figure3_truth.svg", report.figure3(w.table2, runs, { truth = truth_of }))
    files.paired_svg = fs.write(o.out .. "/figure_paired.svg", M.figure_paired(paired, cmp, M.LEVEL))
    files.paired_csv = fs.write(o.out .. "/paired.csv", M.paired_csv(paired))
    times[#times + 1] = { phase = "report", seconds = os.time() - t2 }
    times[#times + 1] = { phase = "total", seconds = os.time() - t0 }

    local md = a.md or (o.out .. "/STUDY.md")
    local md_dir = md:match("^(.*)/[^/]*$") or "."
    local cmd = "apl recipes/study.lua" .. (#argv > 0 and " " .. table.concat(argv, " ") or "")
    local text = study_report.markdown {
        title = "apl study: does an acquisition function beat random at equal labels?",
        command = cmd, smoke = a.smoke, design = M.design_lines(o), seeds = o.seeds, base = "random",
        fns = cmp, all_fns = o.fns, table2 = w.table2, paired = paired, level = M.LEVEL,
        figures = {
            { name = "Figure 2", path = rel(files.figure2, md_dir), caption = "Figure 2: win-rate against θ0 vs labels "
              .. "acquired, mean over seeds with a ±SE band." },
            { name = "Paired differences", path = rel(files.paired_svg, md_dir), caption = "Each function's paired "
              .. "difference to random vs labels, with its 95% CI as the band; 0 inside the band is no difference." },
            { name = "Figure 3", path = rel(files.truth, md_dir), caption = "Figure 3: the policy's BT probability of "
              .. "the truly (noiselessly) preferred completion of each acquired pair, pooled over seeds; red: the policy "
              .. "had it wrong. figure3.svg is the same against the noisy labels." },
        },
        times = times, arm_times = arm_times, wrong_share = M.wrong_share(runs), changes = M.CHANGES,
        finished = #dirs, planned = o.seeds * #o.fns,
    }
    runfolder.mkdir(md_dir)
    fs.write(md, text)
    io.write(text, "\n")
    io.write(string.format("study: %s, report.html, figures and tables in %s\n", md, o.out))
    if code ~= 0 then
        io.stderr:write(string.format("apl recipes/study.lua: a sweep failed (exit %d; see %s); STUDY.md covers the "
            .. "finished arms. Run the same command again to resume the others.\n", code, log))
        return 1
    end
    return 0
end

if arg and arg[0] and arg[0]:match("study%.lua$") then os.exit(M.main(arg)) end
return M
