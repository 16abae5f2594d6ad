-- apl.report_html — the report as one self-contained web page: Table 2, Figures 2 and 3 as
-- inline SVG, and every acquired pair in a table to sort and filter. Nothing is fetched: the
-- script and styles are inline and the page's Content-Security-Policy forbids any request.
--
--   local html = require("apl.report_html").page{ title =, grid = report.grid(t), figure2 = svg,
--       figure3 = svg, figure3_steps = { {step = 1, svg = ...} }, pairs = { {run, step, prompt, a, b,
--       score, bt_prob, p_pref, label, rationale, correct = true|false|"tie"} }, runs = n }
--
-- apl.report.write builds these arguments from run folders. Completions, prompts and rationales
-- are untrusted text: every string goes through M.escape; the SVGs come escaped from apl.plot.
--
-- The pairs table is sorted and filtered by the URL fragment, which the headers and controls
-- set, so a view can be linked and a headless browser can be pointed at one:
--   report.html#sort=score&dir=desc&q=great&run=imdb/certainty-s1&correct=no&step=2
local M = {}

local ENTITIES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

-- Text or attribute value, HTML-escaped.
function M.escape(s)
    if s == nil then return "" end
    return (tostring(s):gsub("[&<>\"']", ENTITIES))
end

-- correct: true, false or "tie" (P(preferred) exactly 0.5: no prediction).
local function correct_text(c)
    if c == "tie" then return "tie" end
    return c and "yes" or "no"
end

local function num(v, fmt) return type(v) == "number" and string.format(fmt, v) or "" end
local function int(v) return type(v) == "number" and tostring(math.tointeger(v) or v) or "" end

