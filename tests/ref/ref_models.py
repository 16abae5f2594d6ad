#!/usr/bin/python3
"""Independent NumPy reference for the causal LMs apl runs: GPT-2, GPT-NeoX, Llama/Mistral/Qwen2.

Written from the architectures' definitions (the papers and Hugging Face's modeling files), in
float64, one unpadded row at a time: nothing here mirrors apl's C code.

    ref_models.py check MODEL_DIR IO.safetensors
        IO holds "ids" (B, T) i64 and "mask" (B, T) (1 = real token, rows left-padded) and any
        number of apl outputs: a (B, T, V) tensor is compared with the reference at the real
        positions of every row; a tensor named "row<b>..." (1, T_b, V) with row b unpadded.
        Prints "max_abs_diff NAME VALUE" per output, then "max_abs_diff all VALUE".
"""
import json
import math
import os
import struct
import sys

import numpy as np

# ------------------------------------------------------------------------------------------------
# safetensors


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    base = 8 + n
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        raw = data[base + b:base + en]
        dt = e["dtype"]
        if dt == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            a = u.view(np.float32)
        else:
            np_dt = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                     "U8": "u1", "BOOL": "?"}[dt]
            a = np.frombuffer(raw, dtype=np_dt)
        out[name] = a.reshape(e["shape"])
    return out


def load_dir(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    single = os.path.join(d, "model.safetensors")
    if os.path.exists(single):
        w = read_safetensors(single)
    else:
        with open(os.path.join(d, "model.safetensors.index.json")) as f:
            idx = json.load(f)
        w = {}
        for shard in sorted(set(idx["weight_map"].values())):
            w.update(read_safetensors(os.path.join(d, shard)))
    return cfg, {k: np.asarray(v, dtype=np.float64) if v.dtype.kind == "f" else v for k, v in w.items()}


# ------------------------------------------------------------------------------------------------
# An optional hook on every projection (tests/ref/ref_lora.py adds LoRA deltas there): called as
# PROJ_HOOK(module, x, y) with the module's Hugging Face path ("transformer.h.0.attn.c_attn",
# "lm_head"), its input x (T, in) and output y (T, out); returns the output to use. None: off.
PROJ_HOOK = None


def proj(module, x, y):
    return y if PROJ_HOOK is None else PROJ_HOOK(module, x, y)


# ------------------------------------------------------------------------------------------------
# Building blocks (x is (T, C), one sequence)


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


_erf = np.vectorize(math.erf)


def act(name, x):
    if name == "gelu":
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if name in ("silu", "swish"):
        return x / (1.0 + np.exp(-x))
    if name == "relu":
        return np.maximum(x, 0)
    raise ValueError("activation " + name)


def causal_attention(q, k, v):
    """q (H, T, D), k/v (H, T, D) -> (T, H*D): softmax(q k^T / sqrt(D)) v over keys <= query."""
    H, T, D = q.shape
    s = q @ k.transpose(0, 2, 1) / math.sqrt(D)
    s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p @ v).transpose(1, 0, 2).reshape(T, H * D)


def rotate(x, inv_freq):
    """Rotary embedding (GPT-NeoX / Llama "rotate_half" form) on the last dim of x (H, T, R)."""
    T = x.shape[1]
    ang = np.arange(T, dtype=np.float64)[:, None] * inv_freq[None, :]  # (T, R/2)
    cos = np.concatenate([np.cos(ang), np.cos(ang)], -1)
    sin = np.concatenate([np.sin(ang), np.sin(ang)], -1)
    half = x.shape[-1] // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin


def inv_freq(dim, base, scaling=None):
    f = 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    if not scaling or scaling.get("rope_type", scaling.get("type")) in (None, "default"):
        return f
    assert scaling.get("rope_type", scaling.get("type")) == "llama3"
    factor = scaling["factor"]
    lo, hi = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / f
    # Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between blended
    out = np.where(wavelen > old / lo, f / factor, f)
    smooth = (old / wavelen - lo) / (hi - lo)
    blended = (1 - smooth) * out / factor + smooth * out
    medium = (wavelen <= old / lo) & (wavelen >= old / hi)
    return np.where(medium, blended, out)


# ------------------------------------------------------------------------------------------------
# Architectures: logits (T, V) for one unpadded sequence


def gpt2(cfg, w, ids):
    if "wte.weight" in w:  # Hub checkpoints name tensors without the transformer. prefix
        w = {"transformer." + k: v for k, v in w.items()}
    g = lambda n: w["transformer." + n]
    C, H = cfg["n_embd"], cfg["n_head"]
    D = C // H
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    T = len(ids)
    x = g("wte.weight")[ids] + g("wpe.weight")[np.arange(T)]
    for i in range(cfg["n_layer"]):
        p = lambda n: g("h.%d.%s" % (i, n))
        a = layer_norm(x, p("ln_1.weight"), p("ln_1.bias"), eps)
        h = "transformer.h.%d." % i
        qkv = proj(h + "attn.c_attn", a, a @ p("attn.c_attn.weight") + p("attn.c_attn.bias"))  # Conv1D: (in, out)
        q, k, v = (qkv[:, j * C:(j + 1) * C].reshape(T, H, D).transpose(1, 0, 2) for j in range(3))
        o = causal_attention(q, k, v)
        x = x + proj(h + "attn.c_proj", o, o @ p("attn.c_proj.weight") + p("attn.c_proj.bias"))
        m = layer_norm(x, p("ln_2.weight"), p("ln_2.bias"), eps)
        m = act(cfg.get("activation_function", "gelu_new"),
                proj(h + "mlp.c_fc", m, m @ p("mlp.c_fc.weight") + p("mlp.c_fc.bias")))
        x = x + proj(h + "mlp.c_proj", m, m @ p("mlp.c_proj.weight") + p("mlp.c_proj.bias"))
    x = layer_norm(x, g("ln_f.weight"), g("ln_f.bias"), eps)
    return proj("lm_head", x, x @ g("wte.weight").T)


