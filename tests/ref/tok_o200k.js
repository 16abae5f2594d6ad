// tok_o200k.js — o200k_base (GPT-4o's vocabulary) as Hugging Face stores converted tiktoken
// vocabularies, and its token ids from npm js-tiktoken, for tests/lua/test_tokenizer.lua.
//
//   node tests/ref/tok_o200k.js NODE_MODULES CORPUS OUTDIR
//
// Writes OUTDIR/o200k/tokenizer.json and OUTDIR/o200k_ref.txt. The tokenizer.json is what
// transformers' TikTokenConverter writes (convert_slow_tokenizer.py): a Split pre-tokenizer with
// tiktoken's own regex (openai_public.py, with its (?i:...) group), "behavior": "Removed",
// "invert": true, then ByteLevel without a regex; a BPE model whose vocabulary is every token's
// bytes in GPT-2's byte alphabet, id = rank, and whose merges are every split of a token into two
// tokens, ordered by the token's rank, then by the ranks of the two halves.
// o200k_ref.txt has lines "<kind> <doc> <ids...>" (doc from 1) like tok_gpt2.js's:
//   T  js-tiktoken's ids (every document)
//   H  js-tiktoken with \s replaced by Unicode White_Space, where that changes the ids (JavaScript's
//      \s takes U+FEFF and not U+0085, unlike HF tokenizers' Oniguruma and tiktoken's Rust regex)
"use strict";
const fs = require("fs");
const path = require("path");

const [modules, corpus, outdir] = process.argv.slice(2);
const need = (name) => require(path.resolve(modules, name));
const { Tiktoken } = need("js-tiktoken/dist/lite.cjs");
const o200k = need("js-tiktoken/dist/ranks/o200k_base.cjs");
const ranks = o200k.default || o200k;

// tiktoken's o200k_base pattern (tiktoken_ext/openai_public.py), as HF's converted files hold it.
const PATTERN = [
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "\\p{N}{1,3}",
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*",
    "\\s*[\\r\\n]+",
    "\\s+(?!\\S)",
    "\\s+",
].join("|");

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for 256 + n.
const byteChar = new Array(256);
{
    let n = 0;
    for (let b = 0; b < 256; b++) {
        const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        byteChar[b] = String.fromCodePoint(printable ? b : 256 + n++);
    }
}
const spell = (bytes) => Array.from(bytes, (b) => byteChar[b]).join("");
const key = (bytes) => Buffer.from(bytes).toString("latin1");

const stock = new Tiktoken(ranks);
const rankOf = new Map(); // token bytes (latin1 string) -> rank
const vocab = {};
for (const [rank, bytes] of stock.textMap) {
    rankOf.set(key(bytes), rank);
    vocab[spell(bytes)] = rank;
}
const merges = [];
for (const [rank, bytes] of stock.textMap) {
    const local = [];
    for (let i = 1; i < bytes.length; i++) {
        const l = rankOf.get(key(bytes.subarray(0, i))), r = rankOf.get(key(bytes.subarray(i)));
        if (l !== undefined && r !== undefined) local.push([l, r, bytes.subarray(0, i), bytes.subarray(i)]);
    }
    local.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    for (const m of local) merges.push([rank, spell(m[2]) + " " + spell(m[3])]);
}
merges.sort((a, b) => a[0] - b[0]); // stable: each token's own order is kept

const added = Object.entries(ranks.special_tokens).map(([content, id]) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
}));
const tokenizer = {
    version: "1.0", truncation: null, padding: null, added_tokens: added, normalizer: null,
    pre_tokenizer: { type: "Sequence", pretokenizers: [
        { type: "Split", pattern: { Regex: PATTERN }, behavior: "Removed", invert: true },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
    ] },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "",
        end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, ignore_merges: false,
        vocab, merges: merges.map((m) => m[1]) },
};
fs.mkdirSync(path.join(outdir, "o200k"), { recursive: true });
fs.writeFileSync(path.join(outdir, "o200k", "tokenizer.json"), JSON.stringify(tokenizer));

const WS = "\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000";
const hfPattern = ranks.pat_str.replace(/\[\^\\s/g, "[^" + WS).replace(/\\s/g, "[" + WS + "]")
    .replace(/\\S/g, "[^" + WS + "]");
const hf = new Tiktoken({ ...ranks, pat_str: hfPattern });
const docs = fs.readFileSync(corpus, "utf8").split("\0");
const lines = [];
docs.forEach((d, i) => {
    const t = stock.encode(d).join(" "), h = hf.encode(d).join(" ");
    lines.push("T " + (i + 1) + " " + t);
    if (h !== t) lines.push("H " + (i + 1) + " " + h);
});
fs.writeFileSync(path.join(outdir, "o200k_ref.txt"), lines.join("\n") + "\n");
console.log(`o200k: ${stock.textMap.size} tokens, ${merges.length} merges, ${docs.length} documents`);
