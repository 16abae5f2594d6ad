#!/usr/bin/python3
"""bench/baseline.py — the PyTorch-Python peer of the apl benchmarks.

GPT-2 written from scratch in plain torch (embeddings, pre-LN blocks, GELU tanh, tied lm_head,
HF's Conv1D weight layout and eager attention), run the way a competent PyTorch user runs it:
  * generation: HF-style incremental decoding, the KV cache grown with torch.cat each step, under
    torch.inference_mode; the prefill runs the head at the last prompt position only;
  * scoring: the hidden states sliced to the completion's positions before the tied head, then
    log_softmax over the vocabulary and gather of the target ids, under torch.inference_mode;
  * DPO: policy and reference forwards every step on TRL's concatenated chosen+rejected batch,
    the head at completion positions only, sigmoid loss, backward, torch.optim.Adam(foreach=True)
    lr 1e-6; and, as a second labelled row (dpo_step_trl), TRL's own way: the head and a
    full-vocabulary log_softmax at every position, the default (for-loop) Adam;
  * SFT: cross-entropy on the response tokens (the head at their positions only), foreach Adam;
  * the heap: glibc's MALLOC_MMAP_MAX_=0 and MALLOC_TRIM_THRESHOLD_ as apl sets them with mallopt
    (the process restarts itself once with them, unless the user set either or GLIBC_TUNABLES);
  * model load: the safetensors header parsed with json, the file mapped with numpy.memmap
    (copy-on-write) and each tensor wrapped with torch.from_numpy, on a model built on the meta
    device; then one 8-token forward, which reads every weight.
It must run under Debian's /usr/bin/python3 (python3-torch: the same libtorch as ./apl).

  /usr/bin/python3 bench/baseline.py [--quick] [--threads N] [--only a,b]   compute benchmarks
  /usr/bin/python3 bench/baseline.py load FILE.safetensors                   load time, peak RSS
  /usr/bin/python3 bench/baseline.py write-ckpt DIR                          random GPT-2 124M

Prints one JSON object per line: {"name": ..., "baseline": median, "unit": ..., "samples": [...]}.
"""
import argparse
import copy
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

GPT2_124M = dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)


# ----------------------------------------------------------------------------------------------
# Model

class Conv1D(nn.Module):
    """HF's GPT-2 linear layer: weight stored (in, out), y = x @ W + b."""

    def __init__(self, n_in, n_out, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out, device=device))
        self.bias = nn.Parameter(torch.zeros(n_out, device=device))

    def forward(self, x):
        shape = x.shape[:-1] + (self.weight.shape[1],)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(shape)


