-- apl.report — the method's Table 2 and Figures 2 and 3 from run folders, as text, Markdown,
-- CSV, SVG and one self-contained web page.
--
--   apl.report{ "runs/random-s1", "runs/random-s2", "runs/certainty-s1", "runs/certainty-s2" }
--   -- prints Table 2 (rows = (dataset, labels acquired), columns = acquisition functions,
--   -- mean ± standard error over seeds) and writes runs/compare.svg (Figure 2). Returns the table.
--   apl.report.compare(dirs, { plot = "out.svg", quiet = true })
--   apl.report.write(dirs, "runs/sweep-imdb")   -- table2.txt/.md/.csv, figure2.svg, figure3.svg,
--                                               -- report.html (Table 2, both figures, every pair)
--   apl.report.run_plots("runs/random-s1")       -- winrate.svg and bt_hist.svg inside the run folder
--   apl.report.state("runs/random-s1")           -- "finished" | "partial" | "absent", steps done, planned
--
-- Runs are grouped by (dataset, acquisition function), never pooled across datasets. The dataset
-- of a run is config.json's `dataset` when the recipe records one, else the first word of the
-- judge template's name ("imdb", "tldr"), else "unknown". With several seeds the ± is the standard
-- error of the mean over seeds (sd / √n); with one seed it is that run's binomial standard error.
local fs = require "apl.fs"
local plot = require "apl.plot"
local runfolder = require "apl.runfolder"
local show = require "apl.show"

local M = {}

-- The paper's column order; other acquisition functions follow in the order first seen.
M.ORDER = { "random", "entropy", "certainty", "hybrid" }
local RED, GREEN = "#d62728", "#2ca02c"

------------------------------------------------------------------------------------------------
-- Reading and checking run folders

-- The name a run goes by in tables and legends.
function M.label(config)
    return config.acquisition .. (config.online and " (online)" or "")
end

function M.dataset(config)
    if type(config.dataset) == "string" and config.dataset ~= "" then return config.dataset end
    local o = config.oracle
    local t = type(o) == "table" and o.template
    if type(t) == "table" then t = t.name end
    return type(t) == "string" and t:match("^%a+") or "unknown"
end

-- Errors name the run folder's file, the record and the field.
local function bad(where, msg) error("apl.report: " .. where .. ": " .. msg, 0) end

local function is_num(v, lo, hi)
    return type(v) == "number" and v == v and (not lo or v >= lo) and (not hi or v <= hi)
end

local function check_config(dir, c)
    local where = dir .. "/config.json"
    if type(c) ~= "table" then bad(where, "not a JSON object") end
    if type(c.acquisition) ~= "string" then bad(where, "field acquisition is missing or not a string") end
    if c.seed ~= nil and not is_num(c.seed) then bad(where, "field seed is not a number") end
end

local function check_evals(dir, evals)
    for i, e in ipairs(evals) do
        local where = string.format("%s/eval.jsonl record %d", dir, i)
        if not is_num(e.labels, 0) then bad(where, "field labels is " .. tostring(e.labels) .. ", expected a count") end
        if not is_num(e.winrate, 0, 1) then bad(where, "field winrate is " .. tostring(e.winrate) .. ", expected a number in [0, 1]") end
        if e.stderr ~= nil and not is_num(e.stderr, 0) then bad(where, "field stderr is " .. tostring(e.stderr) .. ", expected a number >= 0") end
    end
end

local function check_acquired(dir, acquired)
    for i, r in ipairs(acquired) do
        local where = string.format("%s/acquired.jsonl record %d", dir, i)
        if not is_num(r.step, 1) then bad(where, "field step is " .. tostring(r.step) .. ", expected a step number") end
        if r.bt_prob ~= nil and not is_num(r.bt_prob, 0, 1) then
            bad(where, "field bt_prob is " .. tostring(r.bt_prob) .. ", expected a number in [0, 1]")
        end
        if r.label ~= nil and r.label ~= 1 and r.label ~= 2 then
            bad(where, "field label is " .. tostring(r.label) .. ", expected 1 (a), 2 (b) or absent")
        end
    end
