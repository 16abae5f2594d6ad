-- Tests of apl.tensor: known values computed by hand, a NumPy parity check on random inputs
-- (tests/ref/ref_tensor.py), table-driven error cases, and ownership (free, views, RSS).
local T = require "tests.lib.test"
local tensor = require "apl.tensor"

-- ------------------------------------------------------------------------------------------
-- Creation

T.case("tensor: creation from shapes", function()
    T.eq(tensor.zeros(2, 3):totable(), { { 0, 0, 0 }, { 0, 0, 0 } })
    T.eq(tensor.ones({ 2 }):totable(), { 1, 1 })
    T.eq(tensor.full({ 2, 2 }, 7.5):totable(), { { 7.5, 7.5 }, { 7.5, 7.5 } })
    T.eq(tensor.zeros(2, 3):dtype(), "f32")
    T.eq(tensor.ones(3, { dtype = "i64" }):totable(), { 1, 1, 1 })
    T.eq(tensor.zeros({}):dim(), 0)
    T.eq(tensor.arange(4):totable(), { 0, 1, 2, 3 })
    T.eq(tensor.arange(4):dtype(), "i64")
    T.eq(tensor.arange(1, 2, 0.25):totable(), { 1, 1.25, 1.5, 1.75 })
    T.eq(tensor.arange(1, 2, 0.25):dtype(), "f32")
    T.eq(tensor.arange(5, 0, -2):totable(), { 5, 3, 1 })
    T.eq(tensor.arange(3, { dtype = "f64" }):dtype(), "f64")
end)

T.case("tensor: creation from nested tables", function()
    local t = tensor.new({ { 1, 2 }, { 3, 4 } })
    T.eq(t:dtype(), "i64")
    T.eq(t:shape(), { 2, 2 })
    T.eq(t:totable(), { { 1, 2 }, { 3, 4 } })
    T.eq(tensor({ 1, 2.5 }):dtype(), "f32")
    T.eq(tensor({ true, false }):totable(), { true, false })
    T.eq(tensor({ { 1, 2 } }, { dtype = "bf16" }):dtype(), "bf16")
    T.eq(tensor{ 1, 2, 3 }:totable(), { 1, 2, 3 })
    T.eq(tensor(3.5):dim(), 0)
    T.eq(tensor(3.5):item(), 3.5)
    T.eq(tensor({}):shape(), { 0 })
    T.eq(tensor({ {}, {} }):shape(), { 2, 0 })
    local big = tensor({ (1 << 53) + 1 })
    T.eq(math.type(big[1]:item()), "integer")
    T.eq(big[1]:item(), (1 << 53) + 1, "i64 beyond 2^53 stays exact")
    local c = tensor.new(t, { dtype = "f64" })
    T.eq(c:dtype(), "f64")
    local copy = tensor.new(t)
    copy[1] = 9
    T.eq(t[1][1]:item(), 1, "new(tensor) copies")
end)

T.case("tensor: dtypes round-trip", function()
    for _, dt in ipairs({ "f32", "f16", "bf16", "f64", "i64", "i32", "u8", "bool" }) do
        local t = tensor.ones({ 2 }, { dtype = dt })
        T.eq(t:dtype(), dt)
        local want = dt == "bool" and { true, true } or { 1, 1 }
        T.eq(t:totable(), want, dt)
    end
    T.eq(tensor({ 1.5 }):to("bf16"):to("f32"):item(), 1.5)
    T.eq(tensor({ 1.7 }):long():dtype(), "i64")
    T.eq(tensor({ 1.7 }):long():item(), 1)
    T.eq(tensor({ 1 }):float():dtype(), "f32")
    T.eq(tensor({ 1 }):to({ dtype = "f16" }):dtype(), "f16")
    T.eq(tensor({ 1 }):to("float64"):dtype(), "f64")
    T.eq(math.type(tensor({ 7 }):totable()[1]), "integer")
    T.eq(math.type(tensor({ 7 }, { dtype = "i32" })[1]:item()), "integer")
    T.eq(tensor({ 0, 2 }):bool():totable(), { false, true })
end)

