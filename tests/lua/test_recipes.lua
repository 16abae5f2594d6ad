-- The paper recipes' command lines: the protocol flags (--seed, --n-test, --budget, --waypoints,
-- --max-new-tokens, --online) parse into loop knobs, bad values are refused with the flag named,
-- the judge defaults to the paper's, and --resume reads typed values back from config.json.
-- In-process through apl.recipe's spec, and end to end through --print-config (nothing loaded).
local T = require "tests.lib.test"
local args = require "apl.args"
local recipe = require "apl.recipe"
local cjson = require "cjson"

local IMDB = { model = "m", data = "d", data_is_dir = true, acquisition = "certainty",
               waypoints = { 128, 256, 512, 768 }, max_new_tokens = { 16, 24 }, n_test = 1024 }

local function check(dir, extra)
    local argv = { "--model", dir, "--data", dir, "--api-key-env", "HOME" }
    for _, x in ipairs(extra or {}) do argv[#argv + 1] = x end
    return args.check(argv, recipe.spec(IMDB))
end

T.case("recipe flags: defaults are the paper's; each flag lands in the knobs", function()
    local dir = T.tmpdir()
    local a = assert(check(dir))
    T.eq({ a.seed, a.n_test, a.max_new_tokens, a.online, a.judge_model, a.judge_url },
         { 1, 1024, { 16, 24 }, false, "gpt-4-1106-preview", "https://api.openai.com/v1" })
    local k = recipe.protocol(a, IMDB.waypoints, { batch = 128 })
    T.eq({ k.budget, k.waypoints }, { 768, { 128, 256, 512, 768 } }, 0, "the budget ends at the last waypoint")
    a = assert(check(dir, { "--seed", "4", "--n-test=50", "--waypoints", "64,128", "--max-new-tokens", "12-20",
                            "--online", "--acquisition", "random" }))
    k = recipe.protocol(a, IMDB.waypoints, { batch = 64 })
    T.eq({ k.seed, k.n_test, k.waypoints, k.budget, k.max_new_tokens, k.online, k.acquisition },
         { 4, 50, { 64, 128 }, 128, { 12, 20 }, true, "random" })
    T.eq(check(dir, { "--max-new-tokens", "128" }).max_new_tokens, 128)
    T.eq(check(dir, { "--online=false" }).online, false)
    local function plan(extra) return { recipe.plan(assert(check(dir, extra)), IMDB.waypoints) } end
    T.eq(plan { "--budget", "256" }, { 256, { 128, 256 } }, 0, "--budget alone: the waypoints up to it")
    T.eq(plan { "--budget", "1024" }, { 1024, { 128, 256, 512, 768, 1024 } }, 0, "and the budget past them")
    T.eq(plan { "--budget", "512", "--waypoints", "100,200" }, { 512, { 100, 200 } }, 0, "both as given")
end)

T.case("recipe flags: bad values are refused together, each naming its flag", function()
    local dir = T.tmpdir()
    local a, err = check(dir, { "--max-new-tokens", "24-16", "--waypoints", "256,128", "--n-test", "0",
                                "--budget", "1.5", "--online=maybe", "--seed", "x" })
    T.eq(a, nil)
    for _, want in ipairs {
        '%-%-max%-new%-tokens: "24%-16" is not N or A%-B %(max_new_tokens must be an integer >= 1 or a range',
        '%-%-waypoints: "256,128" is not a comma list of increasing integers >= 1',
        '%-%-n%-test: "0" is not an integer >= 1', '%-%-budget: "1.5" is not an integer >= 1',
        '%-%-online: "maybe" is not true or false', '%-%-seed: "x" is not a number' } do
        T.ok(err:find(want), want .. " in:\n" .. err)
    end
    for _, bad in ipairs { "abc", "16-", "0", "16-24-32" } do
        local _, e = check(dir, { "--max-new-tokens", bad })
        T.ok(e and e:find("max%-new%-tokens"), bad .. ": " .. tostring(e))
    end
    local _, e = check(dir, { "--waypoints", "128,,256" })
    T.ok(e and e:find("not a comma list"), tostring(e))
end)

T.case("recipe flags: --resume reads the typed values back from config.json", function()
    local dir = T.tmpdir()
    local saved = assert(check(dir, { "--waypoints", "64,128", "--max-new-tokens", "12-20", "--online", "--n-test", "50",
                                      "--seed", "4" }))
    local f = assert(io.open(dir .. "/config.json", "w"))
    f:write(cjson.encode { args = saved })
    f:close()
    local a = assert(args.check({ "--resume", dir, "--api-key-env", "HOME" }, recipe.spec(IMDB)))
    T.eq({ a.waypoints, a.max_new_tokens, a.online, a.n_test, a.seed }, { { 64, 128 }, { 12, 20 }, true, 50, 4 })
    T.eq(math.type(a.waypoints[1]), "integer", "JSON's floats come back as integers")
end)

-- Runs a recipe with --print-config; returns the decoded knobs, or nil, the output and the status.
-- The paper recipes get a model and data folder (an empty one: nothing is loaded).
local function print_config(script, extra)
    local dir = T.tmpdir()
    local paths = script == "demo.lua" and "" or string.format("--model %s --data %s --api-key-env HOME", dir, dir)
    local cmd = string.format("cd %s && %s/apl recipes/%s %s --print-config %s 2>&1",
        T.root(), T.root(), script, paths, extra or "")
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    local ok, _, code = p:close()
    if not ok then return nil, out, code end
    return cjson.decode(out:match("{.*}"))
end

T.case("recipes: apl_imdb, tldr_hybrid and demo take the protocol flags (--print-config)", function()
    local imdb = assert(print_config("apl_imdb.lua"))
    T.eq({ imdb.budget, imdb.waypoints, imdb.max_new_tokens, imdb.n_test, imdb.online, imdb.seed },
         { 768, { 128, 256, 512, 768 }, { 16, 24 }, 1024, false, 1 })
    T.eq({ imdb.sample, imdb.oversample, imdb.epochs, imdb.batch, imdb.minibatch, imdb.beta, imdb.lr },
         { 4000, 8, 50, 128, 64, 0.2, 1e-6 }, 1e-12, "Table 1, IMDB")
    local tldr = assert(print_config("tldr_hybrid.lua", "--seed 3 --online --max-new-tokens 100-128 --n-test 512"))
    T.eq({ tldr.budget, tldr.waypoints, tldr.max_new_tokens, tldr.n_test, tldr.online, tldr.seed, tldr.acquisition },
         { 512, { 128, 256, 384, 512 }, { 100, 128 }, 512, true, 3, "hybrid" })
    T.eq({ tldr.sample, tldr.oversample, tldr.epochs, tldr.baseline }, { 2048, 4, 70, "reference" }, 0, "Table 1, TLDR")
    T.eq(assert(print_config("tldr_hybrid.lua")).max_new_tokens, 128)
    local demo = assert(print_config("demo.lua", "--online --waypoints 32,64"))
    T.eq({ demo.online, demo.waypoints, demo.budget }, { true, { 32, 64 }, 64 })
    T.eq(imdb.lora, false, 0, "full fine-tuning unless --lora-r")
    local lora = assert(print_config("apl_imdb.lua", "--lora-r 16 --lora-targets c_attn,c_proj"))
    T.eq(lora.lora, { r = 16, alpha = 32, targets = { "c_attn", "c_proj" } }, 0, "alpha defaults to 2r")
    T.eq(assert(print_config("demo.lua", "--lora-r 4 --lora-alpha 4")).lora, { r = 4, alpha = 4 })
    local _, lout, lcode = print_config("demo.lua", "--lora-alpha 4")
    T.eq(lcode, 2)
    T.ok(lout:find("%-%-lora%-alpha and %-%-lora%-targets need %-%-lora%-r"), lout)
    local none, out, code = print_config("apl_imdb.lua", "--waypoints 512,256")
    T.eq({ none, code }, { nil, 2 }, 0, "a bad flag exits with status 2")
    T.ok(out:find("%-%-waypoints: \"512,256\" is not a comma list"), out)
end)

-- Runs a recipe without --print-config: it checks its arguments, asks the judge, then would
-- load the model. Returns the output and the exit status.
local function start(script, dir, extra)
    local cmd = string.format("cd %s && %s/apl recipes/%s --model %s --data %s --api-key-env HOME --out %s/run %s 2>&1",
        T.root(), T.root(), script, dir, dir, dir, extra or "")
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    local _, _, code = p:close()
    return out, code
end

T.case("recipes: a prompt plus --max-new-tokens beyond the model's positions is refused with the arguments", function()
    local dir = T.tmpdir()
    require("apl.fs").write(dir .. "/config.json", cjson.encode { model_type = "gpt2", n_positions = 32 })
    local out, code = start("apl_imdb.lua", dir, "--max-new-tokens 8-24")
    T.eq(code, 2, out)
    T.ok(out:find("--max-new-tokens 8-24: prompts of up to 16 tokens and 24 new tokens need 40 positions; the model in "
        .. dir .. " has 32; use --max-new-tokens of at most 16", 1, true), out)
    out, code = start("tldr_hybrid.lua", dir, "--max-new-tokens 64")
    T.eq(code, 2, out)
    T.ok(out:find("need 65 positions", 1, true), out)
end)

-- In dir, a TL;DR folder (train.jsonl, test.jsonl) whose longest post is ~880 characters, and a
-- tokenizer (no weights); returns the longest post's length in tokens.
local function tldr_setup(dir)
    local fs = require "apl.fs"
    local words = { "my", "girlfriend", "and", "I", "argued", "about", "rent", "again", "last", "night" }
    local function post(n)
        local t = {}
        for i = 1, n do t[i] = words[(i * 7) % #words + 1] end
        return table.concat(t, " ")
    end
    local rows = {}
    for i, n in ipairs { 40, 45, 50, 150 } do
        rows[i] = cjson.encode { subreddit = "relationships", title = "help " .. i, post = post(n), summary = "we argued" }
    end
    fs.write(dir .. "/train.jsonl", table.concat(rows, "\n", 1, 3) .. "\n")
    fs.write(dir .. "/test.jsonl", rows[4] .. "\n")
    require("recipes.lib.bpe_train").write(dir, { post(300) }, { merges = 20 })
    local pool, test = require("apl.data").tldr_splits(dir, {})
    T.eq({ #pool, #test }, { 3, 1 })
    T.ok(#test[1].prompt > 800 and #test[1].prompt < 1000, "the test post is the longest: " .. #test[1].prompt)
    return recipe.longest_prompt(apl.tokenizer.load(dir), pool, test)
end

T.case("recipes: tldr_hybrid measures its posts in tokens and refuses them before the model loads", function()
    local dir = T.tmpdir() -- no weights: loading the model would fail with another message
    local longest = tldr_setup(dir)
    T.ok(longest > 300, "the longest post is " .. longest .. " tokens")
    local function positions(n)
        require("apl.fs").write(dir .. "/config.json", cjson.encode { model_type = "gpt2", n_positions = n })
    end
    positions(longest + 10)
    local s = dofile(T.root() .. "/tests/lua/oracle_server.lua").start {}
    local ok, err = pcall(function()
        local function run(extra)
            return start("tldr_hybrid.lua", dir, "--judge-url " .. s.url .. " --judge-model judge " .. extra)
        end
        local out, code = run("--max-new-tokens 64")
        T.eq(code, 2, out)
        T.ok(out:find(string.format("--max-new-tokens 64: prompts of up to %d tokens and 64 new tokens need %d positions; "
            .. "the model in %s has %d; use --max-new-tokens of at most 10, or --max-prompt-chars below 1000",
            longest, longest + 64, dir, longest + 10), 1, true), out)
        T.ok(not out:find("traceback", 1, true) and not out:find("apl.model.load", 1, true), out)
        positions(longest - 5)
        out, code = run("--max-new-tokens 8")
        T.eq(code, 2, out)
        T.ok(out:find("need " .. longest + 8 .. " positions; the model in " .. dir .. " has " .. longest - 5
            .. "; use --max-prompt-chars below 1000", 1, true), "the post alone is too long: " .. out)
        positions(longest + 10)
        -- Within the model's positions (10 new tokens, or the longest post left out), the recipe
        -- goes on to load the model, which has no weights here.
        for _, extra in ipairs { "--max-new-tokens 10", "--max-new-tokens 64 --max-prompt-chars 800" } do
            out, code = run(extra)
            T.eq(code, 1, out)
            T.ok(not out:find("positions", 1, true) and out:find("apl.model.load", 1, true), extra .. ": " .. out)
        end
    end)
    s:stop()
    if not ok then error(err, 0) end
end)

T.case("recipes: a judge that refuses connections stops the recipe before the model loads", function()
    local dir = T.tmpdir() -- no weights: loading the model would fail with another message
    require("apl.fs").write(dir .. "/config.json", cjson.encode { model_type = "gpt2", n_positions = 1024 })
    local out, code = start("apl_imdb.lua", dir, "--judge-url http://127.0.0.1:9/v1")
    T.eq(code, 1, out)
    T.ok(out:find("apl.oracle.preflight: the judge at http://127.0.0.1:9/v1/chat/completions (model 'gpt-4-1106-preview') "
        .. "cannot be used: the connection was refused", 1, true), out)
    T.ok(not out:find("traceback", 1, true), out)
end)

T.case("recipe flags: a key given where a variable's name belongs is not echoed", function()
    local key = "sk-proj-0123456789abcdefghijKLMN"
    local _, err = args.check({ "--model", T.tmpdir(), "--data", T.tmpdir(), "--api-key-env", key }, recipe.spec(IMDB))
    T.ok(err:find("the environment variable sk%-%[redacted%] is not set") and not err:find(key, 1, true), err)
    err = select(2, pcall(require("apl.oracle").openai, { base_url = "https://x/v1", model = "m", template = "tldr",
        api_key_env = key }))
    T.ok(err:find("environment variable sk%-%[redacted%] %(api_key_env%) is not set") and not err:find(key, 1, true), err)
end)
