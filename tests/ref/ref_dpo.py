#!/usr/bin/python3
"""ref_dpo.py — NumPy reference of TRL's DPO losses and their gradients, written from the formulas
(independently of the engine) for tests/lua/test_dpo.lua.

    /usr/bin/python3 tests/ref/ref_dpo.py in.json   ->  prints {"loss":..., "d_pc":[...], "d_pr":[...]}

in.json: {"pc": [...], "pr": [...], "rc": [...], "rr": [...],      per-sequence log-probs
          "beta": 0.1, "loss": "sigmoid"|"ipo"|"hinge", "label_smoothing": 0.0}
The loss is the mean over pairs; d_pc and d_pr are its derivatives in the policy log-probs.
With h = (pc - pr) - (rc - rr) and z = beta h:
    sigmoid: -(1 - ls) log sigma(z) - ls log sigma(-z)   dL/dz = sigma(z) - (1 - ls)
    ipo:     (h - 1 / (2 beta))^2                        dL/dh = 2 (h - 1 / (2 beta))
    hinge:   max(0, 1 - z)                               dL/dz = -1 where 1 - z > 0
"""
import json
import sys

import numpy as np


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def sigmoid(x):
    return np.exp(log_sigmoid(x))


def dpo(pc, pr, rc, rr, beta, loss, ls):
    h = (pc - pr) - (rc - rr)
    z = beta * h
    if loss == "sigmoid":
        losses = -(1 - ls) * log_sigmoid(z) - ls * log_sigmoid(-z)
        dh = beta * (sigmoid(z) - (1 - ls))
    elif loss == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
        dh = 2 * (h - 1 / (2 * beta))
    elif loss == "hinge":
        losses = np.maximum(0.0, 1 - z)
        dh = np.where(1 - z > 0, -beta, 0.0)
    else:
        raise SystemExit("unknown loss " + loss)
    n = len(h)
    return losses.mean(), dh / n, -dh / n


def main():
    with open(sys.argv[1]) as f:
        d = json.load(f)
    arr = {k: np.asarray(d[k], dtype=np.float64) for k in ("pc", "pr", "rc", "rr")}
    loss, d_pc, d_pr = dpo(arr["pc"], arr["pr"], arr["rc"], arr["rr"], float(d["beta"]),
                           d.get("loss", "sigmoid"), float(d.get("label_smoothing", 0.0)))
    print(json.dumps({"loss": float(loss), "d_pc": d_pc.tolist(), "d_pr": d_pr.tolist()}))


if __name__ == "__main__":
    main()
