-- recipes/sweep.lua — every (acquisition function, seed) arm of a recipe, each in its own run
-- folder, then the report (the method's Table 2 and Figures 2 and 3, and report.html).
--
--   apl recipes/sweep.lua --recipe apl_imdb --acquisitions random,entropy,certainty,hybrid \
--       --seeds 1-9 --out runs/sweep-imdb  --model gpt2-large --data aclImdb --judge-url URL ...
--   apl recipes/sweep.lua ... --dry-run          # the state of each arm and its command, nothing run
--
-- --recipe: a name under recipes/ (apl_imdb, tldr_hybrid) or a path to a .lua file. --seeds:
-- "1-9", "1,3,5" or "1-3,7". --out (default runs/sweep-<recipe>): arm (a, s) is <out>/<a>-s<s>,
-- and the report goes to <out>/. Every other option goes to the recipe verbatim; the sweep adds
-- --acquisition, --seed and --out DIR (or --resume DIR), so it refuses those three and --resume.
--
-- Each arm runs as a child `apl <recipe> ...` process (apl.fs.run: execvp, no shell; the command
-- printed is quoted for a shell, to copy): a recipe that exits on a bad option, raises, or is killed for memory ends that arm
-- only, and each arm starts with a clean heap. An arm is
--   finished — its train.jsonl has every planned step (apl.report.state): skipped, once its
--              config.json is checked to be this arm's: its acquisition and seed, and the knobs
--              the recipe would run now (`--print-config`; for a recipe without that flag, the
--              --flag value options given now against the args config.json saved);
--   partial  — config.json but not every step (a crash, Ctrl-C, a kill): resumed with --resume,
--              which replays the labels in its ledger at no cost;
--   absent   — started.
-- A failed arm is reported and the sweep goes on; Ctrl-C (or an arm that exits 2, a bad option
-- every arm would share) stops it. Run the same command again to continue. The report covers the
-- finished arms. Exit status: 0 when every arm finished, 1 when one failed, 2 on a bad option,
-- 130 on Ctrl-C.
local cjson = require "cjson"
local report = require "apl.report"
local fs = require "apl.fs"
local exists = fs.exists

local USAGE = [[
usage: apl recipes/sweep.lua --recipe NAME|FILE.lua [--acquisitions LIST] [--seeds SPEC]
                             [--out DIR] [--dry-run] [recipe options...]
  --recipe        recipe name under recipes/ or a path to a .lua file (required)
  --acquisitions  comma-separated acquisition functions (default random,entropy,certainty,hybrid)
  --seeds         seeds: 1-9, 1,3,5 or 1-3,7 (default 1-9)
  --out           sweep folder: arms in <out>/<acquisition>-s<seed>, report in <out> (default runs/sweep-<recipe>)
  --dry-run       print each arm's state and command; run nothing
Every other option is passed to the recipe as given.]]

local function usage_error(msg)
    io.stderr:write("apl recipes/sweep.lua: ", msg, "\n\n", USAGE, "\n")
    os.exit(2)
end

-- Options the sweep sets for each arm itself.
local PER_ARM = { acquisition = "--acquisitions", seed = "--seeds", resume = "the sweep resumes arms itself" }
local OWN = { recipe = true, acquisitions = true, seeds = true, out = true }

-- "1-3,7" -> {1, 2, 3, 7}.
local function parse_seeds(spec)
    local out, seen = {}, {}
    for part in (spec .. ","):gmatch("([^,]*),") do
        local lo, hi = part:match("^%s*(%d+)%s*%-%s*(%d+)%s*$")
        lo = tonumber(lo or part:match("^%s*(%d+)%s*$"))
        hi = tonumber(hi) or lo
        if not lo or hi < lo then usage_error(string.format("--seeds: %q is not a seed list like 1-9 or 1,3,5", spec)) end
        for s = lo, hi do
            if not seen[s] then seen[s] = true; out[#out + 1] = math.tointeger(s) end
        end
    end
    return out
end

local function parse_list(spec)
    local out = {}
    for name in spec:gmatch("[^,%s]+") do
        if not package.searchpath("acquisition." .. name, package.path) then
            usage_error("--acquisitions: no acquisition/" .. name .. ".lua")
        end
        out[#out + 1] = name
    end
    if #out == 0 then usage_error("--acquisitions is empty") end
    return out
end

-- The sweep's own options, and the rest (the recipe's) verbatim and in order; `given` holds the
-- recipe's --flag value pairs for checking finished arms.
local function parse(argv)
    local own, rest, given = { ["dry-run"] = false }, {}, {}
    local i = 1
    while i <= #argv do
        local a = argv[i]
        local flag, inline = a:match("^%-%-([%w-]+)=(.*)$")
        flag = flag or a:match("^%-%-([%w-]+)$")
        local value = inline or argv[i + 1]
        local step = inline and 1 or 2
        if flag == "help" then io.write(USAGE, "\n"); os.exit(0)
        elseif flag == "dry-run" then own["dry-run"], step = true, 1
        elseif flag and OWN[flag] then
            if value == nil then usage_error("--" .. flag .. " needs a value") end
            own[flag] = value
        elseif flag and PER_ARM[flag] then
            usage_error(string.format("--%s is set for each arm by the sweep (%s)", flag, PER_ARM[flag]))
        else
            rest[#rest + 1] = a
            if flag and value and (inline or not value:match("^%-%-")) then
                given[#given + 1] = { key = (flag:gsub("-", "_")), value = value }
                if not inline then rest[#rest + 1] = value end
            else
                step = 1
            end
        end
        i = i + step
    end
    return own, rest, given
end

-- A recipe name under recipes/, or a path to a file.
local function recipe_path(name)
    if name:find("/", 1, true) or name:match("%.lua$") then
        if not exists(name) then usage_error("--recipe: " .. name .. " does not exist") end
        return name
    end
    local p = package.searchpath("recipes." .. name, package.path)
    if not p then usage_error("--recipe: no recipes/" .. name .. ".lua") end
    return p
end

-- One shell word, for the command shown: single quotes, with each ' written as '\''.
local function quote(s)
    return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

local function command(argv)
    local words = {}
    for i, a in ipairs(argv) do words[i] = quote(a) end
    return table.concat(words, " ")
end

-- The arm's command line: the recipe, the options given to the sweep, then the arm's own.
local function arm_argv(ctx, arm, ...)
    local argv = { ctx.apl, ctx.recipe }
    table.move(ctx.rest, 1, #ctx.rest, 3, argv)
    for _, x in ipairs { "--acquisition", arm.acq, "--seed", tostring(arm.seed), ... } do argv[#argv + 1] = x end
    return argv
end

-- The knobs the recipe would give the loop for this arm now (its --print-config, which exits
-- before loading anything), or nil for a recipe without that flag.
local function planned_knobs(ctx, arm)
    local tmp = os.tmpname()
    local code = fs.run(arm_argv(ctx, arm, "--print-config"), { stdout = tmp, stderr = "/dev/null" })
    local out = fs.read(tmp) or ""
    os.remove(tmp)
    if code ~= 0 then return nil end
    local ok, knobs = pcall(cjson.decode, out:match("([^\n]*)\n*$"))
    return ok and type(knobs) == "table" and knobs or nil
end

local function show(v)
    if type(v) ~= "table" then return tostring(math.tointeger(v) or v) end
    local parts = {}
    for i, x in ipairs(v) do parts[i] = show(x) end
    return "{" .. table.concat(parts, ", ") .. "}"
end

-- The first knob whose planned value differs from the saved one, described; knobs config.json
-- lacks are not compared, nor the fields of a saved table that the plan leaves to defaults.
local function knob_difference(planned, saved, prefix)
    for k, v in pairs(planned) do
        local was = saved[k]
        local differs = was ~= nil and v ~= was
        if type(v) == "table" and type(was) == "table" then
            differs = #v ~= #was or knob_difference(v, was, "") ~= nil
        end
        if differs then return string.format("%s%s was %s, now %s", prefix, k, show(was), show(v)) end
    end
end

-- Without --print-config: the --flag value options given now against config.json's args.
local function option_difference(args, given)
    for _, o in ipairs(type(args) == "table" and given or {}) do
        local was = args[o.key]
        local same = type(was) == "number" and tonumber(o.value) == was or was == o.value
        if (type(was) == "string" or type(was) == "number") and not same then
            return string.format("it was run with --%s %s, not %s", (o.key:gsub("_", "-")), show(was), o.value)
        end
    end
end

-- A folder that holds a run must be this arm's: its acquisition and seed, and what the recipe
-- would run now (its knobs, or else its options). A finished run with other knobs would
-- otherwise be skipped and reported as if it were this sweep's. Returns the problem, or nil.
local function arm_problem(ctx, arm)
    local c = report.load(arm.dir).config
    local problem
    if c.acquisition ~= arm.acq or c.seed ~= arm.seed then
        problem = string.format("it holds %s seed %s, not %s seed %d", c.acquisition, show(c.seed), arm.acq, arm.seed)
    else
        local knobs = planned_knobs(ctx, arm)
        problem = knobs and knob_difference(knobs, c, "") or not knobs and option_difference(c.args, ctx.given)
    end
    return problem and string.format("%s: %s; give another --out, or remove the folder to rerun it", arm.dir, problem)
end

-- Runs one arm; returns "finished", "failed", "dry" or "stop", what happened, and for "stop" the
-- exit status.
local function run_arm(ctx, arm)
    local state, done, planned = report.state(arm.dir)
    local problem = state ~= "absent" and arm_problem(ctx, arm)
    if problem then return "stop", problem, 2 end
    if state == "finished" then return "finished", "skipped (finished)" end
    local argv = arm_argv(ctx, arm, state == "partial" and "--resume" or "--out", arm.dir)
    local what = state == "partial" and string.format("resuming after step %d of %d", done, planned) or "starting"
    io.write(string.format("== sweep: %s-s%d: %s\n%s\n", arm.acq, arm.seed, what, command(argv)))
    io.flush()
    if ctx.dry then return "dry", what end
    local code = fs.run(argv)
    if code == 0 then
        local now = report.state(arm.dir)
        if now == "finished" then return "finished", what .. ": finished" end
        return "failed", what .. ": exited 0 but the run folder is " .. now
    end
    -- Ctrl-C reaches the child (which exits 130, or dies of SIGINT: 128 + 2) while fs.run shields
    -- this process; that, or a bad option (2), would end every later arm the same way.
    if code == 130 then return "stop", "interrupted", 130 end
    if code == 2 then return "stop", "the recipe refused its options (exit 2)", 2 end
    return "failed", string.format("%s: exit %s", what, tostring(code))
end

-- Every arm in turn (acquisition-major), then the report of the finished ones.
local function main(argv)
    local own, rest, given = parse(argv)
    if not own.recipe then usage_error("missing --recipe") end
    local ctx = { apl = (package.apl_root or ".") .. "/apl", recipe = recipe_path(own.recipe), rest = rest,
                  given = given, dry = own["dry-run"] }
    local name = ctx.recipe:match("([^/]+)%.lua$")
    local acqs = parse_list(own.acquisitions or "random,entropy,certainty,hybrid")
    local seeds = parse_seeds(own.seeds or "1-9")
    local out = own.out or ("runs/sweep-" .. name)
    local dirs, failed, skipped = {}, {}, 0
    for _, acq in ipairs(acqs) do
        for _, seed in ipairs(seeds) do
            local arm = { acq = acq, seed = seed, dir = string.format("%s/%s-s%d", out, acq, seed) }
            local result, what, code = run_arm(ctx, arm)
            if result == "stop" then
                io.stderr:write(string.format("apl recipes/sweep.lua: %s-s%d: %s; the sweep stops\n", acq, seed, what))
                return code
            elseif result == "finished" then
                dirs[#dirs + 1] = arm.dir
                if what:match("^skipped") then
                    skipped = skipped + 1
                    io.write(string.format("== sweep: %s-s%d: %s\n", acq, seed, what))
                end
            elseif result == "failed" then
                failed[#failed + 1] = string.format("%s-s%d (%s)", acq, seed, what)
            end
        end
    end
    if ctx.dry then return 0 end
    io.write(string.format("\n== sweep: %d arms finished (%d skipped, %d run), %d failed\n",
        #dirs, skipped, #dirs - skipped, #failed))
    if #dirs > 0 then report.write(dirs, out, { title = "Active preference learning: " .. name }) end
    if #failed > 0 then
        io.stderr:write("apl recipes/sweep.lua: failed arms (run the same command again to resume them):\n  ",
            table.concat(failed, "\n  "), "\n")
        return 1
    end
    return 0
end

os.exit(main(arg))
