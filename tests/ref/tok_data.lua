-- tok_data.lua — the GPT-2 test corpus and the JavaScript reference, shared by
-- tests/lua/test_tokenizer.lua and bench/tokenizer.lua. Everything is cached under build/tok.
--
--   local D = dofile(root .. "/tests/ref/tok_data.lua")
--   local docs, path = D.corpus()           -- documents of real text, >= 1 MB in all
--   local ref = D.reference()               -- ref.T[i], ref.H[i], ref.G[i] (see tok_gpt2.js)
--   local mbps = D.js_bench(reps)           -- js-tiktoken's encode speed on the corpus, per rep
local npm = require "tests.lib.npm"

local D = {}
local root = package.apl_root or "."
D.DIR = root .. "/build/tok"
D.CORPUS = D.DIR .. "/corpus.txt"

local function sh(cmd)
    local p = assert(io.popen(cmd .. " 2>&1"))
    local out = p:read("a")
    local ok = p:close()
    if not ok then error("command failed: " .. cmd .. "\n" .. out, 2) end
    return out
end

local fs = require "apl.fs"
local function read(path) return assert(fs.read(path)) end

local docs
-- The documents of build/tok/corpus.txt, built by tests/ref/tok_corpus.py when missing.
function D.corpus()
    if docs then return docs, D.CORPUS end
    local f = io.open(D.CORPUS, "rb")
    if f then
        f:close()
    else
        os.execute("mkdir -p '" .. D.DIR .. "'")
        io.stderr:write(sh(string.format("/usr/bin/python3 '%s/tests/ref/tok_corpus.py' '%s'", root, D.CORPUS)))
    end
    docs = {}
    for doc in (read(D.CORPUS) .. "\0"):gmatch("(.-)%z") do docs[#docs + 1] = doc end
    return docs, D.CORPUS
end

-- node_modules with the JavaScript tokenizers, or nil, reason.
function D.modules() return npm.modules({ "gpt-3-encoder", "js-tiktoken" }) end

-- Lines "<kind> <doc> <ids...>" into ref[kind][doc] = ids.
local function read_ref(path, ref)
    for line in io.lines(path) do
        local kind, doc, rest = line:match("^(%a) (%d+) ?(.*)$")
        local ids = {}
        for v in rest:gmatch("%d+") do ids[#ids + 1] = math.tointeger(tonumber(v)) end
        ref[kind][tonumber(doc)] = ids
    end
    return ref
end

-- The reference ids, computed by node once per corpus. Returns nil, reason without npm.
function D.reference()
    D.corpus()
    local modules, why = D.modules()
    if not modules then return nil, why end
    local out = D.DIR .. "/gpt2_ref.txt"
    if not os.execute(string.format("test '%s' -nt '%s'", out, D.CORPUS)) then
        io.stderr:write(sh(string.format("node '%s/tests/ref/tok_gpt2.js' ids '%s' '%s' '%s'", root, modules,
            D.CORPUS, out)))
    end
    return read_ref(out, { T = {}, H = {}, G = {} })
end

-- o200k_base as HF stores converted tiktoken vocabularies, and js-tiktoken's ids for the corpus
-- (tests/ref/tok_o200k.js), built once per corpus and script. Returns the tokenizer's folder and
-- ref.T[i], ref.H[i]; nil, reason without npm.
function D.o200k()
    D.corpus()
    local modules, why = D.modules()
    if not modules then return nil, why end
    local script, out = root .. "/tests/ref/tok_o200k.js", D.DIR .. "/o200k_ref.txt"
    local function newer(a, b) return fs.run({ "test", a, "-nt", b }) == 0 end
    if not (newer(out, D.CORPUS) and newer(out, script)) then
        local log = D.DIR .. "/o200k.log"
        if fs.run({ "node", script, modules, D.CORPUS, D.DIR }, { stdout = log, stderr = log }) ~= 0 then
            error("tests/ref/tok_o200k.js failed: " .. (fs.read(log) or ""))
        end
    end
    return D.DIR .. "/o200k", read_ref(out, { T = {}, H = {} })
end

-- js-tiktoken's encode speed on the corpus in MB/s, one figure per timed pass (after a warm-up
-- pass). Returns nil, reason without npm or node.
function D.js_bench(reps)
    D.corpus()
    local modules, why = D.modules()
    if not modules then return nil, why end
    local out = sh(string.format("node '%s/tests/ref/tok_gpt2.js' bench '%s' '%s' %d", root, modules, D.CORPUS, reps))
    local samples = {}
    for v in (out:match('"samples":%[([^%]]*)%]') or ""):gmatch("[^,]+") do samples[#samples + 1] = tonumber(v) end
    if #samples == 0 then return nil, "js-tiktoken bench printed no samples: " .. out end
    return samples
end

return D
