-- bench/run.lua — the benchmark suite: apl against a plain PyTorch-Python peer (bench/baseline.py,
-- the same libtorch), each area in its own process so peak RSS is per benchmark.
--
--   ./apl bench/run.lua [--quick] [--note TEXT]   run everything, print the table, write bench/results.json
--   ./apl bench/run.lua --only dist[,lora]         those areas alone: their rows replace theirs in
--                                                  bench/results.json, the others' are kept (M.merge)
--   ./apl bench/run.lua --write-md [--note TEXT]   BENCHMARKS.md from bench/results.json (runs nothing;
--                                                  the note is kept in it for the next --write-md)
--
-- Each bench/<area>.lua prints JSON lines {"name":..,"apl":..,"unit":..[,"samples":[..]]}; the
-- baseline prints the same names with "baseline". A missing or failing area becomes a row that
-- says why, and the run goes on. Loaded with dofile from elsewhere (tests), this file only
-- returns its functions.
local cjson = require "cjson"

local root = package.apl_root or "."
local B = dofile(root .. "/bench/common.lua")
local F = dofile(root .. "/bench/flops.lua")
local R = dofile(root .. "/bench/render.lua")

local M = {}

M.PYTHON = "/usr/bin/python3" -- Debian's: python3-torch, the same libtorch 1.13 as ./apl
M.ORACLE_TARGET = { labels = 128, seconds = 10, in_flight = 16 }

-- The areas, in the order they run. Each is `./apl bench/<script> [--quick]`.
-- rounds: the area and its baseline run alternately this many times (1 with --quick), and each
-- figure is the median of all their repetitions, so a slow spell of a shared machine weighs on
-- both sides of a ratio rather than on one.
M.AREAS = {
    { key = "model_load", script = "model_load.lua" },
    { key = "tokenizer", script = "tokenizer.lua" },
    { key = "compute", script = "compute.lua", rounds = 3 },
    { key = "lora", script = "lora.lua" },
    { key = "dist", script = "dist.lua" },
    { key = "oracle", script = "oracle.lua" },
}