class Block(nn.Module):
    def __init__(self, cfg, device=None):
        super().__init__()
        C = cfg["n_embd"]
        self.n_head = cfg["n_head"]
        self.ln_1 = nn.LayerNorm(C, eps=1e-5, device=device)
        self.c_attn = Conv1D(C, 3 * C, device)
        self.attn_proj = Conv1D(C, C, device)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5, device=device)
        self.c_fc = Conv1D(C, 4 * C, device)
        self.mlp_proj = Conv1D(4 * C, C, device)

    def attn(self, x, past):
        B, T, C = x.shape
        H = self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, hs)
        k = k.view(B, T, H, C // H).transpose(1, 2)
        v = v.view(B, T, H, C // H).transpose(1, 2)
        if past is not None:  # HF: the cache grows by concatenation every step
            k = torch.cat((past[0], k), dim=-2)
            v = torch.cat((past[1], v), dim=-2)
        S = k.shape[-2]
        w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(C // H)  # (B, H, T, S)
        causal = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(S - T)
        w = w.masked_fill(~causal, torch.finfo(w.dtype).min)
        w = F.softmax(w, dim=-1)
        y = torch.matmul(w, v).transpose(1, 2).reshape(B, T, C)
        return self.attn_proj(y), (k, v)

    def forward(self, x, past=None):
        a, present = self.attn(self.ln_1(x), past)
        x = x + a
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x, present


class GPT2(nn.Module):
    def __init__(self, cfg, device=None):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg["vocab_size"], cfg["n_embd"], device=device)
        self.wpe = nn.Embedding(cfg["n_positions"], cfg["n_embd"], device=device)
        self.h = nn.ModuleList([Block(cfg, device) for _ in range(cfg["n_layer"])])
        self.ln_f = nn.LayerNorm(cfg["n_embd"], eps=1e-5, device=device)

    def init_random(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif ".ln_" in name or name.startswith("ln_"):
                    p.fill_(1.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        return self

    def forward(self, idx, past=None, first=0):
        """Logits at positions first..T-1 only: the tied head (V x C per position) is the largest
        matmul of the model, and scoring, training and the prefill need few of its rows."""
        B, T = idx.shape
        start = 0 if past is None else past[0][0].shape[-2]
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        presents = []
        for i, block in enumerate(self.h):
            x, p = block(x, None if past is None else past[i])
            presents.append(p)
        x = self.ln_f(x[:, first:])
        return F.linear(x, self.wte.weight), presents  # tied lm_head: (B, T - first, V)


# HF checkpoint names (with or without the "transformer." prefix) -> this module's names.
def hf_name(name):
    name = name[len("transformer."):] if name.startswith("transformer.") else name
    return (name.replace(".attn.c_attn.", ".c_attn.").replace(".attn.c_proj.", ".attn_proj.")
            .replace(".mlp.c_fc.", ".c_fc.").replace(".mlp.c_proj.", ".mlp_proj."))


def our_to_hf(name):
    return "transformer." + (name.replace(".c_attn.", ".attn.c_attn.").replace(".attn_proj.", ".attn.c_proj.")
                             .replace(".c_fc.", ".mlp.c_fc.").replace(".mlp_proj.", ".mlp.c_proj."))


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------
# safetensors, read and written with json + numpy (the safetensors package is not installed)

DTYPES = {"F32": (np.float32, torch.float32), "F16": (np.float16, torch.float16),
          "BF16": (np.uint16, torch.bfloat16), "I64": (np.int64, torch.int64)}


def read_safetensors_header(f):
    n = int.from_bytes(f.read(8), "little")
    header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n


def load_gpt2(path):
    """Builds the module on the meta device, then wraps each tensor of a copy-on-write memory map
    of the file (numpy.memmap -> torch.from_numpy): no copy, pages read when first used."""
    cfg = dict(GPT2_124M)
    cfg_path = os.path.join(os.path.dirname(path), "config.json")
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            c = json.load(f)
        for k in cfg:
            cfg[k] = c.get(k, cfg[k])
    model = GPT2(cfg, device="meta")
    params = dict(model.named_parameters())
    with open(path, "rb") as f:
        header, base = read_safetensors_header(f)
    data = np.memmap(path, dtype=np.uint8, mode="c", offset=base)
    for key, info in header.items():
        name = hf_name(key)
        if name not in params:  # lm_head.weight (tied), attn.bias masks
            continue
        np_dtype, dtype = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        t = torch.from_numpy(data[begin:end].view(np_dtype).reshape(info["shape"])).view(dtype)
        if tuple(t.shape) != tuple(params[name].shape):
            raise ValueError(f"{path}: {key}: shape {list(t.shape)}, want {list(params[name].shape)}")
        mod_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(mod_name) if mod_name else model, attr, nn.Parameter(t))
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:
        raise ValueError(f"{path}: missing tensors: {', '.join(missing[:4])}")
    return model


def write_gpt2(dirname, cfg=GPT2_124M, seed=0):
    os.makedirs(dirname, exist_ok=True)
    model = GPT2(cfg).init_random(seed)
    header, chunks, off = {}, [], 0
    for name, p in model.named_parameters():
        a = p.detach().numpy().astype(np.float32)
        header[our_to_hf(name)] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        chunks.append(a)
        off += a.nbytes
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path = os.path.join(dirname, "model.safetensors")
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for a in chunks:
            f.write(a.tobytes())
    with open(os.path.join(dirname, "config.json"), "w") as f:
        json.dump(dict(cfg, model_type="gpt2", n_ctx=cfg["n_positions"], layer_norm_epsilon=1e-5,
                       activation_function="gelu_new", tie_word_embeddings=True), f, indent=1)
    return path


# ----------------------------------------------------------------------------------------------
# Timing

def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def timed(fn, warmup, reps):
    """Runs fn warmup times untimed, then reps times; returns the seconds of each timed run."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def emit(**row):
    print(json.dumps(row), flush=True)


def emit_rate(name, unit, work, secs, config, best=False, **extra):
    """A rate (work per second) from per-run seconds: the median run, or the best for peaks."""
    rates = [work / s for s in secs]
    value = max(rates) if best else statistics.median(rates)
    emit(name=name, baseline=value, unit=unit, samples=rates, config=config, **extra)


def emit_time(name, secs, config, **extra):
    emit(name=name, baseline=statistics.median(secs), unit="s", samples=secs, config=config, **extra)


# ----------------------------------------------------------------------------------------------
# Benchmarks

def bench_matmul(n, reps):
    a, b = torch.randn(n, n), torch.randn(n, n)
    secs = timed(lambda: torch.mm(a, b), 1, reps)
    emit_rate("matmul_peak", "GFLOP/s", 2.0 * n ** 3 / 1e9, secs, f"{n}x{n}x{n} fp32, best of {reps}", best=True)


def bench_bandwidth(mb, reps):
    src = torch.ones(mb * 1024 * 1024 // 4)
    dst = torch.empty_like(src)
    # a copy reads and writes every byte once
    secs = timed(lambda: dst.copy_(src), 1, reps)
    emit_rate("mem_bandwidth", "GB/s", 2.0 * src.numel() * 4 / 1e9, secs, f"{mb} MiB copy, best of {reps}", best=True)


@torch.inference_mode()
def generate(model, prompt, new_tokens):
    logits, past = model(prompt, first=prompt.shape[1] - 1)  # the prefill's head: last position
    out = [prompt]
    for i in range(new_tokens):
        nxt = logits[:, -1, :].argmax(dim=-1, keepdim=True)  # greedy: (B, 1)
        out.append(nxt)
        if i + 1 < new_tokens:
            logits, past = model(nxt, past)
    return torch.cat(out, dim=1)


def bench_generation(model, B, T, new, warmup, reps):
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, model.cfg["vocab_size"], (B, T), generator=g)
    secs = timed(lambda: generate(model, prompt, new), warmup, reps)
    emit_rate("generation", "tok/s", B * new, secs, f"B={B} prompt={T} new={new} greedy")


def sequence_logprobs(model, x, mask, sliced=True):
    """Sum over response tokens of log p(x[t] | x[<t]): log_softmax, then gather. sliced: the head
    runs only from the position before the first response token (TRL runs it on every position)."""
    s = int(mask.argmax(-1).min()) if sliced else 1  # first response position of any row
    logits, _ = model(x, first=s - 1)
    logp = logits[:, :-1].log_softmax(-1).gather(-1, x[:, s:].unsqueeze(-1)).squeeze(-1)  # (B, T-s)
    return (logp * mask[:, s:]).sum(-1)


def batch(model, B, T, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, model.cfg["vocab_size"], (B, T), generator=g)
    mask = torch.zeros(B, T)
    mask[:, T // 2:] = 1.0  # first half prompt, second half response
    return x, mask


def bench_logprob(model, B, T, warmup, reps):
    x, mask = batch(model, B, T, 2)

    def run():
        with torch.inference_mode():
            sequence_logprobs(model, x, mask)
    secs = timed(run, warmup, reps)
    emit_rate("logprob", "tok/s", B * T, secs, f"B={B} T={T}")


def bench_dpo(model, B, T, warmup, reps, beta=0.1, trl=False):
    """trl: TRL's way (the head on every position, for-loop Adam), the row dpo_step_trl."""
    policy = model
    reference = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-6, foreach=not trl)
    x, mask = batch(model, 2 * B, T, 3)  # rows 0..B-1 chosen, B..2B-1 rejected

    def step():
        pi = sequence_logprobs(policy, x, mask, sliced=not trl)
        with torch.no_grad():  # (inference tensors could not meet the policy's graph)
            ref = sequence_logprobs(reference, x, mask, sliced=not trl)
        logits = beta * ((pi[:B] - ref[:B]) - (pi[B:] - ref[B:]))
        loss = -F.logsigmoid(logits).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    secs = timed(step, warmup, reps)
    how = "TRL-style: head on every position, for-loop Adam" if trl else "head at completion positions, foreach Adam"
    emit_time("dpo_step_trl" if trl else "dpo_step", secs, f"B={B} pairs T={T}, policy+reference forwards, {how}",
              peak_rss_mb=peak_rss_mb())
    model.zero_grad(set_to_none=True)
    del reference, opt


def bench_sft(model, B, T, warmup, reps):
    opt = torch.optim.Adam(model.parameters(), lr=1e-6, foreach=True)
    x, mask = batch(model, B, T, 4)
    s = int(mask.argmax(-1).min())  # the first response position: the head runs from s - 1 on

    def step():
        logits, _ = model(x, first=s - 1)
        nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, s:].reshape(-1), reduction="none")
        loss = (nll * mask[:, s:].reshape(-1)).sum() / mask[:, s:].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    secs = timed(step, warmup, reps)
    emit_time("sft_step", secs, f"B={B} T={T}, head at response positions, foreach Adam")
    model.zero_grad(set_to_none=True)  # so the DPO step after it starts from the same state


