#!/usr/bin/python3
"""make_peft_adapter.py — writes a LoRA adapter in PEFT's format for a tiny model, independently of
apl: NumPy for the numbers and the safetensors layout written by hand (8-byte little-endian header
length, a JSON header of {name: {dtype, shape, data_offsets}} padded with spaces to 8 bytes, then
the raw little-endian data), as peft's save_pretrained writes it. For tests/lua/test_lora.lua.

    make_peft_adapter.py MODEL_DIR OUT_DIR [FAULT] [--targets a,b,c] [--r 4] [--alpha 12] [--seed 1]

The modules and their shapes come from MODEL_DIR/config.json alone (Hugging Face's module names
and the shapes of their nn.Linear / Conv1D layers), never from apl. A is drawn as PEFT draws it,
U(-1/sqrt(in), 1/sqrt(in)); B is random and nonzero (a trained adapter), so the adapter changes the
logits. FAULT writes a broken adapter instead: not_json, peft_type, use_dora, regex_targets,
no_config, missing_tensor, wrong_shape, extra_tensor, bad_r.
"""
import argparse
import json
import os
import struct

import numpy as np

DEFAULT_TARGETS = {  # more than PEFT's defaults: attention, MLP and (untied) heads
    "gpt2": ["c_attn", "c_proj"],
    "gpt_neox": ["query_key_value", "dense_4h_to_h"],
    "llama": ["q_proj", "v_proj", "down_proj", "lm_head"],
}


def modules(cfg):
    """[(module path, in, out)] of every projection, from config.json (HF's names)."""
    t = cfg["model_type"]
    out = []
    if t == "gpt2":
        c = cfg["n_embd"]
        inner = cfg.get("n_inner") or 4 * c
        for i in range(cfg["n_layer"]):
            p = "transformer.h.%d." % i
            out += [(p + "attn.c_attn", c, 3 * c), (p + "attn.c_proj", c, c),
                    (p + "mlp.c_fc", c, inner), (p + "mlp.c_proj", inner, c)]
        out.append(("lm_head", c, cfg["vocab_size"]))
    elif t == "gpt_neox":
        c, inner = cfg["hidden_size"], cfg["intermediate_size"]
        for i in range(cfg["num_hidden_layers"]):
            p = "gpt_neox.layers.%d." % i
            out += [(p + "attention.query_key_value", c, 3 * c), (p + "attention.dense", c, c),
                    (p + "mlp.dense_h_to_4h", c, inner), (p + "mlp.dense_4h_to_h", inner, c)]
        out.append(("embed_out", c, cfg["vocab_size"]))
    elif t in ("llama", "mistral", "qwen2"):
        c, inner, h = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"]
        kv = cfg.get("num_key_value_heads") or h
        d = cfg.get("head_dim") or c // h
        for i in range(cfg["num_hidden_layers"]):
            p = "model.layers.%d." % i
            out += [(p + "self_attn.q_proj", c, h * d), (p + "self_attn.k_proj", c, kv * d),
                    (p + "self_attn.v_proj", c, kv * d), (p + "self_attn.o_proj", h * d, c),
                    (p + "mlp.gate_proj", c, inner), (p + "mlp.up_proj", c, inner),
                    (p + "mlp.down_proj", inner, c)]
        out.append(("lm_head", c, cfg["vocab_size"]))
    else:
        raise SystemExit("model_type " + t)
    return out


def matches(module, target):  # PEFT's rule for a list of names
    return module == target or module.endswith("." + target)


def write_safetensors(path, tensors, metadata=None):
    """tensors: [(name, float32 array)], written in this order (not sorted: a reader must not care)."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, a in tensors:
        raw = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("out_dir")
    ap.add_argument("fault", nargs="?")
    ap.add_argument("--targets")
    ap.add_argument("--r", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=1)
    o = ap.parse_args()
    with open(os.path.join(o.model_dir, "config.json")) as f:
        cfg = json.load(f)
    family = {"mistral": "llama", "qwen2": "llama"}.get(cfg["model_type"], cfg["model_type"])
    targets = o.targets.split(",") if o.targets else DEFAULT_TARGETS[family]
    rng = np.random.default_rng(o.seed)
    tensors = []
    for module, fan_in, fan_out in modules(cfg):
        if not any(matches(module, t) for t in targets):
            continue
        bound = 1 / np.sqrt(fan_in)
        a = rng.uniform(-bound, bound, size=(o.r, fan_in))
        b = rng.normal(0.0, 0.3, size=(fan_out, o.r))
        tensors.append(("base_model.model.%s.lora_B.weight" % module, b))
        tensors.append(("base_model.model.%s.lora_A.weight" % module, a))
    assert tensors, "no module matched %s" % targets
    # adapter_config.json as peft 0.13 writes it (its fields in its order)
    config = {
        "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "tiny-" + cfg["model_type"],
        "bias": "none", "fan_in_fan_out": cfg["model_type"] == "gpt2", "inference_mode": True,
        "init_lora_weights": True, "layer_replication": None, "layers_pattern": None,
        "layers_to_transform": None, "loftq_config": {}, "lora_alpha": o.alpha, "lora_dropout": 0.05,
        "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None,
        "peft_type": "LORA", "r": o.r, "rank_pattern": {}, "revision": None,
        "target_modules": targets, "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": False,
    }
    f = o.fault
    if f == "peft_type":
        config["peft_type"] = "PREFIX_TUNING"
    elif f == "use_dora":
        config["use_dora"] = True
    elif f == "regex_targets":
        config["target_modules"] = r".*\.(%s)$" % "|".join(targets)
    elif f == "bad_r":
        config["r"] = 2.5
    elif f == "missing_tensor":
        tensors = [t for t in tensors if not t[0].endswith("layers.1.self_attn.v_proj.lora_B.weight")
                   and not t[0].endswith("h.1.attn.c_attn.lora_B.weight")
                   and not t[0].endswith("layers.1.attention.query_key_value.lora_B.weight")]
    elif f == "wrong_shape":
        name, a = tensors[1]  # the first module's A: one rank too many
        tensors[1] = (name, np.concatenate([a, a[:1]], 0))
    elif f == "extra_tensor":
        tensors.append(("base_model.model.not.a.module.lora_A.weight", np.zeros((o.r, 3))))
    elif f not in (None, "not_json", "no_config"):
        raise SystemExit("unknown fault " + f)
    os.makedirs(o.out_dir, exist_ok=True)
    write_safetensors(os.path.join(o.out_dir, "adapter_model.safetensors"), tensors, {"format": "pt"})
    if f == "no_config":
        return
    with open(os.path.join(o.out_dir, "adapter_config.json"), "w") as fh:
        if f == "not_json":
            fh.write('{"peft_type": "LORA", "r": 4,')  # cut off
        else:
            json.dump(config, fh, indent=2)


if __name__ == "__main__":
    main()
