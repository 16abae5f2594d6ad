-- apl.args — a recipe's command line: --flag VALUE, with environment fallbacks, checked up front.
--
--   local a = require("apl.args").parse(arg, {
--       { "model", "DIR", "policy model folder (Hugging Face layout)", env = "APL_MODEL", required = true, dir = true },
--       { "seed", "N", "random seed", default = 1, number = true },
--       { "acquisition", "NAME", "acquisition function", default = "random", module = "acquisition" },
--   })
-- Checks: required, number, integer (with min), list (comma-separated increasing integers >= 1),
-- lengths (N or A-B, see apl.lengths), dir (a folder), exists (a file or folder), env_var (names
-- a set environment variable), module (names a Lua module under that prefix, e.g.
-- acquisition/NAME.lua). flag = true makes a switch that takes no value: `--online` is true
-- (`--online=false` also works; default false).
--   a.model, a.seed          -- dashes become underscores: --judge-url -> a.judge_url
--
-- Every problem (a missing value, a folder that is not there, an unset API key variable, an
-- unknown flag) is reported together with the usage text before any work starts. With
-- --resume RUN_DIR, values not given again come from RUN_DIR/config.json, where the loop saved
-- them, so `apl recipes/x.lua --resume runs/x` is enough.
local cjson = require "cjson"

local M = {}

local exists = require("apl.fs").exists
local lengths = require "apl.lengths"
local secrets = require "apl.secrets"

local function key(name) return (name:gsub("-", "_")) end

local is_dir = require("apl.fs").isdir

