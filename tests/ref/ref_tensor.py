"""NumPy reference for tests/lua/test_tensor.lua.

    /usr/bin/python3 tests/ref/ref_tensor.py inputs.json

inputs.json holds {"x": (R, C) matrix, "a": (M, K), "b": (K, N), "k": int}. Prints a Lua table
literal (`return {...}`) with softmax, log_softmax, matmul, reductions, topk and sort computed in
float64, written independently of the engine. Indices follow apl.tensor's convention: 1-based.
"""
import json
import sys

import numpy as np


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def to_lua(v):
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {to_lua(x)}" for k, x in v.items()) + "}"
    if isinstance(v, np.ndarray):
        return to_lua(v.tolist())
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(to_lua(x) for x in v) + "}"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return repr(float(v))


def main():
    with open(sys.argv[1]) as f:
        inp = json.load(f)
    x = np.array(inp["x"], dtype=np.float64)
    a = np.array(inp["a"], dtype=np.float64)
    b = np.array(inp["b"], dtype=np.float64)
    k = int(inp["k"])
    order = np.argsort(-x, axis=1, kind="stable")[:, :k]
    asc = np.argsort(x, axis=1, kind="stable")
    out = {
        "softmax1": softmax(x, 0),
        "softmax2": softmax(x, 1),
        "log_softmax1": log_softmax(x, 0),
        "log_softmax2": log_softmax(x, 1),
        "matmul": a @ b,
        "sum": x.sum(),
        "sum1": x.sum(axis=0),
        "sum2": x.sum(axis=1),
        "mean": x.mean(),
        "mean2": x.mean(axis=1),
        "max": x.max(),
        "max2": x.max(axis=1),
        "argmax2": x.argmax(axis=1) + 1,
        "min1": x.min(axis=0),
        "argmin1": x.argmin(axis=0) + 1,
        "argmax": x.argmax() + 1,  # over the flattened tensor, like torch.argmax()
        "topk_values": np.take_along_axis(x, order, axis=1),
        "topk_indices": order + 1,
        "sort_values": np.take_along_axis(x, asc, axis=1),
        "sort_indices": asc + 1,
    }
    print("return " + to_lua(out))


if __name__ == "__main__":
    main()
