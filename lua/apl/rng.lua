-- apl.rng — seeded random numbers derived from keys, not from a stream.
--
--   local rng = require "apl.rng"
--   local r = rng.new(seed, step, "sample")   -- same (seed, step, "sample") -> same numbers
--   r:uniform()  r:int(1, 10)  r:sample(list, k)  r:shuffle(list)
--   rng.seed(seed, step, "gen")               -- a 31-bit integer seed for the engine
--
-- Every random choice of loop step t is drawn from rng.new(seed, t, <purpose>), so a run that
-- resumes at step t makes exactly the choices an uninterrupted run would have made.
local M = {}
local Rng = {}
Rng.__index = Rng

-- splitmix64's finaliser and FNV-1a over a string's bytes: core/hash.h, the C engine's own.
local sys = require "apl.core.sys"
local mix = sys.mix64
local hash_string = sys.fnv1a

local GOLDEN = 0x9e3779b97f4a7c15

local function key_hash(...)
    local h = mix(GOLDEN)
    for i = 1, select("#", ...) do
        local k = select(i, ...)
        -- 2.0 and 2 are the same key: numbers read back from JSON are floats.
        if math.type(k) == "float" and math.tointeger(k) then k = math.tointeger(k) end
        local v
        if math.type(k) == "integer" then v = k
        elseif type(k) == "number" then v = hash_string(string.format("%.17g", k))
        elseif type(k) == "string" then v = hash_string(k)
        else error("apl.rng: keys must be numbers or strings, got " .. type(k), 3) end
        h = mix(h ~ mix(v + GOLDEN * i))
    end
    return h
end

function M.new(...)
    return setmetatable({ state = key_hash(...) }, Rng)
end

-- A non-negative 31-bit seed, safe to hand to any C API.
function M.seed(...)
    return key_hash(...) & 0x7fffffff
end

function Rng:next()
    self.state = self.state + GOLDEN
    return mix(self.state)
end

-- Uniform in [0, 1) with 53 random bits.
function Rng:uniform()
    return (self:next() >> 11) * (1.0 / 9007199254740992.0)
end

-- Uniform integer in [lo, hi].
function Rng:int(lo, hi)
    return lo + math.floor(self:uniform() * (hi - lo + 1))
end

-- Fisher–Yates, in place; returns the list.
function Rng:shuffle(list)
    for i = #list, 2, -1 do
        local j = self:int(1, i)
        list[i], list[j] = list[j], list[i]
    end
    return list
end

-- k items drawn without replacement (all of them, shuffled, when k >= #list).
function Rng:sample(list, k)
    local idx = {}
    for i = 1, #list do idx[i] = i end
    self:shuffle(idx)
    local out = {}
    for i = 1, math.min(k, #list) do out[i] = list[idx[i]] end
    return out
end

return M
