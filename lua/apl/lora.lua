-- apl.lora — LoRA adapters on any apl model, with PEFT's method, defaults, names and file format.
--
--   local m = apl.model.load("gpt2-large/")
--   apl.lora.attach(m, { r = 8, alpha = 16, targets = { "c_attn", "c_proj" }, seed = 1 })
--   local tr = apl.dpo.new { policy = m, ref = m, tok = tok }   -- the reference: adapters off
--   m:adapters(false); m:adapters(true)                         -- the base model, exactly
--   m:save_adapter("out/adapter")     -- adapter_config.json + adapter_model.safetensors (PEFT's)
--   apl.lora.load(other, "out/adapter")                          -- or one peft wrote
--   m:merge_adapter(); m:save("out/merged")                      -- fold them into the weights
--
-- An adapted projection computes W x + b + (alpha / r) B A x, with A (r, in) drawn as PEFT draws it
-- and B (out, r) zero, so a fresh adapter changes nothing. Only A and B train: the base weights
-- get no gradient and no Adam state, and θ0 (the reference, the reset point) is the same model
-- with its adapters off, so no second copy of the weights exists. Targets are Hugging Face module
-- names ("c_attn", "query_key_value", "q_proj", ...), matched as PEFT matches a list; without
-- targets, PEFT's default for the family. Dropout (0 by default) acts in training only.
local cjson = require "cjson.safe"
local core = require "apl.core.model"
local fs = require "apl.fs"

local M = {}
local Model = core.Model

local CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
local PREFIX = "base_model.model."
local OPTIONS = { r = true, alpha = true, dropout = true, targets = true, seed = true }

local function check_opts(fname, o)
    if type(o) ~= "table" then error(fname .. ": options must be a table", 3) end
    -- the loop checks a run's lora knob before its run folder exists
    for k in pairs(o) do
        if not OPTIONS[k] then error(fname .. ": unknown option '" .. tostring(k) .. "'", 3) end
    end
    local function num(k, ok, want)
        local v = o[k]
        if v ~= nil and (type(v) ~= "number" or not ok(v)) then
            error(("%s: option '%s' must be %s, got %s"):format(fname, k, want, tostring(v)), 3)
        end
    end
    num("r", function(v) return math.type(v) == "integer" and v >= 1 end, "an integer >= 1")
    num("alpha", function(v) return v > 0 and v < math.huge end, "a number > 0")
    num("dropout", function(v) return v >= 0 and v < 1 end, "in [0, 1)")
    num("seed", function(v) return math.type(v) == "integer" end, "an integer")
    if o.targets ~= nil then
        if type(o.targets) ~= "table" or #o.targets == 0 then
            error(fname .. ": option 'targets' must be a non-empty list of module names", 3)
        end
        for i, t in ipairs(o.targets) do
            if type(t) ~= "string" then error(("%s: targets[%d] must be a string"):format(fname, i), 3) end
        end
    end
end

-- Raises (naming fname) unless o is a valid options table for attach.
function M.check(o, fname) check_opts(fname, o) end

-- apl.lora.attach(model, {r = 8, alpha = 16, dropout = 0, targets = {...}, seed = 0}) -> model
function M.attach(model, opts)
    opts = opts or {}
    check_opts("apl.lora.attach", opts)
    local r = opts.r or 8
    model:_lora_attach(r, opts.alpha or 2 * r, opts.dropout or 0, opts.seed or 0, opts.targets)
    return model
end

-- Attaches, or accepts adapters already attached with these same options (a run resumed in the
-- process that ran it, on the same policy object) after putting them back at θ0.
function M.ensure(model, opts)
    local l = model:lora()
    if not l then return M.attach(model, opts) end
    local r = opts.r or 8
    local same = l.r == r and l.alpha == (opts.alpha or 2 * r) and l.dropout == (opts.dropout or 0)
        and l.seed == (opts.seed or 0)
        and table.concat(l.targets, ",") == table.concat(opts.targets or model:lora_default_targets(), ",")
    if not same then
        error("apl.lora: the model has adapters already, with other options (r, alpha, dropout, targets, seed)", 2)
    end
    model:reset()
    return model
end

-- The base model's name for adapter_config.json, as transformers gives it: the config's
-- _name_or_path, else the folder the model was loaded from ("" for one made in memory).
local function base_name(model)
    local c = model:config()
    return type(c._name_or_path) == "string" and c._name_or_path or model:info().source or ""
end

-- m:save_adapter(dir): PEFT's two files, so that peft.PeftModel.from_pretrained(base, dir) loads it.
function Model:save_adapter(dir)
    local fname = "apl.model.save_adapter"
    local l = self:lora()
    if not l then error(fname .. ": the model has no adapters (apl.lora.attach)", 2) end
    fs.mkdir_p(dir)
    local tensors = {}
    for _, a in ipairs(l.adapters) do
        tensors[PREFIX .. a.module .. ".lora_A.weight"] = a.A
        tensors[PREFIX .. a.module .. ".lora_B.weight"] = a.B
    end
    core.save_tensors(dir .. "/" .. WEIGHTS, tensors)
    local config = {
        peft_type = "LORA", task_type = "CAUSAL_LM", r = l.r, lora_alpha = l.alpha,
        lora_dropout = l.dropout, target_modules = l.targets, bias = "none",
        base_model_name_or_path = base_name(self), fan_in_fan_out = self:info().model_type == "gpt2",
        inference_mode = true, init_lora_weights = true, use_rslora = false, use_dora = false,
        modules_to_save = cjson.null, layers_to_transform = cjson.null,
    }
    fs.write(dir .. "/" .. CONFIG, assert(cjson.encode(config)) .. "\n")
    return self
end

-- What PEFT can write that apl does not compute: refused by name rather than loaded wrong.
local UNSUPPORTED = {
    use_rslora = "rank-stabilised scaling", use_dora = "DoRA", modules_to_save = "modules_to_save",
    layers_to_transform = "layers_to_transform", rank_pattern = "per-module ranks",
    alpha_pattern = "per-module alphas",
}

local function read_config(dir)
    local path = dir .. "/" .. CONFIG
    local text, err = fs.read(path)
    if not text then error("apl.lora.load: " .. tostring(err), 3) end
    local c, perr = cjson.decode(text)
    if type(c) ~= "table" then error(("apl.lora.load: %s: not a JSON object (%s)"):format(path, perr or "?"), 3) end
    local function bad(field, why) error(("apl.lora.load: %s: \"%s\" %s"):format(path, field, why), 4) end
    if c.peft_type ~= "LORA" then bad("peft_type", "must be \"LORA\", got " .. tostring(c.peft_type)) end
    if c.bias ~= nil and c.bias ~= "none" then bad("bias", "\"" .. tostring(c.bias) .. "\" is not supported (none)") end
    for k, what in pairs(UNSUPPORTED) do
        local v = c[k]
        if v ~= nil and v ~= cjson.null and v ~= false and not (type(v) == "table" and next(v) == nil) then
            bad(k, "(" .. what .. ") is not supported")
        end
    end
    if type(c.target_modules) ~= "table" then
        bad("target_modules", "must be a list of module names (a regex string is not supported)")
    end
    c.r = math.tointeger(c.r) -- cjson reads every number as a float
    if not c.r or c.r < 1 then bad("r", "must be an integer >= 1") end
    if type(c.lora_alpha) ~= "number" then bad("lora_alpha", "must be a number") end
    return c, path
end

-- apl.lora.load(model, dir) -> model: attaches the adapter in dir (PEFT's format, written by apl or
-- by peft) to a model without adapters.
function M.load(model, dir)
    local c, cpath = read_config(dir)
    -- what attach refuses (targets this model lacks: an adapter for another base) names the file
    local aok, aerr = pcall(model._lora_attach, model, c.r, c.lora_alpha, tonumber(c.lora_dropout) or 0, 0,
        c.target_modules)
    if not aok then
        error(("apl.lora.load: %s: %s"):format(cpath, (tostring(aerr):gsub("^.-apl%.lora%.attach: ", ""))), 2)
    end
    local wpath = dir .. "/" .. WEIGHTS
    local ok, loaded = pcall(core.load_tensors, wpath)
    if not ok then
        model:detach_adapter()
        error("apl.lora.load: " .. tostring(loaded), 2)
    end
    local function fail(msg)
        model:detach_adapter()
        error(("apl.lora.load: %s: %s"):format(wpath, msg), 3)
    end
    local expected = {}
    for _, a in ipairs(model:lora().adapters) do
        for _, which in ipairs { "A", "B" } do
            local name = PREFIX .. a.module .. ".lora_" .. which .. ".weight"
            local t = loaded[name]
            expected[name] = true
            if not t then fail(("missing \"%s\" (%s names it in target_modules)"):format(name, cpath)) end
            local want, got = a[which]:shape(), t:shape()
            if #got ~= 2 or got[1] ~= want[1] or got[2] ~= want[2] then
                fail(("\"%s\" is %s, the model needs %d x %d"):format(name, table.concat(got, " x "),
                    want[1], want[2]))
            end
            a[which]:copy_(t)
        end
    end
    local extra = {}
    for name in pairs(loaded) do
        if not expected[name] then extra[#extra + 1] = name end
    end
    table.sort(extra)
    if #extra > 0 then
        fail(("holds %d tensor(s) no targeted module has (\"%s\"): target_modules and weights disagree")
            :format(#extra, extra[1]))
    end
    return model
end

-- The adapters' state, for messages and the REPL: nil without adapters.
function M.info(model)
    local l = model:lora()
    if not l then return nil end
    return { r = l.r, alpha = l.alpha, dropout = l.dropout, targets = l.targets, modules = #l.adapters,
        on = model:adapters() }
end

return M
