-- recipes/sweep.lua with a recipe that runs in a moment (tests/fixtures/sweep_recipe.lua: the
-- real loop and run folders on a fake engine): every arm in its own folder, an arm cut short is
-- resumed and ends as an uninterrupted one, finished arms are skipped untouched, the report is
-- written, options reach the recipe verbatim through the shell, and mismatches are refused.
local T = require "tests.lib.test"
local report = require "apl.report"
local fs = require "apl.fs"
local cjson = require "cjson"

local ROOT = T.root()
local RECIPE = ROOT .. "/tests/fixtures/sweep_recipe.lua"

local function q(s) return "'" .. s:gsub("'", [['\'']]) .. "'" end

-- Runs the sweep with extra environment settings; returns its exit code and output.
local function sweep(env, args)
    local cmd = { env or "", q(ROOT .. "/apl"), q(ROOT .. "/recipes/sweep.lua"), "--recipe", q(RECIPE) }
    for _, a in ipairs(args) do cmd[#cmd + 1] = q(a) end
    local p = io.popen(table.concat(cmd, " ") .. " 2>&1")
    local out = p:read("a")
    local _, _, code = p:close()
    return code, out
end

local function lines(path)
    local out = {}
    for l in (fs.read(path) or ""):gmatch("[^\n]+") do out[#out + 1] = l end
    return out
end

-- The records of a JSONL file (a resumed run rewrites its logs, so key order may differ).
local function records(path)
    local out = {}
    for i, l in ipairs(lines(path)) do out[i] = cjson.decode(l) end
    return out
end

local FILES = { "config.json", "acquired.jsonl", "eval.jsonl", "train.jsonl" }

local function snapshot(dir)
    local s = {}
    for _, f in ipairs(FILES) do s[f] = fs.read(dir .. "/" .. f) end
    return s
end

T.case("sweep: every arm in its own folder; rerun skips finished arms and resumes the one cut short", function()
    local base = T.tmpdir()
    local out, log = base .. "/sweep", base .. "/starts.log"
    local args = { "--acquisitions", "random,certainty", "--seeds", "1-2", "--out", out, "--budget", "8" }
    local env = "APL_TEST_SWEEP_LOG=" .. q(log) .. " "

    local code, text = sweep(env .. "APL_TEST_SWEEP_CRASH=certainty-s2:2", args)
    T.eq(code, 1, "a failed arm makes the sweep fail\n" .. text)
    T.ok(text:find("certainty%-s2 %(starting: exit 1%)"), text)
    T.eq(lines(log), { "random 1 fresh", "random 2 fresh", "certainty 1 fresh", "certainty 2 fresh" }, "the other arms ran on")
    local cut = out .. "/certainty-s2"
    T.eq({ report.state(cut) }, { "partial", 1, 2 })
    local finished = {}
    for _, arm in ipairs { "random-s1", "random-s2", "certainty-s1" } do
        T.eq(report.state(out .. "/" .. arm), "finished", arm)
        finished[arm] = snapshot(out .. "/" .. arm)
    end
    local step1 = records(cut .. "/acquired.jsonl")

    code, text = sweep(env, args)
    T.eq(code, 0, text)
    T.eq(lines(log)[5], "certainty 2 resume", "only the cut-short arm started again, with --resume")
    T.eq(#lines(log), 5, "finished arms were not started")
    T.eq(select(2, text:gsub("skipped %(finished%)", "")), 3, text)
    for arm, s in pairs(finished) do T.eq(snapshot(out .. "/" .. arm), s, arm .. " untouched") end
    T.eq(report.state(cut), "finished")
    T.eq({ table.unpack(records(cut .. "/acquired.jsonl"), 1, 4) }, { table.unpack(step1, 1, 4) }, "step 1 kept as it was")

    -- The resumed arm acquired exactly what an uninterrupted run of the same arm does.
    local whole = base .. "/whole"
    T.sh(string.format("%s %s --acquisition certainty --seed 2 --budget 8 --out %s", q(ROOT .. "/apl"), q(RECIPE), q(whole)))
    T.eq(#records(cut .. "/acquired.jsonl"), 8)
    T.eq(records(cut .. "/acquired.jsonl"), records(whole .. "/acquired.jsonl"))
    T.eq(records(cut .. "/eval.jsonl"), records(whole .. "/eval.jsonl"))

    -- The report of all four arms.
    for _, f in ipairs { "table2.md", "table2.csv", "figure2.svg", "figure3.svg", "report.html" } do
        T.ok(fs.exists(out .. "/" .. f), f)
    end
    T.ok(fs.read(out .. "/table2.md"):find("| dataset | labels | random (2 seeds) | certainty (2 seeds) |", 1, true),
        fs.read(out .. "/table2.md"))

    -- A finished arm that the recipe would now run with other knobs is not this sweep's: refused,
    -- not skipped. The knobs come from the recipe's --print-config, or else its saved options.
    local other = { "--acquisitions", "random", "--seeds", "1", "--out", out, "--budget", "12" }
    code, text = sweep(env, other)
    T.eq(code, 2, text)
    T.ok(text:find("random%-s1: budget was 8, now 12"), text)
    code, text = sweep(env .. "APL_TEST_SWEEP_PLAIN=1", other)
    T.eq(code, 2, text)
    T.ok(text:find("random%-s1: it was run with %-%-budget 8, not 12"), text)
    T.eq(#lines(log), 5, "no arm was started")
end)

T.case("sweep: recipe options reach the recipe verbatim, shell characters and all", function()
    local base = T.tmpdir()
    local name = [[it's $(touch pwned) `touch pwned2`; "x" \ & *]]
    local code, text = sweep("cd " .. q(base) .. " &&",
        { "--acquisitions", "random", "--seeds", "3", "--out", base .. "/s", "--budget", "4", "--dataset", name })
    T.eq(code, 0, text)
    local c = report.load(base .. "/s/random-s3").config
    T.eq(c.args.dataset, name)
    T.eq(c.oracle.template, name)
    T.eq({ c.acquisition, c.seed, c.budget }, { "random", 3, 4 })
    T.ok(not fs.exists(base .. "/pwned") and not fs.exists(base .. "/pwned2"), "nothing ran in a shell")
end)

T.case("sweep: bad options are refused before any arm runs", function()
    local base = T.tmpdir()
    for _, case in ipairs {
        { { "--seed", "3" }, "%-%-seed is set for each arm by the sweep" },
        { { "--resume", "x" }, "%-%-resume is set for each arm" },
        { { "--seeds", "3-1" }, '"3%-1" is not a seed list' },
        { { "--acquisitions", "random,nope" }, "no acquisition/nope.lua" },
    } do
        local args = { "--out", base .. "/s" }
        for _, a in ipairs(case[1]) do args[#args + 1] = a end
        local code, text = sweep(nil, args)
        T.eq(code, 2, text)
        T.ok(text:find(case[2]), text)
    end
    T.ok(not fs.exists(base .. "/s"), "no run folder made")
    local code, text = sweep(nil, { "--out", base .. "/d", "--seeds", "1,3", "--acquisitions", "certainty", "--dry-run", "--budget", "4" })
    T.eq(code, 0, text)
    T.ok(text:find("'%-%-budget' '4' '%-%-acquisition' 'certainty' '%-%-seed' '3' '%-%-out' '[^']*/d/certainty%-s3'"), text)
    T.ok(not fs.exists(base .. "/d"), "a dry run runs nothing")
end)
