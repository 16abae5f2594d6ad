-- apl.show, the formatter behind the REPL's printed values: key order, depth, elision, cycles,
-- numbers and strings, values with their own __tostring, the layout, and the REPL's line.
local T = require "tests.lib.test"
local show = require "apl.show"
local tensor = require "apl.tensor"

local fmt = show.format

T.case("show: the list part first, then keys sorted: numbers, strings, the rest; odd keys bracketed", function()
    T.eq(fmt({ "x", "y", z = 1, b = 2, [10] = 3, [-1] = 4, [true] = 5 }),
        '{"x", "y", [-1] = 4, [10] = 3, b = 2, z = 1, [true] = 5}')
    -- What a DPO step returns: keys that are not identifiers, and a keyword, read back as Lua.
    T.eq(fmt({ ["logps/chosen"] = -1, loss = 2, ["end"] = 0, [1.5] = 1 }),
        '{[1.5] = 1, ["end"] = 0, ["logps/chosen"] = -1, loss = 2}')
    -- A hole ends the list part: what follows is keyed.
    T.eq(fmt({ 1, 2, nil, 4 }), "{1, 2, [4] = 4}")
    T.eq(fmt({}), "{}")
end)

T.case("show: `depth` levels of tables shown whole, deeper ones as a count", function()
    local t = { a = { b = { c = { d = 1 } } }, e = { 1, 2 } }
    T.eq(fmt(t), "{a = {b = {c = {…1 entry}}}, e = {1, 2}}")
    T.eq(fmt(t, { depth = 1 }), "{a = {…1 entry}, e = {…2 entries}}")
    T.eq(fmt(t, { depth = 9 }), "{a = {b = {c = {d = 1}}}, e = {1, 2}}")
    T.eq(fmt({ a = {} }, { depth = 1 }), "{a = {}}", "an empty table is shown whole at any depth")
end)

T.case("show: long lists, many keys and long strings are cut with a count of the rest", function()
    local list = {}
    for i = 1, 25 do list[i] = i end
    T.eq(fmt(list), "{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, … 15 more}")
    T.eq(fmt(list, { items = 3 }), "{1, 2, 3, … 22 more}")
    local keys = {}
    for i = 1, 5 do keys["k" .. i] = i end
    T.eq(fmt(keys, { fields = 2 }), "{k1 = 1, k2 = 2, … 3 more}")
    T.eq(fmt(string.rep("ab", 10), { chars = 5 }), '"ababa"… 15 more bytes')
    -- A cut never splits a UTF-8 character: "é" is two bytes, both kept or both dropped.
    T.eq(fmt("aé", { chars = 2 }), '"a"… 2 more bytes')
    T.eq(fmt("line\nnext\t\"q\""), '"line\\nnext\\9\\"q\\""', "escaped, one line")
end)

T.case("show: a table met again inside itself is <cycle>; one shared twice is shown twice", function()
    local t = { name = "t" }
    t.self = t
    t.child = { parent = t }
    T.eq(fmt(t), '{child = {parent = <cycle>}, name = "t", self = <cycle>}')
    local shared = { 1 }
    T.eq(fmt({ a = shared, b = shared }), "{a = {1}, b = {1}}")
end)

T.case("show: numbers: integers whole, floats with 6 digits and a point, inf and nan", function()
    T.eq(fmt({ 7, 3.0, 1 / 3, 1e20, -2.5e-7, math.huge, -math.huge }),
        "{7, 3.0, 0.333333, 1e+20, -2.5e-07, inf, -inf}")
    T.ok(fmt(0 / 0):find("^%-?nan$"), fmt(0 / 0))
    T.eq(fmt(1 / 3, { digits = 3 }), "0.333")
    T.eq(fmt(math.mininteger), tostring(math.mininteger))
end)

T.case("show: tensors, models and anything with a __tostring show their own text", function()
    local x = tensor.ones({ 2, 2 })
    T.eq(fmt(x), tostring(x))
    -- Nested, a multi-line text keeps its shape: each next line moves right as far as the first.
    local lines = {}
    for l in tostring(x):gmatch("[^\n]+") do lines[#lines + 1] = l end
    T.eq(#lines, 2)
    T.eq(fmt({ x = x }), "{\n  x = " .. lines[1] .. "\n" .. string.rep(" ", 6) .. lines[2] .. "\n}")
    local m = apl.model.init(apl.model.tiny_config("gpt2"), { seed = 1 })
    T.eq(fmt({ policy = m }), "{policy = " .. tostring(m) .. "}")
    T.ok(tostring(m):find("^apl%.Model%("), tostring(m))
    local obj = setmetatable({ secret = 1 }, { __tostring = function() return "Obj<1>" end })
    T.eq(fmt({ obj }), "{Obj<1>}")
    T.ok(fmt(print) == "<C function>" and fmt(fmt):find("^<function .*show%.lua:%d+>$"), fmt(fmt))
end)

T.case("show: one line when it fits in `width`, else one entry a line, nested ones indented", function()
    local t = { alpha = string.rep("a", 30), beta = { 1, 2 }, gamma = { deep = string.rep("g", 60) } }
    T.eq(fmt({ a = 1, b = 2 }, { width = 14 }), "{a = 1, b = 2}")
    T.eq(fmt({ a = 1, b = 2 }, { width = 13 }), "{\n  a = 1,\n  b = 2\n}")
    T.eq(fmt(t), '{\n  alpha = "' .. string.rep("a", 30) .. '",\n  beta = {1, 2},\n'
        .. '  gamma = {\n    deep = "' .. string.rep("g", 60) .. '"\n  }\n}')
end)

T.case("show: tables are read raw: no __index, __pairs or __len runs", function()
    local boom = function() error("ran a metamethod") end
    local t = setmetatable({ a = 1 }, { __index = boom, __pairs = boom, __len = boom })
    T.eq(fmt({ t }), "{{a = 1}}")
end)

T.case("show: the REPL's line: strings bare, numbers in full, the rest shown; nothing after a helper printed", function()
    T.eq(show.line("s", 1 / 3, nil, { b = 1, a = "x" }), 's\t' .. tostring(1 / 3) .. '\tnil\t{a = "x", b = 1}')
    T.eq(show.line(), "")
    T.eq(show.line({ 1 }, show.printed), nil)
    T.eq(show.line(show.printed, 2), "apl.show.printed\t2", "only as the last value does it silence")
end)

T.case("apl.show(x) prints x's text and returns nothing; an unknown option is an error", function()
    local path = T.tmpdir() .. "/out"
    io.output(path)
    local ok, n = pcall(function(...) return select("#", apl.show(...)) end, { z = 1, a = { 2 } }, { depth = 1 })
    io.output():close()
    io.output(io.stdout)
    T.ok(ok, n)
    T.eq(n, 0)
    T.eq(io.open(path):read("a"), "{a = {…1 entry}, z = 1}\n")
    T.assert_error_match(function() fmt({}, { dept = 2 }) end, "apl.show: unknown option 'dept'")
end)
