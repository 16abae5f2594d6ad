-- bench/run.lua's bookkeeping on canned output: parsing, ratios, targets, medians, FLOPs, tables.
-- No timing is asserted; nothing is benchmarked.
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
