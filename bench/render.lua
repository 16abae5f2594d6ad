-- bench/render.lua — the benchmark's tables as text and Markdown: numbers formatted, the results
-- table and the derived figures (MFU, bandwidth bound) as rows of strings, and BENCHMARKS.md.
--
--   local R = dofile(root .. "/bench/render.lua")
--   io.write(R.render_text(R.table_rows(results.rows)))   -- R.render_md for BENCHMARKS.md
local F = dofile((package.apl_root or ".") .. "/bench/flops.lua")
local R = {}

function R.fmt(v, unit)
    if v == nil then return "-" end
    if unit == "s" then return v < 1 and string.format("%.3f", v) or string.format("%.2f", v) end
    if math.abs(v) >= 1000 then return string.format("%.0f", v) end
    if math.abs(v) >= 100 then return string.format("%.1f", v) end
    return string.format("%.2f", v)
end

function R.int(v) return v and string.format("%d", math.floor(v + 0.5)) or "?" end

function R.pct(v) return v and string.format("%.0f%%", 100 * v) or "-" end

local function spread_text(r)
    if not r.apl_spread and not r.baseline_spread then return "-" end
    return string.format("%s / %s", r.apl_spread and string.format("±%.0f%%", 50 * r.apl_spread) or "-",
        r.baseline_spread and string.format("±%.0f%%", 50 * r.baseline_spread) or "-")
end

local function met_text(r)
    if r.met == nil then return r.target_text and "not measured" or "" end
    return r.met and "met" or "NOT met"
end

local function ratio_text(r)
    if not r.ratio then return "-" end
    return string.format("%.2fx", r.ratio)
end

