// tok_gpt2.js — GPT-2 token ids from independent JavaScript tokenizers (npm js-tiktoken and
// gpt-3-encoder), for tests/lua/test_tokenizer.lua and bench/tokenizer.lua.
//
//   node tests/ref/tok_gpt2.js ids   NODE_MODULES CORPUS OUT   reference ids, one line per difference
//   node tests/ref/tok_gpt2.js bench NODE_MODULES CORPUS REPS  js-tiktoken's encode speed in MB/s
//
// CORPUS holds documents separated by NUL bytes. OUT gets lines "<kind> <doc> <ids...>" (doc from 1):
//   T  js-tiktoken's ids (every document)
//   H  js-tiktoken with \s replaced by Unicode White_Space, where that changes the ids: JavaScript's
//      \s takes U+FEFF and not U+0085, unlike HF tokenizers (Oniguruma) and GPT-2's Python regex
//   G  gpt-3-encoder's ids, where they differ from js-tiktoken's
"use strict";
const fs = require("fs");
const path = require("path");

const [mode, modules, corpus, out] = process.argv.slice(2);
const need = (name) => require(path.resolve(modules, name));
const { Tiktoken } = need("js-tiktoken/dist/lite.cjs");
const gpt2 = need("js-tiktoken/dist/ranks/gpt2.cjs");
const docs = fs.readFileSync(corpus, "utf8").split("\0");

const stock = new Tiktoken(gpt2);
const WS = "\\t\\n\\x0B\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000";
const hfPattern = gpt2.pat_str.replace(/\[\^\\s/g, "[^" + WS).replace(/\\s/g, "[" + WS + "]")
    .replace(/\\S/g, "[^" + WS + "]");
const hf = new Tiktoken({ ...gpt2, pat_str: hfPattern });

if (mode === "bench") {
    // One untimed pass (V8 compiles the hot code), then `reps` timed passes: MB/s of each.
    const reps = Number(out || 3);
    const bytes = Buffer.byteLength(docs.join(""), "utf8");
    for (const d of docs) stock.encode(d);
    const samples = [];
    for (let r = 0; r < reps; r++) {
        const t0 = process.hrtime.bigint();
        for (const d of docs) stock.encode(d);
        samples.push(bytes / (Number(process.hrtime.bigint() - t0) / 1e9) / 1e6);
    }
    console.log(JSON.stringify({ bytes, samples }));
} else if (mode === "ids") {
    const g3 = need("gpt-3-encoder");
    const lines = [];
    let nh = 0, ng = 0;
    docs.forEach((d, i) => {
        const t = stock.encode(d), h = hf.encode(d), g = g3.encode(d);
        const ts = t.join(" ");
        lines.push("T " + (i + 1) + " " + ts);
        if (h.join(" ") !== ts) { lines.push("H " + (i + 1) + " " + h.join(" ")); nh++; }
        if (g.join(" ") !== ts) { lines.push("G " + (i + 1) + " " + g.join(" ")); ng++; }
    });
    fs.writeFileSync(out, lines.join("\n") + "\n");
    console.error(`tok_gpt2.js: ${docs.length} documents; ${nh} differ under HF's \\s, ` +
        `${ng} differ between gpt-3-encoder and js-tiktoken`);
} else {
    console.error("usage: node tok_gpt2.js ids NODE_MODULES CORPUS OUT | bench NODE_MODULES CORPUS REPS");
    process.exit(2);
}
