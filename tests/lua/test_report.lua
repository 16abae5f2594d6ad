-- apl.report on hand-written run folders (tests/fixtures/report_runs: IMDB with random, certainty,
-- hybrid and uncertainty; TLDR with random and certainty): Table 2 against means and standard
-- errors worked out here from the fixtures' numbers, datasets kept apart, Figure 3's quantity,
-- errors on malformed folders, and report.html — escaped, and sorted and filtered by its script in
-- headless Chromium (skipped with the reason when Chromium is absent).
local T = require "tests.lib.test"
local report = require "apl.report"
local fs = require "apl.fs"

local FIX = T.root() .. "/tests/fixtures/report_runs"
-- Deliberately not in column order: the table orders columns itself.
local RUNS = { "imdb/uncertainty-s1", "tldr/certainty-s2", "imdb/random-s1", "imdb/certainty-s1", "tldr/random-s1",
               "imdb/random-s2", "imdb/hybrid-s2", "imdb/certainty-s2", "imdb/random-s3", "tldr/random-s2",
               "imdb/certainty-s3", "imdb/hybrid-s1", "tldr/certainty-s1" }

local function dirs()
    local out = {}
    for i, r in ipairs(RUNS) do out[i] = FIX .. "/" .. r end
    return out
end

-- The fixtures' win-rates (eval.jsonl) at 128 and 256 labels, by hand.
local WIN = {
    imdb = { random = { { 0.60, 0.64, 0.65 }, { 0.70, 0.74, 0.69 } }, certainty = { { 0.61, 0.63, 0.62 }, { 0.80, 0.83, 0.84 } },
             hybrid = { { 0.62, 0.66 }, { 0.81, 0.85 } } },
    tldr = { random = { { 0.51, 0.53 }, { 0.55, 0.57 } }, certainty = { { 0.50, 0.54 }, { 0.60, 0.58 } } },
}

-- Mean and standard error of the mean, written out independently of apl.
local function mean_se(xs)
    local n, s = #xs, 0
    for _, x in ipairs(xs) do s = s + x end
    local m, v = s / n, 0
    for _, x in ipairs(xs) do v = v + (x - m) * (x - m) end
    return m, math.sqrt(v / (n - 1)) / math.sqrt(n)
end

local function row_of(t, ds, labels)
    for i, l in ipairs(t.rows) do
        if t.row_dataset[i] == ds and l == labels then return i end
    end
end