def bench_load(path):
    before = rss_mb()
    t0 = time.perf_counter()
    model = load_gpt2(path)
    secs = time.perf_counter() - t0
    after_load = rss_mb()
    with torch.no_grad():  # reads every weight once, as bench/model_load.lua does
        model(torch.tensor([[464, 2068, 7586, 21831, 18045, 625, 262, 16931]]))
    emit(name="model_load", baseline_s=secs, peak_rss_mb=peak_rss_mb(), rss_before_mb=before,
         rss_after_load_mb=after_load, ckpt_mb=os.path.getsize(path) / 2 ** 20, n_params=n_params(model),
         config="GPT-2 124M f32, load + one 8-token forward")


# ----------------------------------------------------------------------------------------------

# What apl does with mallopt at start-up (lua/main.c): no mmap for big blocks, so freed logits and
# gradients stay in the heap instead of coming back as fresh zeroed pages every step, and no trim
# below INT_MAX bytes. glibc reads these variables when the process starts, hence the restart.
HEAP_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "2147483647"}


def with_apl_heap():
    if any(k in os.environ for k in (*HEAP_ENV, "GLIBC_TUNABLES")):
        return
    os.environ.update(HEAP_ENV)
    os.execv(sys.executable, [sys.executable] + sys.argv)


def main():
    with_apl_heap()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", nargs="?", default="compute", choices=["compute", "load", "write-ckpt"])
    ap.add_argument("path", nargs="?")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--only", default="", help="comma-separated: matmul,bandwidth,generation,logprob,dpo,dpo_trl,sft")
    ap.add_argument("--gen", help="batch,prompt,new tokens (default 8,16,64)")
    ap.add_argument("--score", help="batch,tokens for log-prob scoring (default 8,128; quick 4,64)")
    ap.add_argument("--dpo", help="pairs,tokens for a DPO step (default 4,128; quick 1,64)")
    ap.add_argument("--sft", help="batch,tokens for an SFT step (default 8,128; quick 2,64)")
    ap.add_argument("--reps", type=int, default=int(os.environ.get("APL_BENCH_REPS", "0")),
                    help="timed repetitions (default 3, quick 2; env APL_BENCH_REPS)")
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.cmd == "write-ckpt":
        print(write_gpt2(a.path or "bench/ckpt"))
        return
    if a.cmd == "load":
        bench_load(a.path)
        return

    reps = a.reps or (2 if a.quick else 3)
    a.gen = a.gen or "8,16,64"
    a.score = a.score or ("4,64" if a.quick else "8,128")
    a.dpo = a.dpo or ("1,64" if a.quick else "4,128")
    a.sft = a.sft or ("2,64" if a.quick else "8,128")
    only = set(a.only.split(",")) if a.only else None
    want = lambda k: only is None or k in only
    emit(name="baseline_info", threads=torch.get_num_threads(), torch=torch.__version__,
         python=sys.version.split()[0], reps=reps, warmup=a.warmup,
         heap={k: os.environ.get(k) for k in (*HEAP_ENV, "GLIBC_TUNABLES")})
    torch.manual_seed(0)
    if want("matmul"):
        bench_matmul(1024 if a.quick else 2048, reps)
    if want("bandwidth"):
        bench_bandwidth(256, reps)
    if not any(want(k) for k in ("generation", "logprob", "dpo", "dpo_trl", "sft")):
        return
    model = GPT2(GPT2_124M).init_random(0)
    emit(name="baseline_model", n_params=n_params(model))
    ints = lambda s: [int(v) for v in s.split(",")]
    if want("generation"):
        bench_generation(model, *ints(a.gen), a.warmup, reps)
    if want("logprob"):
        bench_logprob(model, *ints(a.score), a.warmup, reps)
    if want("sft"):
        bench_sft(model, *ints(a.sft), a.warmup, reps)
    if want("dpo"):  # late: its peak RSS (policy, reference, Adam state) is the process's peak
        bench_dpo(model, *ints(a.dpo), a.warmup, reps)
    if want("dpo_trl"):  # after it: the full-vocabulary logits make this one's peak the higher
        bench_dpo(model, *ints(a.dpo), a.warmup, reps, trl=True)


if __name__ == "__main__":
    main()
