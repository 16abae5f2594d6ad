-- apl.lengths — completion lengths given as N or as a range {lo, hi}, and the seeded draw.
--
--   local lengths = require "apl.lengths"
--   local lo, hi = lengths.range({16, 24})          -- 16, 24; range(20) -> 20, 20
--   local lo, hi, err = lengths.range({24, 16})     -- nil, nil, "... 1 <= lo <= hi"
--   local k = lengths.draw(seed, i, s, lo, hi)      -- row (prompt i, sample s): uniform in lo..hi
--   local m = lengths.parse("16-24")                -- {16, 24}; parse("128") -> 128
--
-- The method's authors draw each completion's length uniformly from a range (their
-- direct/utils.py LengthSampler; 16–24 tokens for IMDB). apl.generate, the loop and the recipes'
-- --max-new-tokens all read the knob through here, so it is checked one way everywhere.
local rng = require "apl.rng"

local M = {}

M.HELP = "an integer >= 1 or a range {lo, hi} (A-B on the command line) with 1 <= lo <= hi"

-- lo, hi from N or {lo, hi} (integral floats, as JSON gives them back, count as integers);
-- nil, nil, why when the value is neither.
function M.range(m)
    local lo, hi = m, m
    if type(m) == "table" then
        if #m ~= 2 then return nil, nil, "max_new_tokens must be " .. M.HELP end
        lo, hi = m[1], m[2]
    end
    lo, hi = math.tointeger(lo), math.tointeger(hi)
    if not (lo and hi and lo >= 1 and lo <= hi) then return nil, nil, "max_new_tokens must be " .. M.HELP end
    return lo, hi
end

-- The limit of row (prompt i, sample s): uniform in lo..hi, a function of (seed, i, s) only.
function M.draw(seed, i, s, lo, hi)
    return rng.new(seed, "length", i, s):int(lo, hi)
end

-- "N" -> N, "A-B" -> {A, B}; nil and why for anything else (or a bad range).
function M.parse(text)
    local a, b = tostring(text):match("^%s*(%d+)%s*%-%s*(%d+)%s*$")
    local m
    if a then m = { math.tointeger(tonumber(a)), math.tointeger(tonumber(b)) }
    else m = math.tointeger(tonumber(text)) end
    local lo, _, err = M.range(m)
    if not lo then return nil, err end
    return m
end

return M
