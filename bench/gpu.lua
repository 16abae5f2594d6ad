-- bench/gpu.lua — the GPU benchmark of tools/gpu-check.sh, and its report.
--
--   ./apl bench/gpu.lua --out DIR [--quick] [--smoke --device cpu] [--no-bench]
--                       [--tests "N passed, ..." --tests-rc N] [--python python3] [--fail REASON]
--
-- The paper's two settings, random weights in bf16 on `cuda`, written once as Hugging Face folders
-- under build/gpu-bench/ (apl.model.init + save: transformers loads them as they are):
--   GPT-2 large (774M), IMDB shapes: batch 64, prompts of 8-16 tokens, 24 new tokens;
--   Pythia-1B (GPT-NeoX), TLDR shapes: batch 64, prompts of 290-310 tokens, 128 new tokens.
-- For each: generation tokens/s (greedy, new tokens only), scoring tokens/s (the prompts plus
-- completions of the generated length, every token counted), a DPO step (64 pairs, policy and
-- reference forwards, sigmoid loss, Adam) and each one's peak GPU memory. bench/gpu_peer.py does
-- the same with `transformers` (its generate; a TRL-style concatenated DPO step in PyTorch) when it
-- imports. Then one acquisition step of recipes/apl_imdb.lua at paper scale (S = 4000, M = 128,
-- 50 epochs on the 128 pairs) on GPT-2 large against tests/ref/judge_server.py, timed per phase.
--
-- Every measurement runs in a process of its own (this script with --child PHASE, or the peer),
-- so each peak is that phase's. Peak memory: apl has no binding to the CUDA allocator's
-- statistics, so for both sides it is the device's used memory, sampled by nvidia-smi every 50 ms,
-- over what was used before the process started: this counts the CUDA context (~0.5 GiB) and the
-- caching allocator's reserve, an upper bound of torch.cuda.max_memory_allocated, which the peer
-- also reports. --quick: one timed repetition (after the warm-up) and a smaller acquisition step
-- (S = 1000, 10 epochs). --smoke: tiny models, batch 4, for checking this script without a GPU.
--
-- Writes DIR/gpu-check.json and DIR/gpu-check.md (with the test summary given by the caller), and
-- prints the goals' verdicts. Exit status 1 when a phase failed or --fail was given.
local cjson = require "cjson"
local root = package.apl_root or "."
local B = dofile(root .. "/bench/common.lua")
local C = require "apl.core.compute"

local a = require("apl.args").parse(arg, {
    { "out", "DIR", "folder for gpu-check.json and gpu-check.md", default = root .. "/build/gpu-check" },
    { "quick", nil, "one timed repetition, a smaller acquisition step", flag = true },
    { "smoke", nil, "tiny models (checks the script itself, any device)", flag = true },
    { "device", "DEV", "cuda, or cpu with --smoke", default = "cuda" },
    { "no-bench", nil, "only write the report (tests given by the caller)", flag = true },
    { "tests", "TEXT", "the test suite's summary line", default = "not run" },
    { "tests-rc", "N", "the test suite's exit status", default = -1, integer = true },
    { "python", "PY", "python with torch (and transformers) for the peer", default = "python3" },
    { "stages", "TEXT", "the caller's stage times (build, tests)" },
    { "fail", "REASON", "record a failure (e.g. no CUDA) and exit 1" },
    { "child", "PHASE", "internal: run one measurement (generate, score, dpo, acquisition)" },
    { "model", "NAME", "internal: the model of --child" },
    { "spec", "FILE", "internal: the shapes of --child (JSON)" },
})

local GIB = 2 ^ 30

-- Models and shapes --------------------------------------------------------------------------

local MODELS = {
    ["gpt2-large"] = { setting = "IMDB", prompt = { 8, 16 }, new = 24, dpo_micro = 64,
        config = { model_type = "gpt2", n_layer = 36, n_embd = 1280, n_head = 20, vocab_size = 50257,
                   n_positions = 1024, eos_token_id = 50256, bos_token_id = 50256 } },
    ["pythia-1b"] = { setting = "TLDR", prompt = { 290, 310 }, new = 128, dpo_micro = 8,
        config = { model_type = "gpt_neox", hidden_size = 2048, num_hidden_layers = 16,
                   num_attention_heads = 8, intermediate_size = 8192, vocab_size = 50304,
                   max_position_embeddings = 2048, rotary_pct = 0.25, rotary_emb_base = 10000,
                   use_parallel_residual = true, layer_norm_eps = 1e-5, hidden_act = "gelu",
                   tie_word_embeddings = false, eos_token_id = 0, bos_token_id = 0 } },
}
local ORDER = { "gpt2-large", "pythia-1b" }

