-- apl.tensor_fmt — __tostring of apl.Tensor, laid out the way PyTorch prints tensors:
--
--   tensor([[1.0000, 2.0000],
--           [3.0000, 4.0000]], dtype=f32, shape=(2, 2))
--
-- Floats use 4 decimals, or scientific notation when the magnitudes span too much (PyTorch's
-- rule); unlike PyTorch, integral floats keep their decimals (1.0000, not 1.) so a float tensor
-- never reads like an integer one. Above 1000 elements each dim longer than 6 shows its first
-- and last 3 entries around "..." (PyTorch's threshold and edgeitems). Lines wrap at 80 columns.
local THRESHOLD, EDGE, LINEWIDTH = 1000, 3, 80

-- Keeps the first and last EDGE entries of every long dim; returns the small tensor and, per dim,
-- whether it was cut.
local function summarize(t)
    local cut, shape = {}, t:shape()
    for d = 1, #shape do
        if shape[d] > 2 * EDGE then
            t = t:index(d, { 1, 2, 3, -3, -2, -1 })
            cut[d] = true
        end
    end
    return t, cut
end

local function flatten(v, out)
    if type(v) ~= "table" then
        out[#out + 1] = v
    else
        for _, x in ipairs(v) do flatten(x, out) end
    end
    return out
end

local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end

-- A function from value to string, and the width every entry is padded to.
local function formatter(values, dtype)
    local fmt
    if dtype == "bool" then
        fmt = function(x) return x and "True" or "False" end
    elseif dtype == "i64" or dtype == "i32" or dtype == "u8" then
        fmt = function(x) return string.format("%d", x) end
    else
        local lo, hi = math.huge, 0
        for _, x in ipairs(values) do
            local a = math.abs(x)
            if finite(x) and a ~= 0 then lo, hi = math.min(lo, a), math.max(hi, a) end
        end
        local sci = hi > 0 and (hi / lo > 1000 or hi > 1e8 or lo < 1e-4)
        local spec = sci and "%.4e" or "%.4f"
        fmt = function(x)
            if x ~= x then return "nan" end
            if not finite(x) then return x > 0 and "inf" or "-inf" end
            return string.format(spec, x)
        end
    end
    local width = 0
    for _, x in ipairs(values) do width = math.max(width, #fmt(x)) end
    return function(x) return string.rep(" ", width - #fmt(x)) .. fmt(x) end, width
end

-- The entries of a dim, with `dots` after the first EDGE when the dim was cut.
local function entries(list, cut, render, dots)
    local out = {}
    for i, x in ipairs(list) do
        if cut and i == EDGE + 1 then out[#out + 1] = dots end
        out[#out + 1] = render(x)
    end
    return out
end

local function vector_str(list, cut, fmt, width, indent)
    local per_line = math.max(1, (LINEWIDTH - indent) // (width + 2))
    local items, lines = entries(list, cut, fmt, " ..."), {}
    for i = 1, #items, per_line do
        lines[#lines + 1] = table.concat(items, ", ", i, math.min(i + per_line - 1, #items))
    end
    return "[" .. table.concat(lines, ",\n" .. string.rep(" ", indent + 1)) .. "]"
end

local function tensor_str(v, dim, ndim, cut, fmt, width, indent)
    if ndim - dim == 0 then return fmt(v) end
    if ndim - dim == 1 then return vector_str(v, cut[dim + 1], fmt, width, indent) end
    local items = entries(v, cut[dim + 1], function(x)
        return tensor_str(x, dim + 1, ndim, cut, fmt, width, indent + 1)
    end, "...")
    local sep = "," .. string.rep("\n", ndim - dim - 1) .. string.rep(" ", indent + 1)
    return "[" .. table.concat(items, sep) .. "]"
end

local function shape_str(shape)
    if #shape == 1 then return "(" .. shape[1] .. ",)" end
    return "(" .. table.concat(shape, ", ") .. ")"
end

return function(t)
    local shape, dtype, device = t:shape(), t:dtype(), t:device()
    local small, cut = t, {}
    if t:numel() > THRESHOLD then small, cut = summarize(t) end
    local data = small:totable()
    local body
    if t:numel() == 0 then
        body = "[]"
    else
        local fmt, width = formatter(flatten(data, {}), dtype)
        body = tensor_str(data, 0, #shape, cut, fmt, width, #"tensor(")
    end
    local suffix = { "dtype=" .. dtype, "shape=" .. shape_str(shape) }
    if device ~= "cpu" then table.insert(suffix, 1, "device='" .. device .. "'") end
    return "tensor(" .. body .. ", " .. table.concat(suffix, ", ") .. ")"
end