T.case("tensor: random with the global seed", function()
    tensor.manual_seed(42)
    local a = tensor.randn(3, 4):totable()
    tensor.manual_seed(42)
    local b = tensor.randn({ 3, 4 }):totable()
    T.eq(a, b)
    tensor.manual_seed(7)
    local r = tensor.rand(20000)
    T.ok(r:min():item() >= 0 and r:max():item() < 1, "rand in [0, 1)")
    T.eq(r:mean():item(), 0.5, 0.02)
    local n = tensor.randn(20000)
    T.eq(n:mean():item(), 0, 0.03)
    T.eq((n * n):mean():item(), 1, 0.05)
end)

T.case("tensor: devices", function()
    T.eq(tensor.zeros(2):device(), "cpu")
    if not tensor.cuda_available() then
        T.assert_error_match(function() tensor.zeros(2, { device = "cuda" }) end,
            "apl%.tensor%.zeros: CUDA is not available in this libtorch build$")
        T.assert_error_match(function() tensor.zeros(2):to("cuda") end,
            "apl%.tensor%.to: CUDA is not available")
        T.skip("no CUDA: checked the error only")
    end
    local g = tensor({ { 1, 2 }, { 3, 4 } }, { dtype = "f32", device = "cuda" })
    T.eq(g:device(), "cuda:0")
    T.eq(g:matmul(g):cpu():totable(), { { 7, 10 }, { 15, 22 } })
    T.eq(g:to({ dtype = "bf16", device = "cpu" }):dtype(), "bf16")
end)

-- ------------------------------------------------------------------------------------------
-- Shapes and indexing (1-based)

