-- recipes/lib/bpe_train.lua — learns a tiny byte-level BPE tokenizer (GPT-2's format) from a
-- corpus, for the demo and the tests (scaffolding beside the recipes, not the library).
--
--   local bpe_train = require "recipes.lib.bpe_train"
--   bpe_train.write("build/demo/tok", texts, { merges = 300 })   -- vocab.json + merges.txt
--   local tok = apl.tokenizer.load("build/demo/tok")
--
-- The vocabulary is GPT-2's: the 256 byte tokens under GPT-2's byte-to-unicode mapping, then one
-- token per learned merge, then "<|endoftext|>". It exists because GPT-2's own vocabulary is not
-- available offline; a few hundred merges learned on the demo corpus are plenty for it.
local cjson = require "cjson"
local fs = require "apl.fs"

local M = {}

-- GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 upwards, so
-- every byte is a visible character. Returns byte -> utf8 string and the byte order of ids.
function M.byte_symbols()
    local order, taken = {}, {}
    local function add_range(lo, hi)
        for b = lo, hi do order[#order + 1] = b; taken[b] = true end
    end
    add_range(33, 126); add_range(161, 172); add_range(174, 255)
    local sym, n = {}, 0
    for _, b in ipairs(order) do sym[b] = utf8.char(b) end
    for b = 0, 255 do
        if not taken[b] then
            order[#order + 1] = b
            sym[b] = utf8.char(256 + n)
            n = n + 1
        end
    end
    return sym, order
end

-- GPT-2's pre-tokenizer for ASCII text: contractions, optionally space-led letters, digits and
-- punctuation runs, and whitespace (a run before a word leaves its last space to the word).
local PIECES = { "^'s", "^'t", "^'re", "^'ve", "^'m", "^'ll", "^'d", "^ ?%a+", "^ ?%d+", "^ ?[^%s%w]+" }

function M.pretokenize(text)
    local out, i, n = {}, 1, #text
    while i <= n do
        local j
        for _, p in ipairs(PIECES) do
            local _, e = text:find(p, i)
            if e then j = e; break end
        end
        if not j then
            local _, e = text:find("^%s+", i)
            j = (e < n and e > i) and e - 1 or e
        end
        out[#out + 1] = text:sub(i, j)
        i = j + 1
    end
    return out
end

-- Word frequencies, each word as a list of byte symbols.
local function count_words(texts, sym)
    local counts = {}
    for _, t in ipairs(texts) do
        for _, w in ipairs(M.pretokenize(t)) do counts[w] = (counts[w] or 0) + 1 end
    end
    local words = {}
    for w, c in pairs(counts) do
        local s = {}
        for k = 1, #w do s[k] = sym[w:byte(k)] end
        words[#words + 1] = { syms = s, count = c }
    end
    table.sort(words, function(a, b) return table.concat(a.syms) < table.concat(b.syms) end)
    return words
end

-- The most frequent adjacent pair; ties go to the smaller pair so training is deterministic.
local function best_pair(words)
    local freq = {}
    for _, w in ipairs(words) do
        for k = 1, #w.syms - 1 do
            local key = w.syms[k] .. " " .. w.syms[k + 1]
            freq[key] = (freq[key] or 0) + w.count
        end
    end
    local best, best_n = nil, 1
    for key, c in pairs(freq) do
        if c > best_n or (c == best_n and best and key < best) then best, best_n = key, c end
    end
    return best
end

local function apply_merge(words, a, b)
    local ab = a .. b
    for _, w in ipairs(words) do
        local s, out, k = w.syms, {}, 1
        while k <= #s do
            if s[k] == a and s[k + 1] == b then out[#out + 1] = ab; k = k + 2
            else out[#out + 1] = s[k]; k = k + 1 end
        end
        w.syms = out
    end
end

-- Learns up to opts.merges merges (pairs seen at least twice). Returns vocab (token -> id) and
-- the merges in order.
function M.train(texts, opts)
    local sym, order = M.byte_symbols()
    local vocab = {}
    for id, b in ipairs(order) do vocab[sym[b]] = id - 1 end
    local words = count_words(texts, sym)
    local merges, next_id = {}, 256
    for _ = 1, opts.merges or 300 do
        local pair = best_pair(words)
        if not pair then break end
        local a, b = pair:match("^(%S+) (%S+)$")
        apply_merge(words, a, b)
        merges[#merges + 1] = pair
        if not vocab[a .. b] then vocab[a .. b] = next_id; next_id = next_id + 1 end
    end
    vocab["<|endoftext|>"] = next_id
    return vocab, merges
end

-- Trains and writes dir/vocab.json and dir/merges.txt; returns dir.
function M.write(dir, texts, opts)
    local vocab, merges = M.train(texts, opts or {})
    fs.mkdir_p(dir)
    fs.write(dir .. "/vocab.json", cjson.encode(vocab))
    fs.write(dir .. "/merges.txt", "#version: 0.2\n" .. table.concat(merges, "\n") .. "\n")
    return dir
end

return M
