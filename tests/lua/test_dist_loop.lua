-- Several processes, one run (issue 16): apl.loop as 2 ranks (Gloo on 127.0.0.1) acquires and
-- evaluates what one process does, on the fake engine and on a tiny real GPT-2; a 2-rank run
-- stopped after a step resumes to the uninterrupted run; an oracle failure on rank 0 ends every
-- rank with its error; `apl --nproc 2 recipes/demo.lua` against one process. Each rank runs
-- tests/lua/dist_loop_script.lua.
local T = require "tests.lib.test"
local cjson = require "cjson"
local fs = require "apl.fs"
local runfolder = require "apl.runfolder"
local clock = require("apl.core.sys").time

local root = T.root()

local function need_gloo()
    local ok, core = pcall(require, "apl.core.dist")
    if not (ok and core.has_gloo) then
        T.skip("apl.core.dist has no Gloo (built without libgloo-dev): no process group to test")
    end
end

local function shell(cmd)
    local p = assert(io.popen("cd " .. root .. " && " .. cmd .. " 2>&1"))
    local out = p:read("a")
    local ok = p:close()
    return ok, out
end

-- Runs the script with fields o as one process (nproc nil) or `apl --nproc N`. Returns whether
-- it succeeded, what each rank's loop.run returned (in rank order) and the output.
local function launch(nproc, o)
    local ok, out = shell(string.format("%s/apl %s tests/lua/dist_loop_script.lua '%s'", root,
        nproc and "--nproc " .. nproc or "", cjson.encode(o)))
    local results = {}
    for r = 1, nproc or 1 do
        local text = fs.read(string.format("%s.%d.json", o.result, r - 1))
        results[r] = text and cjson.decode(text)
    end
    return ok, results, out
end

local function with(o, extra)
    local c = {}
    for k, v in pairs(o) do c[k] = v end
    for k, v in pairs(extra) do c[k] = v end
    return c
end

-- One process's run in dir/one, 2 ranks' in dir/two; both must succeed, and both ranks must get
-- the same result.
local function one_and_two(dir, o)
    local ok, one, out = launch(nil, with(o, { out = dir .. "/one", result = dir .. "/one" }))
    T.ok(ok, out)
    local ok2, two, out2 = launch(2, with(o, { out = dir .. "/two", result = dir .. "/two" }))
    T.ok(ok2, out2)
    T.eq(two[2], two[1], 0, "every rank gets rank 0's result")
    return one[1], two[1]
end

