-- bench/tokenizer.lua — GPT-2 encode throughput on the >= 1 MB test corpus (real text Debian ships,
-- see tests/ref/tok_corpus.py), apl against js-tiktoken run by node in the same run, one thread each.
--
--   ./apl bench/tokenizer.lua [--quick]
--
-- apl's figure is with a cold word cache: every timed pass starts from a freshly loaded tokenizer
-- (load time not counted), so repeated words are merged once per pass, as in a first encode of
-- new text. The warm-cache figure is printed too. Prints one JSON line for bench/run.lua:
--   {"name":"tokenizer_encode","apl":<MB/s>,"baseline":<MB/s>,"unit":"MB/s",...}
local root = package.apl_root or "."
local B = dofile(root .. "/bench/common.lua")
local D = dofile(root .. "/tests/ref/tok_data.lua")
local npm = require "tests.lib.npm"

local tok, why = npm.gpt2()
if not tok then
    io.stderr:write("bench/tokenizer.lua: ", why, "\n")
    B.emit({ name = "tokenizer_encode", unit = "MB/s", error = why })
    return
end
tok:free()
local docs = D.corpus()
local bytes = 0
for _, d in ipairs(docs) do bytes = bytes + #d end

local function encode_all(t)
    for _, d in ipairs(docs) do t:encode(d) end
end

local cold, warm = {}, {}
encode_all(npm.gpt2()) -- untimed warm-up of the code paths and page cache
for i = 1, B.reps() do
    local t <close> = npm.gpt2()
    local t0 = B.clock()
    encode_all(t)
    local t1 = B.clock()
    encode_all(t)
    cold[i], warm[i] = bytes / (t1 - t0) / 1e6, bytes / (B.clock() - t1) / 1e6
    collectgarbage()
end

local js, js_why = D.js_bench(B.quick() and 1 or B.reps())
local a, base = B.median(cold), js and B.median(js)
io.stderr:write(string.format("tokenizer: %d documents, %.2f MB\n", #docs, bytes / 1e6))
io.stderr:write(string.format("  apl         %8.2f MB/s (cold word cache), %.2f MB/s (warm)\n", a, B.median(warm)))
if base then
    io.stderr:write(string.format("  js-tiktoken %8.2f MB/s\n  ratio       %8.1fx\n", base, a / base))
else
    io.stderr:write("  js-tiktoken: ", js_why, "\n")
end
B.emit({ name = "tokenizer_encode", apl = a, baseline = base, unit = "MB/s", samples = cold, baseline_samples = js,
    warm_cache = B.median(warm), ratio = base and a / base, bytes = bytes, threads = 1,
    baseline_name = "js-tiktoken (node, 1 thread)", error = js_why })
