-- apl.plot — line plots with error bars and histograms, written as plain SVG files.
--
--   local plot = require "apl.plot"
--   plot.lines{ file = "winrate.svg", title = "Win-rate", xlabel = "labels acquired",
--               ylabel = "win-rate", series = { { name = "certainty", x = {128, 256},
--               y = {0.61, 0.70}, err = {0.02, 0.02} } } }
--   plot.histogram{ file = "bt.svg", xlabel = "BT probability", range = {0, 1}, bins = 10,
--                   groups = { { name = "correct", values = {...} }, { name = "incorrect", values = {...} } } }
--   plot.grid{ file = "fig.svg", cols = 2, panels = { plot.lines_svg{...}, plot.histogram_svg{...} } }
--
-- SVG opens in any browser; no plotting library is needed. Each function returns the file name;
-- the *_svg forms return the SVG text instead (to inline in a web page or combine in a grid).
local M = {}

local W, H = 680, 420
local PAD = { left = 70, right = 170, top = 44, bottom = 58 }
local COLORS = { "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf" }

local function esc(s)
    return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
end

local function fmt(v)
    if v == math.floor(v) and math.abs(v) < 1e9 then return string.format("%d", v) end
    return (string.format("%.3g", v))
end

-- Round tick positions from just below lo to just above hi: steps of 1, 2 or 5 times a power
-- of ten.
function M.ticks(lo, hi, n)
    if hi <= lo then hi = lo + 1 end
    local raw = (hi - lo) / (n or 5)
    local mag = 10 ^ math.floor(math.log(raw, 10))
    local step = mag
    for _, m in ipairs { 1, 2, 5, 10 } do
        if m * mag >= raw then step = m * mag; break end
    end
    local out = {}
    for k = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9) do out[#out + 1] = k * step end
    return out, step
end

-- The plot area and the data-to-pixel mapping; lo/hi are widened to whole ticks.
local function frame(xlo, xhi, ylo, yhi)
    local xt = M.ticks(xlo, xhi)
    local yt = M.ticks(ylo, yhi)
    xlo, xhi = math.min(xlo, xt[1]), math.max(xhi, xt[#xt])
    ylo, yhi = math.min(ylo, yt[1]), math.max(yhi, yt[#yt])
    if xhi == xlo then xhi = xlo + 1 end
    if yhi == ylo then yhi = ylo + 1 end
    local pw, ph = W - PAD.left - PAD.right, H - PAD.top - PAD.bottom
    return {
        xt = xt, yt = yt,
        x = function(v) return PAD.left + (v - xlo) / (xhi - xlo) * pw end,
        y = function(v) return PAD.top + ph - (v - ylo) / (yhi - ylo) * ph end,
    }
end

local function axes(out, f, opts)
    local x0, x1 = PAD.left, W - PAD.right
    local y0, y1 = H - PAD.bottom, PAD.top
    out[#out + 1] = string.format('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>',
        x0, y1, x1 - x0, y0 - y1)
    for _, v in ipairs(f.xt) do
        local px = f.x(v)
        out[#out + 1] = string.format('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333"/>', px, y0, px, y0 + 5)
        out[#out + 1] = string.format('<text x="%.1f" y="%d" text-anchor="middle">%s</text>', px, y0 + 19, fmt(v))
    end
    for _, v in ipairs(f.yt) do
        local py = f.y(v)
        out[#out + 1] = string.format('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>', x0, py, x1, py)
        out[#out + 1] = string.format('<text x="%d" y="%.1f" text-anchor="end">%s</text>', x0 - 7, py + 4, fmt(v))
    end
    out[#out + 1] = string.format('<text x="%d" y="%d" text-anchor="middle" font-size="15">%s</text>',
        (x0 + x1) // 2, 26, esc(opts.title or ""))
    out[#out + 1] = string.format('<text x="%d" y="%d" text-anchor="middle">%s</text>',
        (x0 + x1) // 2, H - 14, esc(opts.xlabel or ""))
    out[#out + 1] = string.format('<text transform="translate(18 %d) rotate(-90)" text-anchor="middle">%s</text>',
        (y0 + y1) // 2, esc(opts.ylabel or ""))
end

-- colors: one per name (default: the palette in order).
local function legend(out, names, shape, colors)
    for i, name in ipairs(names) do
        local y = PAD.top + 8 + (i - 1) * 22
        local x = W - PAD.right + 16
        local c = colors and colors[i] or COLORS[(i - 1) % #COLORS + 1]
        if shape == "box" then
            out[#out + 1] = string.format('<rect x="%d" y="%d" width="14" height="12" fill="%s"/>', x, y - 6, c)
        else
            out[#out + 1] = string.format('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2.5"/>', x, y, x + 22, y, c)
        end
        out[#out + 1] = string.format('<text x="%d" y="%d">%s</text>', x + 28, y + 4, esc(name))
    end
end

-- One standalone SVG document of the given size around the elements in out.
local function svg(out, w, h)
    return string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
        .. 'font-family="sans-serif" font-size="12">\n<rect width="100%%" height="100%%" fill="white"/>\n', w, h, w, h)
        .. table.concat(out, "\n") .. "\n</svg>\n"
end

local function write(file, text)
    local f, err = io.open(file, "w")
    if not f then error("apl.plot: " .. err, 3) end
    f:write(text)
    f:close()
    return file
end

-- A shaded band from y − err to y + err along a series (the ±SE band of a mean curve).
local function band(f, s, c)
    local up, down = {}, {}
    for i, x in ipairs(s.x) do
        local e = s.err[i] or 0
        up[#up + 1] = string.format("%.1f,%.1f", f.x(x), f.y(s.y[i] + e))
        table.insert(down, 1, string.format("%.1f,%.1f", f.x(x), f.y(s.y[i] - e)))
    end
    return string.format('<polygon points="%s %s" fill="%s" fill-opacity="0.18" stroke="none"/>',
        table.concat(up, " "), table.concat(down, " "), c)
end

-- An error bar at one point.
local function error_bar(f, x, y, e, c)
    local px, lo, hi = f.x(x), f.y(y - e), f.y(y + e)
    return string.format('<path d="M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f" stroke="%s" fill="none"/>',
        px, lo, hi, px - 4, lo, px + 4, px - 4, hi, px + 4, c)
end

-- opts: title, xlabel, ylabel, ylim ({lo, hi}, optional), hline (a dashed reference level,
-- e.g. 0.5 for win-rates), band (draw err as a shaded ±err band instead of error bars),
-- series = { {name, x, y, err} }. Returns the SVG text.
function M.lines_svg(opts)
    local xlo, xhi, ylo, yhi = math.huge, -math.huge, math.huge, -math.huge
    for _, s in ipairs(opts.series) do
        for i, x in ipairs(s.x) do
            local e = s.err and s.err[i] or 0
            xlo, xhi = math.min(xlo, x), math.max(xhi, x)
            ylo, yhi = math.min(ylo, s.y[i] - e), math.max(yhi, s.y[i] + e)
        end
    end
    if xlo == math.huge then xlo, xhi, ylo, yhi = 0, 1, 0, 1 end
    if opts.ylim then ylo, yhi = math.min(ylo, opts.ylim[1]), math.max(yhi, opts.ylim[2]) end
    local f = frame(xlo, xhi, ylo, yhi)
    local out, names = {}, {}
    axes(out, f, opts)
    if opts.hline then
        out[#out + 1] = string.format('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#888" stroke-dasharray="5,4"/>',
            PAD.left, f.y(opts.hline), W - PAD.right, f.y(opts.hline))
    end
    for k, s in ipairs(opts.series) do
        local c = COLORS[(k - 1) % #COLORS + 1]
        if opts.band and s.err and #s.x > 0 then out[#out + 1] = band(f, s, c) end
        local pts = {}
        for i, x in ipairs(s.x) do
            local px, py = f.x(x), f.y(s.y[i])
            pts[#pts + 1] = string.format("%.1f,%.1f", px, py)
            local e = s.err and s.err[i]
            if e and e > 0 and not opts.band then out[#out + 1] = error_bar(f, x, s.y[i], e, c) end
            out[#out + 1] = string.format('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>', px, py, c)
        end
        out[#out + 1] = string.format('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>', table.concat(pts, " "), c)
        names[k] = s.name or ("series " .. k)
    end
    legend(out, names, "line")
    return svg(out, W, H)
end

-- plot.lines_svg written to opts.file; returns the file name.
function M.lines(opts) return write(opts.file, M.lines_svg(opts)) end

-- Counts of values per bin over range; values outside the range go to the end bins.
function M.bin_counts(values, bins, lo, hi)
    local counts = {}
    for b = 1, bins do counts[b] = 0 end
    for _, v in ipairs(values) do
        local b = math.floor((v - lo) / (hi - lo) * bins) + 1
        b = math.max(1, math.min(bins, b))
        counts[b] = counts[b] + 1
    end
    return counts
end

-- opts: title, xlabel, ylabel, bins (10), range ({lo, hi}), groups = { {name, values, color} },
-- ymax (a shared count scale for panels meant to be compared). Groups are drawn side by side
-- within each bin, or each over the bin's full width with overlay = true (for groups that
-- occupy different bins, e.g. wrong predictions below 0.5 and right ones above). Returns the SVG.
function M.histogram_svg(opts)
    local bins = opts.bins or 10
    local lo, hi = opts.range[1], opts.range[2]
    local counts, top = {}, opts.ymax or 1
    for g, grp in ipairs(opts.groups) do
        counts[g] = M.bin_counts(grp.values, bins, lo, hi)
        for _, c in ipairs(counts[g]) do top = math.max(top, c) end
    end
    local f = frame(lo, hi, 0, top)
    local out, names = {}, {}
    axes(out, f, { title = opts.title, xlabel = opts.xlabel, ylabel = opts.ylabel or "count" })
    local width = (hi - lo) / bins
    local ng = opts.overlay and 1 or #opts.groups
    local colors = {}
    for g, grp in ipairs(opts.groups) do
        colors[g] = grp.color or COLORS[(g - 1) % #COLORS + 1]
        local slot = opts.overlay and 0 or g - 1
        for b, c in ipairs(counts[g]) do
            if c > 0 then
                local x0 = f.x(lo + (b - 1) * width) + 1
                local bw = (f.x(lo + b * width) - f.x(lo + (b - 1) * width) - 2) / ng
                out[#out + 1] = string.format('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %d</title></rect>',
                    x0 + slot * bw, f.y(c), bw, f.y(0) - f.y(c), colors[g], esc(grp.name), c)
            end
        end
        names[g] = string.format("%s (%d)", grp.name, #grp.values)
    end
    legend(out, names, "box", colors)
    return svg(out, W, H)
end

-- plot.histogram_svg written to opts.file; returns the file name.
function M.histogram(opts) return write(opts.file, M.histogram_svg(opts)) end

-- Panels (SVG texts from the *_svg functions) in a grid of opts.cols columns (default: all in
-- one row), under an optional title. Returns the SVG text.
function M.grid_svg(opts)
    local n = #opts.panels
    local cols = math.max(1, math.min(opts.cols or n, n))
    local rows = math.max(1, (n + cols - 1) // cols)
    local top = opts.title and 30 or 0
    local out = {}
    if opts.title then
        out[1] = string.format('<text x="%d" y="21" text-anchor="middle" font-size="16">%s</text>', cols * W // 2, esc(opts.title))
    end
    for i, panel in ipairs(opts.panels) do
        local x, y = ((i - 1) % cols) * W, top + ((i - 1) // cols) * H
        -- A nested <svg> with x and y places the panel; its own viewBox keeps its coordinates.
        out[#out + 1] = (panel:gsub("^<svg ", string.format('<svg x="%d" y="%d" ', x, y), 1))
    end
    return svg(out, cols * W, top + rows * H)
end

-- plot.grid_svg written to opts.file; returns the file name.
function M.grid(opts) return write(opts.file, M.grid_svg(opts)) end

return M
