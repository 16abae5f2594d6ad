#!/usr/bin/python3
"""ref_adam.py — NumPy reference of the optimizer step (global-norm clipping, then AdamW), written
from the definitions (Kingma & Ba, Algorithm 1, with Loshchilov & Hutter's decoupled weight decay;
torch.nn.utils.clip_grad_norm_) in float64, for tests/lua/test_optim.lua.

    /usr/bin/python3 tests/ref/ref_adam.py in.json  ->  prints {"w": [...], "norms": [...]}

in.json: {"w0": [[...] per tensor], "grads": [step][tensor] -> [...] or null (no gradient: the
tensor and its moments are left alone), "lr", "beta1", "beta2", "eps", "weight_decay",
"grad_clip" (<= 0: off)}. Each step t = 1, 2, ...:
    n = ||g||_2 over all tensors;  g <- g * c / (n + 1e-6) when c > 0 and n > c
    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  m^ = m / (1 - b1^t);  v^ = v / (1 - b2^t)
    w <- w - lr (m^ / (sqrt(v^) + eps) + wd w)
Prints the weights after the last step and n of every step (before clipping).
"""
import json
import sys

import numpy as np


def run(o):
    w = [np.asarray(x, np.float64) for x in o["w0"]]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    b1, b2, lr, eps, wd, clip = o["beta1"], o["beta2"], o["lr"], o["eps"], o["weight_decay"], o["grad_clip"]
    norms = []
    for t, step in enumerate(o["grads"], start=1):
        g = [None if x is None else np.asarray(x, np.float64) for x in step]
        n = float(np.sqrt(sum(float(np.sum(x * x)) for x in g if x is not None)))
        norms.append(n)
        if clip > 0 and n > clip:
            g = [None if x is None else x * (clip / (n + 1e-6)) for x in g]
        for i, gi in enumerate(g):
            if gi is None:
                continue
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            mh, vh = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
            w[i] = w[i] - lr * (mh / (np.sqrt(vh) + eps) + wd * w[i])
    return {"w": [x.tolist() for x in w], "norms": norms}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        print(json.dumps(run(json.load(f))))