-- The acquired pairs and evaluations of two run folders agree: texts and labels exactly, numbers
-- within tol (0 for the fake engine, whose arithmetic is Lua's).
local function same_runs(a, b, tol)
    local ra, rb = runfolder.open(a), runfolder.open(b)
    local a1, a2 = ra:read("acquired"), rb:read("acquired")
    T.eq(#a2, #a1, "pairs acquired")
    for i, r in ipairs(a1) do
        local s = a2[i]
        T.eq({ s.step, s.prompt, s.a, s.b, s.label }, { r.step, r.prompt, r.a, r.b, r.label }, 0, "pair " .. i)
    end
    T.eq(a2, a1, tol, "acquired records")
    local e1, e2 = ra:read("eval"), rb:read("eval")
    T.ok(#e1 > 0, "evaluated")
    T.eq(e2, e1, tol, "evaluations")
    return a1, e1
end

-- A tokenizer for the tiny real model (test_loop.lua's).
local function tiny_tok(dir)
    local texts = {}
    for i, r in ipairs(require("recipes.lib.demo_data").reviews { n = 300, seed = 1 }) do texts[i] = r.text end
    require("recipes.lib.bpe_train").write(dir .. "/tok", texts, { merges = 100 })
    return dir .. "/tok"
end

T.case("2 ranks, fake engine: the loop acquires and evaluates exactly what one process does", function()
    need_gloo()
    for _, o in ipairs {
        { acquisition = "certainty", waypoints = { 4, 8 } },
        { acquisition = "hybrid", gen_batch_size = 4 },   -- entropy over 18 prompts, 3 samples each
        { acquisition = "uncertainty", online = true, budget = 12 },
    } do
        local dir = T.tmpdir()
        local one, two = one_and_two(dir, o)
        same_runs(dir .. "/one", dir .. "/two", 0)
        T.eq(two.acquired, one.acquired, 0, o.acquisition .. ": loop.run's records")
        T.eq(two.evals, one.evals, 0)
        T.eq(two.dir, dir .. "/two")
        T.ok(runfolder.exists(two.plots.winrate), "rank 0 wrote the plots")
        if o.online then T.ok(runfolder.exists(dir .. "/two/policy/step-3"), "rank 0 saved the policy") end
    end
end)

T.case("2 ranks, tiny GPT-2: the same pairs and labels as one process, rewards within float noise", function()
    need_gloo()
    local dir = T.tmpdir()
    -- hybrid: entropy, generation and rewards sharded; lengths drawn from a range by prompt index
    one_and_two(dir, { tok = tiny_tok(dir), acquisition = "hybrid", gen_batch_size = 4, budget = 12 })
    local acquired = same_runs(dir .. "/one", dir .. "/two", 1e-4)
    T.ok(acquired[12].score > 0, "step 3 scores come from a trained policy")
end)

T.case("2 ranks: --resume of a run stopped after step 1 acquires what an uninterrupted run does", function()
    need_gloo()
    local dir = T.tmpdir()
    local tok = tiny_tok(dir)
    for _, online in ipairs { false, true } do
        local o = { tok = tok, budget = 12, online = online }
        local base = string.format("%s/%s", dir, online and "online" or "offline")
        T.ok(launch(nil, with(o, { out = base .. "-full", result = base .. "-full" })))
        local crashed = base .. "-crashed"
        local ok, _, out = launch(2, with(o, { out = crashed, result = crashed, crash_at = 2 }))
        T.ok(not ok and (fs.read(crashed .. ".0.err") or ""):find("simulated crash", 1, true), out)
        T.eq(#runfolder.open(crashed):read("train"), 1, "step 1 finished, step 2 did not")
        local ok2, res, out2 = launch(2, with(o, { resume = crashed, result = crashed .. "-resumed" }))
        T.ok(ok2, out2)
        T.eq(res[2], res[1], 0, "every rank gets rank 0's result")
        same_runs(base .. "-full", crashed, 1e-4)
    end
end)

-- Starts 2 ranks by hand (as torchrun or Slurm would), each under `timeout`, so that the test
-- sees each rank's own end rather than the launcher stopping the other. Returns their exit
-- statuses and the seconds both took.
local function by_hand(o)
    local _, port = shell(T.PYTHON .. [[ -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); ]]
        .. [[print(s.getsockname()[1])"]])
    local cmds = {}
    for r = 0, 1 do
        cmds[#cmds + 1] = string.format("(RANK=%d WORLD_SIZE=2 LOCAL_RANK=%d MASTER_ADDR=127.0.0.1 MASTER_PORT=%d "
            .. "APL_THREADS=1 timeout 120 %s/apl tests/lua/dist_loop_script.lua '%s' > %s.%d.log 2>&1; echo $? > %s.%d.rc) &",
            r, r, assert(math.tointeger(tonumber(port)), port), root, cjson.encode(o), o.result, r, o.result, r)
    end
    local t0 = clock()
    shell(table.concat(cmds, " ") .. " wait")
    local rc = {}
    for r = 1, 2 do rc[r] = tonumber(fs.read(string.format("%s.%d.rc", o.result, r - 1))) end
    return rc, clock() - t0
end

T.case("2 ranks: an oracle that fails on rank 0 ends every rank with its error, at once", function()
    need_gloo()
    local dir = T.tmpdir()
    for _, case in ipairs {
        { fail_oracle_at = 6, want = "the judge fell over" }, -- a Lua judge raising in step 2's labels
        { oracle = { base_url = "http://127.0.0.1:9/v1", model = "m", api_key_env = "HOME", template = "imdb" },
          want = "cannot be used: the connection was refused" }, -- the preflight
    } do
        local o = { out = dir .. "/run" .. (case.oracle and "-http" or ""), fail_oracle_at = case.fail_oracle_at,
                    oracle = case.oracle }
        o.result = o.out
        local rc, seconds = by_hand(o)
        T.eq(rc, { 1, 1 }, "both ranks exit with the error: " .. (fs.read(o.result .. ".0.log") or "")
            .. (fs.read(o.result .. ".1.log") or ""))
        for r = 0, 1 do
            local err = fs.read(string.format("%s.%d.err", o.result, r)) or ""
            T.ok(err:find(case.want, 1, true), "rank " .. r .. ": " .. err)
        end
        T.ok(seconds < 30, string.format("no rank waited for a timeout (%.1f s)", seconds))
    end
end)

-- The demo's record fields compared; what one process printed from "win-rate against" on.
local function demo(nproc, out)
    local ok, text = shell(string.format("APL_QUIET=1 %s/apl %s recipes/demo.lua --seeds 1 --budget 48 --n-test 32 "
        .. "--out %s", root, nproc and "--nproc " .. nproc or "", out))
    T.ok(ok, text)
    return text
end

T.case("apl --nproc 2 recipes/demo.lua acquires the pairs and reports the win-rates of one process", function()
    need_gloo()
    local dir = T.tmpdir()
    -- 2 ranks first: when build/demo is not there yet, rank 0 prepares it while rank 1 waits
    local two = demo(2, dir .. "/two")
    local one = demo(nil, dir .. "/one")
    for _, run in ipairs { "random-s1", "certainty-s1" } do
        local acquired = same_runs(dir .. "/one/" .. run, dir .. "/two/" .. run, 1e-4)
        T.eq(#acquired, 48, run)
    end
    local function report(text) return text:match("win%-rate against.-\n(.-)plot:") end
    T.ok(report(one), one)
    T.eq(report(two), report(one), "the same table, printed once")
    local _, times = two:gsub("win%-rate against", "")
    T.eq(times, 1, "rank 0 alone prints the results")
    local _, steps = two:gsub("random step 1/3", "")
    T.eq(steps, 1, "rank 0 alone prints the steps")
end)
