-- bench/run.lua's bookkeeping on canned output: parsing, ratios, targets, medians, FLOPs, tables,
-- runs of some areas merged into the last full run. No timing is asserted; one case runs
-- bench/dist.lua --quick (a few seconds) for what must hold whatever the times: the bytes
-- all-reduced, both ranks' weights, the 2-process steps against one process's.
local T = require "tests.lib.test"
local root = T.root()
local R = dofile(root .. "/bench/run.lua")
local B = dofile(root .. "/bench/common.lua")

local APL_OUT = [[
progress: 3/3
{"name":"generation","apl":300,"unit":"tok/s","samples":[290,300,310],"batch":8,"prompt":16,"new_tokens":64}
{"name":"generation_blas","apl":120,"unit":"tok/s","samples":[120,120,120]}
{"name":"logprob","apl":1000,"unit":"tok/s","samples":[1000,1000,1000],"config":"B=8 T=128"}
{"name":"dpo_step","apl":8,"unit":"s","samples":[8,8,8],"config":"B=4 T=128","peak_rss_mb":3000}
{"name":"sft_step","apl":5,"unit":"s","samples":[5,5,5],"config":"B=8 T=128"}
{"name":"tokenizer_encode","apl":12,"baseline":10,"unit":"MB/s"}
{"name":"oracle_labels_per_s","apl":16,"unit":"labels/s"}
{"name":"model_load","apl_s":0.5,"peak_rss_mb":670,"rss_before_mb":100,"ckpt_mb":475}
{"name":"matmul_peak","apl":100,"unit":"GFLOP/s","samples":[90,100]}
{"name":"mem_bandwidth","apl":10,"unit":"GB/s","samples":[10,10]}
not json {
]]

local BASE_OUT = [[
{"name": "generation", "baseline": 100, "unit": "tok/s", "samples": [100, 100, 100]}
{"name": "logprob", "baseline": 1000, "unit": "tok/s", "samples": [1000, 1000, 1000]}
{"name": "dpo_step", "baseline": 10, "unit": "s", "samples": [10, 10, 10], "peak_rss_mb": 3500}
{"name": "matmul_peak", "baseline": 120, "unit": "GFLOP/s"}
{"name": "mem_bandwidth", "baseline": 8, "unit": "GB/s"}
{"name": "model_load", "baseline_s": 0.6, "peak_rss_mb": 700, "ckpt_mb": 475}
]]

local function rows_by_name()
    local a, other = R.parse_lines(APL_OUT)
    local p = R.parse_lines(BASE_OUT)
    local rows = R.collect(a, p, { compute = "unused" })
    local by = {}
    for _, r in ipairs(rows) do by[r.name] = r end
    return by, rows, other
end

T.case("bench: median and spread", function()
    T.eq(B.median({ 3, 1, 2 }), 2)
    T.eq(B.median({ 4, 1, 3, 2 }), 2.5)
    T.eq(B.median({}), nil)
    T.eq(B.spread({ 90, 100, 110 }), 0.2, 1e-12)
    T.eq(B.spread({ 5 }), nil)
end)

T.case("bench: JSON lines are picked out of other output", function()
    local objs, other = R.parse_lines(APL_OUT)
    T.eq(#objs, 10)
    T.eq(other, { "progress: 3/3", "not json {" })
end)

T.case("bench: an area run in two rounds: the samples of both, their median, the higher RSS", function()
    local a = R.parse_lines(APL_OUT)
    local again = R.parse_lines('{"name":"generation","apl":100,"unit":"tok/s","samples":[100,110,120]}\n' ..
        '{"name":"dpo_step","apl":6,"unit":"s","samples":[6,6,7],"peak_rss_mb":3100}')
    for _, o in ipairs(again) do a[#a + 1] = o end
    local rows, A = R.collect(a, R.parse_lines(BASE_OUT), {})
    local by = {}
    for _, r in ipairs(rows) do by[r.name] = r end
    T.eq(A.dpo_step.peak_rss_mb, 3100)
    T.eq(by.generation.apl_samples, { 290, 300, 310, 100, 110, 120 })
    T.eq(by.generation.apl, 205) -- median of the six
    T.eq(by.dpo_step.apl, 7.5)
end)

T.case("bench: peaks measured in several rounds take the best repetition of all, not the median", function()
    local a = R.parse_lines(APL_OUT)
    a[#a + 1] = { name = "matmul_peak", apl = 130, unit = "GFLOP/s", samples = { 70, 130 } }
    local rows = R.collect(a, R.parse_lines(BASE_OUT), {})
    local by = {}
    for _, r in ipairs(rows) do by[r.name] = r end
    T.eq(by.matmul_peak.apl_samples, { 90, 100, 70, 130 })
    T.eq(by.matmul_peak.apl, 130)
end)

T.case("bench: ratios, spreads and targets", function()
    local by = rows_by_name()
    T.eq(by.generation.ratio, 3, 1e-12)
    T.eq(by.generation.met, true)
    T.eq(by.generation.apl_spread, 20 / 300, 1e-12)
    -- apl's generation without its decoding kernels, against the same baseline, no target
    T.eq(by.generation_blas.ratio, 1.2, 1e-12)
    T.eq(by.generation_blas.met, nil)
    T.eq(by.logprob.ratio, 1, 1e-12)
    T.eq(by.logprob.met, false) -- 1.0x is under the 1.2x target
    T.eq(by.dpo_step.ratio, 0.8, 1e-12)
    T.eq(by.dpo_step.met, true)
    T.eq(by.sft_step.baseline, nil)
    T.eq(by.tokenizer_encode.ratio, 1.2, 1e-12) -- the area ran its own baseline (js-tiktoken)
    T.eq(by.tokenizer_encode.met, true)
    T.eq(by.oracle_labels_per_s.seconds_for_128, 8, 1e-12)
    T.eq(by.oracle_labels_per_s.met, true)
    T.eq(by.model_load.ratio, 0.5 / 0.6, 1e-12)
    T.eq(by.model_load_rss.apl, 670)
    T.eq(by.model_load_rss.target_value, 570 / 475, 1e-12)
    T.eq(by.model_load_rss.met, true)
end)

T.case("bench: a missing area is a row with its reason", function()
    local a = R.parse_lines('{"name":"generation","apl":1,"unit":"tok/s"}')
    local rows = R.collect(a, {}, { oracle = "bench/oracle.lua not present", baseline_compute = "exit 1: boom" })
    local by = {}
    for _, r in ipairs(rows) do by[r.name] = r end
    T.eq(by.oracle_labels_per_s.error, "bench/oracle.lua not present")
    T.eq(by.oracle_labels_per_s.met, nil)
    T.eq(by.generation.baseline_error, "exit 1: boom")
    local text = R.render_text(R.table_rows(rows))
    T.ok(text:find("not measured*", 1, true), text)
    T.eq(R.missing(rows)[1], "model load time: not measured")
    local found = false
    for _, m in ipairs(R.missing(rows)) do found = found or m == "oracle labels: bench/oracle.lua not present" end
    T.ok(found, table.concat(R.missing(rows), "; "))
end)

T.case("bench: GPT-2 124M parameter and FLOP counts", function()
    local c = R.GPT2
    T.eq(R.n_params(c), 124439808) -- torch's count for GPT-2 small with the tied lm_head
    T.eq(R.matmul_params(c), 12 * 12 * 768 * 768 + 50257 * 768)
    T.eq(R.forward_flops(c, 1, 1), 2 * R.matmul_params(c) + 4 * 12 * 768)
    T.eq(R.dpo_flops(c, 4, 128), 4 * R.forward_flops(c, 8, 128))
    T.eq(R.sft_flops(c, 8, 128), 3 * R.forward_flops(c, 8, 128))
    -- one layer, C = 2, V = 3, T = 4: a packed row of 2 + 2 + 2 tokens, the head on 2 x 2 rows
    local tiny = { n_layer = 1, n_embd = 2, vocab = 3 }
    T.eq(R.apl_dpo_flops(tiny, 1, 4), 4 * (6 * (2 * 12 * 4 + 4 * 6 * 2) + 2 * 2 * 2 * 3 * 2))
end)

T.case("bench: MFU and the bandwidth bound", function()
    local _, rows = rows_by_name()
    local d = R.derive(rows, false)
    T.eq(d.peak_gflops, 120)
    T.eq(d.bandwidth_gbs, 10)
    T.eq(d.dpo_shape, { 4, 128 })
    local f = R.dpo_flops(R.GPT2, 4, 128) / 1e9
    T.eq(d.dpo_mfu_apl, f / 8 / 120, 1e-12)
    T.eq(d.dpo_mfu_baseline, f / 10 / 120, 1e-12)
    T.eq(d.dpo_hw_apl, R.apl_dpo_flops(R.GPT2, 4, 128) / 1e9 / 8 / 120, 1e-12)
    T.eq(d.sft_mfu_apl, R.sft_flops(R.GPT2, 8, 128) / 1e9 / 5 / 120, 1e-12)
    local bound = 8 * 10e9 / (4 * 124439808)
    T.eq(d.gen_bound_tok_s, bound, 1e-9)
    T.eq(d.gen_bound_frac_apl, 300 / bound, 1e-12)
end)

T.case("bench: markdown table and targets", function()
    local _, rows = rows_by_name()
    local res = { rows = rows, derived = R.derive(rows, false), command = "make bench", date = "d",
                  threads = 2, machine = { cpu = "cpu", cores = 2 }, quick = false }
    local md = R.markdown(res)
    T.ok(md:find("| generation | tok/s | 300.0 | 100.0 | 3.00x |", 1, true), md)
    T.ok(md:find("| generation tokens/s >= 2x baseline | 3.00x | met |", 1, true), md)
    T.ok(md:find("| log-prob scoring tokens/s >= 1.2x baseline | 1.00x | **not met** |", 1, true), md)
end)

T.case("--write-md keeps the hand-written sections of BENCHMARKS.md (the GPU figures)", function()
    local dir = T.tmpdir()
    local path = dir .. "/BENCHMARKS.md"
    T.eq(R.hand_written(path), "", "no file, nothing kept")
    local f = assert(io.open(path, "w"))
    f:write("# Benchmarks\n\n## Latest run\n\nold table\n\n## GPU\n\n" .. R.HAND_WRITTEN ..
        " -->\n\nH100 figures\n\n## Notes\n\nmore\n")
    f:close()
    local kept = R.hand_written(path)
    T.eq(kept, "\n## GPU\n\n" .. R.HAND_WRITTEN .. " -->\n\nH100 figures\n\n## Notes\n\nmore\n")
    T.ok(not kept:find("old table", 1, true), "the generated part is not kept")
end)

-- ---------------------------------------------------------------------------------------------
-- Several processes (bench/dist.lua) and runs of some areas (--only)

local DIST_OUT = [[
{"name":"dist_step","apl":6,"baseline":5,"unit":"s","samples":[6,6,7],"baseline_samples":[5,5,5],"config":"GPT-2 124M","details":{"model":"GPT-2 124M","pairs":4,"T":128,"lr":1e-06,"steps":5,"threads":2,"threads_per_rank":1,"load_avg_1min":0.5,"step_s":{"full":5,"one_thread":9,"two":6},"grad_allreduce_s":0.5,"grad_allreduce_waiting_s":0.75,"other_collectives_s":0.01,"compute_s":5.49,"grad_bytes":497759824,"grad_bytes_as_expected":true,"expected_grad_bytes":497759824,"n_params":124439808,"n_tensors":148,"other_bytes":900,"collectives":12,"ranks_equal":true,"differing_params":0,"loss_rel_diff":2e-07,"grad_norm_rel_diff":3e-07,"peak_rss_mb":{"full":3800,"rank0":3900,"rank1":3900}}}
{"name":"dist_step_1t","apl":6,"baseline":9,"unit":"s","samples":[6,6,7],"baseline_samples":[9,9,9]}
]]

local function by_name_of(rows)
    local by = {}
    for _, r in ipairs(rows) do by[r.name] = r end
    return by
end

T.case("bench: the several-process rows: ratios against one process, the details kept", function()
    local a = R.parse_lines(APL_OUT)
    for _, o in ipairs(R.parse_lines(DIST_OUT)) do a[#a + 1] = o end
    local by = by_name_of(R.collect(a, R.parse_lines(BASE_OUT), {}))
    T.eq(by.dist_step.ratio, 1.2, 1e-12)
    T.eq(by.dist_step_1t.ratio, 6 / 9, 1e-12)
    T.eq(by.dist_step.baseline_spread, 0)
    T.eq(by.dist_step.details.grad_bytes, 497759824)
    T.eq(R.thousands(497759824), "497,759,824")
    T.eq(R.thousands(12), "12")
    T.eq(R.thousands(123456), "123,456")
    local t = R.dist_rows(by.dist_step.details)
    T.eq(t[4], { "2 processes, 1 thread each", "6.00", "1.20x", "0.500 (0.750 on the rank that waited)", "0.010", "5.49" })
    T.eq(t[3][3], "1.80x")
    local res = { rows = R.collect(a, R.parse_lines(BASE_OUT), {}), command = "make bench", date = "d", threads = 2,
                  machine = { cpu = "cpu", cores = 2 } }
    res.derived = R.derive(res.rows, false)
    local md = R.markdown(res)
    T.ok(md:find("| DPO step, 2 processes vs 1 (same cores) | s | 6.00 | 5.00 | 1.20x |", 1, true), md)
    T.ok(md:find("## Several processes (apl.dist)", 1, true), md)
    T.ok(md:find("per rank: 497,759,824 = 4 × 124,439,808 parameters (f32) + 4 × 148 (the flags", 1, true), md)
    T.ok(md:find("the same bit for bit", 1, true), md)
    T.ok(md:find("Load average (1 min) when it started: 0.50.", 1, true), md)
    -- what does not hold is said so
    local d = by.dist_step.details
    d.grad_bytes, d.grad_bytes_as_expected, d.ranks_equal, d.differing_params = 497759820, false, false, 3
    local facts = table.concat(R.dist_facts(d), "\n")
    T.ok(facts:find("497,759,820 ≠ the expected 4 × 124,439,808", 1, true), facts)
    T.ok(facts:find("= 497,759,824.", 1, true), facts)
    T.ok(facts:find("**3 values differ**", 1, true), facts)
end)

T.case("bench --only: the areas checked; their rows replace the previous run's, the others are kept", function()
    T.eq(R.only_areas("dist"), { "dist" })
    T.eq(R.only_areas("dist,lora"), { "dist", "lora" })
    T.assert_error_match(function() R.only_areas("dist,gpu") end,
        "^bench/run%.lua: %-%-only: no area 'gpu' %(the areas: model_load, tokenizer, compute, lora, dist, oracle%)$")
    T.assert_error_match(function() R.only_areas("") end, "needs an area")

    local _, full = rows_by_name()
    local prev = { rows = full, command = "make bench", date = "then", wall_s = 700, note = "full run", threads = 2,
                   machine = { cpu = "cpu", cores = 2 },
                   quick = false, errors = { oracle = "old failure", dist = "dist not there yet" },
                   derived = R.derive(full, false) }
    local got = R.collect(R.parse_lines(DIST_OUT), {}, { compute = "not run" })
    local new = { rows = got, command = "make bench ONLY=dist", date = "now", wall_s = 90, note = "load 0.5",
                  quick = false, errors = { compute = "not run" } }
    local m = R.merge(prev, new, { "dist" })
    local by = by_name_of(m.rows)
    T.eq(by.dist_step.apl, 6)
    T.eq(by.generation.apl, 300, nil, "the other rows are the previous run's")
    T.eq(by.dpo_step.baseline, 10)
    T.eq(m.errors, { oracle = "old failure" })
    T.eq({ m.date, m.wall_s, m.note, m.command }, { "then", 700, "full run", "make bench" })
    T.eq(m.updates, { { command = "make bench ONLY=dist", date = "now", wall_s = 90, areas = { "dist" }, note = "load 0.5" } })
    T.eq(m.derived.dpo_mfu_apl, prev.derived.dpo_mfu_apl)
    local names = {}
    for _, r in ipairs(m.rows) do names[#names + 1] = r.name end
    T.eq(#names, #R.ROWS, "every row, in the table's order")
    T.eq(names[12], "dist_step")
    local md = R.markdown(m)
    T.ok(md:find("- updated: the dist rows by `make bench ONLY=dist` on now (90 s): load 0.5\n", 1, true), md)
    -- a second run of the same area replaces the first update
    local again = R.merge(m, { rows = got, command = "make bench ONLY=dist", date = "later", wall_s = 80, errors = {} },
        { "dist" })
    T.eq(#again.updates, 1)
    T.eq(again.updates[1].date, "later")
    -- quick results are not merged into a full run's, nor into nothing
    local q = { rows = got, quick = true, errors = {} }
    T.ok(R.merge(prev, q, { "dist" }) == q)
    T.ok(R.merge(nil, new, { "dist" }) == new)
end)

T.case("bench/dist.lua --quick: 2 processes against one, the bytes all-reduced, the ranks' weights", function()
    if not require("apl.core.dist").has_gloo then
        T.skip("apl.core.dist was built without Gloo (libgloo-dev): no process group between CPUs")
    end
    local out = T.sh(string.format("cd %s && APL_DIST_TIMEOUT=60 timeout 300 ./apl bench/dist.lua --quick", root))
    local by = {}
    for _, o in ipairs(R.parse_lines(out)) do by[o.name] = o end
    local row, d = by.dist_step, by.dist_step and by.dist_step.details
    T.ok(d and by.dist_step_1t, out)
    T.eq(by.dist_step_1t.apl, row.apl)
    T.eq(#row.samples, 2)
    for _, k in ipairs({ "full", "one_thread", "two" }) do T.ok(d.step_s[k] > 0, k) end
    -- the gradients of every parameter, f32, once per step, and the flag per parameter tensor;
    -- counted here from the config, not from the model the bench built
    local c = { n_layer = 2, n_embd = 64, vocab = 512, n_positions = 128 }
    local n_tensors = 2 + 12 * c.n_layer + 2 -- wte, wpe; 12 per block; ln_f
    T.eq(d.grad_bytes, 4 * R.n_params(c) + 4 * n_tensors)
    T.eq(d.grad_bytes_rank1, d.grad_bytes)
    T.eq(d.grad_bytes_as_expected, true)
    T.eq(d.one_process_grad_bytes, 0, nil, "one process all-reduces nothing")
    T.ok(d.other_bytes > 0, "the reference log-probs crossed between the ranks")
    T.ok(d.grad_allreduce_s > 0 and d.grad_allreduce_s <= d.grad_allreduce_waiting_s, "the faster rank's time")
    -- the same weights on both ranks, and the steps one process takes
    T.eq(d.ranks_equal, true)
    T.eq(d.differing_params, 0)
    T.eq(d.losses.two_rank1, d.losses.two, 0)
    T.eq(d.losses.two, d.losses.one_thread, 1e-5)
    T.ok(d.loss_rel_diff <= 1e-5, d.loss_rel_diff)
    T.ok(math.abs(d.losses.two[2] - d.losses.two[1]) > 1e-3, "the steps moved the weights")
end)
