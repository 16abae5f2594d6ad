#!/usr/bin/python3
"""Writes checkpoints the way the Hub's real ones look, with its own safetensors writer (NumPy
only), so that apl's loader is tested on files it did not write itself.

    make_ckpt.py gpt2_hub DIR        GPT-2 names without "transformer.", attn.bias/masked_bias buffers
    make_ckpt.py pythia_hub DIR      GPT-NeoX in fp16 with attention.bias, masked_bias, inv_freq buffers
    make_ckpt.py llama_sharded DIR   Llama (GQA, llama3 rope_scaling) in bf16, two shards + index.json
    make_ckpt.py bad CASE DIR        a broken checkpoint (see BAD below)
"""
import json
import os
import struct
import sys

import numpy as np

SEED = 1234

# ------------------------------------------------------------------------------------------------
# safetensors writing


def to_bf16(a):
    """float32 -> bfloat16 bits, rounding to nearest even."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def entry(name, a, dtype):
    if dtype == "BF16":
        raw = to_bf16(a).astype("<u2").tobytes()
    else:
        np_dt = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "BOOL": "?"}[dtype]
        raw = np.asarray(a).astype(np_dt).tobytes()
    return [name, dtype, list(np.shape(a)), raw]


def st_bytes(entries, fix_header=None, header_len=None):
    """entries: [name, dtype, shape, raw]; fix_header edits the header dict before writing."""
    header = {"__metadata__": {"format": "pt"}}
    data = b""
    for name, dt, shape, raw in entries:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if fix_header:
        fix_header(header)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h) if header_len is None else header_len) + h + data


def write(path, blob):
    with open(path, "wb") as f:
        f.write(blob)


def write_config(d, cfg):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


# ------------------------------------------------------------------------------------------------
# Random weights: matrices N(0, 0.1), norm weights near 1, biases small but not zero


class Weights:
    def __init__(self):
        self.rng = np.random.default_rng(SEED)
        self.items = []

    def mat(self, name, *shape):
        self.items.append((name, self.rng.normal(0, 0.1, shape).astype(np.float32)))

    def norm(self, name, n):
        self.items.append((name, (1 + self.rng.normal(0, 0.1, n)).astype(np.float32)))

    def bias(self, name, n):
        self.items.append((name, self.rng.normal(0, 0.05, n).astype(np.float32)))


GPT2_CFG = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 101,
            "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64, "n_ctx": 64,
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
            "initializer_range": 0.02, "bos_token_id": 100, "eos_token_id": 100,
            "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1}


def gpt2_hub_entries(cfg=GPT2_CFG):
    C, P, w = cfg["n_embd"], cfg["n_positions"], Weights()
    w.mat("wte.weight", cfg["vocab_size"], C)
    w.mat("wpe.weight", P, C)
    for i in range(cfg["n_layer"]):
        p = "h.%d." % i
        w.norm(p + "ln_1.weight", C), w.bias(p + "ln_1.bias", C)
        w.mat(p + "attn.c_attn.weight", C, 3 * C), w.bias(p + "attn.c_attn.bias", 3 * C)
        w.mat(p + "attn.c_proj.weight", C, C), w.bias(p + "attn.c_proj.bias", C)
        w.norm(p + "ln_2.weight", C), w.bias(p + "ln_2.bias", C)
        w.mat(p + "mlp.c_fc.weight", C, 4 * C), w.bias(p + "mlp.c_fc.bias", 4 * C)
        w.mat(p + "mlp.c_proj.weight", 4 * C, C), w.bias(p + "mlp.c_proj.bias", C)
    w.norm("ln_f.weight", C), w.bias("ln_f.bias", C)
    es = [entry(n, a, "F32") for n, a in w.items]
    for i in range(cfg["n_layer"]):  # the causal-mask buffers old GPT-2 checkpoints carry
        es.append(entry("h.%d.attn.bias" % i, np.tril(np.ones((1, 1, P, P), np.float32)), "F32"))
        es.append(entry("h.%d.attn.masked_bias" % i, np.float32(-1e4), "F32"))
    return es


def gpt2_hub(d):
    write_config(d, GPT2_CFG)
    write(os.path.join(d, "model.safetensors"), st_bytes(gpt2_hub_entries()))


def pythia_hub(d):
    cfg = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "vocab_size": 101,
           "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 128, "hidden_act": "gelu", "rotary_pct": 0.25,
           "rotary_emb_base": 10000, "max_position_embeddings": 64, "layer_norm_eps": 1e-5,
           "use_parallel_residual": True, "tie_word_embeddings": False, "torch_dtype": "float16",
           "bos_token_id": 0, "eos_token_id": 0, "use_cache": True}
    write_config(d, cfg)
    C, I, P, w = 32, 128, 64, Weights()
    w.mat("gpt_neox.embed_in.weight", 101, C)
    for i in range(2):
        p = "gpt_neox.layers.%d." % i
        w.norm(p + "input_layernorm.weight", C), w.bias(p + "input_layernorm.bias", C)
        w.norm(p + "post_attention_layernorm.weight", C), w.bias(p + "post_attention_layernorm.bias", C)
        w.mat(p + "attention.query_key_value.weight", 3 * C, C)
        w.bias(p + "attention.query_key_value.bias", 3 * C)
        w.mat(p + "attention.dense.weight", C, C), w.bias(p + "attention.dense.bias", C)
        w.mat(p + "mlp.dense_h_to_4h.weight", I, C), w.bias(p + "mlp.dense_h_to_4h.bias", I)
        w.mat(p + "mlp.dense_4h_to_h.weight", C, I), w.bias(p + "mlp.dense_4h_to_h.bias", C)
    w.norm("gpt_neox.final_layer_norm.weight", C), w.bias("gpt_neox.final_layer_norm.bias", C)
    w.mat("embed_out.weight", 101, C)
    es = [entry(n, a, "F16") for n, a in w.items]
    R = 2  # rotary dims = 0.25 * head size 8
    for i in range(2):
        p = "gpt_neox.layers.%d.attention." % i
        es.append(entry(p + "bias", np.tril(np.ones((1, 1, P, P), bool)), "BOOL"))
        es.append(entry(p + "masked_bias", np.float16(-1e4), "F16"))
        es.append(entry(p + "rotary_emb.inv_freq", 1.0 / 10000 ** (np.arange(0, R, 2) / R), "F32"))
    write(os.path.join(d, "model.safetensors"), st_bytes(es))


LLAMA_CFG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 101,
             "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "intermediate_size": 64, "hidden_act": "silu",
             "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
             "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
             "tie_word_embeddings": False, "attention_bias": False, "torch_dtype": "bfloat16",
             "bos_token_id": 1, "eos_token_id": [2, 3]}


def llama_sharded(d, drop_shard=False):
    write_config(d, LLAMA_CFG)
    C, KD, I, w = 32, 16, 64, Weights()
    w.mat("model.embed_tokens.weight", 101, C)
    for i in range(2):
        p = "model.layers.%d." % i
        w.norm(p + "input_layernorm.weight", C)
        w.mat(p + "self_attn.q_proj.weight", C, C), w.mat(p + "self_attn.k_proj.weight", KD, C)
        w.mat(p + "self_attn.v_proj.weight", KD, C), w.mat(p + "self_attn.o_proj.weight", C, C)
        w.norm(p + "post_attention_layernorm.weight", C)
        w.mat(p + "mlp.gate_proj.weight", I, C), w.mat(p + "mlp.up_proj.weight", I, C)
        w.mat(p + "mlp.down_proj.weight", C, I)
    w.norm("model.norm.weight", C)
    w.mat("lm_head.weight", 101, C)
    es = [entry(n, a, "BF16") for n, a in w.items]
    half = len(es) // 2
    shards = {"model-00001-of-00002.safetensors": es[:half], "model-00002-of-00002.safetensors": es[half:]}
    wmap = {}
    for fname, part in shards.items():
        if not (drop_shard and fname.startswith("model-00002")):
            write(os.path.join(d, fname), st_bytes(part))
        wmap.update({e[0]: fname for e in part})
    total = sum(len(e[3]) for e in es)
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f, indent=2)


# ------------------------------------------------------------------------------------------------
# Broken checkpoints: each starts from the GPT-2 Hub layout above and breaks one thing


def _config(d, **changes):
    cfg = dict(GPT2_CFG)
    for k, v in changes.items():
        if v is None:
            del cfg[k]
        else:
            cfg[k] = v
    write_config(d, cfg)


def _weights(d, entries=None, **kw):
    write(os.path.join(d, "model.safetensors"), st_bytes(entries or gpt2_hub_entries(), **kw))


def _set(name, key, value):
    def fix(h):
        h[name][key] = value
    return fix


def bad_truncated(d):
    _config(d)
    blob = st_bytes(gpt2_hub_entries())
    write(os.path.join(d, "model.safetensors"), blob[:len(blob) // 2])


def bad_tiny_file(d):
    _config(d)
    write(os.path.join(d, "model.safetensors"), b"\x10\x00\x00")


def bad_overlap(d):
    _config(d)
    _weights(d, fix_header=lambda h: h["h.0.ln_1.bias"].update(
        data_offsets=[h["h.0.ln_1.weight"]["data_offsets"][0] + 4,
                      h["h.0.ln_1.weight"]["data_offsets"][0] + 4 + 32 * 4]))


def bad_missing_tensor(d):
    _config(d)
    _weights(d, [e for e in gpt2_hub_entries() if e[0] != "h.1.mlp.c_fc.bias"])


def bad_wrong_shape(d):
    _config(d, n_positions=32)  # wpe.weight in the file is (64, 32)
    _weights(d)


def bad_unexpected_tensor(d):
    _config(d)
    _weights(d, gpt2_hub_entries() + [entry("h.0.attn.q_proj.weight", np.zeros((32, 32)), "F32")])


def bad_int_weight(d):
    _config(d)
    _weights(d, [entry("ln_f.bias", np.zeros(32, np.int64), "I64") if e[0] == "ln_f.bias" else e
                 for e in gpt2_hub_entries()])


def bad_missing_shard(d):
    llama_sharded(d, drop_shard=True)


def bad_index_wrong_shard(d):
    llama_sharded(d)
    p = os.path.join(d, "model.safetensors.index.json")
    with open(p) as f:
        idx = json.load(f)
    idx["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors"
    with open(p, "w") as f:
        json.dump(idx, f)


def bad_overlap_zero_size(d):
    # an empty tensor strictly inside another's bytes, then one further in: neighbours alone
    # (skipping the empty one) never compared the first and the third
    _config(d)
    _weights(d, gpt2_hub_entries() + [entry("empty", np.zeros(0, np.float32), "F32")],
             fix_header=lambda h: h["empty"].update(
                 data_offsets=[h["wte.weight"]["data_offsets"][0] + 8] * 2))


def bad_duplicate_name(d):
    # the same name twice in one header (JSON allows it; the first used to win silently)
    _config(d)
    blob = st_bytes(gpt2_hub_entries())
    write(os.path.join(d, "model.safetensors"), blob.replace(b'"h.0.ln_2.bias"', b'"h.0.ln_1.bias"', 1))


def bad_nan_weight(d):
    es = gpt2_hub_entries()
    for e in es:
        if e[0] == "ln_f.weight":
            a = np.frombuffer(e[3], "<f4").copy()
            a[3] = np.nan
            e[3] = a.tobytes()
    _config(d)
    _weights(d, es)


def bad_fifo(d, name):
    _config(d)
    _weights(d)
    os.unlink(os.path.join(d, name))
    os.mkfifo(os.path.join(d, name))


def bad_no_weights(d):
    _config(d)


def bad_no_config(d):
    os.makedirs(d, exist_ok=True)
    _weights(d)


def bad_config_not_json(d):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write("{\"model_type\": \"gpt2\", ")
    _weights(d)


BAD = {
    "truncated": bad_truncated,
    "tiny_file": bad_tiny_file,
    "header_too_long": lambda d: (_config(d), _weights(d, header_len=1 << 40)),
    "header_not_json": lambda d: (_config(d), write(os.path.join(d, "model.safetensors"),
                                                    struct.pack("<Q", 16) + b"not json at all!" + b"\0" * 8)),
    "offsets_out_of_range": lambda d: (_config(d), _weights(d, fix_header=_set(
        "ln_f.weight", "data_offsets", [10 ** 9, 10 ** 9 + 128]))),
    "overlap": bad_overlap,
    "unknown_dtype": lambda d: (_config(d), _weights(d, fix_header=_set("wte.weight", "dtype", "Q4"))),
    "size_mismatch": lambda d: (_config(d), _weights(d, fix_header=_set("ln_f.weight", "shape", [33]))),
    "missing_tensor": bad_missing_tensor,
    "wrong_shape": bad_wrong_shape,
    "unexpected_tensor": bad_unexpected_tensor,
    "int_weight": bad_int_weight,
    "config_missing_field": lambda d: (_config(d, n_layer=None), _weights(d)),
    "config_bad_type": lambda d: (_config(d, n_head="four"), _weights(d)),
    "unknown_model_type": lambda d: (_config(d, model_type="bert"), _weights(d)),
    "config_not_json": bad_config_not_json,
    "no_config": bad_no_config,
    "no_weights": bad_no_weights,
    "missing_shard": bad_missing_shard,
    "index_wrong_shard": bad_index_wrong_shard,
    "overlap_zero_size": bad_overlap_zero_size,
    "duplicate_name": bad_duplicate_name,
    "nan_weight": bad_nan_weight,
    "weights_fifo": lambda d: bad_fifo(d, "model.safetensors"),
    "config_fifo": lambda d: bad_fifo(d, "config.json"),
    "eos_huge": lambda d: (_config(d, eos_token_id=1e300), _weights(d)),
    "eos_beyond_vocab": lambda d: (_config(d, eos_token_id=101), _weights(d)),
    "eos_list_beyond_vocab": lambda d: (_config(d, eos_token_id=[100, 5000]), _weights(d)),
    "negative_epsilon": lambda d: (_config(d, layer_norm_epsilon=-1e-5), _weights(d)),
    "n_layer_wraps": lambda d: (_config(d, n_layer=357913942), _weights(d)),
    "n_layer_3e9": lambda d: (_config(d, n_layer=3000000000), _weights(d)),
    "n_layer_1e7": lambda d: (_config(d, n_layer=10000000), _weights(d)),
    "n_layer_one_more": lambda d: (_config(d, n_layer=3), _weights(d)),
}

if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) == 2 and a[0] in ("gpt2_hub", "pythia_hub", "llama_sharded"):
        {"gpt2_hub": gpt2_hub, "pythia_hub": pythia_hub, "llama_sharded": llama_sharded}[a[0]](a[1])
    elif len(a) == 3 and a[0] == "bad" and a[1] in BAD:
        os.makedirs(a[2], exist_ok=True)
        BAD[a[1]](a[2])
    else:
        sys.exit(__doc__)