-- --smoke: the same code on 2-layer models, batch 4, prompts a tenth as long (plus 4).
local function shrink(m)
    local c = {}
    for k, v in pairs(m.config) do c[k] = v end
    if c.model_type == "gpt2" then c.n_layer, c.n_embd, c.n_head, c.vocab_size = 2, 64, 4, 512
    else c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size, c.vocab_size = 2, 64, 4, 128, 512 end
    c.eos_token_id, c.bos_token_id = c.vocab_size - 1, c.vocab_size - 1
    return { setting = m.setting, prompt = { m.prompt[1] // 10 + 4, m.prompt[2] // 10 + 4 }, new = math.min(m.new, 8),
             dpo_micro = 2, config = c }
end

local function model_info(name)
    local m = MODELS[name]
    return a.smoke and shrink(m) or m
end

local BATCH = a.smoke and 4 or 64
local REPS = a.quick and 1 or 2

-- The shapes one measurement of `name` uses; written to a file that the peer reads too, so both
-- sides run the same lengths.
local function spec_of(name, dir)
    local m = model_info(name)
    local r = require("apl.rng").new(7, name)
    local lens = {}
    for i = 1, BATCH do lens[i] = r:int(m.prompt[1], m.prompt[2]) end
    return { model = name, dir = dir, setting = m.setting, batch = BATCH, prompt_lens = lens,
             new_tokens = m.new, completion_len = m.new, dpo_pairs = BATCH, dpo_micro = m.dpo_micro,
             beta = 0.1, lr = 1e-6, reps = REPS, vocab_size = m.config.vocab_size,
             eos_id = m.config.eos_token_id, device = a.device }
end

-- Small helpers --------------------------------------------------------------------------------

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    local ok = p:close()
    return out, ok
end

local function write_file(path, text)
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
end

local function random_rows(seed, lens, vocab)
    local r, out = require("apl.rng").new(seed, "bench-gpu"), {}
    for i, n in ipairs(lens) do
        local ids = {}
        for j = 1, n do ids[j] = r:int(0, vocab - 2) end -- never the EOS id (vocab - 1 or 0 is fine)
        out[i] = ids
    end
    return out
end

local function fill(n, v)
    local t = {}
    for i = 1, n do t[i] = v end
    return t
end

-- Makes sure the GPU's queue has run: a value read back from a weight waits for every kernel.
local function sync(model)
    local ps = model:parameters()
    apl.no_grad(function() return ps[#ps].tensor:float():sum():item() end)
end

-- Children: one measurement each -----------------------------------------------------------------

local function load_model(spec)
    return apl.model.load(spec.dir, { device = spec.device, dtype = "bf16" })
end

local function child_generate(spec)
    local m = load_model(spec)
    local prompts = random_rows(1, spec.prompt_lens, spec.vocab_size)
    local secs = B.time(function()
        C.generate(m, prompts, { max_new_tokens = spec.new_tokens, temperature = 0, batch_size = spec.batch })
    end, { reps = spec.reps })
    B.emit_rate("generation", "tok/s", spec.batch * spec.new_tokens, secs)
end

local function child_score(spec)
    local m = load_model(spec)
    local p = random_rows(2, spec.prompt_lens, spec.vocab_size)
    local c = random_rows(3, fill(spec.batch, spec.completion_len), spec.vocab_size)
    local tokens = 0
    for i = 1, spec.batch do tokens = tokens + #p[i] + #c[i] end
    local secs = B.time(function()
        local lp = C.logprob(m, p, c, { batch_size = spec.batch })
        if type(lp) == "userdata" then lp:float():to("cpu"):totable() end
    end, { reps = spec.reps })
    B.emit_rate("scoring", "tok/s", tokens, secs)
end

local function child_dpo(spec)
    local policy = load_model(spec)
    local ref = policy:clone()
    local n = spec.dpo_pairs
    local p = random_rows(4, spec.prompt_lens, spec.vocab_size)
    local c = random_rows(5, fill(n, spec.completion_len), spec.vocab_size)
    local r = random_rows(6, fill(n, spec.completion_len), spec.vocab_size)
    local pairs = {}
    for i = 1, n do pairs[i] = { prompt_ids = p[i], chosen_ids = c[i], rejected_ids = r[i] } end
    local tok = { eos_id = spec.eos_id, pad_id = spec.eos_id } -- ids are given; nothing is encoded
    local tr = apl.dpo.new { policy = policy, ref = ref, tok = tok, beta = spec.beta, lr = spec.lr,
                             batch_size = n, micro_batch_size = spec.dpo_micro }
    local secs = B.time(function()
        tr.ref_cache = {} -- the reference forward every step, as TRL's step does it
        tr:step(pairs)
        sync(policy)
    end, { reps = spec.reps })
    B.emit_time("dpo_step", secs)
end

-- A GPT-2-vocabulary tokenizer for the acquisition step: BPE merges learnt from a small corpus,
-- then filler tokens up to the model's vocabulary, so that every id the random model samples
-- decodes (encoding only ever produces the learnt ones).
local WORDS = { "the", "movie", "was", "good", "bad", "film", "plot", "acting", "story", "not", "worth",
                "a", "lot", "dull", "boring", "great", "fine", "i", "liked", "ticket", "and", "it" }

local function write_tokenizer(dir, vocab_size)
    local bpe = require "recipes.lib.bpe_train"
    local r, corpus = require("apl.rng").new(3, "corpus"), {}
    for i = 1, 200 do
        local w = {}
        for j = 1, 8 do w[j] = WORDS[r:int(1, #WORDS)] end
        corpus[i] = table.concat(w, " ")
    end
    local vocab, merges = bpe.train(corpus, { merges = 200 })
    local n = 0
    for _ in pairs(vocab) do n = n + 1 end
    vocab["<|endoftext|>"] = nil
    for id = n - 1, vocab_size - 2 do vocab["~" .. id] = id end
    vocab["<|endoftext|>"] = vocab_size - 1
    write_file(dir .. "/vocab.json", cjson.encode(vocab))
    write_file(dir .. "/merges.txt", "#version: 0.2\n" .. table.concat(merges, "\n") .. "\n")
end

-- Review-like prompts of 8-16 tokens (the IMDB recipe cuts reviews to that many).
local function prompt_pool(tok, n)
    local r, pool = require("apl.rng").new(5, "pool"), {}
    while #pool < n do
        local w, text = {}, nil
        repeat
            w[#w + 1] = WORDS[r:int(1, #WORDS)]
            text = table.concat(w, " ")
        until #tok:encode(text) >= r:int(8, 16)
        pool[#pool + 1] = { prompt = text }
    end
    return pool
end

-- Wraps fn so that its seconds add up in times[name].
local function timed(times, name, fn)
    return function(...)
        local t0 = B.clock()
        local out = table.pack(fn(...))
        times[name] = (times[name] or 0) + B.clock() - t0
        return table.unpack(out, 1, out.n)
    end
end

-- The engine of apl.loop with each phase timed: generation, scoring (implicit rewards), the
-- oracle's labels, DPO training (reset + epochs).
local function timed_engine(times)
    local E = apl.loop.engine
    return {
        generate = timed(times, "generate", E.generate),
        rewards = timed(times, "score", E.rewards),
        trainer = function(opts)
            local tr = E.trainer(opts)
            local epoch, reset = tr.epoch, tr.reset
            tr.epoch = timed(times, "train", function(self, ...) return epoch(self, ...) end)
            tr.reset = timed(times, "train", function(self, ...) return reset(self, ...) end)
            return tr
        end,
        oracle_openai = function(spec)
            local o = E.oracle_openai(spec)
            local label = o.label
            o.label = timed(times, "oracle", function(self, ...) return label(self, ...) end)
            return o
        end,
    }
end

local function child_acquisition(spec)
    local S, epochs = a.smoke and 16 or (a.quick and 1000 or 4000), a.smoke and 2 or (a.quick and 10 or 50)
    local M = a.smoke and 8 or 128
    local policy = load_model(spec)
    local tokdir = spec.dir .. "/tokenizer"
    os.execute("mkdir -p " .. q(tokdir))
    write_tokenizer(tokdir, spec.vocab_size)
    local tok = apl.tokenizer.load(tokdir)
    local server = dofile(root .. "/tests/lua/oracle_server.lua").start { lifetime = 3600 }
    local times, t0 = {}, B.clock()
    local ok, err = pcall(function()
        -- the knobs of recipes/apl_imdb.lua, one step; generation in rows of 256 (the recipe
        -- leaves apl.generate's 16, sized for CPUs)
        apl.loop.run {
            acquisition = "certainty", budget = M, batch = M, sample = S, epochs = epochs, beta = 0.2,
            lr = 1e-6, minibatch = 64, max_new_tokens = 64, seed = 1, gen_batch_size = a.smoke and 8 or 256,
            temperature = { train = 0.7, test = 0.25, oracle = 0.05 },
            policy = policy, tok = tok, pool = prompt_pool(tok, 2 * S), quiet = true,
            oracle = { base_url = server.url, model = "judge", template = "imdb", api_key_env = "HOME", timeout = 30 },
            out = spec.run_dir, engine = timed_engine(times),
        }
    end)
    server:stop()
    if not ok then error(err, 0) end
    times.total = B.clock() - t0
    B.emit({ name = "acquisition_step", unit = "s", phases = times, S = S, M = M, epochs = epochs,
             config = string.format("certainty, S=%d, M=%d, %d epochs, 64 new tokens, generation rows of %d",
                                    S, M, epochs, a.smoke and 8 or 256) })
end

local CHILDREN = { generate = child_generate, score = child_score, dpo = child_dpo, acquisition = child_acquisition }

if a.child then
    local fn = CHILDREN[a.child] or error("bench/gpu.lua: unknown --child " .. a.child)
    local f = assert(io.open(a.spec))
    local spec = cjson.decode(f:read("a"))
    f:close()
    -- JSON has one number type: counts come back as floats, which sizes and ranges refuse
    for k, v in pairs(spec) do
        if math.type(v) == "float" and math.tointeger(v) then spec[k] = math.tointeger(v) end
    end
    for i, v in ipairs(spec.prompt_lens) do spec.prompt_lens[i] = math.tointeger(v) end
    fn(spec)
    return
end

-- The driver ----------------------------------------------------------------------------------

-- The GPU's used memory in MiB, sampled every 50 ms while cmd runs (nvidia-smi; nil without it).
local function gpu_index()
    return (os.getenv("CUDA_VISIBLE_DEVICES") or ""):match("^(%d+)") or "0"
end

local function run_sampled(cmd, samples_file)
    if a.device ~= "cuda" or not sh("command -v nvidia-smi"):find("%S") then
        local out, ok = sh(cmd)
        return out, ok, nil
    end
    local query = "nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i " .. gpu_index()
    local before = tonumber((sh(query)))
    local pid = sh(query .. " -lms 50 > " .. q(samples_file) .. " 2>/dev/null & echo $!"):match("%d+")
    local out, ok = sh(cmd)
    os.execute("kill " .. pid .. " 2>/dev/null")
    local peak = 0
    for line in io.lines(samples_file) do peak = math.max(peak, tonumber(line) or 0) end
    return out, ok, before and (peak - before) / 1024 or nil
end

-- The last JSON object a child printed (its measurement), or nil and the output.
local function last_json(out)
    local row
    for line in out:gmatch("[^\n]+") do
        if line:sub(1, 1) == "{" then
            local ok, v = pcall(cjson.decode, line)
            if ok then row = v end
        end
    end
    return row
end

-- The checkpoints (written once) and each measurement's spec; --smoke's tiny ones go under --out,
-- so that test runs side by side in one tree do not share files.
local WORK = a.smoke and a.out .. "/work" or root .. "/build/gpu-bench"

local function checkpoint(name)
    local dir = WORK .. "/" .. name
    local want = cjson.encode(model_info(name).config)
    local f = io.open(dir .. "/.made-from")
    local have = f and f:read("a")
    if f then f:close() end
    if have ~= want then
        os.execute("mkdir -p " .. q(dir))
        apl.model.init(model_info(name).config, { seed = 0, dtype = "bf16" }):save(dir)
        write_file(dir .. "/.made-from", want)
        collectgarbage()
    end
    return dir
end

local failures = {}

-- One measurement by apl and, unless it is the acquisition step, by the peer.
local function measure(name, phase)
    local spec = spec_of(name, checkpoint(name))
    spec.run_dir = string.format("%s/run-%s-%d-%06d", WORK, name, os.time(), math.random(0, 999999))
    local spec_file = WORK .. "/spec-" .. name .. "-" .. phase .. ".json"
    write_file(spec_file, cjson.encode(spec))
    local apl_cmd = string.format("%s %s --child %s --spec %s %s %s 2>&1", q(root .. "/apl"),
        q(root .. "/bench/gpu.lua"), phase, q(spec_file), a.smoke and "--smoke" or "", a.quick and "--quick" or "")
    local out, ok, mem = run_sampled(apl_cmd, WORK .. "/mem.txt")
    local row = last_json(out)
    if not ok or not row then
        failures[#failures + 1] = string.format("apl %s %s: %s", name, phase, out:sub(-2000))
        io.stderr:write("bench/gpu.lua: apl ", name, " ", phase, " failed:\n", out:sub(-2000), "\n")
        row = { name = phase }
    end
    row.model, row.setting, row.apl_peak_gib = name, spec.setting, mem
    if phase ~= "acquisition" then
        local peer_cmd = string.format("%s %s --phase %s --spec %s 2>&1", q(a.python),
            q(root .. "/bench/gpu_peer.py"), phase, q(spec_file))
        local pout, pok, pmem = run_sampled(peer_cmd, WORK .. "/mem.txt")
        local prow = last_json(pout) or {}
        if not pok and not prow.skipped then
            failures[#failures + 1] = string.format("peer %s %s: %s", name, phase, pout:sub(-2000))
            io.stderr:write("bench/gpu.lua: peer ", name, " ", phase, " failed:\n", pout:sub(-2000), "\n")
        end
        row.peer, row.peer_samples, row.peer_skipped = prow.peer, prow.samples, prow.skipped
        row.peer_max_allocated_gib, row.peer_peak_gib = prow.max_allocated_gib, pmem
        row.shape = prow.shape
    end
    io.stderr:write("bench/gpu.lua: ", cjson.encode(row), "\n")
    return row
end

local function peer_note(what)
    local out = sh(string.format("%s %s --phase %s 2>&1", q(a.python), q(root .. "/bench/gpu_peer.py"), what))
    local row = last_json(out) or {}
    return row.skipped or row.note or out:sub(-300)
end

-- Goals and the report -------------------------------------------------------------------------

local function find(rows, model, name)
    for _, r in ipairs(rows) do if r.model == model and r.name == name then return r end end
end

local function verdict(ok) if ok == nil then return "not measured" end return ok and "met" or "NOT met" end

local function goals(rows)
    local out = {}
    for _, name in ipairs(ORDER) do
        local g = find(rows, name, "generation")
        local ratio = g and g.apl and g.peer and g.apl / g.peer
        out[#out + 1] = { goal = name .. ": generation >= 2x transformers.generate (batch 64)",
                          measured = ratio and string.format("%.2fx", ratio), met = ratio and ratio >= 2 }
        local d = find(rows, name, "dpo_step")
        ratio = d and d.apl and d.peer and d.apl / d.peer
        out[#out + 1] = { goal = name .. ": DPO step <= 0.8x the PyTorch peer",
                          measured = ratio and string.format("%.2fx", ratio), met = ratio and ratio <= 0.8 }
    end
    local d = find(rows, "gpt2-large", "dpo_step")
    local gib = d and d.apl_peak_gib
    out[#out + 1] = { goal = "gpt2-large: DPO step (policy, theta0, Adam) within 16 GiB",
                      measured = gib and string.format("%.1f GiB", gib), met = gib and gib <= 16 }
    return out
end

local function fmt(v, unit)
    if type(v) ~= "number" then return "-" end
    if unit == "s" then return string.format("%.3f", v) end
    return string.format("%.1f", v)
end

local function markdown(report)
    local L = { "# apl GPU check", "",
        string.format("- date: %s; device: %s", report.date, report.device or "-"),
        string.format("- apl: %s", report.apl_version), string.format("- peer: %s", report.peer_version or "-"),
        string.format("- tests: %s (exit %s)", report.tests.summary, tostring(report.tests.rc)),
        string.format("- LoRA (peft): %s", report.lora or "-"),
        string.format("- time: %s; benchmark %.0f s", report.stages or "-", report.seconds), "",
        "| model | benchmark | unit | apl | transformers/PyTorch | apl/peer | apl peak GiB | peer peak GiB (allocated) |",
        "|---|---|---|---|---|---|---|---|" }
    if #report.rows == 0 then L[#L - 1], L[#L] = "No benchmark in this run (--no-gpu, or no CUDA).", nil end
    for _, r in ipairs(report.rows) do
        if r.name ~= "acquisition_step" then
            local ratio = r.apl and r.peer and string.format("%.2fx", r.apl / r.peer) or "-"
            L[#L + 1] = string.format("| %s (%s) | %s | %s | %s | %s | %s | %s | %s (%s) |", r.model, r.setting or "",
                r.name, r.unit or "", fmt(r.apl, r.unit), r.peer_skipped and "skipped" or fmt(r.peer, r.unit), ratio,
                fmt(r.apl_peak_gib), fmt(r.peer_peak_gib), fmt(r.peer_max_allocated_gib))
        end
    end
    for _, r in ipairs(report.rows) do
        if r.name == "acquisition_step" and r.phases then
            L[#L + 1] = ""
            L[#L + 1] = string.format("Acquisition step (%s, %s): peak %s GiB", r.model, r.config or "", fmt(r.apl_peak_gib))
            L[#L + 1] = ""
            L[#L + 1] = "| phase | s |"
            L[#L + 1] = "|---|---|"
            for _, k in ipairs({ "generate", "score", "oracle", "train", "total" }) do
                L[#L + 1] = string.format("| %s | %s |", k, fmt(r.phases[k], "s"))
            end
        end
    end
    L[#L + 1] = ""
    if #report.goals > 0 then
        L[#L + 1] = "| goal | measured | status |"
        L[#L + 1] = "|---|---|---|"
    end
    for _, g in ipairs(report.goals) do
        L[#L + 1] = string.format("| %s | %s | %s |", g.goal, g.measured or "-", verdict(g.met))
    end
    if #report.failures > 0 then
        L[#L + 1] = ""
        L[#L + 1] = "Failures: " .. #report.failures .. " (see gpu-check.json)"
    end
    return table.concat(L, "\n") .. "\n"
end

local function device_name()
    if a.device ~= "cuda" then return a.device end
    local out = sh("nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader -i " .. gpu_index() .. " 2>/dev/null")
    return out:match("[^\n]+")
end

local function run_bench()
    os.execute("mkdir -p " .. q(WORK))
    local rows = {}
    for _, name in ipairs(ORDER) do
        for _, phase in ipairs({ "generate", "score", "dpo" }) do rows[#rows + 1] = measure(name, phase) end
    end
    rows[#rows + 1] = measure("gpt2-large", "acquisition")
    return rows
end

local t_start = B.clock()
if a.fail then failures[#failures + 1] = a.fail end
local rows = a.no_bench and {} or run_bench()
local report = {
    date = os.date("!%Y-%m-%d %H:%M UTC"), device = device_name(),
    apl_version = (sh(q(root .. "/apl") .. " --version 2>&1"):gsub("\n$", ""):gsub("\n", "; ")),
    peer_version = not a.no_bench and peer_note("versions") or nil,
    lora = not a.no_bench and peer_note("peft") or nil,
    quick = a.quick, smoke = a.smoke,
    tests = { summary = a.tests, rc = a.tests_rc }, stages = a.stages,
    rows = rows, failures = failures, seconds = B.clock() - t_start,
}
report.goals = a.no_bench and {} or goals(rows)
os.execute("mkdir -p " .. q(a.out))
write_file(a.out .. "/gpu-check.json", cjson.encode(report) .. "\n")
write_file(a.out .. "/gpu-check.md", markdown(report))
for _, g in ipairs(report.goals) do
    print(string.format("goal: %-62s %-10s %s", g.goal, g.measured or "-", verdict(g.met)))
end
if report.lora then print("LoRA logits against peft: skipped: " .. report.lora) end
print(string.format("bench/gpu.lua: %d rows, %d failures, %.0f s; report in %s", #rows, #failures,
                    report.seconds, a.out))
os.exit(#failures == 0 and 0 or 1)