def gpt_neox(cfg, w, ids):
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    D = C // H
    R = int(D * cfg.get("rotary_pct", 0.25))
    eps = cfg.get("layer_norm_eps", 1e-5)
    freqs = inv_freq(R, cfg.get("rotary_emb_base", 10000))
    T = len(ids)
    lin = lambda x, n, bias=True: proj(n, x, x @ w[n + ".weight"].T + (w[n + ".bias"] if bias else 0))
    x = w["gpt_neox.embed_in.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        pre = "gpt_neox.layers.%d." % i
        a = layer_norm(x, w[pre + "input_layernorm.weight"], w[pre + "input_layernorm.bias"], eps)
        qkv = lin(a, pre + "attention.query_key_value").reshape(T, H, 3 * D).transpose(1, 0, 2)
        q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
        q = np.concatenate([rotate(q[..., :R], freqs), q[..., R:]], -1)
        k = np.concatenate([rotate(k[..., :R], freqs), k[..., R:]], -1)
        attn = lin(causal_attention(q, k, v), pre + "attention.dense")

        def mlp(h):
            h = layer_norm(h, w[pre + "post_attention_layernorm.weight"],
                           w[pre + "post_attention_layernorm.bias"], eps)
            return lin(act(cfg.get("hidden_act", "gelu"), lin(h, pre + "mlp.dense_h_to_4h")),
                       pre + "mlp.dense_4h_to_h")

        if cfg.get("use_parallel_residual", True):
            x = x + attn + mlp(x)
        else:
            x = x + attn
            x = x + mlp(x)
    x = layer_norm(x, w["gpt_neox.final_layer_norm.weight"], w["gpt_neox.final_layer_norm.bias"], eps)
    head = w["gpt_neox.embed_in.weight"] if cfg.get("tie_word_embeddings", False) else w["embed_out.weight"]
    return proj("embed_out", x, x @ head.T)


def llama(cfg, w, ids):
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads") or H
    D = cfg.get("head_dim") or C // H
    eps = cfg.get("rms_norm_eps", 1e-6)
    qkv_bias = cfg.get("attention_bias", False) or cfg["model_type"] == "qwen2"
    o_bias = cfg.get("attention_bias", False) and cfg["model_type"] != "qwen2"
    freqs = inv_freq(D, cfg.get("rope_theta", 10000.0), cfg.get("rope_scaling"))
    T = len(ids)

    def lin(x, n, bias):
        return proj(n, x, x @ w[n + ".weight"].T + (w[n + ".bias"] if bias else 0))

    x = w["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % i
        a = rms_norm(x, w[pre + "input_layernorm.weight"], eps)
        q = lin(a, pre + "self_attn.q_proj", qkv_bias).reshape(T, H, D).transpose(1, 0, 2)
        k = lin(a, pre + "self_attn.k_proj", qkv_bias).reshape(T, KV, D).transpose(1, 0, 2)
        v = lin(a, pre + "self_attn.v_proj", qkv_bias).reshape(T, KV, D).transpose(1, 0, 2)
        q, k = rotate(q, freqs), rotate(k, freqs)
        group = H // KV  # query head h reads key/value head h // group
        k, v = np.repeat(k, group, axis=0), np.repeat(v, group, axis=0)
        x = x + lin(causal_attention(q, k, v), pre + "self_attn.o_proj", o_bias)
        m = rms_norm(x, w[pre + "post_attention_layernorm.weight"], eps)
        mb = cfg.get("mlp_bias", False)
        g = act(cfg.get("hidden_act", "silu"), lin(m, pre + "mlp.gate_proj", mb))
        x = x + lin(g * lin(m, pre + "mlp.up_proj", mb), pre + "mlp.down_proj", mb)
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else w["lm_head.weight"]
    return proj("lm_head", x, x @ head.T)


ARCHS = {"gpt2": gpt2, "gpt_neox": gpt_neox, "llama": llama, "mistral": llama, "qwen2": llama}


def logits(cfg, w, ids):
    return ARCHS[cfg["model_type"]](cfg, w, np.asarray(ids, dtype=np.int64))


# ------------------------------------------------------------------------------------------------


def max_abs_diff(pairs):
    """The largest |a - b| over (a, b) array pairs; NaN when any difference is NaN. Python's max
    keeps its first argument against a NaN (max(0.0, nan) is 0.0), which let all-NaN logits pass;
    np.max propagates it."""
    return float(np.max([np.max(np.abs(np.asarray(a, np.float64) - b), initial=0.0) for a, b in pairs] or [0.0]))


def check(model_dir, io_path):
    cfg, w = load_dir(model_dir)
    io = read_safetensors(io_path)
    ids, mask = io["ids"], io["mask"]
    refs = [logits(cfg, w, ids[b][mask[b] != 0]) for b in range(ids.shape[0])]
    worst = []
    for name in sorted(io):
        if name in ("ids", "mask"):
            continue
        out = np.asarray(io[name], dtype=np.float64)
        if name.startswith("row"):
            b = int(name[3:].split("_")[0])
            d = max_abs_diff([(out[0], refs[b])])
        else:
            d = max_abs_diff((out[b][mask[b] != 0], refs[b]) for b in range(ids.shape[0]))
        print("max_abs_diff %s %.3g" % (name, d))
        worst.append(d)
    print("max_abs_diff all %.3g" % np.max(worst or [0.0]))  # np.max: a NaN stays


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