-- The pairs table's columns: key (the fragment's sort=), heading, type (num sorts by the row's
-- data-<key> attribute, text by the cell's text), and the cell's display text.
local COLUMNS = {
    { "run", "run", "text", function(p) return p.run end },
    { "step", "step", "num", function(p) return int(p.step) end },
    { "prompt", "prompt", "text", function(p) return p.prompt end },
    { "a", "completion a", "text", function(p) return p.a end },
    { "b", "completion b", "text", function(p) return p.b end },
    { "score", "score", "num", function(p) return num(p.score, "%.4f") end },
    { "bt", "P(a ≻ b)", "num", function(p) return num(p.bt_prob, "%.4f") end },
    { "pref", "P(preferred)", "num", function(p) return num(p.p_pref, "%.4f") end },
    { "label", "oracle", "text", function(p) return p.label and (p.label == 1 and "a" or "b") or "–" end },
    { "rationale", "rationale", "text", function(p) return p.rationale end },
    { "correct", "model right", "text", function(p) return p.correct == nil and "–" or correct_text(p.correct) end },
}

-- The values the script sorts and filters by, full precision.
local function data_attrs(p)
    local correct = p.correct == nil and "" or correct_text(p.correct)
    return string.format(' data-run="%s" data-step="%s" data-score="%s" data-bt="%s" data-pref="%s" data-correct="%s"',
        M.escape(p.run), int(p.step), num(p.score, "%.17g"), num(p.bt_prob, "%.17g"), num(p.p_pref, "%.17g"), correct)
end

local function pairs_table(list)
    local out = { '<table id="pairs"><thead><tr>' }
    for _, c in ipairs(COLUMNS) do
        out[#out + 1] = string.format('<th data-key="%s" data-type="%s" tabindex="0">%s</th>', c[1], c[3], M.escape(c[2]))
    end
    out[#out + 1] = "</tr></thead><tbody>"
    for _, p in ipairs(list) do
        local cells = {}
        for i, c in ipairs(COLUMNS) do cells[i] = "<td>" .. M.escape(c[4](p)) .. "</td>" end
        out[#out + 1] = "<tr" .. data_attrs(p) .. ">" .. table.concat(cells) .. "</tr>"
    end
    out[#out + 1] = "</tbody></table>"
    return table.concat(out, "\n")
end

-- Table 2 from report.grid: header row first.
local function table2(grid)
    local out = { '<table id="table2"><thead><tr>' }
    for _, s in ipairs(grid[1]) do out[#out + 1] = "<th>" .. M.escape(s) .. "</th>" end
    out[#out + 1] = "</tr></thead><tbody>"
    for i = 2, #grid do
        local cells = {}
        for j, s in ipairs(grid[i]) do cells[j] = "<td>" .. M.escape(s) .. "</td>" end
        out[#out + 1] = "<tr>" .. table.concat(cells) .. "</tr>"
    end
    out[#out + 1] = "</tbody></table>"
    return table.concat(out, "\n")
end

local function options(values, all)
    local out = { '<option value="">' .. M.escape(all) .. "</option>" }
    for _, v in ipairs(values) do out[#out + 1] = string.format('<option value="%s">%s</option>', M.escape(v), M.escape(v)) end
    return table.concat(out)
end

-- Distinct values of one field of the pairs, in first-seen order.
local function distinct(list, field)
    local seen, out = {}, {}
    for _, p in ipairs(list) do
        local v = p[field] ~= nil and tostring(math.tointeger(p[field]) or p[field]) or nil
        if v and not seen[v] then seen[v] = true; out[#out + 1] = v end
    end
    return out
end

local function controls(list)
    return table.concat {
        '<div id="controls">',
        '<input id="q" type="search" placeholder="filter: any text" size="30"> ',
        '<select id="run">', options(distinct(list, "run"), "all runs"), "</select> ",
        '<select id="step">', options(distinct(list, "step"), "all batches"), "</select> ",
        '<select id="correct"><option value="">right and wrong</option><option value="yes">model right</option>',
        '<option value="no">model wrong</option><option value="tie">tie (0.5)</option></select> ',
        '<span id="count"></span></div>',
    }
end

local STYLE = [[
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; }
#table2 td { text-align: right; font-variant-numeric: tabular-nums; }
#table2 td:first-child { text-align: left; }
#pairs td { max-width: 28em; white-space: pre-wrap; font-size: 13px; }
#pairs th { cursor: pointer; background: #f3f3f3; position: sticky; top: 0; }
#pairs th[aria-sort=ascending]::after { content: " ▲"; }
#pairs th[aria-sort=descending]::after { content: " ▼"; }
figure { margin: 0.5em 0; }
figure > svg { max-width: 100%; height: auto; }
figcaption, .note { color: #555; font-size: 13px; max-width: 60em; }
#controls { margin: 0.5em 0; }
]]

-- Sorting and filtering from the URL fragment (see the header). Rows keep their server-rendered,
-- escaped content; the script only reorders and hides them.
local SCRIPT = [[
(function () {
  "use strict";
  var table = document.getElementById("pairs");
  var tbody = table.tBodies[0];
  var rows = Array.prototype.slice.call(tbody.rows);
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var col = {};
  heads.forEach(function (th, i) { col[th.dataset.key] = { index: i, type: th.dataset.type, th: th }; });
  rows.forEach(function (tr, i) { tr._order = i; tr._text = tr.textContent.toLowerCase(); });
  var inputs = ["q", "run", "step", "correct"].map(function (id) { return document.getElementById(id); });

  function state() {
    var p = new URLSearchParams(location.hash.slice(1));
    return { sort: col[p.get("sort")] ? p.get("sort") : null, dir: p.get("dir") === "desc" ? "desc" : "asc",
             q: p.get("q") || "", run: p.get("run") || "", step: p.get("step") || "", correct: p.get("correct") || "" };
  }

  function key(tr, c, name) {
    if (c.type === "num") {
      var v = tr.getAttribute("data-" + name);
      return v === null || v === "" ? null : parseFloat(v);
    }
    return tr.cells[c.index].textContent.toLowerCase();
  }

  // Missing values last in either direction; ties keep the page's order.
  function sorted(s) {
    var out = rows.slice();
    if (!s.sort) return out;
    var c = col[s.sort], sign = s.dir === "desc" ? -1 : 1;
    out.sort(function (x, y) {
      var a = key(x, c, s.sort), b = key(y, c, s.sort);
      if (a === null || b === null) return a === b ? x._order - y._order : (a === null ? 1 : -1);
      if (a < b) return -sign;
      if (a > b) return sign;
      return x._order - y._order;
    });
    return out;
  }

  function shown(tr, s) {
    return (!s.q || tr._text.indexOf(s.q.toLowerCase()) >= 0) &&
           (!s.run || tr.dataset.run === s.run) && (!s.step || tr.dataset.step === s.step) &&
           (!s.correct || tr.dataset.correct === s.correct);
  }

  function apply() {
    var s = state(), n = 0, frag = document.createDocumentFragment();
    sorted(s).forEach(function (tr) {
      tr.hidden = !shown(tr, s);
      if (!tr.hidden) n++;
      frag.appendChild(tr);
    });
    tbody.appendChild(frag);
    heads.forEach(function (th) {
      if (s.sort && th === col[s.sort].th) th.setAttribute("aria-sort", s.dir === "desc" ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    });
    inputs[0].value = s.q; inputs[1].value = s.run; inputs[2].value = s.step; inputs[3].value = s.correct;
    document.getElementById("count").textContent = n + " of " + rows.length + " pairs";
    table.setAttribute("data-view", (s.sort ? s.sort + ":" + s.dir : "page order") + "; " + n + " shown");
  }

  function go(change) {
    var s = state(), p = new URLSearchParams();
    Object.keys(change).forEach(function (k) { s[k] = change[k]; });
    ["sort", "dir", "q", "run", "step", "correct"].forEach(function (k) { if (s[k]) p.set(k, s[k]); });
    location.hash = p.toString();
  }

  heads.forEach(function (th) {
    function click() {
      var s = state(), k = th.dataset.key;
      go({ sort: k, dir: s.sort === k ? (s.dir === "asc" ? "desc" : "asc") : (th.dataset.type === "num" ? "desc" : "asc") });
    }
    th.addEventListener("click", click);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") click(); });
  });
  inputs.forEach(function (el) {
    el.addEventListener(el.id === "q" ? "input" : "change", function () { var c = {}; c[el.id] = el.value; go(c); });
  });
  window.addEventListener("hashchange", apply);
  apply();
})();
]]

local CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

local function figure3_steps(list)
    if not list or #list == 0 then return "" end
    local out = { '<details id="figure3-steps"><summary>Figure 3 for each acquired batch</summary>' }
    for _, s in ipairs(list) do
        out[#out + 1] = string.format('<figure data-step="%s">%s</figure>', int(s.step), s.svg)
    end
    out[#out + 1] = "</details>"
    return table.concat(out, "\n")
end

-- opts: title, grid (Table 2 as report.grid gives it), figure2, figure3 (SVG texts),
-- figure3_steps ({step, svg} list), pairs (see the header), runs (how many). Returns the page.
function M.page(opts)
    local list = opts.pairs or {}
    return table.concat({
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="' .. CSP .. '">',
        "<title>" .. M.escape(opts.title) .. "</title>",
        "<style>" .. STYLE .. "</style></head><body>",
        "<h1>" .. M.escape(opts.title) .. "</h1>",
        string.format('<p class="note">%d runs, %d acquired pairs.</p>', opts.runs or 0, #list),
        '<h2>Table 2</h2><p class="note">Win-rate at each number of labels acquired: mean to 2 decimals ± standard error over seeds to 3 (one seed: the binomial standard error of its evaluation). Runs are grouped by dataset and acquisition function.</p>',
        table2(opts.grid),
        '<h2>Figure 2</h2><figure id="figure2">' .. opts.figure2 .. '<figcaption>Win-rate against labels acquired: mean over seeds with a ±SE band, one line per acquisition function.</figcaption></figure>',
        '<h2>Figure 3</h2><figure id="figure3">' .. opts.figure3 .. '<figcaption>For every acquired pair, pooled over seeds and batches, the probability the policy\'s implicit Bradley–Terry model gave (when the pair was acquired) to the completion the oracle preferred, in 10 bins: below 0.5 the model predicted wrongly (red), above correctly (green). Pairs at exactly 0.5 (step 1, where the policy is θ0) carry no prediction and are counted in the panel title.</figcaption></figure>',
        figure3_steps(opts.figure3_steps),
        '<h2>Acquired pairs</h2><p class="note">Click a heading to sort. P(preferred) is Figure 3\'s quantity. The rationale\'s "A" and "B" are in the order the judge saw the pair, which the run\'s oracle.jsonl records; it need not be a, b.</p>',
        controls(list),
        pairs_table(list),
        "<script>" .. SCRIPT .. "</script>",
        "</body></html>",
    }, "\n")
end

return M
