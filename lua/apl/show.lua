-- apl.show — values the way a reader wants them: the REPL prints every result through it.
--
--   > {loss = 0.6931471805599453, n = 8, ids = {5, 7}, name = "x"}   -- o:stats(), tr:step(batch)...
--   {ids = {5, 7}, loss = 0.693147, n = 8, name = "x"}
--   > apl.show(x, {depth = 5, items = 100})   -- prints x (deeper, longer); returns nothing
--   local text = apl.show.format(x)           -- the same text as a string
--
-- Tables: the list part first, then the other keys sorted (numbers, strings, the rest); `depth`
-- levels of tables shown whole (3), deeper ones as {…N entries}; lists cut after `items` entries (10) and
-- the other keys after `fields` (40), each with a count of the rest; a table met again inside
-- itself as <cycle>. Strings quoted, cut after `chars` bytes (200); non-integer numbers with
-- `digits` significant digits (6), floats keeping a ".0" so they never read as integers;
-- functions as where they were defined. Values with a __tostring (tensors, models, tokenizers,
-- oracles) show their own text. A table takes one line when it fits in `width` (80), else one
-- entry a line. Tables are read raw (next, rawget): showing runs no __index or __pairs.
--
-- A helper that printed its result itself returns `result, apl.show.printed` (R's invisible
-- values): the REPL then prints nothing more, while `local rows = r:pairs{}` still gets rows.
local M = {}

local DEFAULTS = { depth = 3, items = 10, fields = 40, chars = 200, digits = 6, width = 80 }

M.printed = setmetatable({}, { __tostring = function() return "apl.show.printed" end })

local KEYWORDS = {}
for k in ([[and break do else elseif end false for function goto if in local nil not or repeat
            return then true until while]]):gmatch("%a+") do KEYWORDS[k] = true end

local function options(opts)
    local o = {}
    for k, v in pairs(DEFAULTS) do o[k] = v end
    for k, v in pairs(opts or {}) do
        if DEFAULTS[k] == nil then error("apl.show: unknown option '" .. tostring(k) .. "'", 3) end
        o[k] = v
    end
    return o
end

-- %q, but a newline reads "\n" (%q writes a backslash and a real newline, which breaks lines).
-- A long string keeps its first `chars` bytes, cut at a UTF-8 character boundary.
local function quote(s, chars)
    local keep = #s
    if keep > chars then
        keep = chars
        while keep > 0 and (s:byte(keep + 1) or 0) & 0xC0 == 0x80 do keep = keep - 1 end
    end
    local q = string.format("%q", s:sub(1, keep)):gsub("\\\n", "\\n")
    if keep == #s then return q end
    return q .. "… " .. (#s - keep) .. " more bytes"
end

local function number(x, digits)
    if math.type(x) == "integer" then return tostring(x) end
    local s = string.format("%." .. digits .. "g", x)
    if not s:find("[.eni]") then s = s .. ".0" end -- 3.0 stays a float; inf and nan are left alone
    return s
end

local function func(f)
    local info = debug.getinfo(f, "S")
    if info.what == "C" then return "<C function>" end
    return string.format("<function %s:%d>", info.short_src, info.linedefined)
end

local function own_text(v)
    local mt = debug.getmetatable(v)
    return mt and mt.__tostring ~= nil
end

local function scalar(v, o)
    local t = type(v)
    if t == "string" then return quote(v, o.chars) end
    if t == "number" then return number(v, o.digits) end
    if t == "function" then return func(v) end
    return tostring(v) -- nil, booleans, userdata (their __tostring or __name), threads
end

local RANK = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
    local ra, rb = RANK[type(a)] or 4, RANK[type(b)] or 4
    if ra ~= rb then return ra < rb end
    if ra <= 2 then return a < b end
    return tostring(a) < tostring(b)
end

local function key_text(k, o)
    if type(k) == "string" and k:match("^[%a_][%w_]*$") and not KEYWORDS[k] then return k end
    return "[" .. (type(k) == "string" and quote(k, o.chars) or tostring(k)) .. "]"
end

-- The length of the list part: 1..n all present (no `#`, whose answer with holes is any border).
local function list_length(t)
    local n = 0
    while rawget(t, n + 1) ~= nil do n = n + 1 end
    return n
end

local function count(t)
    local n = 0
    for _ in next, t do n = n + 1 end
    return n
end

local show

-- The entries of table t as texts: list values, then "key = value" in key order, each part
-- cut with a "… N more" entry.
local function entries(t, o, level, path)
    local out, n = {}, list_length(t)
    for i = 1, math.min(n, o.items) do out[#out + 1] = show(rawget(t, i), o, level, path) end
    if n > o.items then out[#out + 1] = "… " .. (n - o.items) .. " more" end
    local keys = {}
    for k in next, t do
        if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
    end
    table.sort(keys, key_less)
    for i = 1, math.min(#keys, o.fields) do
        local head = key_text(keys[i], o) .. " = "
        out[#out + 1] = head .. show(rawget(t, keys[i]), o, level, path, #head)
    end
    if #keys > o.fields then out[#out + 1] = "… " .. (#keys - o.fields) .. " more" end
    return out
end

-- One line when it fits from column `start`, else one entry a line indented under the table's
-- own level.
local function layout(items, level, start, o)
    local one = "{" .. table.concat(items, ", ") .. "}"
    if not one:find("\n") and start + (utf8.len(one) or #one) <= o.width then return one end
    local pad = string.rep("  ", level)
    return "{\n" .. pad .. "  " .. table.concat(items, ",\n" .. pad .. "  ") .. "\n" .. pad .. "}"
end

-- v's text at nesting `level` (0 for the value shown) after `head` columns of "key = "; path:
-- the tables being shown around it. A multi-line text of its own (a tensor) keeps its shape:
-- its next lines move right by as much as its first.
function show(v, o, level, path, head)
    if own_text(v) then
        return (tostring(v):gsub("\n", "\n" .. string.rep(" ", 2 * level + (head or 0))))
    end
    if type(v) ~= "table" then return scalar(v, o) end
    if path[v] then return "<cycle>" end
    if next(v) == nil then return "{}" end
    if level >= o.depth then
        local n = count(v)
        return "{…" .. n .. (n == 1 and " entry}" or " entries}")
    end
    path[v] = true
    local items = entries(v, o, level + 1, path)
    path[v] = nil
    return layout(items, level, 2 * level + (head or 0), o)
end

-- The text of x. opts: depth, items, fields, chars, digits, width (see the top of this file).
function M.format(x, opts)
    return show(x, options(opts), 0, {})
end

-- The REPL's line for a chunk's results, tab-separated, or nil when there is nothing to print
-- (the last result is M.printed). Strings stand bare and numbers in full, as print writes them;
-- the rest as M.format shows it.
function M.line(...)
    local n = select("#", ...)
    if n > 0 and select(n, ...) == M.printed then return nil end
    local out, o = {}, options()
    for i = 1, n do
        local v = select(i, ...)
        local t = type(v)
        out[i] = (t == "string" or t == "number") and tostring(v) or show(v, o, 0, {})
    end
    return table.concat(out, "\t")
end

-- apl.show(x, opts) prints x's text and returns nothing, so the REPL adds no line of its own.
return setmetatable(M, {
    __call = function(_, x, opts) io.write(M.format(x, opts), "\n") end,
})