end

-- A run folder's config and records, checked: {dir, config, evals, acquired}.
function M.load(dir)
    local run = runfolder.open(dir)
    check_config(dir, run.config)
    local r = { dir = dir, config = run.config, evals = run:read("eval"), acquired = run:read("acquired") }
    check_evals(dir, r.evals)
    check_acquired(dir, r.acquired)
    return r
end

-- The steps a run plans: the loop's own count (budget // batch, ending at the last waypoint),
-- required here rather than at the top because apl.loop requires this module.
local function planned_steps(c)
    local loop = require "apl.loop"
    if loop.steps then return math.tointeger(loop.steps(c)) end
    return math.tointeger(c.budget // c.batch)
end

-- "absent" (no config.json), "partial" or "finished", the steps done and the steps planned. The
-- loop writes a step's train.jsonl line last, so a step is done once its line exists.
function M.state(dir)
    if not runfolder.exists(dir .. "/config.json") then return "absent", 0, nil end
    local run = runfolder.open(dir)
    local c = run.config
    if not (is_num(c.budget, 1) and is_num(c.batch, 1)) then
        bad(dir .. "/config.json", "fields budget and batch must be positive numbers")
    end
    local done = 0
    for i, t in ipairs(run:read("train")) do
        if not is_num(t.step, 1) then bad(string.format("%s/train.jsonl record %d", dir, i), "field step is missing") end
        done = math.max(done, math.tointeger(t.step) or t.step)
    end
    local planned = planned_steps(c)
    return done >= planned and "finished" or "partial", done, planned
end

------------------------------------------------------------------------------------------------
-- Figure 3's quantity

-- The probability the policy's implicit Bradley–Terry model gave, when the pair was acquired, to
-- the completion the oracle preferred: bt_prob is P(a ≻ b), so it is bt_prob when the oracle
-- chose a and 1 − bt_prob when it chose b. nil for an unlabelled pair. Above 0.5 the model's
-- prediction was right, below it wrong; exactly 0.5 (θ = θ0 at step 1 gives every pair 0.5) is
-- no prediction at all.
function M.preferred_prob(r)
    if not r.label or not r.bt_prob then return nil end
    return r.label == 1 and r.bt_prob or 1 - r.bt_prob
end

-- The probability the policy gave, when the pair was acquired, to the completion that truth(r)
-- (1 for a, 2 for b, nil for no preference) names: a judge's noiseless preference, where the
-- label may be a noisy one. nil without a bt_prob or a preference.
function M.truth_prob(r, truth)
    local w = r.bt_prob and truth(r)
    if w ~= 1 and w ~= 2 then return nil end
    return w == 1 and r.bt_prob or 1 - r.bt_prob
end

-- Preferred-completion probabilities split into wrong (< 0.5), right (> 0.5) and ties (= 0.5);
-- with truth (see M.truth_prob), right and wrong against it instead of the label.
function M.bt_split(acquired, truth)
    local right, wrong, ties = {}, {}, 0
    for _, r in ipairs(acquired) do
        local p
        if truth then p = M.truth_prob(r, truth) else p = M.preferred_prob(r) end
        if p and p > 0.5 then right[#right + 1] = p
        elseif p and p < 0.5 then wrong[#wrong + 1] = p
        elseif p then ties = ties + 1 end
    end
    return right, wrong, ties
end

-- One Figure 3 panel: the histogram of preferred-completion probabilities in 10 bins over 0–1,
-- wrong predictions red and right ones green. opts: title, ymax (shared across panels), truth
-- (right and wrong against truth(r), see M.truth_prob, rather than the label).
function M.bt_panel(acquired, opts)
    local right, wrong, ties = M.bt_split(acquired, opts.truth)
    local title = opts.title
    if ties > 0 then title = string.format("%s; %d at 0.5", title, ties) end
    return plot.histogram_svg { title = title, range = { 0, 1 }, bins = 10, overlay = true, ymax = opts.ymax,
        xlabel = opts.truth and "BT probability of the truly preferred completion"
            or "BT probability of the oracle-preferred completion", ylabel = "acquired pairs",
        groups = { { name = "wrong", values = wrong, color = RED }, { name = "right", values = right, color = GREEN } } }
end

------------------------------------------------------------------------------------------------
-- Table 2

local function canonical_rank(config, first_seen)
    for i, name in ipairs(M.ORDER) do
        if config.acquisition == name then return i end
    end
    return #M.ORDER + first_seen
end

-- Column names in the paper's order (online variants right after their offline column).
local function ordered_columns(runs)
    local rank, cols = {}, {}
    for _, r in ipairs(runs) do
        local name = M.label(r.config)
        if not rank[name] then
            cols[#cols + 1] = name
            rank[name] = canonical_rank(r.config, #cols) * 2 + (r.config.online and 1 or 0)
        end
    end
    table.sort(cols, function(x, y) return rank[x] < rank[y] end)
    return cols
end

-- The x of Table 2 and the figures: pairs acquired (the waypoint), which eval.jsonl records as
-- `pairs`; `labels` counts those the judge answered, fewer when some failed. Older runs have only
-- `labels`.
local function acquired(e) return e.pairs or e.labels end

-- groups[dataset][column] = { runs = {...}, at = { [labels] = {eval, ...} } }. A seed may appear
-- once per group: two folders of the same (dataset, acquisition, seed) would count one run twice.
local function group(runs)
    local groups, datasets = {}, {}
    for _, r in ipairs(runs) do
        local ds, col = M.dataset(r.config), M.label(r.config)
        if not groups[ds] then groups[ds] = {}; datasets[#datasets + 1] = ds end
        local g = groups[ds][col] or { runs = {}, at = {}, seeds = {} }
        groups[ds][col] = g
        local seed = r.config.seed
        if seed ~= nil and g.seeds[seed] then
            error(string.format("apl.report: %s and %s are both %s / %s seed %s", g.seeds[seed], r.dir, ds, col,
                tostring(math.tointeger(seed) or seed)), 0)
        end
        if seed ~= nil then g.seeds[seed] = r.dir end
        g.runs[#g.runs + 1] = r
        for _, e in ipairs(r.evals) do
            local l = math.tointeger(acquired(e)) or acquired(e)
            g.at[l] = g.at[l] or {}
            table.insert(g.at[l], e)
        end
    end
    return groups, datasets
end

-- Mean ± standard error of the win-rates of one cell: over seeds, or one run's binomial SE.
local function cell(evals)
    if not evals then return nil end
    if #evals == 1 then return { mean = evals[1].winrate, se = evals[1].stderr or 0, n = 1 } end
    local sum, ss = 0, 0
    for _, e in ipairs(evals) do sum = sum + e.winrate end
    local mean = sum / #evals
    for _, e in ipairs(evals) do ss = ss + (e.winrate - mean) ^ 2 end
    return { mean = mean, se = math.sqrt(ss / (#evals - 1) / #evals), n = #evals }
end

-- The distinct values that each(add) passes to add, ascending.
local function distinct_sorted(each)
    local seen, out = {}, {}
    each(function(v)
        if not seen[v] then seen[v] = true; out[#out + 1] = v end
    end)
    table.sort(out)
    return out
end

-- Label counts evaluated by any run of a dataset.
local function label_counts(cols_of_ds)
    return distinct_sorted(function(add)
        for _, g in pairs(cols_of_ds) do
            for l in pairs(g.at) do add(l) end
        end
    end)
end

-- Table 2 from loaded runs: { datasets, columns, rows (label count of row i), row_dataset (its
-- dataset), cells[i][column] = {mean, se, n}, seeds[dataset][column] = number of runs }.
function M.table2(runs)
    local groups, datasets = group(runs)
    local t = { datasets = datasets, columns = ordered_columns(runs), rows = {}, row_dataset = {}, cells = {}, seeds = {} }
    for _, ds in ipairs(datasets) do
        t.seeds[ds] = {}
        for col, g in pairs(groups[ds]) do t.seeds[ds][col] = #g.runs end
        for _, l in ipairs(label_counts(groups[ds])) do
            local i = #t.rows + 1
            t.rows[i], t.row_dataset[i], t.cells[i] = l, ds, {}
            for col, g in pairs(groups[ds]) do t.cells[i][col] = cell(g.at[l]) end
        end
    end
    return t
end

-- "random (9 seeds)", or "(3–9 seeds)" when datasets differ.
local function column_title(t, col)
    local lo, hi = math.huge, 0
    for _, ds in ipairs(t.datasets) do
        local n = t.seeds[ds][col]
        if n then lo, hi = math.min(lo, n), math.max(hi, n) end
    end
    local n = lo == hi and tostring(lo) or string.format("%d–%d", lo, hi)
    return string.format("%s (%s seed%s)", col, n, hi == 1 and "" or "s")
end

-- The paper's cell: mean to 2 decimals ± standard error to 3.
function M.cell_text(x)
    return x and string.format("%.2f ± %.3f", x.mean, x.se) or "–"
end

-- Table 2 as rows of strings: header first, then one row per (dataset, label count); the dataset
-- is named on its first row only, as in the paper. The text, Markdown and HTML forms draw this.
function M.grid(t)
    local g = { { "dataset", "labels" } }
    for _, col in ipairs(t.columns) do g[1][#g[1] + 1] = column_title(t, col) end
    for i, l in ipairs(t.rows) do
        local ds = t.row_dataset[i]
        local row = { ds ~= t.row_dataset[i - 1] and ds or "", tostring(l) }
        for _, col in ipairs(t.columns) do row[#row + 1] = M.cell_text(t.cells[i][col]) end
        g[#g + 1] = row
    end
    return g
end

local function utf8_len(s) return utf8.len(s) or #s end

function M.text(t)
    local g = M.grid(t)
    local width = {}
    for _, row in ipairs(g) do
        for j, s in ipairs(row) do width[j] = math.max(width[j] or 0, utf8_len(s)) end
    end
    local lines = {}
    for i, row in ipairs(g) do
        local cells = {}
        for j, s in ipairs(row) do
            local pad = string.rep(" ", width[j] - utf8_len(s))
            cells[j] = j == 1 and s .. pad or pad .. s   -- dataset left, numbers right
        end
        lines[i] = table.concat(cells, "  ")
    end
    return table.concat(lines, "\n")
end

-- A Markdown table from rows of strings, the first row the header.
function M.markdown_rows(g)
    local lines = {}
    for i, row in ipairs(g) do
        local cells = {}
        for j, s in ipairs(row) do cells[j] = (s:gsub("|", "\\|")) end
        lines[#lines + 1] = "| " .. table.concat(cells, " | ") .. " |"
        if i == 1 then lines[#lines + 1] = "|" .. string.rep(" --- |", #row) end
    end
    return table.concat(lines, "\n") .. "\n"
end

function M.markdown(t) return M.markdown_rows(M.grid(t)) end

local function csv_field(s)
    s = tostring(s)
    if s:find('[,"\n]') then s = '"' .. s:gsub('"', '""') .. '"' end
    return s
end

-- One line per (dataset, label count) with <column>_mean, _se and _n, full precision.
function M.csv(t)
    local head = { "dataset", "labels" }
    for _, col in ipairs(t.columns) do
        for _, k in ipairs { "mean", "se", "n" } do head[#head + 1] = csv_field(col .. "_" .. k) end
    end
    local lines = { table.concat(head, ",") }
    for i, l in ipairs(t.rows) do
        local row = { csv_field(t.row_dataset[i]), tostring(l) }
        for _, col in ipairs(t.columns) do
            local x = t.cells[i][col]
            row[#row + 1] = x and string.format("%.15g", x.mean) or ""
            row[#row + 1] = x and string.format("%.15g", x.se) or ""
            row[#row + 1] = x and tostring(x.n) or ""
        end
        lines[#lines + 1] = table.concat(row, ",")
    end
    return table.concat(lines, "\n") .. "\n"
end

------------------------------------------------------------------------------------------------
-- Figures

local function baseline_name(runs, ds)
    for _, r in ipairs(runs) do
        if M.dataset(r.config) == ds then
            return r.config.baseline == "reference" and "the references" or "the initial model"
        end
    end
end

-- Figure 2: win-rate against labels acquired, one line per acquisition function with a ±SE
-- band; one panel per dataset. Returns the SVG text.
function M.figure2(t, runs)
    local panels = {}
    for _, ds in ipairs(t.datasets) do
        local series = {}
        for _, col in ipairs(t.columns) do
            local s = { name = col, x = {}, y = {}, err = {} }
            for i, l in ipairs(t.rows) do
                local x = t.row_dataset[i] == ds and t.cells[i][col]
                if x then s.x[#s.x + 1], s.y[#s.y + 1], s.err[#s.err + 1] = l, x.mean, x.se end
            end
            if #s.x > 0 then series[#series + 1] = s end
        end
        panels[#panels + 1] = plot.lines_svg { title = "Win-rate vs labels acquired (" .. ds .. ")", band = true,
            xlabel = "labels acquired", ylabel = "win-rate against " .. baseline_name(runs, ds),
            ylim = { 0.4, 0.6 }, hline = 0.5, series = series }
    end
    return plot.grid_svg { panels = panels, cols = 2 }
end

local function pooled_pairs(runs, ds, col, step)
    local out = {}
    for _, r in ipairs(runs) do
        if M.dataset(r.config) == ds and M.label(r.config) == col then
            for _, p in ipairs(r.acquired) do
                if not step or p.step == step then out[#out + 1] = p end
            end
        end
    end
    return out
end

local function bin_max(acquired, truth)
    local right, wrong = M.bt_split(acquired, truth)
    local top = 1
    for _, v in ipairs { right, wrong } do
        for _, c in ipairs(plot.bin_counts(v, 10, 0, 1)) do top = math.max(top, c) end
    end
    return top
end

-- Figure 3: per (dataset, acquisition function) one panel of the acquired pairs pooled over
-- seeds (and over steps, or only step opts.step), on one count scale. opts.truth: right and
-- wrong against truth(r) (M.truth_prob), not the label. Returns the SVG text.
function M.figure3(t, runs, opts)
    opts = opts or {}
    local pooled, top = {}, 1
    for _, ds in ipairs(t.datasets) do
        for _, col in ipairs(t.columns) do
            if t.seeds[ds][col] then
                local acquired = pooled_pairs(runs, ds, col, opts.step)
                pooled[#pooled + 1] = { ds = ds, col = col, acquired = acquired }
                top = math.max(top, bin_max(acquired, opts.truth))
            end
        end
    end
    local panels = {}
    for i, p in ipairs(pooled) do
        local title = string.format("%s, %s: %s%d seed%s", p.ds, p.col, opts.step and ("batch " .. opts.step .. ", ") or "",
            t.seeds[p.ds][p.col], t.seeds[p.ds][p.col] == 1 and "" or "s")
        panels[i] = M.bt_panel(p.acquired, { title = title, ymax = top, truth = opts.truth })
    end
    return plot.grid_svg { panels = panels, cols = math.min(#t.columns, 4) }
end

-- The acquisition steps present in any run, ascending.
function M.steps(runs)
    return distinct_sorted(function(add)
        for _, r in ipairs(runs) do
            for _, p in ipairs(r.acquired) do add(math.tointeger(p.step) or p.step) end
        end
    end)
end

-- Writes winrate.svg and bt_hist.svg (this run's Figure 3 panel) into a run folder; returns
-- their paths.
function M.run_plots(dir)
    local r = M.load(dir)
    local name = M.label(r.config)
    local s = { name = name, x = {}, y = {}, err = {} }
    for i, e in ipairs(r.evals) do s.x[i], s.y[i], s.err[i] = acquired(e), e.winrate, e.stderr end
    return {
        winrate = plot.lines { file = dir .. "/winrate.svg", title = "Win-rate vs labels acquired (" .. name .. ")",
                               xlabel = "labels acquired", ylabel = "win-rate", ylim = { 0.4, 0.6 }, hline = 0.5, series = { s } },
        bt = fs.write(dir .. "/bt_hist.svg", M.bt_panel(r.acquired, { title = "Acquired pairs (" .. name .. ")" })),
    }
end

------------------------------------------------------------------------------------------------
-- Paired differences to a baseline function (a study's question: does certainty beat random?)

-- P(|T| < t) for Student's t with df (a positive integer) degrees of freedom, in closed form
-- (Abramowitz & Stegun 26.7.3 and 26.7.4, with θ = atan(t / √df)).
function M.t_abs_cdf(t, df)
    t = math.abs(t)
    local th = math.atan(t / math.sqrt(df))
    local c2, s = math.cos(th) ^ 2, math.sin(th)
    if df % 2 == 0 then
        local term, sum = 1, 1
        for k = 2, df - 2, 2 do term = term * c2 * (k - 1) / k; sum = sum + term end
        return s * sum
    end
    if df == 1 then return 2 * th / math.pi end
    local term, sum = 1, 1
    for k = 3, df - 2, 2 do term = term * c2 * (k - 1) / k; sum = sum + term end
    return 2 / math.pi * (th + s * math.cos(th) * sum)
end

-- The two-sided quantile t with P(|T| < t) = level (default 0.95: the 97.5% point, which a 95%
-- confidence interval mean ± t·se uses), by bisection on t_abs_cdf.
function M.t_quantile(df, level)
    level = level or 0.95
    if not (math.tointeger(df) and df >= 1) then error("apl.report.t_quantile: df must be an integer >= 1", 2) end
    if not (level > 0 and level < 1) then error("apl.report.t_quantile: level must be in (0, 1)", 2) end
    local lo, hi = 0, 1
    while M.t_abs_cdf(hi, df) < level do hi = hi * 2 end
    for _ = 1, 200 do
        local mid = (lo + hi) / 2
        if M.t_abs_cdf(mid, df) < level then lo = mid else hi = mid end
        if hi - lo < 1e-12 then break end
    end
    return (lo + hi) / 2
end

-- Mean, standard error and level-CI of paired differences d (a list): {n, mean, se, df, lo, hi};
-- lo and hi are nil with fewer than two differences (no spread to estimate).
function M.paired_ci(d, level)
    local n = #d
    local out = { n = n, diffs = d }
    if n == 0 then return out end
    local sum = 0
    for _, v in ipairs(d) do sum = sum + v end
    out.mean = sum / n
    if n < 2 then return out end
    local ss = 0
    for _, v in ipairs(d) do ss = ss + (v - out.mean) ^ 2 end
    out.sd = math.sqrt(ss / (n - 1))
    out.se, out.df = out.sd / math.sqrt(n), n - 1
    local half = M.t_quantile(out.df, level) * out.se
    out.lo, out.hi = out.mean - half, out.mean + half
    return out
end

-- Per dataset, acquisition function (but base) and label count: the win-rate differences
-- (function − base) of the seeds run with both, paired by seed, and their CI (M.paired_ci).
-- runs: loaded (M.load). Returns rows {dataset, column, labels, n, mean, se, df, lo, hi, diffs,
-- seeds} in Table 2's order.
function M.paired(runs, base, level)
    base = base or "random"
    local by = {}   -- by[ds][col][seed][labels] = winrate
    for _, r in ipairs(runs) do
        local ds, col, seed = M.dataset(r.config), M.label(r.config), r.config.seed
        if seed ~= nil then
            by[ds] = by[ds] or {}
            by[ds][col] = by[ds][col] or {}
            local at = {}
            for _, e in ipairs(r.evals) do at[math.tointeger(acquired(e)) or acquired(e)] = e.winrate end
            by[ds][col][seed] = at
        end
    end
    local t = M.table2(runs)
    local rows = {}
    for i, l in ipairs(t.rows) do
        local ds = t.row_dataset[i]
        local b = by[ds] and by[ds][base]
        for _, col in ipairs(t.columns) do
            local f = by[ds] and by[ds][col]
            if b and f and col ~= base then
                local seeds, d = {}, {}
                for seed, at in pairs(f) do
                    if at[l] and b[seed] and b[seed][l] then seeds[#seeds + 1] = seed end
                end
                table.sort(seeds)
                for k, seed in ipairs(seeds) do d[k] = f[seed][l] - b[seed][l] end
                if #d > 0 then
                    local c = M.paired_ci(d, level)
                    c.dataset, c.column, c.labels, c.seeds = ds, col, l, seeds
                    rows[#rows + 1] = c
                end
            end
        end
    end
    return rows
end

------------------------------------------------------------------------------------------------
-- Entry points

local function load_all(dirs)
    if #dirs == 0 then error("apl.report: no run folders given", 3) end
    local runs = {}
    for i, d in ipairs(dirs) do runs[i] = M.load(d) end
    return runs
end

local function dirname(p) return p:match("^(.*)/[^/]+/?$") or "." end

-- dirs: run folders. opts: plot (Figure 2's file; default compare.svg next to the first run),
-- quiet. Returns Table 2 (see M.table2) with text= and plot=.
function M.compare(dirs, opts)
    opts = opts or {}
    local runs = load_all(dirs)
    local t = M.table2(runs)
    t.plot = fs.write(opts.plot or (dirname(dirs[1]) .. "/compare.svg"), M.figure2(t, runs))
    t.text = M.text(t)
    if opts.quiet then return t, runs end
    io.write(t.text, "\n", "plot: ", t.plot, "\n")
    return t, runs, show.printed -- printed already: the REPL shows nothing more
end

-- Every acquired pair of every run, as the web page's table shows it.
local function pair_rows(runs)
    local rows = {}
    for _, r in ipairs(runs) do
        local run = string.format("%s/%s-s%s", M.dataset(r.config), M.label(r.config),
            tostring(math.tointeger(r.config.seed) or r.config.seed or "?"))
        for _, p in ipairs(r.acquired) do
            -- As Figure 3 counts it: right above 0.5, wrong below, and at exactly 0.5 a tie (the
            -- loop's `correct` calls a tie wrong when the oracle chose a and right when b).
            local pp = M.preferred_prob(p)
            local correct
            if pp == 0.5 then correct = "tie" elseif pp then correct = pp > 0.5 end
            rows[#rows + 1] = { run = run, step = p.step, prompt = p.prompt, a = p.a, b = p.b, score = p.score,
                bt_prob = p.bt_prob, p_pref = pp, label = p.label, rationale = p.rationale,
                correct = correct }
        end
    end
    return rows
end

-- The whole report in folder out: table2.txt, table2.md, table2.csv, figure2.svg, figure3.svg
-- and report.html. opts: quiet, title. Returns {table2 =, files = {name = path}}.
function M.write(dirs, out, opts)
    opts = opts or {}
    runfolder.mkdir(out)
    local t, runs = M.compare(dirs, { plot = out .. "/figure2.svg", quiet = true })
    local files = { figure2 = t.plot }
    files.txt = fs.write(out .. "/table2.txt", t.text .. "\n")
    files.md = fs.write(out .. "/table2.md", M.markdown(t))
    files.csv = fs.write(out .. "/table2.csv", M.csv(t))
    local fig3 = M.figure3(t, runs)
    files.figure3 = fs.write(out .. "/figure3.svg", fig3)
    local by_step = {}
    for _, s in ipairs(M.steps(runs)) do by_step[#by_step + 1] = { step = s, svg = M.figure3(t, runs, { step = s }) } end
    files.html = fs.write(out .. "/report.html", require("apl.report_html").page {
        title = opts.title or "Active preference learning: " .. table.concat(t.datasets, ", "),
        grid = M.grid(t), figure2 = fs.read(t.plot), figure3 = fig3, figure3_steps = by_step,
        pairs = pair_rows(runs), runs = #runs })
    if not opts.quiet then
        io.write(t.text, "\n")
        for _, k in ipairs { "md", "csv", "figure2", "figure3", "html" } do io.write(k, ": ", files[k], "\n") end
        return { table2 = t, files = files }, show.printed
    end
    return { table2 = t, files = files }
end

return setmetatable(M, { __call = function(_, dirs, opts) return M.compare(dirs, opts) end })
