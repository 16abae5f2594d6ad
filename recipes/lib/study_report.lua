-- recipes/lib/study_report.lua — STUDY.md from a study's results (recipes/study.lua): the setup,
-- the table of win-rates and paired differences to random, the figures, the wall time per phase,
-- a conclusion generated from the confidence intervals, and the design changes. Nothing in it is
-- a hand-written number: every figure comes from `result`.
--
--   local sr = require "recipes.lib.study_report"
--   local verdict = sr.verdict(row)          -- "better" | "worse" | "no difference" | "no CI"
--   local text = sr.markdown(result)         -- result: see M.markdown
local report = require "apl.report"

local M = {}

-- What a paired-difference row's CI shows.
function M.verdict(row)
    if not (row.lo and row.hi) then return "no CI" end
    if row.lo > 0 then return "better" end
    if row.hi < 0 then return "worse" end
    return "no difference"
end

local function pts(x) return string.format("%+.1f", 100 * x) end      -- a difference in points
local function ci(row)
    if not row.lo then return "–" end
    return string.format("[%s, %s]", pts(row.lo), pts(row.hi))
end

-- The paired rows of one function, ordered by labels.
local function rows_of(paired, fn)
    local out = {}
    for _, r in ipairs(paired) do if r.column == fn then out[#out + 1] = r end end
    table.sort(out, function(x, y) return x.labels < y.labels end)
    return out
end

-- The conclusion, one paragraph per function, from the CIs alone. paired: report.paired's rows;
-- fns: the functions compared with base, in order; level: the CI's level (0.95).
function M.conclusion(paired, fns, base, level)
    base, level = base or "random", level or 0.95
    local lines, total, excluded = {}, 0, 0
    for _, fn in ipairs(fns) do
        local rows = rows_of(paired, fn)
        if #rows > 0 then
            local better, worse = {}, {}
            for _, r in ipairs(rows) do
                local v = M.verdict(r)
                if v ~= "no CI" then total = total + 1 end
                if v == "better" then better[#better + 1] = tostring(r.labels) end
                if v == "worse" then worse[#worse + 1] = tostring(r.labels) end
            end
            excluded = excluded + #better + #worse
            local last = rows[#rows]
            local s
            if #better == 0 and #worse == 0 then
                s = string.format("**%s vs %s: no difference.** At every waypoint the %d%% CI of the paired difference "
                    .. "covers 0", fn, base, math.floor(100 * level + 0.5))
            else
                local parts = {}
                if #better > 0 then parts[#parts + 1] = string.format("better than %s at %s labels", base, table.concat(better, ", ")) end
                if #worse > 0 then parts[#parts + 1] = string.format("worse than %s at %s labels", base, table.concat(worse, ", ")) end
                s = string.format("**%s vs %s: %s** (the CI excludes 0 there); elsewhere no difference", fn, base,
                    table.concat(parts, "; "))
            end
            s = s .. string.format(". At the last waypoint (%d labels): %s points, 95%% CI %s, %d seeds: %s.", last.labels,
                pts(last.mean or 0), ci(last), last.n, M.verdict(last) == "no difference" and "no difference"
                    or M.verdict(last) == "no CI" and "too few seeds for a CI"
                    or (M.verdict(last) == "better" and fn .. " ahead" or base .. " ahead"))
            lines[#lines + 1] = s
        end
    end
    local expect = (1 - level) * total
    lines[#lines + 1] = string.format("Of the %d intervals, %d exclude 0; with no true difference anywhere about %.1f "
        .. "would by chance (%d%% each), so an isolated one is weak evidence.", total, excluded, expect,
        math.floor(100 * (1 - level) + 0.5))
    return table.concat(lines, "\n\n")
end

local function md_table(rows) return report.markdown_rows(rows) end

-- result: {
--   title, date, command, design (markdown lines), seeds (count), base ("random"), fns ({...}),
--   table2 (report.table2's table), paired (report.paired's rows), level (0.95),
--   figures = {{name =, path =, caption =}}, times = {{phase =, seconds =}},
--   arm_times = {[fn] = mean seconds}, wrong_share = {[fn] = {wrong =, n =}},
--   changes = {{version =, date =, what =}}, smoke (bool), finished, planned (run counts) }
function M.markdown(result)
    local out = {}
    local function add(s) out[#out + 1] = s end
    add("# " .. (result.title or "Study"))
    add("")
    add(string.format("Written by `%s` on %s from its run folders; every number below comes from them.",
        result.command or "apl recipes/study.lua", result.date or os.date("!%Y-%m-%d %H:%M UTC")))
    if result.smoke then add(""); add("**Smoke run**: a tiny budget to check the pipeline; its numbers mean nothing.") end
    if result.planned then
        add("")
        add(string.format("Runs: %d of %d finished%s.", result.finished, result.planned, result.finished < result.planned
            and " (**incomplete**: the tables cover the finished runs; run the same command again to finish the rest)" or ""))
    end
    add("")
    add("## Setup")
    add("")
    for _, l in ipairs(result.design or {}) do add(l) end
    add("")
    add("## Win-rate against the initial policy (mean ± SE over seeds)")
    add("")
    add(report.markdown(result.table2))
    add("## Paired difference to " .. (result.base or "random") .. " (points; per seed: function − "
        .. (result.base or "random") .. " at the same waypoint)")
    add("")
    local g = { { "labels" } }
    for _, fn in ipairs(result.fns) do g[1][#g[1] + 1] = fn .. ": mean ± SE" end
    for _, fn in ipairs(result.fns) do g[1][#g[1] + 1] = fn .. ": 95% CI" end
    local by_l, ls = {}, {}
    for _, r in ipairs(result.paired) do
        if not by_l[r.labels] then by_l[r.labels] = {}; ls[#ls + 1] = r.labels end
        by_l[r.labels][r.column] = r
    end
    table.sort(ls)
    for _, l in ipairs(ls) do
        local row = { tostring(l) }
        for _, fn in ipairs(result.fns) do
            local r = by_l[l][fn]
            row[#row + 1] = r and r.mean and (pts(r.mean) .. (r.se and string.format(" ± %.1f", 100 * r.se) or "")) or "–"
        end
        for _, fn in ipairs(result.fns) do
            local r = by_l[l][fn]
            row[#row + 1] = r and (ci(r) .. (r.lo and (M.verdict(r) == "no difference" and "" or " *") or "")) or "–"
        end
        g[#g + 1] = row
    end
    add(md_table(g))
    add(string.format("CI: mean ± t(0.975, n−1) · SE over the n paired seeds; * marks an interval that excludes 0."))
    add("")
    add("## Figures")
    add("")
    for _, f in ipairs(result.figures or {}) do
        add(string.format("![%s](%s)", f.name, f.path))
        add("")
        add(f.caption)
        add("")
    end
    if result.wrong_share then
        local g3 = { { "function", "acquired pairs with a true preference", "share the policy had wrong (BT < 0.5)" } }
        for _, fn in ipairs(result.all_fns or result.fns) do
            local w = result.wrong_share[fn]
            if w then g3[#g3 + 1] = { fn, tostring(w.n), w.n > 0 and string.format("%.1f%%", 100 * w.wrong / w.n) or "–" } end
        end
        add("Figure 3's counts, pooled over seeds and steps (step 1 excluded: at θ0 every pair is 0.5):")
        add("")
        add(md_table(g3))
    end
    add("## Conclusion")
    add("")
    add(M.conclusion(result.paired, result.fns, result.base, result.level))
    add("")
    add("## Wall time (this invocation; finished runs it found are not rerun)")
    add("")
    local gt = { { "phase", "seconds" } }
    for _, t in ipairs(result.times or {}) do gt[#gt + 1] = { t.phase, string.format("%d", t.seconds) } end
    add(md_table(gt))
    if result.arm_times then
        local ga = { { "function", "mean seconds per run (sum of its steps)" } }
        for _, fn in ipairs(result.all_fns or result.fns) do
            if result.arm_times[fn] then ga[#ga + 1] = { fn, string.format("%.0f", result.arm_times[fn]) } end
        end
        add(md_table(ga))
    end
    add("## Design changes")
    add("")
    for _, c in ipairs(result.changes or {}) do add(string.format("- %s (%s): %s", c.version, c.date, c.what)) end
    add("")
    return table.concat(out, "\n")
end

return M
