#!/usr/bin/python3
"""Writes the fuzzers' seed corpora (tests/fuzz/corpus/NAME/*): small valid inputs of each
format, and a few malformed ones near the checks. Run again after changing it; the files are
committed so that `make fuzz` needs no Python. (corpus/http_header is written by hand.)
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(name, file, data):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, file), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(entries, meta=True):
    """entries: (name, dtype, shape, raw bytes)"""
    h, data = ({"__metadata__": {"format": "pt"}} if meta else {}), b""
    for name, dt, shape, raw in entries:
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    t = json.dumps(h, separators=(",", ":")).encode()
    t += b" " * (-len(t) % 8)
    return struct.pack("<Q", len(t)) + t + data


def seeds_safetensors():
    f32 = struct.pack("<4f", 1, -2, 0.5, 3)
    put("safetensors", "f32", safetensors([("w", "F32", [2, 2], f32), ("b", "F32", [2], f32[:8])]))
    put("safetensors", "mixed", safetensors([("h", "F16", [3], b"\x00<\x00\xc0\x00\x00"),
                                             ("bf", "BF16", [2], b"\x80?\x00@"),
                                             ("i", "I64", [1], struct.pack("<q", 7)),
                                             ("e", "F32", [0], b""), ("u", "U8", [3], b"abc")]))
    put("safetensors", "nan", safetensors([("w", "F32", [2], struct.pack("<2f", 1, float("nan")))]))
    put("safetensors", "empty", safetensors([], meta=False))
    put("safetensors", "scalar", safetensors([("s", "F64", [], struct.pack("<d", 2.5))]))


def seeds_config():
    gpt2 = {"model_type": "gpt2", "vocab_size": 101, "n_embd": 32, "n_layer": 2, "n_head": 4,
            "n_positions": 64, "eos_token_id": 100, "layer_norm_epsilon": 1e-5}
    neox = {"model_type": "gpt_neox", "vocab_size": 101, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64, "rotary_pct": 0.25,
            "max_position_embeddings": 64, "use_parallel_residual": True, "eos_token_id": 0}
    llama = {"model_type": "llama", "vocab_size": 101, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64,
             "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "eos_token_id": [2, 3],
             "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1,
                              "high_freq_factor": 4, "original_max_position_embeddings": 32}}
    qwen = dict(llama, model_type="qwen2", tie_word_embeddings=True, rope_scaling=None)
    mistral = dict(llama, model_type="mistral", sliding_window=16, rope_scaling=None)
    for name, c in [("gpt2", gpt2), ("neox", neox), ("llama", llama), ("qwen2", qwen), ("mistral", mistral)]:
        put("config", name + ".json", json.dumps(c, indent=1))
    put("config", "huge.json", json.dumps(dict(gpt2, n_layer=357913942, eos_token_id=1e300)))


def tokenizer(vocab, merges, added=(), pre=None, post=None, unk=None, normalizer=None):
    return json.dumps({
        "added_tokens": list(added), "normalizer": normalizer,
        "pre_tokenizer": pre or {"type": "ByteLevel", "add_prefix_space": False},
        "post_processor": post, "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": {s: i for i, s in enumerate(vocab)}, "merges": merges,
                  "unk_token": unk}})


def seeds_tokenizer():
    # the 256 byte tokens of GPT-2's alphabet, then a few merges
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    alpha = [chr(c) for c in cs]
    merges = ["Ġ t", "h e", "Ġt he", "i n", "a n", "Ġ a"]
    vocab = alpha + ["Ġt", "he", "Ġthe", "in", "an", "Ġa", "<|endoftext|>", "<s>"]
    added = [{"id": len(vocab) - 2, "content": "<|endoftext|>", "special": True, "lstrip": False,
              "rstrip": False, "normalized": False, "single_word": False},
             {"id": len(vocab) - 1, "content": "<s>", "special": True, "lstrip": True, "rstrip": True}]
    text = b"\0the cat in an hat<|endoftext|> <s> \xff\xfe 123  \n\t"
    put("tokenizer", "gpt2", tokenizer(vocab, merges, added).encode() + text)
    post = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                     {"Sequence": {"id": "A", "type_id": 0}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [len(vocab) - 1], "tokens": ["<s>"]}}}
    split = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}| ?\\p{L}+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}
    put("tokenizer", "llama3", tokenizer(vocab, merges, added, pre=split, post=post).encode() + text)
    put("tokenizer", "nfc", tokenizer(vocab, [m.split(" ") for m in merges], added,
                                      normalizer={"type": "NFC"}).encode() + "e\u0301 the".encode())
    put("tokenizer", "roberta", tokenizer(vocab, merges, added, post={
        "type": "RobertaProcessing", "cls": ["<s>", len(vocab) - 1], "sep": ["<|endoftext|>", len(vocab) - 2]},
        unk="<s>").encode() + text)


def seeds_ledger():
    line = json.dumps({"key": "0123456789abcdef", "answer": "A", "reason": "Preferred: A",
                       "prompt_tokens": 10, "completion_tokens": 3})
    put("ledger", "two", line + "\n" + line.replace('"A"', '"B"') + "\n")
    put("ledger", "torn", line + "\n" + line[:20])
    put("ledger", "garbage", line + " trailing\n")
    put("ledger", "empty", "")


if __name__ == "__main__":
    seeds_safetensors()
    seeds_config()
    seeds_tokenizer()
    seeds_ledger()
