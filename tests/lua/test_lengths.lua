-- Completion lengths as a range (the authors' code draws each completion's length from 16–24
-- tokens for IMDB): apl.lengths, and apl.generate cutting each row at its own drawn limit.
local T = require "tests.lib.test"
local lengths = require "apl.lengths"

T.case("lengths: N or {lo, hi}, parsed from N or A-B, bad values explained", function()
    T.eq({ lengths.range(20) }, { 20, 20 })
    T.eq({ lengths.range({ 16, 24 }) }, { 16, 24 })
    T.eq({ lengths.range({ 16.0, 24.0 }) }, { 16, 24 }, 0, "JSON's floats")
    for _, bad in ipairs { 0, 2.5, "x", { 24, 16 }, { 16 }, { 1, 2, 3 }, { 0, 4 } } do
        local lo, _, why = lengths.range(bad)
        T.ok(lo == nil and why:find("max_new_tokens must be an integer >= 1 or a range"), tostring(why))
    end
    T.eq(lengths.parse("128"), 128)
    T.eq(lengths.parse("16-24"), { 16, 24 })
    T.eq(lengths.parse(" 16 - 24 "), { 16, 24 })
    for _, bad in ipairs { "24-16", "16-", "a-b", "0", "16-24-32", "" } do
        local m, why = lengths.parse(bad)
        T.ok(m == nil and why, "refused: " .. bad)
    end
end)

T.case("lengths: the draw covers lo..hi uniformly and is a function of (seed, prompt, sample)", function()
    local counts = {}
    for i = 1, 900 do
        local k = lengths.draw(7, i, 1 + i % 2, 16, 24)
        T.ok(k >= 16 and k <= 24, "in range: " .. k)
        counts[k] = (counts[k] or 0) + 1
    end
    for k = 16, 24 do T.ok((counts[k] or 0) > 60 and counts[k] < 140, k .. " drawn " .. tostring(counts[k]) .. " times of ~100") end
    T.eq(lengths.draw(7, 3, 2, 16, 24), lengths.draw(7, 3, 2, 16, 24))
    local differ = 0
    for i = 1, 50 do if lengths.draw(7, i, 1, 16, 24) ~= lengths.draw(8, i, 1, 16, 24) then differ = differ + 1 end end
    T.ok(differ > 30, "another seed, other lengths (" .. differ .. " of 50 differ)")
end)

T.case("generate: max_new_tokens = {lo, hi} cuts each row at its own seeded limit", function()
    local F = dofile(T.root() .. "/tests/lua/compute_fixture.lua")
    local tok, m = F.tok(), F.model(3)
    local prompts = { "the movie", "a dull", "great acting", "not worth" }
    -- eos_id = -1: no row stops early, so every length is the drawn limit.
    local function gen(o)
        o.n, o.temperature, o.eos_id = 3, 0.9, -1
        return apl.generate(m, tok, prompts, o)
    end
    local ranged, full = gen { max_new_tokens = { 5, 12 }, seed = 4 }, gen { max_new_tokens = 12, seed = 4 }
    local seen = {}
    for i, samples in ipairs(ranged) do
        for s, c in ipairs(samples) do
            local k = lengths.draw(4, i, s, 5, 12)
            T.eq(#c.ids, k, "row " .. i .. "," .. s .. " has its drawn length")
            T.eq(c.ids, table.move(full[i][s].ids, 1, k, 1, {}), 0, "the same tokens as the longer sample, cut")
            local sum = 0
            for _, l in ipairs(c.logprobs) do sum = sum + l end
            T.eq(c.logprob, sum, 1e-5, "logprob sums the kept tokens")
            T.eq(c.text, tok:decode(c.ids))
            seen[k] = true
        end
    end
    local distinct = 0
    for _ in pairs(seen) do distinct = distinct + 1 end
    T.ok(distinct >= 3, "lengths vary across completions")
    T.eq(gen { max_new_tokens = { 5, 12 }, seed = 4 }, ranged, 0, "the same seed, the same completions")
    local shared = gen { max_new_tokens = { 5, 12 }, seed = 9, length_seed = 4 }
    for i, samples in ipairs(shared) do
        for s, c in ipairs(samples) do T.eq(#c.ids, #ranged[i][s].ids, 0, "length_seed fixes the lengths") end
    end
    local o = { n = 3, temperature = 0.9, eos_id = -1, max_new_tokens = { 5, 12 }, seed = 4, index_offset = 2 }
    T.eq(apl.generate(m, tok, { prompts[3], prompts[4] }, o), { ranged[3], ranged[4] }, 1e-4, -- another batch: float noise
        "index_offset: a block of the list draws the whole list's lengths (a rank's share)")
    T.assert_error_match(function() gen { max_new_tokens = { 12, 5 } } end,
        "apl.generate: max_new_tokens must be an integer >= 1 or a range")
end)
