-- Loaders: JSONL edge cases (table-driven), IMDB folders with prompt truncation, TL;DR JSONL.
local T = require "tests.lib.test"
local data = require "apl.data"
local bpe_train = require "recipes.lib.bpe_train"

local FIX = T.root() .. "/tests/fixtures"

-- A word-level tokenizer (GPT-2's pre-tokens as tokens): decode(encode(s)) == s.
local function word_tok()
    local ids, pieces = {}, {}
    return {
        encode = function(_, text)
            local out = {}
            for _, p in ipairs(bpe_train.pretokenize(text)) do
                if not ids[p] then pieces[#pieces + 1] = p; ids[p] = #pieces end
                out[#out + 1] = ids[p]
            end
            return out
        end,
        decode = function(_, list)
            local out = {}
            for i, id in ipairs(list) do out[i] = pieces[id] end
            return table.concat(out)
        end,
    }
end

local write = require("apl.fs").write

T.case("jsonl: every bad line reported with file:line, empty lines skipped", function()
    local path = FIX .. "/malformed.jsonl"
    local err = T.assert_error_match(function()
        data.jsonl(path, { fields = { prompt = "prompt", completion = "completion" } })
    end, "apl.data.jsonl: 4 bad lines")
    T.ok(err:find(path .. ":3: invalid JSON", 1, true), err)
    T.ok(err:find(path .. ':4: missing field "completion"', 1, true), err)
    T.ok(err:find(path .. ":5: invalid JSON (not an object)", 1, true), err)
    T.ok(err:find(path .. ':7: missing field "prompt"', 1, true), "null counts as missing: " .. err)
    T.ok(not err:find(":2:", 1, true), "line 2 is empty, not an error")
end)

local CASES = {
    -- name, file text, opts, should_work, expected rows (or error pattern)
    { "plain rows", '{"a": 1}\n\n{"a": 2}\n', nil, true, { { a = 1 }, { a = 2 } } },
    { "renamed fields", '{"q": "x", "r": "y"}\n', { fields = { prompt = "q", completion = "r" } }, true,
      { { prompt = "x", completion = "y", line = 1 } } },
    { "optional field absent", '{"q": "x"}\n', { fields = { prompt = "q", completion = "r" }, optional = { "completion" } },
      true, { { prompt = "x", line = 1 } } },
    { "two missing fields named", '{"z": 1}\n', { fields = { prompt = "q", completion = "r" } }, false,
      'missing fields "q", "r"' },
    { "trailing garbage", '{"a": 1} x\n', nil, false, ":1: invalid JSON" },
    { "whitespace-only lines skipped", '  \n\t\n{"a": 3}\n', nil, true, { { a = 3 } } },
    { "only empty lines", "\n\n", nil, true, {} },
    -- A mapped field is text: anything else is named with its file:line, not met later as a
    -- type error in the caller.
    { "number field", '{"q": 5, "r": "y"}\n', { fields = { prompt = "q", completion = "r" } }, false,
      ':1: field "q" is a number, not text' },
    { "list and object fields", '{"q": ["x"], "r": {"a": 1}}\n', { fields = { prompt = "q", completion = "r" } }, false,
      ':1: field "q" is a list, not text; field "r" is an object, not text' },
    { "boolean optional field", '{"q": "x", "r": true}\n', { fields = { prompt = "q", completion = "r" }, optional = { "completion" } },
      false, ':1: field "r" is a boolean, not text' },
}

T.case("jsonl: table-driven cases", function()
    local dir = T.tmpdir()
    for i, c in ipairs(CASES) do
        local path = write(string.format("%s/%d.jsonl", dir, i), c[2])
        if c[4] then
            T.eq(data.jsonl(path, c[3]), c[5], 0, c[1])
        else
            T.assert_error_match(function() data.jsonl(path, c[3]) end, c[5], c[1])
        end
    end
    T.assert_error_match(function() data.jsonl(dir .. "/absent.jsonl") end, "apl.data.jsonl: .*absent.jsonl")
end)

T.case("tldr: prompt format, 200–1000 character prompts, r/tifu left out, references", function()
    local rows = data.tldr(FIX .. "/tldr.jsonl")
    T.eq(#rows, 2, "the short post and the r/tifu post are dropped")
    T.ok(rows[1].prompt:find("^SUBREDDIT: r/relationships\nTITLE: My boyfriend forgets every plan we make\nPOST: We have been"), rows[1].prompt)
    T.ok(rows[1].prompt:find("without starting a fight%?\nTL;DR:$"), rows[1].prompt)
    T.eq(rows[2].reference, " Have savings and a 6% car loan; pay it off early or keep the cash?")
    local all = data.tldr(FIX .. "/tldr.jsonl", { exclude_subreddits = {} })
    T.eq(#all, 3, "an empty exclusion list keeps r/tifu")
    T.eq(all[3].subreddit, "tifu")
    -- the prompts are 473, 442 and 436 characters long
    T.eq(#data.tldr(FIX .. "/tldr.jsonl", { max_chars = 450, exclude_subreddits = {} }), 2)
    local renamed = data.tldr(FIX .. "/tldr_renamed.jsonl",
        { fields = { subreddit = "sub", title = "headline", post = "body", summary = "tldr" } })
    T.eq(renamed[1].prompt, rows[1].prompt)
    T.assert_error_match(function() data.tldr(FIX .. "/tldr_renamed.jsonl") end,
        'tldr_renamed.jsonl:1: missing fields "post", "subreddit", "summary", "title"')
end)

-- The paper's dataset (CarperAI/openai_summarize_tldr) as `datasets` exports it, in JSONL and
-- CSV (Python's csv module: CRLF records, quoted fields with commas, line breaks and ""). Its
-- eight rows: cats (trailing spaces), AskReddit (quotes, a blank line), Relationships (660
-- characters, 1225 bytes), tifu, offmychest, a 72- and a 1152-character prompt, and one of
-- exactly 200 characters (the authors keep 200 < length < 1000).
T.case("tldr: CarperAI prompt/label rows from JSONL and CSV, filtered as the paper's Appendix B", function()
    local rows = data.tldr(FIX .. "/tldr_carper.jsonl")
    local subs = {}
    for i, r in ipairs(rows) do subs[i] = r.subreddit end
    T.eq(subs, { "cats", "AskReddit", "Relationships" }, 0,
        "r/tifu and r/offmychest left out, 72, 200 and 1152 characters dropped, characters counted not bytes")
    T.ok(rows[1].prompt:find("\nTL;DR:$"), "trailing spaces removed: " .. rows[1].prompt:sub(-12))
    T.ok(rows[2].prompt:find('from school, "from home", and from work.\n\nI\'m thinking', 1, true), rows[2].prompt)
    T.eq(rows[2].reference, ' How do I throw a party where people who don\'t know each other mingle, "and" my house survives?')
    T.eq(rows[3].line, 3)
    local csv = data.tldr(FIX .. "/tldr_carper.csv")
    T.eq(#csv, 3)
    for i, r in ipairs(csv) do
        T.eq({ r.prompt, r.reference, r.subreddit }, { rows[i].prompt, rows[i].reference, rows[i].subreddit }, 0, "CSV row " .. i)
    end
    T.eq({ csv[1].line, csv[2].line }, { 2, 6 }, 0, "a record's line is where it starts")
    local mine = data.tldr(FIX .. "/tldr_carper.csv", { exclude_subreddits = { "CATS", "askreddit" } })
    T.eq(#mine, 3, "a list of one's own replaces the default, names compared case-blind")
    T.eq(mine[1].subreddit, "Relationships")
    local flag = data.tldr(FIX .. "/tldr_carper.csv", { exclude_subreddits = "cats, r/AskReddit" })
    T.eq(#flag, 3, "a comma list as --exclude-subreddits gives it")
    T.eq(flag[1].subreddit, "Relationships")
    T.eq(#data.tldr(FIX .. "/tldr_carper.csv", { exclude_subreddits = "none" }), 5, "none keeps r/tifu and r/offmychest")
end)

T.case("tldr: a folder of CarperAI splits; bad rows named by file and line", function()
    local dir = T.tmpdir()
    os.execute(string.format("cp '%s/tldr_carper.csv' '%s/train.csv' && cp '%s/tldr_carper.jsonl' '%s/valid.jsonl'",
        FIX, dir, FIX, dir))
    local train, test = data.tldr_splits(dir)
    T.eq({ #train, #test }, { 3, 3 }, 0, "train.csv and valid.jsonl (no test file)")
    T.assert_error_match(function() data.tldr_splits(T.tmpdir()) end, "needs train.jsonl %(or .csv%) and test.jsonl")
    local bad = write(dir .. "/bad.jsonl", '{"prompt": "SUBREDDIT: r/cats\\nTITLE: t\\nPOST: p\\nTL;DR:", "label": "x"}\n'
        .. '{"prompt": "SUBREDDIT: r/a\\nPOST: p"}\n')
    T.assert_error_match(function() data.tldr(bad) end, 'bad.jsonl:2: missing field "label"')
    local err = T.assert_error_match(function()
        data.tldr(write(dir .. "/bad.csv", 'prompt,label\n"TITLE: no subreddit line",x\n"SUBREDDIT: r/a",y\nTITLE: z,w\n'))
    end, "apl.data.tldr: 2 bad lines")
    T.ok(err:find('bad.csv:2: field "prompt" does not start with "SUBREDDIT: r/<name>"', 1, true), err)
    T.ok(err:find('bad.csv:4: field "prompt"', 1, true), err)
end)

-- CSV cases: name, file text, should_work, rows (or an error pattern with file:line).
local CSV_CASES = {
    { "quoted commas, line breaks and quotes", 'a,b\n"x, y","line 1\nline 2 ""q"""\nz,w\n', true,
      { { a = "x, y", b = 'line 1\nline 2 "q"', line = 2 }, { a = "z", b = "w", line = 4 } } },
    { "CRLF, byte-order mark, empty lines, no final newline", '\239\187\191a,b\r\n\r\n1,2\r\n"3",""', true,
      { { a = "1", b = "2", line = 3 }, { a = "3", b = "", line = 4 } } },
    { "empty fields", "a,b,c\n,,\n", true, { { a = "", b = "", c = "", line = 2 } } },
    { "unclosed quote", 'a,b\n1,2\n"open,3\n4,5\n', false, ":3: a quoted field opens on this line and is never closed" },
    { "text after a closing quote", 'a,b\n"x"y,2\n', false, ':2: a closing quote must be followed by a comma or a line end, not "y"' },
    { "quote inside an unquoted field", 'a,b\nx"y,2\n', false, ":2: a quote inside an unquoted field" },
    { "wrong field counts, all reported", "a,b\n1,2,3\n4\n5,6\n", false, ":2: 3 fields where the header has 2.*:3: 1 field where" },
    { "empty file", "", false, ":1: no header row" },
}

T.case("csv: table-driven cases; errors name file:line", function()
    local dir = T.tmpdir()
    for i, c in ipairs(CSV_CASES) do
        local path = write(string.format("%s/%d.csv", dir, i), c[2])
        if c[3] then
            T.eq(data.csv(path), c[4], 0, c[1])
        else
            T.assert_error_match(function() data.csv(path) end, "apl.data.csv: .*" .. path:gsub("%p", "%%%0") .. c[4], c[1])
        end
    end
    local path = write(dir .. "/cols.csv", "prompt,other\nx,y\n")
    T.eq(data.csv(path, { fields = { text = "prompt" } }), { { text = "x", line = 2 } })
    T.assert_error_match(function() data.csv(path, { fields = { prompt = "prompt", completion = "label" } }) end,
        'cols.csv:1: no column "label" %(the header has prompt, other%)')
    T.eq(data.csv(path, { fields = { prompt = "prompt", completion = "label" }, optional = { "completion" } }),
        { { prompt = "x", line = 2 } })
    T.assert_error_match(function() data.csv(dir .. "/absent.csv") end, "apl.data.csv: .*absent.csv")
end)

T.case("split: seeded, disjoint, sized by count or fraction", function()
    local rows = {}
    for i = 1, 50 do rows[i] = { prompt = "p" .. i } end
    local tr, te = data.split(rows, { test = 0.2, seed = 4 })
    T.eq({ #tr, #te }, { 40, 10 })
    local seen = {}
    for _, r in ipairs(tr) do seen[r] = true end
    for _, r in ipairs(te) do T.ok(not seen[r], "disjoint") end
    local tr2, te2 = data.split(rows, { test = 10, seed = 4 })
    T.eq(te2, te, 0, "same seed, same split")
    T.eq(#tr2, 40)
    local _, te3 = data.split(rows, { test = 10, seed = 5 })
    T.ok(te3[1] ~= te[1] or te3[2] ~= te[2], "another seed, another split")
    local a, b = data.tldr_splits(FIX .. "/tldr.jsonl", { n_test = 1, seed = 1 })
    T.eq({ #a, #b }, { 1, 1 })
end)

T.case("imdb: review openings of 8–16 tokens, seeded by file, <br /> removed", function()
    local tok = word_tok()
    local rows = data.imdb(FIX .. "/aclImdb", { tok = tok, seed = 7 })
    T.eq(#rows, 5)
    local labels = {}
    for _, r in ipairs(rows) do
        labels[r.label] = (labels[r.label] or 0) + 1
        T.ok(not r.prompt:find("<br"), r.prompt)
        local n = #tok:encode(r.prompt)
        if r.file:find("2_10.txt", 1, true) then
            T.eq(r.prompt, "Short and sweet.", "a review shorter than the cut is kept whole")
        else
            T.ok(n >= 8 and n <= 16, "length " .. n)
        end
    end
    T.eq(labels, { pos = 3, neg = 2 })
    T.ok(rows[1].prompt:find("^This movie was a wonderful"), rows[1].prompt)
    T.eq(data.imdb(FIX .. "/aclImdb", { tok = tok, seed = 7 }), rows, 0, "same seed, same prompts")
    local lens = {}
    for s = 1, 6 do lens[#tok:encode(data.imdb(FIX .. "/aclImdb", { tok = tok, seed = s })[1].prompt)] = true end
    local distinct = 0
    for _ in pairs(lens) do distinct = distinct + 1 end
    T.ok(distinct > 1, "the cut depends on the seed")
    T.eq(#data.imdb(FIX, { tok = tok, split = "test" }), 2, "the folder above aclImdb works too")
    T.eq(#data.imdb(FIX .. "/aclImdb", { tok = tok, limit = 2 }), 2)
    local long = data.imdb(FIX .. "/aclImdb", { tok = tok, min_chars = 100 })
    T.eq(#long, 2, "reviews of 101 and 146 characters kept, those of 100 or fewer left out (the authors' > 200 rule)")
    T.assert_error_match(function() data.imdb(FIX .. "/nowhere", { tok = tok }) end, "no reviews in .*nowhere/train")
    T.assert_error_match(function() data.imdb(FIX .. "/aclImdb", {}) end, "opts.tok")
end)

T.case("imdb: truncation with the real byte-level BPE tokenizer", function()
    local texts = {}
    for i, r in ipairs(require("recipes.lib.demo_data").reviews { n = 200, seed = 1 }) do texts[i] = r.text end
    local dir = bpe_train.write(T.tmpdir() .. "/tok", texts, { merges = 50 })
    local tok = apl.tokenizer.load(dir)
    for _, r in ipairs(data.imdb(FIX .. "/aclImdb", { tok = tok, seed = 3 })) do
        local n = #tok:encode(r.prompt)
        T.ok((n >= 8 and n <= 16) or r.prompt == "Short and sweet.", r.prompt .. " has " .. n .. " tokens")
    end
end)

T.case("args: flags, environment, defaults, resume defaults; every problem reported at once", function()
    local args = require "apl.args"
    local dir = T.tmpdir()
    local spec = {
        { "model", "DIR", "model", env = "APL_TEST_UNSET_VAR", required = true, dir = true },
        { "seed", "N", "seed", default = 1, number = true },
        { "acquisition", "NAME", "acq", default = "random", module = "acquisition" },
        { "api-key-env", "VAR", "key", default = "HOME", env_var = true },
        { "resume", "DIR", "resume" },
    }
    local a = args.check({ "--model", dir, "--seed=7", "--acquisition", "hybrid" }, spec)
    T.eq({ a.model, a.seed, a.acquisition, a.api_key_env }, { dir, 7, "hybrid", "HOME" })
    local _, err = args.check({ "--seed", "x", "--acquisition", "nope", "--bogus", "--api-key-env", "APL_TEST_UNSET_VAR" }, spec)
    for _, want in ipairs { "unknown argument %-%-bogus", "missing %-%-model DIR %(or set APL_TEST_UNSET_VAR%)",
                            '%-%-seed: "x" is not a number', "no acquisition/nope.lua",
                            "environment variable APL_TEST_UNSET_VAR is not set" } do
        T.ok(err:find(want), want .. " in: " .. err)
    end
    local _, err2 = args.check({ "--model", dir .. "/absent" }, spec)
    T.ok(err2:find("absent is not a folder"), err2)
    -- --resume fills what is not given again from the run's config.json.
    write(dir .. "/config.json", require("cjson").encode { args = { model = dir, seed = 5 } })
    local r = args.check({ "--resume", dir }, spec)
    T.eq({ r.model, r.seed }, { dir, 5 })
    T.eq(args.check({ "--resume", dir, "--seed", "9" }, spec).seed, 9, "a flag given again wins")
end)
