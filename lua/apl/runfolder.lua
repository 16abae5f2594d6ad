-- apl.runfolder — one folder per run: config.json and append-only JSONL logs.
--
--   local runfolder = require "apl.runfolder"
--   local run = runfolder.create("runs/imdb-certainty-s1", config)   -- fails if it holds a run
--   run:append("acquired", { step = 1, prompt = "...", ... })        -- one line, fsynced
--   local run = runfolder.open("runs/imdb-certainty-s1")              -- resume, report, inspect
--   for _, r in ipairs(run:read("eval")) do print(r.labels, r.winrate) end
--
-- Files: config.json, acquired.jsonl, train.jsonl, eval.jsonl, oracle.jsonl (the oracle's ledger),
-- winrate.svg, bt_hist.svg, policy/ (online variant only).
local cjson = require "cjson"

local M = {}
local Run = {}
Run.__index = Run

local fs = require "apl.fs"
local secrets = require "apl.secrets"
local sys = require "apl.core.sys"
local read_all = fs.read

M.exists = fs.exists

function M.mkdir(dir)
    local ok, err = pcall(fs.mkdir_p, dir)
    if not ok then error("apl.runfolder: cannot create " .. dir .. " (" .. tostring(err) .. ")", 3) end
end

function Run:path(name) return self.dir .. "/" .. name end

-- A journal's warning (a torn last line skipped), said once per run and file.
function Run:warn(warning)
    if warning and not self.warned[warning] then
        self.warned[warning] = true
        io.stderr:write("apl.runfolder: ", warning, "\n")
    end
end

-- Re-raises a journal's error as the run folder's, keeping its path:line.
local function journal_call(fn, ...)
    local ok, a, b, c = pcall(fn, ...)
    if not ok then error("apl.runfolder: " .. tostring(a):gsub("^apl%.sys%.journal_%w+: ", ""), 3) end
    return a, b, c
end

-- Appends one JSON line to <name>.jsonl (a journal, apl.core.sys): on disk (fsynced) when this
-- returns, so a crash loses at most the line being written, which the next read skips.
function Run:append(name, record)
    local j = self.files[name]
    if not j then
        local _, warning
        j, _, warning = journal_call(sys.journal_open, self:path(name .. ".jsonl"), { noun = "record" })
        self:warn(warning)
        self.files[name] = j
    end
    j:append(cjson.encode(record))
end

-- Records of <name>.jsonl (none when it is missing). A line cut short by a crash can only be the
-- last one: it is skipped, and named on stderr and in the second result; any other bad line
-- raises naming path:line.
function Run:read(name)
    local path = self:path(name .. ".jsonl")
    local lines, warning = journal_call(sys.journal_read, path, { noun = "record" })
    self:warn(warning)
    local out = {}
    for i, l in ipairs(lines) do
        local ok, r = pcall(cjson.decode, l)
        if not ok then error(string.format("apl.runfolder: %s: record %d: %s", path, i, r), 2) end
        out[i] = r
    end
    return out, warning
end

-- Replaces <name>.jsonl with records (used when a resumed run drops an unfinished step).
function Run:rewrite(name, records)
    if self.files[name] then self.files[name]:close(); self.files[name] = nil end
    local lines = {}
    for i, r in ipairs(records) do lines[i] = cjson.encode(r) .. "\n" end
    fs.write(self:path(name .. ".jsonl"), table.concat(lines))
end

function Run:close()
    for k, f in pairs(self.files) do f:close(); self.files[k] = nil end
end

-- A run folder is shared and published; a key in it is a leaked key (api_key = "sk-..." in a
-- judge spec once went there). Refused before anything is written.
local function check_config(dir, config)
    local where = secrets.find_key(config)
    if where then
        error(string.format("apl.runfolder: config field '%s' looks like an API key; it would be saved in %s/config.json. "
            .. "Keep the key in the environment and name the variable (api_key_env)", where, dir), 3)
    end
end

local function write_config(dir, config)
    fs.write(dir .. "/config.json", cjson.encode(config) .. "\n")
end

-- A new run folder; an existing run there is an error (resume it instead).
function M.create(dir, config)
    if M.exists(dir .. "/config.json") then
        error(string.format("apl.runfolder: %s already holds a run; resume it with --resume %s or choose another --out", dir, dir), 2)
    end
    check_config(dir, config)
    M.mkdir(dir)
    write_config(dir, config)
    return setmetatable({ dir = dir, config = config, files = {}, warned = {} }, Run)
end

function M.open(dir)
    local text = read_all(dir .. "/config.json")
    if not text then error("apl.runfolder: " .. dir .. " is not a run folder (no config.json)", 2) end
    return setmetatable({ dir = dir, config = cjson.decode(text), files = {}, warned = {} }, Run)
end

return M
