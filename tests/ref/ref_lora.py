#!/usr/bin/python3
"""ref_lora.py — NumPy reference of LoRA (Hu et al. 2021, as PEFT applies it) on the causal LMs of
ref_models.py, and of the DPO loss and its gradient with respect to every adapter matrix, for
tests/lua/test_lora.lua. Written from the definitions, in float64; nothing mirrors apl's C code.

An adapted projection computes y = W x + b + (lora_alpha / r) B (A x), with A (r, in) and B (out, r)
read from a PEFT adapter folder (adapter_config.json + adapter_model.safetensors, tensors named
"base_model.model.<module>.lora_A.weight" / ".lora_B.weight"). ref_models.py's PROJ_HOOK adds the
term on each projection that has an adapter. Dropout is not modelled (scoring has none).

    ref_lora.py check MODEL_DIR ADAPTER_DIR IO.safetensors
        as ref_models.py check, with the adapter applied: prints "max_abs_diff NAME VALUE" lines.
    ref_lora.py dpo MODEL_DIR ADAPTER_DIR in.json
        in.json: {"pairs": [[prompt ids, chosen ids, rejected ids], ...], "beta": 0.1,
                  "loss": "sigmoid", "fd_eps": 1e-5}
        The policy is the adapted model, the reference the base model (the adapter off). Prints
        {"loss": L, "pc": [...], "pr": [...], "rc": [...], "rr": [...],
         "grads": {tensor name: nested list, same shape}} where grads are dL/dA and dL/dB by
        central finite differences in float64 on this forward (independent of any autograd).
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_dpo  # noqa: E402
import ref_models  # noqa: E402

PREFIX = "base_model.model."


def load_adapter(d):
    """(scale, {module: [A, B]}) from a PEFT folder, A and B as float64 arrays (mutable)."""
    with open(os.path.join(d, "adapter_config.json")) as f:
        c = json.load(f)
    assert c["peft_type"] == "LORA" and not c.get("use_rslora") and not c.get("use_dora"), c
    t = ref_models.read_safetensors(os.path.join(d, "adapter_model.safetensors"))
    mods = {}
    for name, v in t.items():
        assert name.startswith(PREFIX), name
        module, which = name[len(PREFIX):].rsplit(".lora_", 1)
        assert which in ("A.weight", "B.weight"), name
        mods.setdefault(module, [None, None])["AB".index(which[0])] = np.array(v, dtype=np.float64)
    for module, (a, b) in mods.items():
        assert a is not None and b is not None and a.shape[0] == b.shape[1] == c["r"], module
    return c["lora_alpha"] / c["r"], mods


def install(scale, mods):
    """Sets ref_models' projection hook to add scale * B A x on every adapted module."""
    seen = set()

    def hook(module, x, y):
        ab = mods.get(module)
        if ab is None:
            return y
        seen.add(module)
        a, b = ab
        assert a.shape[1] == x.shape[-1] and b.shape[0] == y.shape[-1], (module, a.shape, b.shape, x.shape, y.shape)
        return y + scale * ((x @ a.T) @ b.T)

    ref_models.PROJ_HOOK = hook
    return seen


def logprob(cfg, w, prompt, completion):
    """Summed log-probability of completion after prompt."""
    ids = list(prompt) + list(completion)
    z = ref_models.logits(cfg, w, ids)
    z = z - z.max(-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    n = len(prompt)
    return float(sum(lp[n + j - 1, c] for j, c in enumerate(completion)))


def cmd_check(model_dir, adapter_dir, io_path):
    scale, mods = load_adapter(adapter_dir)
    seen = install(scale, mods)
    ref_models.check(model_dir, io_path)
    missing = sorted(set(mods) - seen)
    if missing:  # an adapter no projection of the reference used: its name is wrong
        sys.exit("adapters on no module of the model: %s" % ", ".join(missing))


def cmd_dpo(model_dir, adapter_dir, in_path):
    with open(in_path) as f:
        o = json.load(f)
    cfg, w = ref_models.load_dir(model_dir)
    scale, mods = load_adapter(adapter_dir)
    pairs, beta, kind = o["pairs"], float(o["beta"]), o.get("loss", "sigmoid")
    ls, eps = float(o.get("label_smoothing", 0.0)), float(o.get("fd_eps", 1e-5))
    ref_models.PROJ_HOOK = None
    rc = np.array([logprob(cfg, w, p, c) for p, c, _ in pairs])
    rr = np.array([logprob(cfg, w, p, r) for p, _, r in pairs])
    seen = install(scale, mods)

    def policy():
        pc = np.array([logprob(cfg, w, p, c) for p, c, _ in pairs])
        pr = np.array([logprob(cfg, w, p, r) for p, _, r in pairs])
        return pc, pr

    def loss():
        pc, pr = policy()
        return float(ref_dpo.dpo(pc, pr, rc, rr, beta, kind, ls)[0])

    pc, pr = policy()
    out = {"loss": float(ref_dpo.dpo(pc, pr, rc, rr, beta, kind, ls)[0]), "pc": pc.tolist(),
           "pr": pr.tolist(), "rc": rc.tolist(), "rr": rr.tolist(), "grads": {}}
    assert seen == set(mods), sorted(set(mods) - seen)
    for module in sorted(mods):
        for k, which in enumerate("AB"):
            t = mods[module][k]
            g = np.zeros_like(t)
            for idx in np.ndindex(t.shape):
                x0 = t[idx]
                t[idx] = x0 + eps
                lp = loss()
                t[idx] = x0 - eps
                lm = loss()
                t[idx] = x0
                g[idx] = (lp - lm) / (2 * eps)
            out["grads"][PREFIX + module + ".lora_" + which + ".weight"] = g.tolist()
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "check":
        cmd_check(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "dpo":
        cmd_dpo(*sys.argv[2:])
    else:
        sys.exit(__doc__)