-- The table's rows: the name an area prints, how it reads, and the target from the issues.
-- better = "higher" for rates (ratio = apl / baseline, want >= target), "lower" for times
-- (ratio = apl / baseline, want <= target).
M.ROWS = {
    { name = "model_load", label = "model load time", area = "model_load", better = "lower" },
    { name = "model_load_rss", label = "model load peak RSS", area = "model_load", better = "lower" },
    { name = "tokenizer_encode", label = "tokenizer encode", area = "tokenizer", better = "higher",
      target = 1.0, target_text = ">= 1x js-tiktoken (1 thread)" },
    { name = "generation", label = "generation", area = "compute", better = "higher",
      target = 2.0, target_text = ">= 2x baseline" },
    -- what core/smallm.c buys: apl's own generation with its decoding kernels off
    { name = "generation_blas", label = "generation, BLAS decoding", area = "compute",
      better = "higher", baseline_of = "generation" },
    { name = "logprob", label = "log-prob scoring", area = "compute", better = "higher",
      target = 1.2, target_text = ">= 1.2x baseline" },
    { name = "dpo_step", label = "DPO step", area = "compute", better = "lower",
      target = 0.9, target_text = "<= 0.9x baseline" },
    -- the same apl step against TRL's own way: the head and log_softmax at every position
    { name = "dpo_step_trl", label = "DPO step vs TRL-style peer", area = "compute", better = "lower",
      apl_of = "dpo_step" },
    { name = "sft_step", label = "SFT step", area = "compute", better = "lower" },
    -- LoRA (r = 16, attention and MLP) against the full step, both apl's (bench/lora.lua)
    { name = "dpo_step_lora", label = "DPO step, LoRA vs full", area = "lora", better = "lower" },
    { name = "dpo_step_lora_rss", label = "DPO step peak RSS, LoRA vs full", area = "lora",
      better = "lower", target = 0.6, target_text = "<= 0.6x the full step" },
    -- 2 data-parallel processes (apl --nproc 2) against one, both apl's (bench/dist.lua); the
    -- all-reduce's time and bytes are in dist_step's details (BENCHMARKS.md's own section)
    { name = "dist_step", label = "DPO step, 2 processes vs 1 (same cores)", area = "dist", better = "lower" },
    { name = "dist_step_1t", label = "DPO step, 2 processes vs 1 on 1 thread", area = "dist", better = "lower" },
    { name = "oracle_labels_per_s", label = "oracle labels", area = "oracle", better = "higher" },
    -- peak: measured in every compute round; the figure is the best repetition of all rounds
    { name = "matmul_peak", label = "fp32 matmul peak", area = "machine", better = "higher", peak = true },
    { name = "mem_bandwidth", label = "memory bandwidth (copy)", area = "machine", better = "higher", peak = true },
}

-- Names the area scripts may use for the same measurement, mapped to the row names above.
local ALIASES = {
    { "^gen", "generation" }, { "logprob", "logprob" }, { "^scor", "logprob" },
    { "dpo", "dpo_step" }, { "sft", "sft_step" }, { "^tokeni", "tokenizer_encode" },
    { "^oracle", "oracle_labels_per_s" }, { "^model_load", "model_load" }, { "^load", "model_load" },
}

function M.canonical(name)
    for _, r in ipairs(M.ROWS) do if r.name == name then return name end end
    for _, a in ipairs(ALIASES) do if name:find(a[1]) then return a[2] end end
    return name
end

-- ---------------------------------------------------------------------------------------------
-- Reading the processes' output

-- Splits a process's output into JSON objects (lines that decode to a table with a name) and
-- the other lines (progress, warnings, errors).
function M.parse_lines(text)
    local objs, other = {}, {}
    for line in (text or ""):gmatch("[^\n]+") do
        local ok, v = false, nil
        if line:match("^%s*{") then ok, v = pcall(cjson.decode, line) end
        if ok and type(v) == "table" and type(v.name) == "string" then
            objs[#objs + 1] = v
        else
            other[#other + 1] = line
        end
    end
    return objs, other
end

local num = B.num

-- Merges the apl and baseline objects into M.ROWS-shaped results:
--   { name, label, unit, apl, baseline, ratio, apl_spread, baseline_spread, target, met, ... }
-- errors maps an area key to the message that explains its missing figures.
-- Objects by canonical name. A name measured in several rounds keeps all its samples, and its
-- value (field) is their median; its peak RSS is the highest.
local PEAK = {}
for _, spec in ipairs(M.ROWS) do PEAK[spec.name] = spec.peak end

-- Repeated measurements of one name (rounds) merge into one: all samples, their median, or their
-- best for a peak; the higher RSS.
local function by_name(objs, field)
    local out = {}
    for _, o in ipairs(objs) do
        local k = M.canonical(o.name)
        local prev = out[k]
        if prev and prev.samples and o.samples then
            local merged = {}
            for key, v in pairs(prev) do merged[key] = v end
            merged.samples = table.move(o.samples, 1, #o.samples, #prev.samples + 1,
                                        table.move(prev.samples, 1, #prev.samples, 1, {}))
            merged[field] = PEAK[k] and math.max(table.unpack(merged.samples)) or B.median(merged.samples)
            merged.peak_rss_mb = math.max(prev.peak_rss_mb or 0, o.peak_rss_mb or 0)
            out[k] = merged
        else
            out[k] = o
        end
    end
    return out
end

function M.collect(apl_objs, base_objs, errors)
    local A, P = by_name(apl_objs, "apl"), by_name(base_objs, "baseline")
    local out = {}
    for _, spec in ipairs(M.ROWS) do
        local r = { name = spec.name, label = spec.label, better = spec.better,
                    target_text = spec.target_text, area = spec.area }
        local a, p = A[spec.apl_of or spec.name], P[spec.name] or P[spec.baseline_of]
        if spec.name == "model_load" then
            a, p = A.model_load, P.model_load
            r.unit = "s"
            r.apl = a and num(a.apl_s or a.apl)
            r.baseline = p and num(p.baseline_s or p.baseline)
        elseif spec.name == "model_load_rss" then
            a, p = A.model_load, P.model_load
            r.unit = "MB"
            r.apl = a and num(a.peak_rss_mb)
            r.baseline = p and num(p.peak_rss_mb)
            r.ckpt_mb = (a and num(a.ckpt_mb)) or (p and num(p.ckpt_mb))
            -- The target is on what loading adds: the peak over the RSS the process had before
            -- (the program and libtorch themselves, ~150 MB, are no part of the model).
            r.apl_added_mb = a and r.apl and num(a.rss_before_mb) and r.apl - a.rss_before_mb
            r.baseline_added_mb = p and r.baseline and num(p.rss_before_mb) and r.baseline - p.rss_before_mb
            if r.apl_added_mb and r.ckpt_mb then
                r.target_text = "peak - RSS before <= 1.2x checkpoint"
                r.target_value = r.apl_added_mb / r.ckpt_mb
                r.met = r.target_value <= 1.2
            end
        else
            r.unit = (a and a.unit) or (p and p.unit)
            r.apl = a and num(a.apl)
            r.baseline = p and num(p.baseline)
            if a and a.baseline and not r.baseline then r.baseline = num(a.baseline) end -- area ran its own baseline
            r.apl_samples = a and a.samples
            r.baseline_samples = (p and p.samples) or (a and a.baseline_samples)
            r.apl_spread = r.apl_samples and B.spread(r.apl_samples)
            r.baseline_spread = r.baseline_samples and B.spread(r.baseline_samples)
            r.config = (a and a.config) or (p and p.config)
            r.baseline_name = a and a.baseline_name
            r.details = a and a.details
        end
        if r.apl and r.baseline and r.baseline ~= 0 then r.ratio = r.apl / r.baseline end
        if spec.target and r.ratio then
            r.target_value = r.ratio
            if spec.better == "higher" then r.met = r.ratio >= spec.target else r.met = r.ratio <= spec.target end
        end
        if spec.name == "oracle_labels_per_s" and r.apl then
            local T = M.ORACLE_TARGET
            r.seconds_for_128 = T.labels / r.apl
            r.target_text = string.format("%d labels, 1 s latency, %d in flight: <= %d s", T.labels, T.in_flight, T.seconds)
            r.target_value = r.seconds_for_128
            r.met = r.seconds_for_128 <= T.seconds
            r.n_labels = a and a.n
        end
        if not r.apl then r.error = errors[spec.area] or "not measured" end
        if r.apl and not r.baseline then
            r.baseline_error = errors["baseline_" .. spec.area] or "no baseline figure"
        end
        out[#out + 1] = r
    end
    return out, A, P
end

-- FLOPs (bench/flops.lua) and the tables (bench/render.lua), re-exported for the tests.
for _, k in ipairs({ "GPT2", "matmul_params", "n_params", "forward_flops", "dpo_flops", "apl_dpo_flops",
    "sft_flops", "shape_of", "derive" }) do M[k] = F[k] end
for _, k in ipairs({ "table_rows", "missing", "derived_rows", "render_text", "render_md", "markdown",
    "hand_written", "HAND_WRITTEN", "METHOD", "dist_rows", "dist_facts", "thousands" }) do M[k] = R[k] end

-- ---------------------------------------------------------------------------------------------
-- Running

local sh_quote = B.sh_quote

local exists = require("apl.fs").exists

local function readall(cmd)
    local p = io.popen(cmd)
    local out = p:read("a")
    local ok, _, code = p:close()
    return out, ok, code
end

-- Runs a command with stdout and stderr together, echoing its other lines as they come; returns
-- its JSON objects, and why it failed if it did.
local function run_process(label, cmd, limit, env)
    io.stderr:write(string.format("== %s\n", label))
    local t0 = B.clock()
    local p = io.popen(string.format("%s timeout %d %s 2>&1", env or "", limit, cmd))
    local objs, tail = {}, ""
    for line in p:lines() do
        local got, other = M.parse_lines(line)
        if got[1] then objs[#objs + 1] = got[1] end
        if other[1] then
            io.stderr:write("   ", other[1], "\n")
            tail = other[1]
        end
    end
    local ok, _, code = p:close()
    io.stderr:write(string.format("   (%.0f s)\n", B.clock() - t0))
    if ok then return objs end
    return objs, code == 124 and string.format("timed out after %d s", limit)
        or string.format("exit %s: %s", tostring(code), tail)
end

local function machine_info()
    local m = {}
    local f = io.open("/proc/cpuinfo")
    if f then
        local txt = f:read("a"); f:close()
        m.cpu = txt:match("model name%s*:%s*([^\n]+)")
    end
    m.cores = tonumber((readall("nproc")))
    f = io.open("/proc/meminfo")
    if f then
        local kb = f:read("a"):match("MemTotal:%s*(%d+)"); f:close()
        m.mem_gb = kb and tonumber(kb) / 2 ^ 20
    end
    m.kernel = (readall("uname -sr")):gsub("%s+$", "")
    local v = apl.version_info()
    m.torch, m.blas, m.lua = v.torch, v.blas, v.lua
    m.python = (readall(M.PYTHON .. " -c 'import sys, torch; print(sys.version.split()[0], torch.__version__)' 2>&1")):gsub("%s+$", "")
    return m
end

-- apl's own fp32 matmul peak and copy bandwidth, with apl.tensor, in this process.
local function measure_machine(quick)
    local T = apl.tensor
    local n = quick and 1024 or 2048
    local a, b = T.randn({ n, n }), T.randn({ n, n })
    local reps = B.reps()
    local secs = B.time(function() local c = a:matmul(b); c:free() end, { reps = reps })
    local rates = {}
    for i, s in ipairs(secs) do rates[i] = 2 * n ^ 3 / 1e9 / s end
    table.sort(rates)
    local objs = { { name = "matmul_peak", apl = rates[#rates], unit = "GFLOP/s", samples = rates,
                     config = string.format("%dx%dx%d fp32, best of %d", n, n, n, reps) } }
    local mb = 256
    local src, dst = T.ones({ mb * 1024 * 1024 // 4 }), T.zeros({ mb * 1024 * 1024 // 4 })
    secs = B.time(function() dst:copy_(src) end, { reps = reps })
    rates = {}
    for i, s in ipairs(secs) do rates[i] = 2 * mb * 2 ^ 20 / 1e9 / s end
    table.sort(rates)
    objs[2] = { name = "mem_bandwidth", apl = rates[#rates], unit = "GB/s", samples = rates,
                config = string.format("%d MiB copy, best of %d", mb, reps) }
    a:free(); b:free(); src:free(); dst:free()
    return objs
end

-- The baseline's command line, with the shapes the apl compute rows report (so both do the same work).
local function baseline_args(apl_objs, quick, threads)
    local by = {}
    for _, o in ipairs(apl_objs) do by[M.canonical(o.name)] = o end
    local args = { "--threads", threads }
    if quick then args[#args + 1] = "--quick" end
    local g = by.generation
    if g and num(g.batch) and num(g.prompt) and num(g.new_tokens) then
        args[#args + 1] = string.format("--gen %d,%d,%d", g.batch, g.prompt, g.new_tokens)
    end
    for _, k in ipairs({ { "logprob", "--score" }, { "dpo_step", "--dpo" }, { "sft_step", "--sft" } }) do
        local r = by[k[1]]
        if r then
            local b, t = M.shape_of(r)
            if b and t then args[#args + 1] = string.format("%s %d,%d", k[2], b, t) end
        end
    end
    return table.concat(args, " ")
end

-- Runs every area (opts.only: those named) and its baseline, in M.AREAS's order. After each
-- process, the results so far are written to opts.json_path (partial = true until the end), so a
-- run cut short still leaves its figures.
function M.run(opts)
    local quick = opts.quick
    local threads = B.threads()
    local t_start = B.clock()
    io.stderr:write(string.format("apl bench%s: %d threads for apl and the baseline\n", quick and " (quick)" or "", threads))
    local apl_objs, base_objs, errors = {}, {}, {}
    local function add(list, objs) for _, o in ipairs(objs or {}) do list[#list + 1] = o end end
    local env = string.format("APL_THREADS=%d APL_QUIET=1", threads)
    local q = quick and " --quick" or ""
    local py = M.PYTHON .. " " .. sh_quote(root .. "/bench/baseline.py")
    local machine = machine_info()

    local function results(partial)
        local rows, A, P = M.collect(apl_objs, base_objs, errors)
        for _, r in ipairs(rows) do
            if r.name == "dpo_step" then
                r.apl_peak_rss_mb = A.dpo_step and num(A.dpo_step.peak_rss_mb)
                r.baseline_peak_rss_mb = P.dpo_step and num(P.dpo_step.peak_rss_mb)
            end
        end
        return {
            date = os.date("!%Y-%m-%d %H:%M UTC"),
            command = (quick and "make bench QUICK=1" or "make bench") ..
                (opts.only and " ONLY=" .. table.concat(opts.only, ",") or ""),
            quick = quick, threads = threads, machine = machine, note = opts.note, partial = partial,
            rows = rows, derived = M.derive(rows, quick), errors = errors,
            wall_s = B.clock() - t_start,
        }
    end
    local function save(partial)
        if opts.json_path then M.write_json(opts.json_path, results(partial)) end
    end
    local function baseline(label, args, err_key, limit)
        local got, why = run_process(label, py .. " " .. args, limit)
        add(base_objs, got)
        if why then errors[err_key] = why end
        save(true)
    end

    -- The machine's peaks, apl's in this process and torch's, measured before each compute round:
    -- a slow spell during a single measurement would understate the peak and inflate every MFU.
    local function measure_peaks()
        local ok, objs = pcall(measure_machine, quick)
        if ok then add(apl_objs, objs) else errors.machine = tostring(objs) end
        baseline("baseline matmul and bandwidth", "--only matmul,bandwidth --threads " .. threads .. q,
            "baseline_machine", 300)
    end

    -- One round of an area: its apl script, then the baselines that go with it.
    local function run_area(area)
        local path = root .. "/bench/" .. area.script
        if area.key == "compute" then measure_peaks() end
        if not exists(path) then
            errors[area.key] = "bench/" .. area.script .. " not present"
            io.stderr:write("== ", area.key, ": ", errors[area.key], "\n")
        else
            local got, why = run_process(area.key, sh_quote(root .. "/apl") .. " " .. sh_quote(path) .. q, 1800, env)
            add(apl_objs, got)
            if why then errors[area.key] = why end
            save(true)
        end
        if area.key == "model_load" then
            -- the same checkpoint file apl loaded, else one the baseline writes
            local ckpt
            for _, o in ipairs(apl_objs) do
                if M.canonical(o.name) == "model_load" then ckpt = o.ckpt end
            end
            local tmp
            if not ckpt then
                tmp = B.tmpdir("apl-bench")
                ckpt = (readall(py .. " write-ckpt " .. sh_quote(tmp))):gsub("%s+$", "")
            end
            baseline("baseline model load", "load " .. sh_quote(ckpt) .. " --threads " .. threads,
                "baseline_model_load", 300)
            if tmp then os.execute("rm -rf " .. sh_quote(tmp)) end
        elseif area.key == "compute" then
            baseline("baseline compute (PyTorch-Python)",
                "--only generation,logprob,sft,dpo,dpo_trl " .. baseline_args(apl_objs, quick, threads),
                "baseline_compute", 3600)
        end
    end

    local only = {}
    for _, k in ipairs(opts.only or {}) do only[k] = true end
    for _, area in ipairs(M.AREAS) do
        if not opts.only or only[area.key] then
            for _ = 1, quick and 1 or (area.rounds or 1) do run_area(area) end
        end
    end
    local res = results(false)
    if opts.json_path then M.write_json(opts.json_path, res) end
    return res
end

-- Checks a --only list against the areas: their keys, or an error that names them.
function M.only_areas(list)
    local known, out = {}, {}
    for _, a in ipairs(M.AREAS) do known[a.key] = true end
    for k in tostring(list):gmatch("[^,%s]+") do
        if not known[k] then
            local names = {}
            for _, a in ipairs(M.AREAS) do names[#names + 1] = a.key end
            error(string.format("bench/run.lua: --only: no area '%s' (the areas: %s)", k, table.concat(names, ", ")), 0)
        end
        out[#out + 1] = k
    end
    if #out == 0 then error("bench/run.lua: --only needs an area (e.g. --only dist)", 0) end
    return out
end

-- The results of a run of some areas (--only) merged into the previous results: those areas'
-- rows and errors from the new run (the machine's peaks go with compute), every other row, the
-- header (date, total time, note) from the previous one; the new run is added to `updates`
-- (replacing an earlier update of the same areas), and the derived figures are recomputed. With
-- no previous results, or previous ones of the other kind (quick or not), the new ones stand alone.
function M.merge(prev, new, only)
    if not prev or not prev.rows or (prev.quick or false) ~= (new.quick or false) then return new end
    local ran = {}
    for _, k in ipairs(only) do ran[k] = true end
    if ran.compute then ran.machine = true end
    local out = {}
    for k, v in pairs(prev) do out[k] = v end
    local old, got = {}, {}
    for _, r in ipairs(prev.rows) do old[r.name] = r end
    for _, r in ipairs(new.rows) do got[r.name] = r end
    out.rows = {}
    for _, spec in ipairs(M.ROWS) do
        local r = (ran[spec.area] and got[spec.name]) or old[spec.name] or got[spec.name]
        if r then out.rows[#out.rows + 1] = r end
    end
    out.errors = {}
    for k, v in pairs(prev.errors or {}) do
        if not ran[k] and not ran[k:gsub("^baseline_", "")] then out.errors[k] = v end
    end
    for k, v in pairs(new.errors or {}) do
        if ran[k] or ran[k:gsub("^baseline_", "")] then out.errors[k] = v end
    end
    out.updates = {}
    for _, u in ipairs(prev.updates or {}) do
        local covered = true
        for _, k in ipairs(u.areas or {}) do covered = covered and ran[k] == true end
        if not covered then out.updates[#out.updates + 1] = u end
    end
    out.updates[#out.updates + 1] = { command = new.command, date = new.date, wall_s = new.wall_s,
                                      areas = only, note = new.note }
    out.derived = M.derive(out.rows, out.quick)
    return out
end

local function read_json(path)
    local f = io.open(path)
    if not f then return nil end
    local ok, res = pcall(cjson.decode, f:read("a"))
    f:close()
    return ok and res or nil
end

function M.write_json(path, res)
    local f = assert(io.open(path, "w"))
    f:write(cjson.encode(res), "\n")
    f:close()
end

-- The table, and the derived figures; with `only` (a list of areas), only those areas' rows, and
-- the derived figures when compute is among them.
function M.print(results, only)
    local by, rows, ran = {}, {}, {}
    for _, k in ipairs(only or {}) do ran[k] = true end
    if ran.compute then ran.machine = true end
    for _, r in ipairs(results.rows) do
        by[r.name] = r
        if not only or ran[r.area] then rows[#rows + 1] = r end
    end
    io.write(string.format("\napl bench — %s, %d threads (apl and baseline), %s\n",
        results.command, results.threads, results.machine.cpu or "unknown CPU"))
    io.write(M.render_text(M.table_rows(rows)))
    local missing = M.missing(rows)
    if #missing > 0 then io.write("* ", table.concat(missing, "\n* "), "\n") end
    if by.dist_step and by.dist_step.details then io.write("\n", M.render_text(M.dist_rows(by.dist_step.details))) end
    if not only or ran.compute then io.write("\n", M.render_text(M.derived_rows(results.derived, by))) end
    io.write(string.format("\nspread: half the range of the repetitions, as a share of the median. %.0f s in all.\n",
        results.wall_s or 0))
end


-- ---------------------------------------------------------------------------------------------

local function main(argv)
    local opts = {}
    local i = 1
    while i <= #argv do
        local a = argv[i]
        if a == "--quick" then opts.quick = true
        elseif a == "--write-md" then opts.write_md = true
        elseif a == "--note" then opts.note = argv[i + 1]; i = i + 1
        elseif a == "--only" then opts.only = M.only_areas(argv[i + 1]); i = i + 1
        else error("bench/run.lua: unknown argument '" .. a .. "' (want --quick, --only AREAS, --write-md, --note TEXT)", 0) end
        i = i + 1
    end
    local json_path = root .. "/bench/results.json"
    if opts.write_md then
        local res = read_json(json_path) or error("bench/run.lua: " .. json_path .. ": no results (make bench first)", 0)
        if opts.note then
            res.note = opts.note
            M.write_json(json_path, res)
        end
        local md = M.markdown(res) .. M.hand_written(root .. "/BENCHMARKS.md")
        local f = assert(io.open(root .. "/BENCHMARKS.md", "w"))
        f:write(md)
        f:close()
        io.write("wrote BENCHMARKS.md from ", json_path, "\n")
        return
    end
    -- a run of some areas touches bench/results.json only at its end, when it is merged there
    if not opts.only then opts.json_path = json_path end
    local res = M.run(opts)
    M.print(res, opts.only)
    if opts.only then
        M.write_json(json_path, M.merge(read_json(json_path), res, opts.only))
        io.write("merged the rows of ", table.concat(opts.only, ", "), " into ", json_path, "\n")
    else
        io.write("wrote ", json_path, "\n")
    end
end

-- Run as the script (not loaded by dofile from a test): the chunk's source is arg[0].
if arg and arg[0] and debug.getinfo(1, "S").source == "@" .. arg[0] then main(arg) end

return M
