-- apl.report — Table 2 of the method from run folders, and the plots.
--
--   apl.report{ "runs/random-s1", "runs/random-s2", "runs/certainty-s1", "runs/certainty-s2" }
--   -- prints: rows = labels acquired, columns = acquisition functions, mean ± standard error
--   -- over seeds; writes runs/compare.svg (one line per acquisition function). Returns the table.
--   apl.report.compare(dirs, { plot = "out.svg", quiet = true })
--   apl.report.run_plots("runs/random-s1")   -- winrate.svg and bt_hist.svg inside the run folder
--
-- With one seed per function the ± is that run's binomial standard error; with several it is the
-- standard error of the mean across seeds.
local eval = require "apl.eval"
local plot = require "apl.plot"
local runfolder = require "apl.runfolder"

local M = {}

-- The name a run goes by in tables and legends.
function M.label(config)
    return config.acquisition .. (config.online and " (online)" or "")
end

function M.load(dir)
    local run = runfolder.open(dir)
    return { dir = dir, config = run.config, evals = run:read("eval"), acquired = run:read("acquired") }
end

-- The BT probabilities of acquired pairs, split by whether the model's preference (p > 0.5 means
-- it prefers completion a) agreed with the oracle's label.
function M.bt_split(acquired)
    local right, wrong = {}, {}
    for _, r in ipairs(acquired) do
        if r.correct == true then right[#right + 1] = r.bt_prob
        elseif r.correct == false then wrong[#wrong + 1] = r.bt_prob end
    end
    return right, wrong
end

-- Writes winrate.svg and bt_hist.svg into a run folder; returns their paths.
function M.run_plots(dir)
    local r = M.load(dir)
    local name = M.label(r.config)
    local s = { name = name, x = {}, y = {}, err = {} }
    for i, e in ipairs(r.evals) do s.x[i], s.y[i], s.err[i] = e.labels, e.winrate, e.stderr end
    local out = {
        winrate = plot.lines { file = dir .. "/winrate.svg", title = "Win-rate vs labels acquired (" .. name .. ")",
                               xlabel = "labels acquired", ylabel = "win-rate", ylim = { 0.4, 0.6 }, hline = 0.5, series = { s } },
    }
    local right, wrong = M.bt_split(r.acquired)
    out.bt = plot.histogram { file = dir .. "/bt_hist.svg", range = { 0, 1 }, bins = 10,
        title = "BT probability of acquired pairs (" .. name .. ")", xlabel = "σ(r̂a − r̂b)", ylabel = "pairs",
        groups = { { name = "correct", values = right }, { name = "incorrect", values = wrong } } }
    return out
end

-- Groups runs by acquisition function: columns (in first-seen order) and, per column, label
-- count -> list of {winrate, stderr} over seeds.
local function collect(runs)
    local cols, by = {}, {}
    local labels_seen = {}
    for _, r in ipairs(runs) do
        local name = M.label(r.config)
        if not by[name] then by[name] = { seeds = 0, at = {} }; cols[#cols + 1] = name end
        local col = by[name]
        col.seeds = col.seeds + 1
        for _, e in ipairs(r.evals) do
            col.at[e.labels] = col.at[e.labels] or {}
            table.insert(col.at[e.labels], e)
            labels_seen[e.labels] = true
        end
    end
    local rows = {}
    for l in pairs(labels_seen) do rows[#rows + 1] = l end
    table.sort(rows)
    return cols, by, rows
end

local function cell(evals)
    if not evals then return nil end
    if #evals == 1 then return { mean = evals[1].winrate, se = evals[1].stderr, n = 1 } end
    local w = {}
    for i, e in ipairs(evals) do w[i] = e.winrate end
    local mean, se = eval.mean_stderr(w)
    return { mean = mean, se = se, n = #evals }
end

local function format_table(cols, by, rows, t)
    local width = 17
    for _, name in ipairs(cols) do width = math.max(width, #name + 10) end
    local lines = {}
    local head = { string.format("%8s", "labels") }
    for _, name in ipairs(cols) do
        head[#head + 1] = string.format("%" .. width .. "s", string.format("%s (%d seed%s)", name, by[name].seeds,
            by[name].seeds == 1 and "" or "s"))
    end
    lines[1] = table.concat(head, "  ")
    for i, l in ipairs(rows) do
        local line = { string.format("%8d", l) }
        for _, name in ipairs(cols) do
            local x = t[i][name]
            line[#line + 1] = string.format("%" .. width .. "s", x and string.format("%.3f ± %.3f", x.mean, x.se) or "-")
        end
        lines[#lines + 1] = table.concat(line, "  ")
    end
    return table.concat(lines, "\n")
end

local function dirname(p) return p:match("^(.*)/[^/]+/?$") or "." end

-- dirs: run folders. opts: plot (file; default compare.svg next to the first run), quiet.
-- Returns { columns=, rows=, cells = rows[i][column] = {mean, se, n}, text=, plot= }.
function M.compare(dirs, opts)
    opts = opts or {}
    if #dirs == 0 then error("apl.report: no run folders given", 2) end
    local runs = {}
    for i, d in ipairs(dirs) do runs[i] = M.load(d) end
    local cols, by, rows = collect(runs)
    local cells, series = {}, {}
    for i, l in ipairs(rows) do
        cells[i] = {}
        for _, name in ipairs(cols) do cells[i][name] = cell(by[name].at[l]) end
    end
    for k, name in ipairs(cols) do
        local s = { name = name, x = {}, y = {}, err = {} }
        for i, l in ipairs(rows) do
            local x = cells[i][name]
            if x then s.x[#s.x + 1], s.y[#s.y + 1], s.err[#s.err + 1] = l, x.mean, x.se end
        end
        series[k] = s
    end
    local file = opts.plot or (dirname(dirs[1]) .. "/compare.svg")
    plot.lines { file = file, title = "Win-rate vs labels acquired", xlabel = "labels acquired",
                 ylabel = "win-rate", ylim = { 0.4, 0.6 }, hline = 0.5, series = series }
    local text = format_table(cols, by, rows, cells)
    if not opts.quiet then io.write(text, "\n", "plot: ", file, "\n") end
    return { columns = cols, rows = rows, cells = cells, text = text, plot = file }
end

return setmetatable(M, { __call = function(_, dirs, opts) return M.compare(dirs, opts) end })