function M.usage(script, spec)
    local lines = { "usage: apl " .. (script or "recipe.lua") .. " [options]" }
    for _, s in ipairs(spec) do
        local extra = {}
        if s.env then extra[#extra + 1] = "env " .. s.env end
        if s.default ~= nil then extra[#extra + 1] = "default " .. tostring(s.default) end
        if s.required then extra[#extra + 1] = "required" end
        lines[#lines + 1] = string.format("  --%-16s %-5s %s%s", s[1], s[2] or "", s[3] or "",
            #extra > 0 and " (" .. table.concat(extra, ", ") .. ")" or "")
    end
    return table.concat(lines, "\n")
end

-- The arguments saved with a run (the loop writes cfg.args into config.json).
local function saved_args(run_dir)
    local f = io.open(run_dir .. "/config.json", "r")
    if not f then return nil end
    local ok, cfg = pcall(cjson.decode, f:read("a"))
    f:close()
    return ok and type(cfg) == "table" and cfg.args or nil
end

local BOOLEANS = { ["true"] = true, ["1"] = true, yes = true, ["false"] = false, ["0"] = false, no = false }

-- "128,256,512" (or a list read back from config.json) -> {128, 256, 512}; nil for anything
-- but increasing integers >= 1.
local function int_list(v)
    local out = {}
    if type(v) == "table" then
        for i, x in ipairs(v) do out[i] = math.tointeger(x) end
    else
        for item in (tostring(v) .. ","):gmatch("([^,]*),") do out[#out + 1] = math.tointeger(tonumber(item)) or false end
    end
    for i = 1, #out do
        if not out[i] or out[i] < 1 or (i > 1 and out[i] <= out[i - 1]) then return nil end
    end
    return #out > 0 and out or nil
end

-- Converts and checks one value of a typed option (number, integer, flag, list, lengths);
-- returns the value, or nil and the problem.
local function typed(s, v)
    local name = "--" .. s[1]
    if s.flag then
        if type(v) == "boolean" then return v end
        local b = BOOLEANS[tostring(v):lower()]
        if b == nil then return nil, string.format("%s: %q is not true or false", name, tostring(v)) end
        return b
    elseif s.number or s.integer then
        local n = math.tointeger(tonumber(v)) or tonumber(v)
        if not n then return nil, string.format("%s: %q is not a number", name, tostring(v)) end
        if s.integer and not (math.tointeger(n) and n >= (s.min or math.mininteger)) then
            return nil, string.format("%s: %q is not an integer >= %d", name, tostring(v), s.min or math.mininteger)
        end
        return math.tointeger(n) or n
    elseif s.list then
        local l = int_list(v)
        if not l then return nil, string.format("%s: %q is not a comma list of increasing integers >= 1 (e.g. 128,256,512)", name, tostring(v)) end
        return l
    elseif s.lengths then
        if type(v) == "table" or type(v) == "number" then
            if lengths.range(v) then return v end
            return nil, string.format("%s: the saved value is not N or A-B", name)
        end
        local m, why = lengths.parse(v)
        if not m then return nil, string.format("%s: %q is not N or A-B (%s)", name, tostring(v), why) end
        return m
    end
    return v
end

-- Parses argv against spec; returns the values, or nil and a message naming every problem.
function M.check(argv, spec)
    local by_flag, out, problems = {}, {}, {}
    for _, s in ipairs(spec) do by_flag[s[1]] = s end
    local i = 1
    while i <= #argv do
        local flag, inline = argv[i]:match("^%-%-([%w-]+)=(.*)$")
        flag = flag or argv[i]:match("^%-%-([%w-]+)$")
        local s = flag and by_flag[flag]
        if flag == "help" then return nil, "help" end
        if not s then
            problems[#problems + 1] = "unknown argument " .. argv[i]
            i = i + 1
        elseif s.flag then
            out[key(flag)] = inline or true
            i = i + 1
        else
            local v = inline or argv[i + 1]
            if v == nil then problems[#problems + 1] = "--" .. flag .. " needs a value" end
            out[key(flag)] = v
            i = i + (inline and 1 or 2)
        end
    end
    local saved = out.resume and saved_args(out.resume) or {}
    for _, s in ipairs(spec) do
        local k = key(s[1])
        if out[k] == nil and s.env then out[k] = os.getenv(s.env) end
        if out[k] == nil or out[k] == "" then out[k] = saved[k] end
        if out[k] == nil then out[k] = s.default end
        local v = out[k]
        if v == nil then
            if s.required then
                problems[#problems + 1] = string.format("missing --%s %s%s", s[1], s[2] or "",
                    s.env and " (or set " .. s.env .. ")" or "")
            end
        elseif s.number or s.integer or s.flag or s.list or s.lengths then
            local why
            out[k], why = typed(s, v)
            if why then problems[#problems + 1] = why end
        elseif s.dir and not is_dir(v) then
            problems[#problems + 1] = string.format("--%s: %s is not a folder", s[1], v)
        elseif s.exists and not exists(v) then
            problems[#problems + 1] = string.format("--%s: %s does not exist", s[1], v)
        elseif s.env_var and (os.getenv(v) or "") == "" then
            problems[#problems + 1] = string.format("--%s: the environment variable %s is not set", s[1], v)
        elseif s.module and not package.searchpath(s.module .. "." .. v, package.path) then
            problems[#problems + 1] = string.format("--%s: no %s/%s.lua", s[1], s.module, v)
        end
    end
    -- A key pasted where a variable's name belongs (--api-key-env sk-...) is not echoed back.
    if #problems > 0 then return nil, secrets.redact(table.concat(problems, "\n")) end
    return out
end

-- Like check, but a problem prints the message and the usage and exits (status 2; 0 for --help):
-- a recipe started with the wrong arguments should stop before loading anything.
function M.parse(argv, spec)
    local out, err = M.check(argv, spec)
    if out then return out end
    local script = argv[0]
    if err == "help" then
        io.write(M.usage(script, spec), "\n")
        os.exit(0)
    end
    io.stderr:write("apl ", script or "", ": ", err:gsub("\n", "\napl " .. (script or "") .. ": "), "\n\n",
        M.usage(script, spec), "\n")
    os.exit(2)
end

return M