T.case("Table 2: one row per (dataset, labels), columns in the paper's order, mean ± SE over seeds by hand", function()
    local t = report.compare(dirs(), { plot = T.tmpdir() .. "/f2.svg", quiet = true })
    T.eq(t.datasets, { "imdb", "tldr" })
    T.eq(t.columns, { "random", "certainty", "hybrid", "uncertainty" }, "paper's order, others after")
    T.eq(t.rows, { 128, 256, 128, 256 })
    T.eq(t.row_dataset, { "imdb", "imdb", "tldr", "tldr" })
    for ds, cols in pairs(WIN) do
        for col, at in pairs(cols) do
            for k, labels in ipairs { 128, 256 } do
                local m, se = mean_se(at[k])
                local x = t.cells[row_of(t, ds, labels)][col]
                T.eq(x.mean, m, 1e-12, ds .. " " .. col .. " " .. labels .. " mean")
                T.eq(x.se, se, 1e-12, ds .. " " .. col .. " " .. labels .. " se")
                T.eq(x.n, #at[k])
            end
        end
    end
    -- Pooling the datasets would have given random at 128 the mean of five seeds.
    T.ok(math.abs(t.cells[1].random.mean - 0.586) > 0.01, "imdb's random column holds imdb's runs only")
    T.eq(t.cells[3].hybrid, nil, "no hybrid runs on tldr")
    local one = t.cells[1].uncertainty
    T.eq({ one.mean, one.se, one.n }, { 0.55, 0.015547, 1 }, 1e-12, "one seed: the run's binomial standard error")
end)

T.case("Table 2: text, Markdown and CSV forms (2 decimals ± 3)", function()
    local t = report.compare(dirs(), { plot = T.tmpdir() .. "/f2.svg", quiet = true })
    local m, se = mean_se(WIN.imdb.random[1])
    local want = string.format("%.2f ± %.3f", m, se)
    T.eq(want, "0.63 ± 0.015")
    T.ok(t.text:find("imdb%s+128%s+0%.63 ± 0%.015%s+0%.62 ± 0%.006"), t.text)
    T.ok(t.text:find("random %(2–3 seeds%)"), "seed counts differ between datasets")
    local md = report.markdown(t)
    T.ok(md:find("| dataset | labels | random (2–3 seeds) | certainty (2–3 seeds) | hybrid (2 seeds) | uncertainty (1 seed) |", 1, true), md)
    T.ok(md:find("| tldr | 128 | 0.52 ± 0.010 | 0.52 ± 0.020 | – | – |", 1, true), md)
    local csv = report.csv(t)
    local lines = {}
    for l in csv:gmatch("[^\n]+") do lines[#lines + 1] = l end
    T.eq(#lines, 5)
    T.ok(lines[1]:find("^dataset,labels,random_mean,random_se,random_n,certainty_mean"), lines[1])
    local ds, labels, mean, se_, n = lines[4]:match("^([^,]*),([^,]*),([^,]*),([^,]*),([^,]*)")
    T.eq({ ds, labels, tonumber(n) }, { "tldr", "128", 2 })
    T.eq(tonumber(mean), 0.52, 1e-12)
    T.eq(tonumber(se_), 0.01, 1e-12)
end)

T.case("Table 2 refuses one seed counted twice", function()
    local d = dirs()
    d[#d + 1] = FIX .. "/imdb/random-s1"
    T.assert_error_match(function() report.compare(d, { plot = T.tmpdir() .. "/x.svg", quiet = true }) end,
        "random%-s1 are both imdb / random seed 1")
end)

-- A copy of a fixture run in a temporary folder, with one file replaced.
local function broken(file, text)
    local dir = T.tmpdir() .. "/run"
    T.sh(string.format("cp -r '%s/imdb/random-s1' '%s'", FIX, dir))
    if text then fs.write(dir .. "/" .. file, text) else os.remove(dir .. "/" .. file) end
    return dir
end

T.case("malformed run folders: errors name the file, the record and the field", function()
    T.assert_error_match(function() report.load(broken("config.json")) end, "run/? is not a run folder %(no config.json%)")
    T.assert_error_match(function() report.load(broken("config.json", '{"seed": 1}\n')) end,
        "run/config.json: field acquisition is missing")
    T.assert_error_match(function()
        report.load(broken("eval.jsonl", '{"labels": 128, "winrate": 0.6}\n{"labels": 256, "winrate": "high"}\n'))
    end, "run/eval.jsonl record 2: field winrate is high, expected a number in %[0, 1%]")
    T.assert_error_match(function() report.load(broken("acquired.jsonl", '{"step": 1, "bt_prob": 0.5, "label": 3}\n')) end,
        "run/acquired.jsonl record 1: field label is 3")
    T.assert_error_match(function() report.load(broken("acquired.jsonl", '{"step": 1, "bt_prob": 1.5, "label": 1}\n')) end,
        "field bt_prob is 1.5")
    T.assert_error_match(function() report.state(broken("train.jsonl", '{"labels": 4}\n')) end,
        "run/train.jsonl record 1: field step is missing")
end)

T.case("run state: finished when train.jsonl holds every planned step", function()
    T.eq({ report.state(FIX .. "/imdb/random-s1") }, { "finished", 2, 2 })
    T.eq({ report.state(broken("train.jsonl", '{"step": 1}\n')) }, { "partial", 1, 2 })
    T.eq({ report.state(T.tmpdir()) }, { "absent", 0 })
end)

T.case("Figure 3: the BT probability of the oracle-preferred completion, wrong below 0.5 and right above", function()
    T.eq(report.preferred_prob { bt_prob = 0.9, label = 1 }, 0.9)
    T.eq(report.preferred_prob { bt_prob = 0.9, label = 2 }, 0.1, 1e-15)
    T.eq(report.preferred_prob { bt_prob = 0.9 }, nil, "unlabelled")
    -- imdb certainty, seeds 1–3, step 2: (bt_prob, label) = (0.9, 2) (0.2, 2) (0.65, 1) | (0.95, 2)
    -- (0.3, 1) (0.12, 2) | (0.08, 1) (0.85, 1); step 1: two pairs per seed at exactly 0.5.
    local acquired = {}
    for s = 1, 3 do
        for _, r in ipairs(report.load(FIX .. "/imdb/certainty-s" .. s).acquired) do acquired[#acquired + 1] = r end
    end
    local right, wrong, ties = report.bt_split(acquired)
    table.sort(right); table.sort(wrong)
    T.eq(right, { 0.65, 0.8, 0.85, 0.88 }, 1e-12)
    T.eq(wrong, { 0.05, 0.08, 0.1, 0.3 }, 1e-12)
    T.eq(ties, 6)
    local t, runs = report.compare(dirs(), { plot = T.tmpdir() .. "/f2.svg", quiet = true })
    local svg = report.figure3(t, runs)
    local _, panels = svg:gsub("<svg x=", "")
    T.eq(panels, 6, "one panel per (dataset, acquisition function)")
    local panel, starts = nil, {}
    for i in svg:gmatch("()<svg x=") do starts[#starts + 1] = i end
    starts[#starts + 1] = #svg
    for k = 1, #starts - 1 do
        local p = svg:sub(starts[k], starts[k + 1] - 1)
        if p:find("imdb, certainty: 3 seeds; 6 at 0.5", 1, true) then panel = p end
    end
    T.ok(panel, "the imdb certainty panel, pooled over 3 seeds")
    local counts = { wrong = 0, right = 0 }
    for k, n in panel:gmatch("<title>(%a+): (%d+)</title>") do counts[k] = counts[k] + tonumber(n) end
    T.eq(counts, { wrong = 4, right = 4 })
    T.ok(panel:find('fill="#d62728"><title>wrong') and panel:find('fill="#2ca02c"><title>right'), "red wrong, green right")
    T.ok(not report.figure3(t, runs, { step = 2 }):find("at 0%.5"), "batch 2 alone has no ties")
end)

T.case("run plots: winrate.svg and bt_hist.svg in the run folder", function()
    local dir = broken("train.jsonl", '{"step": 1}\n{"step": 2}\n')
    local p = report.run_plots(dir)
    T.ok(fs.read(p.bt):find(">wrong %(1%)<") and fs.read(p.bt):find(">right %(1%)<"), fs.read(p.bt))
    T.ok(fs.read(p.winrate):find("<polyline"), "win-rate line")
end)

local function write_report()
    local out = T.tmpdir() .. "/report"
    local r = report.write(dirs(), out, { quiet = true })
    return r, out, fs.read(r.files.html)
end

T.case("report.write: Table 2 files, both figures and one self-contained, escaped report.html", function()
    local r, out, html = write_report()
    for _, f in ipairs { "table2.txt", "table2.md", "table2.csv", "figure2.svg", "figure3.svg", "report.html" } do
        T.ok(fs.exists(out .. "/" .. f), f)
    end
    T.eq(fs.read(out .. "/table2.md"), report.markdown(r.table2))
    local _, rows = html:gsub('<tr data%-run="', "")
    T.eq(rows, 55, "every acquired pair of the 13 runs")
    T.ok(html:find('<figure id="figure2"><svg', 1, true) and html:find('<figure id="figure3"><svg', 1, true))
    T.ok(html:find("<td>0.63 ± 0.015</td>", 1, true), "Table 2 in the page")
    -- The fixtures' completions carry markup; none of it may reach the page as markup.
    T.ok(not html:find("<img", 1, true) and not html:find("</textarea>", 1, true) and not html:find("<b>bold", 1, true))
    T.ok(html:find("&lt;img src=x onerror=&quot;document.body.setAttribute(&#39;data-pwned&#39;,&#39;2&#39;)&quot;&gt;", 1, true))
    T.ok(html:find("&lt;script&gt;document.body", 1, true))
    local _, scripts = html:gsub("<script", "")
    T.eq(scripts, 1, "the page's own script only")
    T.ok(not html:find("src=\"", 1, true) and not html:find("href=", 1, true) and not html:find("url%("),
        "nothing to fetch")
    T.ok(html:find("default-src 'none'", 1, true), "and a policy that forbids fetching")
end)

------------------------------------------------------------------------------------------------
-- report.html in headless Chromium

local function chromium()
    for _, name in ipairs { "chromium", "chromium-browser" } do
        local p = io.popen("command -v " .. name .. " 2>/dev/null")
        local path = p:read("l")
        p:close()
        if path and path ~= "" then return path end
    end
end

-- The DOM after the page's script ran, at file://<html>#<fragment>.
local function dump_dom(browser, html_file, fragment)
    local profile = T.tmpdir()
    return T.sh(string.format("timeout 90 %s --headless --no-sandbox --disable-gpu --disable-background-networking "
        .. "--disable-component-update --no-first-run --user-data-dir=%s --dump-dom 'file://%s#%s' 2>/dev/null",
        browser, profile, html_file, fragment))
end

-- The pairs table's rows in page order: their data attributes and whether they are hidden.
local function dom_rows(dom)
    local rows = {}
    for attrs in dom:gmatch('<tr (data%-run="[^>]*)>') do
        local r = { hidden = attrs:find(" hidden") ~= nil }
        for k, v in attrs:gmatch('data%-(%a+)="([^"]*)"') do r[k] = v end
        rows[#rows + 1] = r
    end
    return rows
end

T.case("report.html in headless Chromium: figures, sorting and filtering by the URL fragment", function()
    local browser = chromium()
    if not browser then T.skip("chromium is not installed (Debian: apt-get install chromium)") end
    local _, out = write_report()
    local file = out .. "/report.html"

    local dom = dump_dom(browser, file, "sort=pref&dir=asc")
    T.ok(dom:find('<figure id="figure2"><svg', 1, true) and dom:find('<figure id="figure3"><svg', 1, true), "both figures")
    T.ok(dom:find('<table id="table2">', 1, true) and dom:find("0.63 ± 0.015", 1, true), "Table 2")
    T.ok(dom:find('data%-view="pref:asc; 55 shown"'), "the script applied the fragment")
    T.ok(dom:find(">55 of 55 pairs<", 1, true))
    local rows = dom_rows(dom)
    T.eq(#rows, 55)
    local prev, blanks = -1, 0
    for i, r in ipairs(rows) do
        if r.pref == "" then blanks = blanks + 1
        else
            T.ok(blanks == 0, "unlabelled pairs (no P(preferred)) sort last, row " .. i)
            T.ok(tonumber(r.pref) >= prev, "ascending P(preferred) at row " .. i)
            prev = tonumber(r.pref)
        end
    end
    T.eq(blanks, 1, "one unlabelled pair")
    T.eq(tonumber(rows[1].pref), 0.05, 1e-12)

    dom = dump_dom(browser, file, "sort=score&dir=desc&run=imdb/certainty-s1&correct=no")
    local shown = {}
    for _, r in ipairs(dom_rows(dom)) do if not r.hidden then shown[#shown + 1] = r end end
    -- imdb/certainty-s1: the model was wrong on (bt_prob 0.9, label b); its step-1 pairs are ties.
    T.eq(#shown, 1)
    T.eq(tonumber(shown[1].bt), 0.9)
    T.ok(dom:find(">1 of 55 pairs<", 1, true))

    dom = dump_dom(browser, file, "sort=score&dir=desc&run=imdb/certainty-s1")
    shown = {}
    for _, r in ipairs(dom_rows(dom)) do if not r.hidden then shown[#shown + 1] = r.score end end
    T.eq(#shown, 5)
    for i = 2, #shown do T.ok(tonumber(shown[i - 1]) >= tonumber(shown[i]), "score descending at row " .. i) end
    T.ok(tonumber(shown[1]) > tonumber(shown[5]))
    T.ok(dom:find('<td>tie</td>', 1, true), "step-1 pairs at 0.5 are ties")
    T.ok(not dom:find("<body[^>]*data%-pwned"), "no completion ran as script")
    T.ok(not dom:find("<img", 1, true), "no completion became an element")
end)

T.case("Table 2's rows are the pairs acquired: a run where a few labels failed stays in its row", function()
    local dir = broken("eval.jsonl",
        '{"step": 1, "labels": 126, "pairs": 128, "winrate": 0.6, "stderr": 0.015, "n": 1024, "failed": 0}\n' ..
        '{"step": 2, "labels": 250, "pairs": 256, "winrate": 0.7, "stderr": 0.014, "n": 1024, "failed": 0}\n')
    local d = dirs()
    for i, r in ipairs(RUNS) do if r == "imdb/random-s1" then d[i] = dir end end
    local t = report.compare(d, { plot = T.tmpdir() .. "/f2.svg", quiet = true })
    T.ok(row_of(t, "imdb", 128) and row_of(t, "imdb", 256), "rows 128 and 256")
    T.ok(not row_of(t, "imdb", 126) and not row_of(t, "imdb", 250), "no rows of their own for 126 or 250")
    local m = mean_se(WIN.imdb.random[1])
    T.ok(report.markdown(t):find(string.format("%.2f", m), 1, true), "random's 128 cell still averages 3 seeds")
end)

T.case("report: after printing Table 2 it returns apl.show.printed last, so the REPL does not print it twice", function()
    local show = require "apl.show"
    local out = T.tmpdir()
    local saved = io.write
    io.write = function() end -- the table itself is checked above; here only what is returned
    local ok, a, b, c = pcall(report.compare, dirs(), { plot = out .. "/f2.svg" })
    local ok2, w, p = pcall(report.write, dirs(), out .. "/w")
    io.write = saved
    T.ok(ok and ok2, tostring(a) .. tostring(w))
    T.ok(a.text and b and c == show.printed, "compare returns Table 2, the runs, then the marker")
    T.ok(w.files and p == show.printed, "write returns its files, then the marker")
    local _, _, q = report.compare(dirs(), { plot = out .. "/f2.svg", quiet = true })
    T.eq(q, nil, "quiet: nothing was printed, no marker")
end)