-- Rows of strings: the table that is printed and written into BENCHMARKS.md.
function R.table_rows(rows)
    local t = { { "benchmark", "unit", "apl", "baseline", "apl/baseline", "spread apl/base", "target", "status" } }
    for _, r in ipairs(rows) do
        local target = r.target_text or ""
        if r.name == "oracle_labels_per_s" and r.seconds_for_128 then
            target = target .. string.format(" (%.1f s)", r.seconds_for_128)
        elseif r.name == "model_load_rss" and r.target_value then
            target = target .. string.format(" (%.0f MB added: %.2fx of %.0f MB)", r.apl_added_mb, r.target_value, r.ckpt_mb)
        end
        local apl_cell = r.apl and R.fmt(r.apl, r.unit) or "not measured*"
        local base_cell = r.baseline and R.fmt(r.baseline, r.unit) or "not measured*"
        t[#t + 1] = { r.label, r.unit or "", apl_cell, base_cell, ratio_text(r), spread_text(r), target, met_text(r) }
    end
    return t
end

-- "label: why" for every figure that is missing (the * of the table).
function R.missing(rows)
    local out = {}
    for _, r in ipairs(rows) do
        if r.error then out[#out + 1] = string.format("%s: %s", r.label, r.error) end
        if r.baseline_error and r.apl then out[#out + 1] = string.format("%s baseline: %s", r.label, r.baseline_error) end
    end
    return out
end

function R.derived_rows(d, by)
    local rss = by.dpo_step
    return {
        { "measure", "apl", "baseline" },
        { string.format("DPO step MFU (TRL's %.0f GFLOP, of %s GFLOP/s peak)", d.dpo_gflop or 0, R.fmt(d.peak_gflops)),
          R.pct(d.dpo_mfu_apl), R.pct(d.dpo_mfu_baseline) },
        { string.format("DPO step, FLOPs apl executes (%.0f GFLOP) / time / peak", d.dpo_gflop_apl or 0),
          R.pct(d.dpo_hw_apl), "-" },
        { string.format("SFT step MFU (%.0f GFLOP)", d.sft_gflop or 0), R.pct(d.sft_mfu_apl), R.pct(d.sft_mfu_baseline) },
        { "DPO step peak RSS, MB (policy, reference, Adam)",
          R.fmt(rss and rss.apl_peak_rss_mb), R.fmt(rss and rss.baseline_peak_rss_mb) },
        { string.format("generation / bandwidth bound (%s tok/s at %s GB/s)", R.fmt(d.gen_bound_tok_s), R.fmt(d.bandwidth_gbs)),
          R.pct(d.gen_bound_frac_apl), R.pct(d.gen_bound_frac_baseline) },
    }
end

-- 497759824 -> "497,759,824"
function R.thousands(n)
    local s = string.format("%d", math.floor(n + 0.5))
    local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
    return (out:gsub("^(-?),", "%1"))
end

-- Several processes (bench/dist.lua's details, d): one row per side, the collectives' time split
-- out of the 2-process step.
function R.dist_rows(d)
    local st = d.step_s or {}
    local function vs(x) return x and st.full and st.full > 0 and string.format("%.2fx", x / st.full) or "-" end
    local function s(x) return R.fmt(x, "s") end
    local wait = d.grad_allreduce_waiting_s and string.format(" (%s on the rank that waited)",
        s(d.grad_allreduce_waiting_s)) or ""
    return {
        { "configuration", "DPO step, s", string.format("vs 1 process, %s threads", R.int(d.threads)),
          "gradient all-reduce, s", "other collectives, s", "compute and waiting, s" },
        { string.format("1 process, %s threads", R.int(d.threads)), s(st.full), vs(st.full), "-", "-", s(st.full) },
        { "1 process, 1 thread", s(st.one_thread), vs(st.one_thread), "-", "-", s(st.one_thread) },
        { string.format("2 processes, %s thread%s each", R.int(d.threads_per_rank), d.threads_per_rank == 1 and "" or "s"),
          s(st.two), vs(st.two), s(d.grad_allreduce_s) .. wait, s(d.other_collectives_s), s(d.compute_s) },
    }
end

-- The facts under that table: the bytes (checked against the model), the ranks' weights, the
-- 2-process metrics against one process's, memory.
function R.dist_facts(d)
    local out = {}
    local bytes = d.grad_bytes and R.thousands(d.grad_bytes) or "?"
    local expected = string.format("4 × %s parameters (f32) + 4 × %s (the flags that say which parameter tensors have a gradient)",
        d.n_params and R.thousands(d.n_params) or "?", R.int(d.n_tensors))
    out[#out + 1] = string.format("gradient bytes all-reduced per step, per rank: %s %s %s%s. Gloo's ring " ..
        "all-reduce between 2 ranks sends and receives about as much per rank.", bytes,
        d.grad_bytes_as_expected and "=" or "≠ the expected", expected,
        d.grad_bytes_as_expected and "" or string.format(" = %s", d.expected_grad_bytes and R.thousands(d.expected_grad_bytes) or "?"))
    out[#out + 1] = string.format("other collectives per step (the reference log-probs each rank scored, " ..
        "the metrics summed): %s bytes; %s collectives per step in all.",
        d.other_bytes and R.thousands(d.other_bytes) or "?", R.int(d.collectives))
    out[#out + 1] = d.ranks_equal and "both ranks' weights after the steps: the same bit for bit."
        or string.format("both ranks' weights after the steps: **%s values differ**.", R.int(d.differing_params))
    out[#out + 1] = string.format("the 2-process steps' loss and gradient norm against one process's (1 thread), " ..
        "step by step: largest relative difference %.1e and %.1e.", d.loss_rel_diff or 0 / 0, d.grad_norm_rel_diff or 0 / 0)
    local rss = d.peak_rss_mb or {}
    out[#out + 1] = string.format("peak RSS: %s MB for the process on %s threads, %s and %s MB for the ranks.",
        R.fmt(rss.full), R.int(d.threads), R.fmt(rss.rank0), R.fmt(rss.rank1))
    return out
end

function R.render_text(t)
    local w = {}
    for _, row in ipairs(t) do
        for i, c in ipairs(row) do w[i] = math.max(w[i] or 0, utf8.len(c) or #c) end
    end
    local lines = {}
    for k, row in ipairs(t) do
        local cells = {}
        for i, c in ipairs(row) do cells[i] = c .. string.rep(" ", w[i] - (utf8.len(c) or #c)) end
        lines[#lines + 1] = table.concat(cells, "  "):gsub("%s+$", "")
        if k == 1 then
            local dash = {}
            for i = 1, #row do dash[i] = string.rep("-", w[i]) end
            lines[#lines + 1] = table.concat(dash, "  ")
        end
    end
    return table.concat(lines, "\n") .. "\n"
end

-- Rows of strings (the first the header) as a Markdown table: apl.report's, one writer for both.
R.render_md = require("apl.report").markdown_rows

local fmt, int = R.fmt, R.int

-- ---------------------------------------------------------------------------------------------
-- BENCHMARKS.md

-- The sections of the current file that people wrote (the GPU figures, measured elsewhere by
-- tools/gpu-check.sh): from the heading above the first HAND_WRITTEN marker to the end. They are
-- kept when the generated part is rewritten.
R.HAND_WRITTEN = "<!-- Written by hand"
function R.hand_written(path)
    local f = io.open(path)
    if not f then return "" end
    local s = f:read("a")
    f:close()
    local mark = s:find(R.HAND_WRITTEN, 1, true)
    if not mark then return "" end
    local start
    for pos in s:sub(1, mark):gmatch("()\n## ") do start = pos + 1 end
    return start and "\n" .. s:sub(start) or ""
end

function R.markdown(res)
    local by = {}
    for _, r in ipairs(res.rows) do by[r.name] = r end
    local m, d = res.machine, res.derived
    local out = {}
    local function w(...) out[#out + 1] = table.concat({ ... }) end
    w("# Benchmarks\n\n")
    w("`apl` against a plain PyTorch-Python peer (`bench/baseline.py`) on the same machine, the same ",
      "libtorch (Debian's 1.13, CPU) and the same thread count, so the ratios measure the engine, not the BLAS. ",
      "This file is generated: `make bench && ./apl bench/run.lua --write-md` (tables from `bench/results.json`).\n\n")
    w("## Latest run\n\n")
    w("- command: `", res.command, "`", res.quick and " (QUICK: not the full configuration)" or "", "\n")
    w("- date: ", res.date, "; ", string.format("%.0f s", res.wall_s or 0), " in all\n")
    w("- machine: ", m.cpu or "unknown CPU", ", ", int(m.cores), " cores, ",
      m.mem_gb and string.format("%.0f GB", m.mem_gb) or "? GB", " RAM, ", m.kernel or "", "\n")
    w("- threads: ", int(res.threads), " for apl (`APL_THREADS`) and for the baseline (`torch.set_num_threads`)\n")
    local py_version, torch_version = tostring(m.python):match("^(%S+)%s+(%S+)$")
    w("- apl: libtorch ", tostring(m.torch), ", BLAS ", tostring(m.blas), ", ", tostring(m.lua),
      "; baseline: Python ", py_version or tostring(m.python), ", torch ", torch_version or "?", "\n")
    if res.note and res.note ~= "" then w("- note: ", res.note, "\n") end
    for _, u in ipairs(res.updates or {}) do
        w("- updated: the ", table.concat(u.areas or {}, ", "), " rows by `", tostring(u.command), "` on ",
          tostring(u.date), string.format(" (%.0f s)", u.wall_s or 0), u.note and u.note ~= "" and ": " .. u.note or "", "\n")
    end
    if res.partial then w("- this run was cut short: the figures below are the ones that finished\n") end
    if res.quick then
        w("- QUICK run: scoring, DPO and SFT use the smaller shapes listed at the end; the full ",
          "configuration (`make bench`) is not measured yet in this file\n")
    end
    w("\n")
    w(R.render_md(R.table_rows(res.rows)), "\n")
    w("Ratios are apl / baseline: above 1 is better for rates, below 1 is better for times. ",
      "Figures are medians of the repetitions after one warm-up (for the compute rows, of three alternating rounds of apl and baseline processes); the spread is half the range of the ",
      "repetitions as a share of the median (apl / baseline). Peaks (matmul, bandwidth) are the best repetition, measured before each compute round.\n\n")
    w("## Derived figures\n\n")
    w(R.render_md(R.derived_rows(d, by)), "\n")
    local c = F.GPT2
    local db, dt = d.dpo_shape and d.dpo_shape[1], d.dpo_shape and d.dpo_shape[2]
    local sb, st = d.sft_shape and d.sft_shape[1], d.sft_shape and d.sft_shape[2]
    w("How they are computed (GPT-2 124M: L = ", c.n_layer, ", C = ", c.n_embd, ", V = ", c.vocab, "):\n\n")
    w("- matmul parameters P = 12·L·C² + V·C = ", string.format("%.1f M", F.matmul_params(c) / 1e6),
      " (the four projections of each block and the tied lm_head).\n")
    w("- forward FLOPs of B sequences of T tokens: B·T·(2·P + 4·L·T·C) (the attention term counts the full T×T, ",
      "not halved for the causal mask).\n")
    w("- SFT step = 3 × forward (forward + backward) on B = ", int(sb), ", T = ", int(st), ": ",
      string.format("%.0f GFLOP", d.sft_gflop or 0), ".\n")
    w("- DPO step = 3 × forward of the policy + 1 × forward of the reference, both on the 2B = ",
      int(db and 2 * db), " chosen and rejected sequences of T = ", int(dt),
      " (the reference log-probs are recomputed every step, not cached): ", string.format("%.0f GFLOP", d.dpo_gflop or 0),
      ". That is the work TRL's concatenated forward does, and the MFU row divides it by each side's time, ",
      "so both figures count work not done: the peer runs the head only at completion positions, and apl ",
      "also packs each pair into one row (the prompt once): ", string.format("%.0f GFLOP", d.dpo_gflop_apl or 0),
      ", which the next row divides by its time (the hardware utilisation).\n")
    w("- MFU = FLOPs / step time / peak, where peak is the better of apl's and torch's fp32 matmul ",
      "(n×n by n×n, 2·n³ FLOPs) measured in the same run: ", fmt(d.peak_gflops), " GFLOP/s.\n")
    w("- generation bound = batch × bandwidth / weight bytes: every decoding step reads all ",
      string.format("%.1f M", F.n_params(c) / 1e6), " fp32 parameters (", string.format("%.0f MB", (d.weight_bytes or 0) / 1e6),
      ") once; bandwidth from a 256 MiB tensor copy (read + write) in the same run: ", fmt(d.bandwidth_gbs), " GB/s. ",
      "The measured time includes the prompt's prefill.\n\n")
    local dd = by.dist_step and by.dist_step.details
    if dd then
        w("## Several processes (apl.dist)\n\n")
        w("`bench/dist.lua`: a DPO step (", tostring(dd.model), ", ", R.int(dd.pairs), " pairs of T = ", R.int(dd.T),
          ", policy and reference forwards, Adam lr ", (string.format("%g", dd.lr or 0):gsub("e%-0", "e-")), ") in one process and in ",
          "`apl --nproc 2` (Gloo on 127.0.0.1): every rank steps with the same ", R.int(dd.pairs), " pairs and computes ", R.int(dd.pairs and dd.pairs / 2), " of them, ",
          "and the optimizer sums the gradients over the ranks, in buckets, before its update. Each side is a ",
          "process of its own; the three take turns in ", R.int(dd.rounds or 1), (dd.rounds or 1) == 1 and " round" or " rounds",
          ", their order rotating, ",
          "and each figure is the median of all ", R.int(dd.steps), " timed steps of a side (each process times ",
          R.int(dd.steps and dd.steps / (dd.rounds or 1)), " after a warm-up step).", dd.load_avg_1min and string.format(" Load average (1 min) when it started: %.2f.", dd.load_avg_1min) or "",
          "\n\n")
        w(R.render_md(R.dist_rows(dd)), "\n")
        w("- ", table.concat(R.dist_facts(dd), "\n- "), "\n\n")
        w("The collectives' time is the faster rank's, step by step: the rank that arrives last waits for no ",
          "one, so it is the transfer; the other rank's (in brackets) also holds its wait for the slower one. ",
          "The flattening of the gradients into buckets and the copy back are counted with the compute. ",
          "Every side sets OPENBLAS_NUM_THREADS to its thread count besides APL_THREADS, which reaches ",
          "libtorch's threads but not the pool of Debian's pthread OpenBLAS (that one otherwise runs every ",
          "matmul on all the cores, in each process). ",
          "On ", R.int(dd.threads), " cores a 2-process step cannot be faster than one process using all of them: the ",
          "two ranks share the cores that the single process's threads share, and add the all-reduce. What ",
          "these rows measure is the overhead of data parallelism (the all-reduce's share of the step, the ",
          "bytes) and, against one process on 1 thread, the scaling per core. On several GPUs each rank has ",
          "its own device, so the compute is divided rather than shared, and the gradients go over NCCL.\n\n")
    end
    w("## Targets\n\n")
    w("| target (from the issues) | measured | status |\n|---|---|---|\n")
    local function trow(label, r, measured)
        w("| ", label, " | ", measured or "not measured yet", " | ",
          r and r.met ~= nil and (r.met and "met" or "**not met**") or "not measured yet", " |\n")
    end
    local function ratio_of(r) return r and r.ratio and string.format("%.2fx", r.ratio) or nil end
    trow("generation tokens/s >= 2x baseline", by.generation, ratio_of(by.generation))
    trow("log-prob scoring tokens/s >= 1.2x baseline", by.logprob, ratio_of(by.logprob))
    trow("DPO step time <= 0.9x baseline", by.dpo_step, ratio_of(by.dpo_step))
    trow("DPO step with LoRA (r = 16, attention and MLP): peak RSS <= 0.6x the full step", by.dpo_step_lora_rss,
        ratio_of(by.dpo_step_lora_rss))
    trow("tokenizer encode >= js-tiktoken on one thread", by.tokenizer_encode, ratio_of(by.tokenizer_encode))
    local o = by.oracle_labels_per_s
    trow("oracle: 128 labels, 1 s latency, 16 in flight, <= 10 s", o,
        o and o.seconds_for_128 and string.format("%.1f s%s", o.seconds_for_128,
            (o.n_labels and o.n_labels ~= 128 or res.quick) and " (scaled from the quick run's rate)" or "") or nil)
    local l = by.model_load_rss
    trow("model load peak RSS <= 1.2x checkpoint size (counted: peak minus the RSS before loading)", l,
        l and l.target_value and string.format("%.2fx (%.0f MB added, %.0f MB absolute peak, %.0f MB file)",
            l.target_value, l.apl_added_mb, l.apl, l.ckpt_mb) or nil)
    local limit = res.quick and 180 or 900
    w("| `", res.command, "` finishes in under ", int(limit / 60), " minutes on 2 cores | ",
      string.format("%.0f s", res.wall_s or 0), " on ", int(m.cores), " cores | ",
      (res.wall_s or math.huge) < limit and "met" or "**not met**", " |\n")
    w("\n")
    local missing = R.missing(res.rows)
    if #missing > 0 then w("\\* not measured in this run:\n\n- ", table.concat(missing, "\n- "), "\n\n") end
    w(R.METHOD)
    return table.concat(out)
end

R.METHOD = [[
## What is measured

Every area runs in its own process (`./apl bench/<area>.lua`, `bench/baseline.py`), so each peak
RSS is that benchmark's own.

| benchmark | configuration | baseline (`bench/baseline.py`, `/usr/bin/python3`) |
|---|---|---|
| model load | GPT-2 124M safetensors (random fp32 weights): time to a usable model; peak RSS of the process after one 8-token forward has read every weight | json header, `numpy.memmap` (copy-on-write) + `torch.from_numpy` per tensor on a model built on the meta device, the same forward |
| tokenizer encode | GPT-2 byte-level BPE on the same corpus, one thread, MB/s | js-tiktoken (node) |
| generation | GPT-2 124M, batch 8, 16-token prompts, 64 new tokens, greedy | HF-style: KV cache grown with `torch.cat` each step, `inference_mode`, the prefill's head at the last position only |
| log-prob scoring | GPT-2 124M forward, summed response log-probs, tokens/s | hidden states sliced to the response positions before the tied head, `log_softmax` over the vocabulary, `gather`, `inference_mode` |
| DPO step | B = 4 pairs, T = 128, policy + reference forwards, sigmoid loss, Adam lr 1e-6 | TRL's concatenated chosen+rejected batch with the head at completion positions only, reference forward under `no_grad` every step, `Adam(foreach=True)` |
| DPO step vs TRL-style peer | apl's DPO step, as above | TRL's own way: the head and a full-vocabulary `log_softmax` at every position, the default (for-loop) Adam |
| DPO step, LoRA vs full | GPT-2 124M, LoRA r = 16 on `c_attn`, `c_proj`, `c_fc` (attention and MLP), B = 4 pairs, T = 128: step time and the peak RSS of a process that does only that | apl's full DPO step in a process of its own (the policy, its θ0 copy, Adam over every weight) |
| SFT step | cross-entropy on response tokens, Adam | the same in plain torch, the head at response positions only, `Adam(foreach=True)` |
| DPO step, 2 processes vs 1 | the DPO step above in `apl --nproc 2` (each rank 2 of the 4 pairs, gradients all-reduced by Gloo), half the threads per rank (1 on 2 cores): step time, the all-reduce's time and bytes (section "Several processes") | apl's DPO step in one process on all the threads (same cores), and on 1 thread (per core) |
| oracle | 128 pairs to a local HTTP judge that answers after 1 s, 16 in flight | `bench/oracle_baseline.py`: urllib requests from a ThreadPoolExecutor of 16 workers, against the same server in the same run (no ledger, no retries) |
| matmul peak, bandwidth | 2048³ fp32 matmul, 256 MiB copy | the same in torch |

The peer's process runs with glibc's `MALLOC_MMAP_MAX_=0` and `MALLOC_TRIM_THRESHOLD_=2147483647`,
the heap settings apl makes with `mallopt` (`bench/baseline.py` restarts itself once with them).

`make bench QUICK=1` (`./apl bench/run.lua --quick`) changes: 2 timed repetitions instead of 3
(after the same one warm-up), a 1024³ matmul instead of 2048³, log-prob scoring on B = 4, T = 64,
the DPO step on 1 pair of T = 64, the SFT step on B = 2, T = 64, 32 oracle pairs instead of 128
(the 128-label time is then scaled from the measured rate), one js-tiktoken pass, and the
several-process DPO step on a 2-layer GPT-2 (C = 64, V = 512, 4 pairs of T = 32, lr 1e-3). Generation
stays GPT-2 124M, batch 8, 16-token prompts, 64 new tokens. Its figures are for smoke-testing.
`make bench ONLY=dist` (`--only dist`, a list of areas) runs those areas alone and replaces their
rows in `bench/results.json`, keeping the others from the last run (the header says so).
]]

return R
