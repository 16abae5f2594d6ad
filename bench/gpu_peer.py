#!/usr/bin/env python3
"""bench/gpu_peer.py — the Hugging Face peer of bench/gpu.lua: the same shapes, with the
`transformers` model classes, run the way their users run them.

  * generation: model.generate, greedy, min_new_tokens = max_new_tokens (no early stop), KV cache;
  * scoring: one forward, log_softmax in f32, gather of the completion tokens, summed per row;
  * DPO step: TRL's concatenated forward (chosen and rejected rows in one batch, labels -100 on
    the prompt and the padding), the reference forward under no_grad every step, sigmoid loss,
    backward with gradient accumulation over micro-batches, torch.optim.Adam on the bf16 weights
    (as apl: no f32 master copy).

  python3 bench/gpu_peer.py --phase generate|score|dpo --spec SPEC.json
  python3 bench/gpu_peer.py --phase versions | peft

SPEC.json is written by bench/gpu.lua (dir, batch, prompt_lens, new_tokens, completion_len,
dpo_pairs, dpo_micro, beta, lr, reps, vocab_size, eos_id, device). Prints one JSON line:
{"name", "peer" (median), "unit", "samples", "max_allocated_gib", "shape"}, or {"skipped": why}
when transformers does not import (exit 0), or {"note": ...} for versions and peft.
"""
import argparse
import importlib.util
import json
import statistics
import sys
import time

import torch

LORA_REASON = "apl has no LoRA adapters yet (issue 15)"


def emit(row):
    print(json.dumps(row), flush=True)


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, reps, device):
    """One warm-up, then reps timed runs (seconds each)."""
    fn()
    out = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t0)
    return out


def rows(seed, lens, vocab):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab - 1, (n,), generator=g) for n in lens]


def pad(seqs, value, left):
    """(B, T) ids and attention mask, padded on the left (generation) or the right."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(T - len(s), T) if left else slice(0, len(s))
        ids[i, sl], mask[i, sl] = s, 1
    return ids, mask


def load(spec):
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(spec["dir"], torch_dtype=torch.bfloat16)
    return m.to(spec["device"])


def max_allocated_gib(device):
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def bench_generate(spec):
    dev, m = spec["device"], load(spec).eval()
    ids, mask = pad(rows(1, spec["prompt_lens"], spec["vocab_size"]), spec["eos_id"], left=True)
    ids, mask, n = ids.to(dev), mask.to(dev), spec["new_tokens"]

    def run():
        with torch.no_grad():
            m.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                       do_sample=False, pad_token_id=spec["eos_id"])
    secs = timed(run, spec["reps"], dev)
    rates = [spec["batch"] * n / s for s in secs]
    return {"name": "generation", "unit": "tok/s", "samples": rates, "peer": statistics.median(rates),
            "shape": f"B={spec['batch']} prompts {min(spec['prompt_lens'])}-{max(spec['prompt_lens'])} new={n}"}


def completion_logps(model, ids, mask, labels):
    """Summed log-probs of the labelled tokens of each row (TRL's get_batch_logps)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    labels = labels[:, 1:]
    keep = labels != -100
    lp = torch.gather(logits.log_softmax(-1), 2, labels.clamp(min=0).unsqueeze(2)).squeeze(2)
    return (lp * keep).sum(-1)


def pairs_batch(prompts, completions, eos):
    """Prompt + completion rows, right-padded, labels -100 outside the completions."""
    seqs = [torch.cat([p, c]) for p, c in zip(prompts, completions)]
    ids, mask = pad(seqs, eos, left=False)
    labels = ids.clone()
    labels[mask == 0] = -100
    for i, p in enumerate(prompts):
        labels[i, :len(p)] = -100
    return ids, mask, labels


def bench_score(spec):
    dev, m = spec["device"], load(spec).eval()
    p = rows(2, spec["prompt_lens"], spec["vocab_size"])
    c = rows(3, [spec["completion_len"]] * spec["batch"], spec["vocab_size"])
    ids, mask, labels = (t.to(dev) for t in pairs_batch(p, c, spec["eos_id"]))
    tokens = int(mask.sum())

    def run():
        with torch.no_grad():
            completion_logps(m, ids, mask, labels).cpu()
    secs = timed(run, spec["reps"], dev)
    rates = [tokens / s for s in secs]
    return {"name": "scoring", "unit": "tok/s", "samples": rates, "peer": statistics.median(rates),
            "shape": f"B={spec['batch']} tokens={tokens}"}


def bench_dpo(spec):
    dev = spec["device"]
    policy = load(spec).train()
    ref = load(spec).eval()
    for q in ref.parameters():
        q.requires_grad_(False)
    opt = torch.optim.Adam(policy.parameters(), lr=spec["lr"])
    n, micro, beta = spec["dpo_pairs"], spec["dpo_micro"], spec["beta"]
    p = rows(4, spec["prompt_lens"], spec["vocab_size"])
    c = rows(5, [spec["completion_len"]] * n, spec["vocab_size"])
    r = rows(6, [spec["completion_len"]] * n, spec["vocab_size"])
    # TRL's concatenated_forward: chosen rows then rejected rows, one batch per micro-batch
    micro_batches = []
    for k in range(0, n, micro):
        sl = slice(k, k + micro)
        batch = pairs_batch(p[sl] + p[sl], c[sl] + r[sl], spec["eos_id"])
        micro_batches.append(tuple(t.to(dev) for t in batch))

    def step():
        for ids, mask, labels in micro_batches:
            half = ids.shape[0] // 2
            with torch.no_grad():
                rl = completion_logps(ref, ids, mask, labels)
            pl = completion_logps(policy, ids, mask, labels)
            logits = beta * ((pl[:half] - rl[:half]) - (pl[half:] - rl[half:]))
            loss = -torch.nn.functional.logsigmoid(logits).mean() * (half / n)
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    secs = timed(step, spec["reps"], dev)
    return {"name": "dpo_step", "unit": "s", "samples": secs, "peer": statistics.median(secs),
            "shape": f"{n} pairs, micro-batches of {micro}, Adam on bf16 weights"}


def versions():
    import platform
    parts = [f"Python {platform.python_version()}", f"torch {torch.__version__}"]
    if torch.cuda.is_available():
        parts.append(f"CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
    for name in ("transformers", "peft"):
        if importlib.util.find_spec(name):
            parts.append(f"{name} {__import__(name).__version__}")
        else:
            parts.append(f"{name} not importable")
    return {"note": ", ".join(parts)}


def peft_note():
    """The LoRA logits comparison: skipped until apl has adapters."""
    where = "peft importable" if importlib.util.find_spec("peft") else "peft not importable"
    return {"skipped": f"{LORA_REASON} ({where})"}


PHASES = {"generate": bench_generate, "score": bench_score, "dpo": bench_dpo}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phase", required=True, choices=sorted(PHASES) + ["versions", "peft"])
    ap.add_argument("--spec")
    a = ap.parse_args()
    if a.phase == "versions":
        return emit(versions())
    if a.phase == "peft":
        return emit(peft_note())
    if not a.spec:
        ap.error("--spec is needed for " + a.phase)
    with open(a.spec) as f:
        spec = json.load(f)
    if not importlib.util.find_spec("transformers"):
        return emit({"skipped": "transformers not importable"})
    row = PHASES[a.phase](spec)
    row["max_allocated_gib"] = max_allocated_gib(spec["device"])
    emit(row)


if __name__ == "__main__":
    sys.exit(main())
