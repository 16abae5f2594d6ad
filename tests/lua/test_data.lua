-- Loaders: JSONL edge cases (table-driven), IMDB folders with prompt truncation, TL;DR JSONL.
local T = require "apl.test"
local data = require "apl.data"
local bpe_train = require "apl.bpe_train"

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

T.case("tldr: prompt format, 200–1000 character posts, references", function()
    local rows = data.tldr(FIX .. "/tldr.jsonl")
    T.eq(#rows, 3, "the 35-character post is dropped")
    T.ok(rows[1].prompt:find("^SUBREDDIT: r/relationships\nTITLE: My boyfriend forgets every plan we make\nPOST: We have been"), rows[1].prompt)
    T.ok(rows[1].prompt:find("without starting a fight%?\nTL;DR:$"), rows[1].prompt)
    T.eq(rows[2].reference, " Have savings and a 6% car loan; pay it off early or keep the cash?")
    T.eq(#data.tldr(FIX .. "/tldr.jsonl", { max_chars = 360 }), 2)
    local renamed = data.tldr(FIX .. "/tldr_renamed.jsonl",
        { fields = { subreddit = "sub", title = "headline", post = "body", summary = "tldr" } })
    T.eq(renamed[1].prompt, rows[1].prompt)
    T.assert_error_match(function() data.tldr(FIX .. "/tldr_renamed.jsonl") end,
        'tldr_renamed.jsonl:1: missing fields "post", "subreddit", "summary", "title"')
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
    T.eq({ #a, #b }, { 2, 1 })
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
    T.assert_error_match(function() data.imdb(FIX .. "/nowhere", { tok = tok }) end, "no reviews in .*nowhere/train")
    T.assert_error_match(function() data.imdb(FIX .. "/aclImdb", {}) end, "opts.tok")
end)

T.case("imdb: truncation with the real byte-level BPE tokenizer", function()
    if not (apl and apl.tokenizer) then T.skip("apl.tokenizer not built") end
    local texts = {}
    for i, r in ipairs(require("apl.demo_data").reviews { n = 200, seed = 1 }) do texts[i] = r.text end
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