T.case("tensor: shape, size, dim, numel, #", function()
    local t = tensor.zeros(2, 3, 4)
    T.eq(t:shape(), { 2, 3, 4 })
    T.eq(t:size(), { 2, 3, 4 })
    T.eq(t:size(1), 2)
    T.eq(t:size(-1), 4)
    T.eq(t:dim(), 3)
    T.eq(t:numel(), 24)
    T.eq(#t, 2)
end)

T.case("tensor: indexing, narrow, select, index", function()
    local t = tensor({ { 1, 2, 3 }, { 4, 5, 6 }, { 7, 8, 9 } })
    T.eq(t[1]:totable(), { 1, 2, 3 })
    T.eq(t[-1]:totable(), { 7, 8, 9 })
    T.eq(t[2][3]:item(), 6)
    T.eq(t:select(2, 1):totable(), { 1, 4, 7 })
    T.eq(t:select(-1, -1):totable(), { 3, 6, 9 })
    T.eq(t:narrow(1, 2, 2):totable(), { { 4, 5, 6 }, { 7, 8, 9 } })
    T.eq(t:narrow(2, -2, 2):totable(), { { 2, 3 }, { 5, 6 }, { 8, 9 } })
    T.eq(t:index(1, { 3, 1 }):totable(), { { 7, 8, 9 }, { 1, 2, 3 } })
    T.eq(t:index(2, { -1 }):totable(), { { 3 }, { 6 }, { 9 } })
    T.eq(t:index(2, tensor({ 2, 2 })):totable(), { { 2, 2 }, { 5, 5 }, { 8, 8 } })
    T.eq(t:index(1, t:select(2, 1):argmax(1):unsqueeze(1)):totable(), { { 7, 8, 9 } })
    T.eq(t.nonexistent, nil)
end)

T.case("tensor: assignment through t[i] writes into the base", function()
    local t = tensor.zeros(3, 2)
    t[1] = 5
    t[-1] = tensor({ 1, 2 })
    t[2][2] = 7
    T.eq(t:totable(), { { 5, 5 }, { 0, 7 }, { 1, 2 } })
    local v = t:narrow(1, 1, 1)
    v[1] = tensor({ 9 })
    T.eq(t[1]:totable(), { 9, 9 })
    T.eq(t:fill_(1):sum():item(), 6)
    T.eq(tensor.zeros(2):copy_(tensor({ 3, 4 })):totable(), { 3, 4 })
end)

T.case("tensor: reshape, view, transpose, permute, cat, stack", function()
    local t = tensor.arange(6)
    T.eq(t:reshape(2, 3):totable(), { { 0, 1, 2 }, { 3, 4, 5 } })
    T.eq(t:view({ 3, -1 }):totable(), { { 0, 1 }, { 2, 3 }, { 4, 5 } })
    local m = t:reshape(2, 3)
    T.eq(m:transpose(1, 2):totable(), { { 0, 3 }, { 1, 4 }, { 2, 5 } })
    T.eq(m:transpose():shape(), { 3, 2 })
    local c = tensor.arange(24):reshape(2, 3, 4)
    T.eq(c:permute(3, 1, 2):shape(), { 4, 2, 3 })
    T.eq(c:permute({ 3, 1, 2 })[2][2][3]:item(), c[2][3][2]:item())
    local a, b = tensor({ { 1, 2 } }), tensor({ { 3, 4 } })
    T.eq(tensor.cat({ a, b }):totable(), { { 1, 2 }, { 3, 4 } })
    T.eq(tensor.cat({ a, b }, 2):totable(), { { 1, 2, 3, 4 } })
    T.eq(tensor.cat({ a, b }, -1):shape(), { 1, 4 })
    T.eq(tensor.stack({ a, b }):shape(), { 2, 1, 2 })
    T.eq(tensor.stack({ a, b }, 3):totable(), { { { 1, 3 }, { 2, 4 } } })
    T.eq(m:unsqueeze(1):shape(), { 1, 2, 3 })
    T.eq(m:unsqueeze(-1):shape(), { 2, 3, 1 })
    T.eq(m:unsqueeze(1):squeeze(1):shape(), { 2, 3 })
    T.eq(tensor({ 1, 2 }):expand(2, 2):totable(), { { 1, 2 }, { 1, 2 } })
end)

-- ------------------------------------------------------------------------------------------
-- Arithmetic and elementwise ops, hand-computed

T.case("tensor: arithmetic metamethods with numbers on either side", function()
    local a, b = tensor({ 1.0, 2.0, 4.0 }), tensor({ 2.0, 2.0, 2.0 })
    T.eq((a + b):totable(), { 3, 4, 6 })
    T.eq((a - b):totable(), { -1, 0, 2 })
    T.eq((a * b):totable(), { 2, 4, 8 })
    T.eq((a / b):totable(), { 0.5, 1, 2 })
    T.eq((a ^ 2):totable(), { 1, 4, 16 })
    T.eq((-a):totable(), { -1, -2, -4 })
    T.eq((a + 1):totable(), { 2, 3, 5 })
    T.eq((1 - a):totable(), { 0, -1, -3 })
    T.eq((2 * a):totable(), { 2, 4, 8 })
    T.eq((a / 2):totable(), { 0.5, 1, 2 })
    T.eq((8 / a):totable(), { 8, 4, 2 })
    T.eq((2 ^ a):totable(), { 2, 4, 16 })
    T.eq((tensor({ { 1 }, { 2 } }) + tensor({ 10, 20 })):totable(), { { 11, 21 }, { 12, 22 } })
    local i = tensor({ 1, 2, 3 })
    T.eq((i + 1):dtype(), "i64")
    T.eq((i / 2):totable(), { 0.5, 1, 1.5 })
    T.eq((i * 0.5):dtype(), "f32")
    T.eq(a:maximum(tensor({ 3, 0, 5 })):totable(), { 3, 2, 5 })
    T.eq(a:add(b):totable(), { 3, 4, 6 })
end)

T.case("tensor: comparisons are methods; == stays identity", function()
    local a = tensor({ 1, 2, 3 })
    T.eq(a:eq(2):totable(), { false, true, false })
    T.eq(a:ne(2):totable(), { true, false, true })
    T.eq(a:lt(2):totable(), { true, false, false })
    T.eq(a:le(2):totable(), { true, true, false })
    T.eq(a:gt(tensor({ 0, 5, 1 })):totable(), { true, false, true })
    T.eq(a:ge(2):dtype(), "bool")
    T.ok(a == a)
    T.ok(a ~= tensor({ 1, 2, 3 }), "equal values, different objects")
    T.eq(a:gt(1):logical_and(a:lt(3)):totable(), { false, true, false })
end)

T.case("tensor: unary functions", function()
    local x = tensor({ -1.0, 0.0, 4.0 }, { dtype = "f64" })
    local e = math.exp
    T.eq(x:exp():totable(), { e(-1), 1, e(4) }, 1e-12)
    T.eq(x:abs():totable(), { 1, 0, 4 })
    T.eq(x:relu():totable(), { 0, 0, 4 })
    T.eq(x:tanh():totable(), { -0.7615941559557649, 0, 0.999329299739067 }, 1e-12)
    T.eq(x:sigmoid():totable(), { 1 / (1 + e(1)), 0.5, 1 / (1 + e(-4)) }, 1e-12)
    T.eq(x:logsigmoid():totable(), { -math.log(1 + e(1)), -math.log(2), -math.log(1 + e(-4)) }, 1e-12)
    T.eq(x:abs():sqrt():totable(), { 1, 0, 2 })
    T.eq(x:pow(2):totable(), { 1, 0, 16 })
    T.eq(x:pow(tensor({ 3.0, 1.0, 0.5 })):totable(), { -1, 0, 2 })
    T.eq(tensor({ 1.0, e(2) }):log():totable(), { 0, 2 }, 1e-6)
    T.eq(x:clamp(-0.5, 1):totable(), { -0.5, 0, 1 })
    T.eq(tensor.where(x:gt(0), x, -x):totable(), { 1, 0, 4 })
end)

T.case("tensor: matmul, reductions, topk, sort by hand", function()
    local a = tensor({ { 1.0, 2.0, 3.0 }, { 4.0, 5.0, 6.0 } })
    local b = tensor({ { 1.0, 0.0 }, { 0.0, 1.0 }, { 1.0, 1.0 } })
    T.eq(a:matmul(b):totable(), { { 4, 5 }, { 10, 11 } })
    T.eq(a:sum():item(), 21)
    T.eq(a:sum(1):totable(), { 5, 7, 9 })
    T.eq(a:sum(2, true):shape(), { 2, 1 })
    T.eq(a:mean(-1):totable(), { 2, 5 })
    T.eq(a:max():item(), 6)
    T.eq(a:min():item(), 1)
    local v, i = a:max(2)
    T.eq(v:totable(), { 3, 6 })
    T.eq(i:totable(), { 3, 3 })
    v, i = a:min(1, true)
    T.eq(v:totable(), { { 1, 2, 3 } })
    T.eq(i:totable(), { { 1, 1, 1 } })
    T.eq(a:argmax():item(), 6)
    T.eq(a:argmax(1):totable(), { 2, 2, 2 })
    T.eq(a:argmin(2):totable(), { 1, 1 })
    local s = tensor({ 3.0, 1.0, 2.0 })
    v, i = s:topk(2)
    T.eq(v:totable(), { 3, 2 })
    T.eq(i:totable(), { 1, 3 })
    v, i = s:topk(1, 1, false)
    T.eq(i:totable(), { 2 })
    v, i = s:sort()
    T.eq(v:totable(), { 1, 2, 3 })
    T.eq(i:totable(), { 2, 3, 1 })
    v, i = s:sort(1, true)
    T.eq(i:totable(), { 1, 3, 2 })
    T.eq(tensor({ 0.0, math.log(3) }):softmax():totable(), { 0.25, 0.75 }, 1e-6)
    T.eq(tensor({ 0.0, math.log(3) }):log_softmax(1):totable(), { math.log(0.25), math.log(0.75) }, 1e-6)
    T.eq(tensor({ 1, 2, 3 }):cumsum():totable(), { 1, 3, 6 })
end)

-- ------------------------------------------------------------------------------------------
-- NumPy parity on random inputs

local function json(v)
    if type(v) == "table" then
        local parts = {}
        for i, x in ipairs(v) do parts[i] = json(x) end
        return "[" .. table.concat(parts, ",") .. "]"
    end
    return math.type(v) == "integer" and tostring(v) or string.format("%.17g", v)
end

T.case("tensor: NumPy parity (softmax, matmul, reductions, topk, sort)", function()
    tensor.manual_seed(1234)
    local x, a, b, k = tensor.randn(5, 7), tensor.randn(4, 6), tensor.randn(6, 3), 3
    local dir = T.tmpdir()
    local f = assert(io.open(dir .. "/in.json", "w"))
    f:write(string.format('{"x": %s, "a": %s, "b": %s, "k": %d}', json(x:totable()),
        json(a:totable()), json(b:totable()), k))
    f:close()
    local ref = assert(load(T.python(T.root() .. "/tests/ref/ref_tensor.py", dir .. "/in.json")))()
    local tv, ti = x:topk(k, 2)
    local sv, si = x:sort(2)
    local mx, amx = x:max(2)
    local mn, amn = x:min(1)
    local got = {
        softmax1 = x:softmax(1), softmax2 = x:softmax(2), log_softmax1 = x:log_softmax(1),
        log_softmax2 = x:log_softmax(-1), matmul = a:matmul(b), sum = x:sum(), sum1 = x:sum(1),
        sum2 = x:sum(2), mean = x:mean(), mean2 = x:mean(2), max = x:max(), max2 = mx,
        argmax2 = amx, min1 = mn, argmin1 = amn, argmax = x:argmax(), topk_values = tv,
        topk_indices = ti, sort_values = sv, sort_indices = si,
    }
    local tol = 1e-5
    local names = {}
    for name in pairs(ref) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
        local want = ref[name]
        local d = T.max_abs_diff(got[name]:totable(), want)
        io.write(string.format("        %-14s %s  max abs diff %.3g\n", name, d <= tol and "OK" or "NOT OK", d))
        T.ok(d <= tol, name .. " differs from NumPy by " .. d)
    end
end)

-- ------------------------------------------------------------------------------------------
-- Printing

T.case("tensor: tostring like PyTorch", function()
    T.eq(tostring(tensor({ { 1.0, 2.0 }, { 3.0, 4.0 } })),
        "tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]], dtype=f32, shape=(2, 2))")
    T.eq(tostring(tensor({ -1.5, 10 })), "tensor([-1.5000, 10.0000], dtype=f32, shape=(2,))")
    T.eq(tostring(tensor({ 1, -20 })), "tensor([  1, -20], dtype=i64, shape=(2,))")
    T.eq(tostring(tensor({ true, false })), "tensor([ True, False], dtype=bool, shape=(2,))")
    T.eq(tostring(tensor(2.5)), "tensor(2.5000, dtype=f32, shape=())")
    T.eq(tostring(tensor({ 1e-5, 1.0 })), "tensor([1.0000e-05, 1.0000e+00], dtype=f32, shape=(2,))")
    T.eq(tostring(tensor.zeros(0)), "tensor([], dtype=f32, shape=(0,))")
    T.eq(tostring(tensor({ 0 / 0, 1 / 0, 1.0 }, { dtype = "f64" })),
        "tensor([   nan,    inf, 1.0000], dtype=f64, shape=(3,))")
    T.eq(tostring(tensor.arange(2000)),
        "tensor([   0,    1,    2,  ..., 1997, 1998, 1999], dtype=i64, shape=(2000,))")
    local s = tostring(tensor.arange(2000):reshape(40, 50))
    T.ok(s:find("%[%[   0,    1,    2,  ...,   47,   48,   49%],\n        %[  50,", 1, false), s)
    T.ok(s:find("\n        %.%.%.,\n        %[1850,"), s)
    T.ok(tostring(tensor.arange(2, 3, 0.5, { dtype = "f64" })):find("dtype=f64"))
    local t = tensor.zeros(1)
    t:free()
    T.eq(tostring(t), "apl.Tensor (freed)")
end)

-- ------------------------------------------------------------------------------------------
-- Errors: each row is {name, fn, pattern}; none may crash, pcall catches them all

local a23, a45 = tensor.zeros(2, 3), tensor.zeros(4, 5)
local error_cases = {
    { "matmul shapes", function() return a23:matmul(a45) end,
      "apl%.tensor%.matmul: shapes %(2, 3%) and %(4, 5%): .*mat1 and mat2" },
    { "add shapes", function() return a23 + a45 end, "apl%.tensor%.add: shapes %(2, 3%) and %(4, 5%)" },
    { "eq shapes", function() return a23:eq(a45) end, "apl%.tensor%.eq: shapes %(2, 3%) and %(4, 5%)" },
    { "mul with a string", function() return a23 * "x" end, "apl%.tensor%.mul: expected tensors or numbers" },
    { "dim out of range", function() return a23:sum(3) end, "apl%.tensor%.sum: dim 3 out of range %(1%.%.2 or %-2%.%.%-1%)" },
    { "dim zero", function() return a23:softmax(0) end, "apl%.tensor%.softmax: dim 0 out of range" },
    { "index out of range", function() return a23[3] end, "apl%.tensor%.__index: index 3 out of range for dim 1 of size 2" },
    { "index zero", function() return a23[0] end, "index 0 out of range" },
    { "fractional index", function() return a23[1.5] end, "index 1%.5 is not an integer" },
    { "narrow past the end", function() return a23:narrow(2, 2, 3) end, "apl%.tensor%.narrow: start 2 length 3 out of range" },
    { "select 0-dim", function() return tensor(1):select(1, 1) end, "apl%.tensor%.select: dim 1 out of range" },
    { "index table entry", function() return a23:index(1, { 1, "a" }) end, "apl%.tensor%.index: index table entries must be integers" },
    { "index tensor out of range", function() return a23:index(1, tensor({ 5 })) end, "apl%.tensor%.index: " },
    { "reshape", function() return a23:reshape(4, 2) end, "apl%.tensor%.reshape: shape %(2, 3%): .*invalid for input of size 6" },
    { "cat shapes", function() return tensor.cat({ a23, a45 }) end, "apl%.tensor%.cat: shapes %(2, 3%), %(4, 5%): " },
    { "cat non tensor", function() return tensor.cat({ a23, 1 }) end, "apl%.tensor%.cat: element 2 is a number" },
    { "cat empty", function() return tensor.cat({}) end, "apl%.tensor%.cat: needs at least one tensor" },
    { "ragged table", function() return tensor({ { 1, 2 }, { 3 } }) end, "apl%.tensor%.new: ragged nested table" },
    { "mixed bools", function() return tensor({ 1, true }) end, "apl%.tensor%.new: mixes booleans and numbers" },
    { "string element", function() return tensor({ 1, "2" }) end, "apl%.tensor%.new: element 2 is a string" },
    { "unknown dtype", function() return tensor.zeros(2, { dtype = "f8" }) end, "apl%.tensor%.zeros: unknown dtype 'f8'" },
    { "unknown device", function() return tensor.zeros(2, { device = "tpu" }) end, "apl%.tensor%.zeros: unknown device 'tpu'" },
    { "to nonsense", function() return a23:to("blue") end, "apl%.tensor%.to: 'blue' is neither a dtype nor a device" },
    { "negative size", function() return tensor.zeros(-2) end, "apl%.tensor%.zeros: negative size %-2" },
    { "item of many", function() return a23:item() end, "apl%.tensor%.item: a tensor of shape %(2, 3%) has 6 elements" },
    { "len of 0-dim", function() return #tensor(1) end, "a 0%-dim tensor has no length" },
    { "set a field", function() a23.foo = 1 end, "apl%.tensor%.__newindex: cannot set field foo" },
    { "assign shapes", function() a23[1] = tensor({ 1, 2 }) end, "apl%.tensor%.__newindex: shapes %(3,%) and %(2,%)" },
    { "topk too many", function() return a23:topk(4) end, "apl%.tensor%.topk: k = 4 out of range" },
    { "permute count", function() return a23:permute(1) end, "apl%.tensor%.permute: got 1 dims for a tensor with 2" },
    { "use after free", function() local t = tensor.zeros(1); t:free(); return t + 1 end, "tensor was freed" },
    { "threads", function() tensor.set_num_threads(0) end, "apl%.set_num_threads: thread count must be in 1%.%.4096, got 0" },
}

T.case("tensor: errors are Lua errors naming the op (table-driven)", function()
    for _, c in ipairs(error_cases) do
        T.assert_error_match(c[2], c[3], c[1])
    end
    T.eq(a23:sum():item(), 0, "the process goes on")
end)

-- ------------------------------------------------------------------------------------------
-- Library state, ownership, memory

T.case("tensor: no_grad restores the mode, returns results, propagates errors", function()
    T.ok(tensor.is_grad_enabled())
    local x, y = tensor.no_grad(function(a, b)
        T.ok(not tensor.is_grad_enabled())
        return a + b, "second"
    end, 1, 2)
    T.eq({ x, y }, { 3, "second" })
    T.ok(tensor.is_grad_enabled())
    T.assert_error_match(function() tensor.no_grad(function() error("boom") end) end, "boom")
    T.ok(tensor.is_grad_enabled(), "restored after an error")
end)

T.case("tensor: threads", function()
    local n = tensor.get_num_threads()
    tensor.set_num_threads(1)
    T.eq(tensor.get_num_threads(), 1)
    tensor.set_num_threads(n)
    T.eq(tensor.get_num_threads(), n)
end)

-- issue 18: the seed and the thread count have one home (apl.core.sys), one set of bounds.
T.case("tensor: seed and threads are apl.core.sys's, with its bounds", function()
    local sys = require "apl.core.sys"
    for _, k in ipairs({ "manual_seed", "set_num_threads", "get_num_threads" }) do
        T.ok(rawequal(tensor[k], sys[k]), k)
    end
    local n = tensor.get_num_threads()
    for _, bad in ipairs({ 0, -1, 4097 }) do
        T.assert_error_match(function() tensor.set_num_threads(bad) end,
            "apl%.set_num_threads: thread count must be in 1%.%.4096, got " .. (tostring(bad):gsub("%-", "%%-")) .. "$")
        T.assert_error_match(function() sys.set_num_threads(bad) end, "thread count must be in 1%.%.4096")
    end
    T.eq(tensor.get_num_threads(), n, "a refused count changes nothing")
    sys.manual_seed(9)
    local a = tensor.randn(4):totable()
    tensor.manual_seed(9)
    T.eq(tensor.randn(4):totable(), a, "one generator, whichever name seeds it")
end)

-- issue 18: dtype and device names are parsed by one helper (lcommon.c) for every binding.
T.case("tensor: dtype and device errors name the function and the value (table-driven)", function()
    local rows = {
        { "zeros dtype", function() return tensor.zeros(2, { dtype = "f8" }) end,
          "apl%.tensor%.zeros: unknown dtype 'f8' %(f32, f16, bf16, f64, i64, i32, u8, bool%)$" },
        { "new dtype", function() return tensor({ 1 }, { dtype = "quad" }) end, "apl%.tensor%.new: unknown dtype 'quad'" },
        { "arange device", function() return tensor.arange(3, { device = "gpu" }) end,
          "apl%.tensor%.arange: unknown device 'gpu' %(cpu, cuda, cuda:N%)$" },
        { "device cuda:x", function() return tensor.zeros(2, { device = "cuda:x" }) end, "unknown device 'cuda:x'" },
        { "dtype not a string", function() return tensor.zeros(2, { dtype = 32 }) end,
          "apl%.tensor%.zeros: option 'dtype' must be a string, got number$" },
        { "options not a table", function() return tensor.ones(2, "f32") end,
          "apl%.tensor%.ones: options must be a table, got string$" },
        { "to an int name", function() return tensor.zeros(2):to("int8") end, "apl%.tensor%.to: 'int8' is neither" },
    }
    if not tensor.cuda_available() then
        for _, c in ipairs({
            { "zeros cuda", function() return tensor.zeros(2, { device = "cuda" }) end, "zeros" },
            { "new cuda:1", function() return tensor({ 1 }, { device = "cuda:1" }) end, "new" },
            { "to cuda", function() return tensor.zeros(2):to("cuda") end, "to" },
            { "to{device}", function() return tensor.zeros(2):to({ device = "cuda" }) end, "to" },
        }) do
            rows[#rows + 1] = { c[1], c[2], "apl%.tensor%." .. c[3] .. ": CUDA is not available in this libtorch build$" }
        end
    end
    for _, c in ipairs(rows) do T.assert_error_match(c[2], c[3], c[1]) end
    T.eq(tensor.zeros(2, { dtype = "float64" }):dtype(), "f64", "torch's names are dtypes too")
    T.eq(tensor.zeros(2):to("half"):dtype(), "f16")
end)

T.case("tensor: free, __close and __gc are one safe function", function()
    local t = tensor.zeros(3)
    t:free()
    t:free()
    T.assert_error_match(function() return t:sum() end, "tensor was freed")
    do
        local c <close> = tensor.ones(2)
        T.eq(c:sum():item(), 2)
    end
    T.ok(tensor.is_tensor(t) and not tensor.is_tensor({}) and not tensor.is_tensor(1))
end)

T.case("tensor: a view outlives its base", function()
    local base = tensor.arange(10):reshape(2, 5)
    local row = base[2]
    local narrow = base:narrow(2, 2, 2)
    base:free()
    base = nil
    collectgarbage()
    collectgarbage()
    T.eq(row:totable(), { 5, 6, 7, 8, 9 })
    T.eq(narrow:totable(), { { 1, 2 }, { 6, 7 } })
end)

-- Under `make asan-test` (libasan in this process) RSS holds ASan's shadow memory and its
-- quarantine of freed blocks (256 MB), whatever apl frees: there the churn runs, unmeasured.
local maps = io.open("/proc/self/maps")
local ASAN = maps and maps:read("a"):find("/libasan", 1, true) ~= nil
if maps then maps:close() end
local ASAN_RSS = "RSS is not apl's under AddressSanitizer (shadow memory, quarantine of freed blocks)"

local function rss_kb()
    for line in io.lines("/proc/self/status") do
        local kb = line:match("^VmRSS:%s+(%d+)")
        if kb then return tonumber(kb) end
    end
end

T.case("tensor: 100k tensors created and dropped keep RSS flat", function()
    local function churn(n)
        for i = 1, n do
            local t = tensor.zeros(64) + i
            if i % 3 == 0 then t:free() end
        end
        collectgarbage()
        collectgarbage()
    end
    churn(20000) -- warm up allocators
    local before = rss_kb()
    churn(100000)
    if ASAN then T.skip(ASAN_RSS) end
    local growth = (rss_kb() - before) / 1024
    io.write(string.format("        RSS growth %.1f MB\n", growth))
    T.ok(growth < 20, string.format("RSS grew by %.1f MB", growth))
end)

T.case("tensor: dropped big tensors are collected at the pace of their size", function()
    local before = rss_kb()
    for _ = 1, 300 do local t = tensor.zeros(1000, 1000) end -- 4 MB each, 1.2 GB in all
    if ASAN then T.skip(ASAN_RSS) end
    local growth = (rss_kb() - before) / 1024
    io.write(string.format("        RSS growth %.1f MB\n", growth))
    T.ok(growth < 200, string.format("RSS grew by %.1f MB", growth))
end)
