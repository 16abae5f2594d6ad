-- bench/render.lua — the benchmark's tables as text and Markdown: numbers formatted, the results
-- table and the derived figures (MFU, bandwidth bound) as rows of strings.
--
--   local R = dofile(root .. "/bench/render.lua")
--   io.write(R.render_text(R.table_rows(results.rows)))   -- R.render_md for BENCHMARKS.md
local R = {}

function R.fmt(v, unit)
    if v == nil then return "-" end
    if unit == "s" then return v < 1 and string.format("%.3f", v) or string.format("%.2f", v) end
    if math.abs(v) >= 1000 then return string.format("%.0f", v) end
    if math.abs(v) >= 100 then return string.format("%.1f", v) end
    return string.format("%.2f", v)
end

function R.int(v) return v and string.format("%d", math.floor(v + 0.5)) or "?" end

function R.pct(v) return v and string.format("%.0f%%", 100 * v) or "-" end

local function spread_text(r)
    if not r.apl_spread and not r.baseline_spread then return "-" end
    return string.format("%s / %s", r.apl_spread and string.format("±%.0f%%", 50 * r.apl_spread) or "-",
        r.baseline_spread and string.format("±%.0f%%", 50 * r.baseline_spread) or "-")
end

local function met_text(r)
    if r.met == nil then return r.target_text and "not measured" or "" end
    return r.met and "met" or "NOT met"
end

local function ratio_text(r)
    if not r.ratio then return "-" end
    return string.format("%.2fx", r.ratio)
end

-- Rows of strings: the table that is printed and written into BENCHMARKS.md.
function R.table_rows(rows)
    local t = { { "benchmark", "unit", "apl", "baseline", "apl/baseline", "spread apl/base", "target", "status" } }
    for _, r in ipairs(rows) do
        local target = r.target_text or ""
        if r.name == "oracle_labels_per_s" and r.seconds_for_128 then
            target = target .. string.format(" (%.1f s)", r.seconds_for_128)
        elseif r.name == "model_load_rss" and r.target_value then
            target = target .. string.format(" (%.0f MB added: %.2fx of %.0f MB)", r.apl_added_mb, r.target_value, r.ckpt_mb)
        end
        local apl_cell = r.apl and R.fmt(r.apl, r.unit) or "not measured*"
        local base_cell = r.baseline and R.fmt(r.baseline, r.unit) or "not measured*"
        t[#t + 1] = { r.label, r.unit or "", apl_cell, base_cell, ratio_text(r), spread_text(r), target, met_text(r) }
    end
    return t
end

-- "label: why" for every figure that is missing (the * of the table).
function R.missing(rows)
    local out = {}
    for _, r in ipairs(rows) do
        if r.error then out[#out + 1] = string.format("%s: %s", r.label, r.error) end
        if r.baseline_error and r.apl then out[#out + 1] = string.format("%s baseline: %s", r.label, r.baseline_error) end
    end
    return out
end

function R.derived_rows(d, by)
    local rss = by.dpo_step
    return {
        { "measure", "apl", "baseline" },
        { string.format("DPO step MFU (TRL's %.0f GFLOP, of %s GFLOP/s peak)", d.dpo_gflop or 0, R.fmt(d.peak_gflops)),
          R.pct(d.dpo_mfu_apl), R.pct(d.dpo_mfu_baseline) },
        { string.format("DPO step, FLOPs apl executes (%.0f GFLOP) / time / peak", d.dpo_gflop_apl or 0),
          R.pct(d.dpo_hw_apl), "-" },
        { string.format("SFT step MFU (%.0f GFLOP)", d.sft_gflop or 0), R.pct(d.sft_mfu_apl), R.pct(d.sft_mfu_baseline) },
        { "DPO step peak RSS, MB (policy, reference, Adam)",
          R.fmt(rss and rss.apl_peak_rss_mb), R.fmt(rss and rss.baseline_peak_rss_mb) },
        { string.format("generation / bandwidth bound (%s tok/s at %s GB/s)", R.fmt(d.gen_bound_tok_s), R.fmt(d.bandwidth_gbs)),
          R.pct(d.gen_bound_frac_apl), R.pct(d.gen_bound_frac_baseline) },
    }
end

function R.render_text(t)
    local w = {}
    for _, row in ipairs(t) do
        for i, c in ipairs(row) do w[i] = math.max(w[i] or 0, utf8.len(c) or #c) end
    end
    local lines = {}
    for k, row in ipairs(t) do
        local cells = {}
        for i, c in ipairs(row) do cells[i] = c .. string.rep(" ", w[i] - (utf8.len(c) or #c)) end
        lines[#lines + 1] = table.concat(cells, "  "):gsub("%s+$", "")
        if k == 1 then
            local dash = {}
            for i = 1, #row do dash[i] = string.rep("-", w[i]) end
            lines[#lines + 1] = table.concat(dash, "  ")
        end
    end
    return table.concat(lines, "\n") .. "\n"
end

-- Rows of strings (the first the header) as a Markdown table: apl.report's, one writer for both.
R.render_md = require("apl.report").markdown_rows

return R
