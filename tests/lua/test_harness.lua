-- The test harness's own checks see failures: NaN-aware comparisons in Lua, in the NumPy model
-- reference and in C (build/tests/test_check), and the runner's count of skipped C binaries.
local T = require "tests.lib.test"
local tensor = require "apl.tensor"

local NAN = 0 / 0

T.case("harness: max_abs_diff is NaN whenever a difference is, and fails a tolerance", function()
    T.eq(T.max_abs_diff({ 1, 2 }, { 1, 2.5 }), 0.5)
    for _, c in ipairs { { { NAN, 1 }, { 0, 1 } }, { { 1, NAN }, { 1, 2 } }, { { NAN, NAN }, { NAN, NAN } },
                         { { { 1 }, { NAN } }, { { 1 }, { 2 } } }, { NAN, 0 } } do
        local d = T.max_abs_diff(c[1], c[2])
        T.ok(d ~= d, "NaN expected, got " .. tostring(d))
        T.ok(not (d <= 1e-3), "a NaN passes no tolerance")
    end
    T.eq(T.max_abs_diff({ -math.huge, 1 }, { -math.huge, 1 }), 0, "equal infinities (log 0) agree")
    T.eq(T.max_abs_diff({ 1, 2 }, { 1 }), math.huge, "a missing entry")
    T.ok(not pcall(T.eq, { NAN }, { 0 }, 1), "T.eq refuses a NaN")
end)

T.case("harness: the NumPy model reference reports NaN logits as a failure", function()
    local dir = T.tmpdir()
    local m <close> = apl.model.init({ model_type = "gpt2", n_layer = 1, n_embd = 16, n_head = 2, vocab_size = 50,
                                        n_positions = 16 }, { seed = 1 })
    m:save(dir)
    local ids, mask = { { 1, 2, 3 } }, { { 1, 1, 1 } }
    local logits = m:forward(ids)
    local function worst(x)
        apl.model.save_tensors(dir .. "/io.safetensors", { ids = tensor(ids), mask = tensor(mask), logits = x })
        return T.python(T.root() .. "/tests/ref/ref_models.py", "check " .. dir .. " " .. dir .. "/io.safetensors")
                :match("max_abs_diff all (%S+)")
    end
    T.ok(tonumber(worst(logits)) < 1e-5, "apl's logits agree")
    T.eq(worst(logits * NAN), "nan", "all-NaN logits")
end)

T.case("harness: the C comparison helpers fail on NaN (tests/c/test_check.c)", function()
    local bin = T.root() .. "/build/tests/test_check"
    local r = T.c_output(T.sh(bin))
    T.ok(r.counted and r.passed > 0 and r.failed == 0, "test_check ran")
end)

T.case("harness: a C binary's skip lines are counted and named", function()
    local r = T.c_output("skipped attention kernels: this CPU has no AVX-512\n0 passed, 0 failed\n")
    T.eq(r, { passed = 0, failed = 0, counted = true, skipped = { "attention kernels: this CPU has no AVX-512" } })
    r = T.c_output("ok\nskipped a: x\nNOT OK  y\nskipped b: z\n3 passed, 1 failed\n")
    T.eq(r, { passed = 3, failed = 1, counted = true, skipped = { "a: x", "b: z" } })
    T.eq(T.c_output("Segmentation fault").counted, false, "no count line: the runner counts a failure")
end)
