-- Acquisition functions ranked on hand-made cases, through a fake ctx (no engine needed).
local T = require "apl.test"
local loop = require "apl.loop"
local rng = require "apl.rng"

-- A ctx whose rewards and entropies are given per completion / per prompt.
local function fake_ctx(opts)
    local ctx = { config = { sample = opts.sample or 2, seed = 1 }, rng = rng.new(1, 1, "acquisition"),
                  beta = 0.2, calls = { entropy = {}, rewards = 0 } }
    function ctx:entropy(prompts)
        self.calls.entropy[#self.calls.entropy + 1] = #prompts
        local out = {}
        for i, p in ipairs(prompts) do out[i] = opts.entropy[type(p) == "table" and p.prompt or p] end
        return out
    end
    function ctx:implicit_rewards(batch)
        self.calls.rewards = self.calls.rewards + 1
        local ra, rb = {}, {}
        for i, p in ipairs(batch) do ra[i], rb[i] = opts.reward[p.a], opts.reward[p.b] end
        return ra, rb
    end
    function ctx:top(scores, k) return loop.top(scores, k) end
    return ctx
end

local function ranking(mod, ctx, batch, m)
    local scores = require("acquisition." .. mod).score(ctx, batch)
    T.eq(#scores, #batch, mod .. " returns one score per pair")
    return loop.top(scores, m or #batch)
end

local BATCH = {
    { prompt = "p1", a = "x1", b = "y1" },   -- |Δr| = 0.1
    { prompt = "p2", a = "x2", b = "y2" },   -- |Δr| = 3.0
    { prompt = "p3", a = "x3", b = "y3" },   -- |Δr| = 1.0
    { prompt = "p1", a = "x4", b = "y4" },   -- |Δr| = 0
}
local REWARD = { x1 = 0.5, y1 = 0.4, x2 = -1.0, y2 = 2.0, x3 = 1.0, y3 = 0.0, x4 = 0.3, y4 = 0.3 }

T.case("certainty ranks by |r_a - r_b|, largest first", function()
    local ctx = fake_ctx { reward = REWARD }
    T.eq(ranking("certainty", ctx, BATCH), { 2, 3, 1, 4 })
    T.eq(require("acquisition.certainty").score(ctx, BATCH), { 0.1, 3.0, 1.0, 0.0 }, 1e-12)
end)

T.case("uncertainty prefers BT probability near 0.5 (the reverse of certainty)", function()
    local ctx = fake_ctx { reward = REWARD }
    T.eq(ranking("uncertainty", ctx, BATCH), { 4, 1, 3, 2 })
    local s = require("acquisition.uncertainty").score(ctx, BATCH)
    T.eq(s[4], 0, 1e-12)
    T.eq(s[2], -math.abs(1 / (1 + math.exp(3)) - 0.5), 1e-12)
end)

T.case("entropy gives each pair its own prompt's entropy, one estimate per distinct prompt", function()
    local ctx = fake_ctx { entropy = { p1 = 5.0, p2 = 1.0, p3 = 9.0 } }
    local s = require("acquisition.entropy").score(ctx, BATCH)
    T.eq(s, { 5.0, 1.0, 9.0, 5.0 })
    T.eq(ctx.calls.entropy, { 3 }, "p1 is estimated once")
    T.eq(ranking("entropy", ctx, BATCH), { 3, 1, 4, 2 })
end)

T.case("entropy window: each prompt's entropy is the mean of its own N samples (engine)", function()
    if not (apl and apl.entropy and apl.model and apl.tokenizer) then T.skip("apl.entropy not built") end
    local texts = {}
    for i, r in ipairs(require("apl.demo_data").reviews { n = 100, seed = 1 }) do texts[i] = r.text end
    local dir = require("apl.bpe_train").write(T.tmpdir() .. "/tok", texts, { merges = 40 })
    local tok = apl.tokenizer.load(dir)
    local model = apl.model.init({ model_type = "gpt2", n_layer = 1, n_embd = 16, n_head = 2,
        vocab_size = tok:vocab_size(), n_positions = 32 }, { seed = 2 })
    -- Prompts of different lengths, one repeated: windows cut wrongly would mix their samples.
    local prompts = { "the", "this movie was really", "the", "i" }
    local h, samples = apl.entropy(model, tok, prompts, { n = 3, max_new_tokens = 5, seed = 4 })
    h = h:totable()
    for i, list in ipairs(samples) do
        T.eq(#list, 3)
        local want = 0
        for _, c in ipairs(list) do want = want - c.logprob / 3 end
        T.eq(h[i], want, 1e-4, "prompt " .. i)
    end
    T.ok(h[1] ~= h[2], "different prompts, different estimates")
    local alone = apl.entropy(model, tok, { prompts[2] }, { n = 3, max_new_tokens = 5, seed = 4 }):totable()
    T.eq(alone[1] > 0, true)
end)

T.case("hybrid keeps the `sample` highest-entropy prompts, then ranks pairs by certainty", function()
    local ctx = fake_ctx { sample = 2, entropy = { p1 = 5.0, p2 = 1.0, p3 = 9.0, p4 = 7.0 }, reward = REWARD }
    local hybrid = require "acquisition.hybrid"
    local kept = hybrid.prefilter(ctx, { { prompt = "p1" }, { prompt = "p2" }, { prompt = "p3" }, { prompt = "p4" } })
    T.eq(kept, { { prompt = "p3" }, { prompt = "p4" } })
    T.eq(ranking("hybrid", ctx, BATCH), { 2, 3, 1, 4 })
end)

T.case("random scores are seeded by (seed, step) and spread over [0, 1)", function()
    local mod = require "acquisition.random"
    local big = {}
    for i = 1, 200 do big[i] = { prompt = "p", a = "a" .. i, b = "b" } end
    local s1 = mod.score(fake_ctx {}, big)
    local s2 = mod.score(fake_ctx {}, big)
    T.eq(s1, s2, "same seed, same scores")
    local ctx3 = fake_ctx {}
    ctx3.rng = rng.new(1, 2, "acquisition")
    T.ok(mod.score(ctx3, big)[1] ~= s1[1], "another step draws other scores")
    local lo, hi, sum = 1, 0, 0
    for _, v in ipairs(s1) do lo, hi, sum = math.min(lo, v), math.max(hi, v), sum + v end
    T.ok(lo >= 0 and hi < 1 and lo < 0.05 and hi > 0.95, "range")
    T.eq(sum / #s1, 0.5, 0.07)
end)

T.case("top breaks ties by position and clips to the list", function()
    T.eq(loop.top({ 1, 3, 3, 2 }, 3), { 2, 3, 4 })
    T.eq(loop.top({ 1 }, 5), { 1 })
end)
