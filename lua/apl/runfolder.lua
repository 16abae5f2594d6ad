-- apl.runfolder — one folder per run: config.json and append-only JSONL logs.
--
--   local runfolder = require "apl.runfolder"
--   local run = runfolder.create("runs/imdb-certainty-s1", config)   -- fails if it holds a run
--   run:append("acquired", { step = 1, prompt = "...", ... })        -- one line, flushed
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
local read_all = fs.read

M.exists = fs.exists

function M.mkdir(dir)
    local ok, err = pcall(fs.mkdir_p, dir)
    if not ok then error("apl.runfolder: cannot create " .. dir .. " (" .. tostring(err) .. ")", 3) end
end

function Run:path(name) return self.dir .. "/" .. name end

-- Appends one JSON line to <name>.jsonl and flushes, so a crash loses at most the line being
-- written.
function Run:append(name, record)
    local f = self.files[name]
    if not f then
        f = assert(io.open(self:path(name .. ".jsonl"), "a"))
        self.files[name] = f
    end
    f:write(cjson.encode(record), "\n")
    f:flush()
end

-- Records of <name>.jsonl. A line cut short by a crash can only be the last one; it is dropped.
function Run:read(name)
    local path = self:path(name .. ".jsonl")
    local text = read_all(path)
    local out, lines = {}, {}
    if not text then return out end
    for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
    for i, l in ipairs(lines) do
        local ok, r = pcall(cjson.decode, l)
        if ok then out[#out + 1] = r
        elseif i < #lines then error(string.format("apl.runfolder: %s:%d: invalid JSON", path, i), 2) end
    end
    return out
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
    return setmetatable({ dir = dir, config = config, files = {} }, Run)
end

function M.open(dir)
    local text = read_all(dir .. "/config.json")
    if not text then error("apl.runfolder: " .. dir .. " is not a run folder (no config.json)", 2) end
    return setmetatable({ dir = dir, config = cjson.decode(text), files = {} }, Run)
end

return M
