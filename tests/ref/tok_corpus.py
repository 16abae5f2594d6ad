#!/usr/bin/python3
"""Builds the tokenizer test corpus (>= 1 MB) from text that Debian ships, deterministically:
files are taken in sorted order until each source's byte budget is spent.

    /usr/bin/python3 tests/ref/tok_corpus.py build/tok/corpus.txt

The output holds documents separated by NUL bytes (documents never contain NUL). Sources: license
texts and copyright files (English prose), man pages in English and nine other languages (troff
markup, Cyrillic, CJK...), Python's standard library (code, indentation runs), Node.js's API docs
(Markdown, JavaScript), translations from the system's .mo catalogues (Arabic, Hebrew, Hindi, Thai,
Georgian...), and two generated documents: emoji (with ZWJ sequences, skin tones and flags, which
the installed text barely has) and lines with U+FEFF and U+0085, the two characters where
JavaScript's \\s differs from the regex HF and GPT-2 use.
"""
import glob
import gettext
import gzip
import sys
import sysconfig
import unicodedata


def text_of(path):
    raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    return raw.decode("utf-8", errors="replace").replace("\0", "")


def cut(text, limit):
    """At most `limit` UTF-8 bytes of text, ending at a line end when there is one."""
    b = text.encode("utf-8")
    if len(b) <= limit:
        return text
    b = b[:limit]
    nl = b.rfind(b"\n")
    if nl > 0:
        b = b[: nl + 1]
    return b.decode("utf-8", errors="ignore")


def from_files(pattern, per_doc, budget):
    docs, used = [], 0
    for path in sorted(glob.glob(pattern)):
        if used >= budget:
            break
        try:
            t = cut(text_of(path), min(per_doc, budget - used))
        except (OSError, EOFError):
            continue
        if t.strip():
            docs.append(t)
            used += len(t.encode("utf-8"))
    return docs


def catalogue(lang, budget):
    """The translated strings of a language's .mo files."""
    out, used = [], 0
    for path in sorted(glob.glob("/usr/share/locale/%s/LC_MESSAGES/*.mo" % lang)):
        try:
            cat = gettext.GNUTranslations(open(path, "rb"))._catalog
        except (OSError, UnicodeDecodeError, gettext.error if hasattr(gettext, "error") else OSError):
            continue
        for k in sorted(cat, key=str):
            v = cat[k]
            if isinstance(v, str) and v and "\0" not in v:
                out.append(v)
                used += len(v.encode("utf-8"))
        if used >= budget:
            break
    return [cut("\n".join(out), budget)] if out else []


def emoji_doc():
    lines = []
    for cp in list(range(0x1F300, 0x1F650)) + list(range(0x1F680, 0x1F6D0)) + list(range(0x1F900, 0x1F9FF)):
        name = unicodedata.name(chr(cp), "")
        if name:
            lines.append("%s %s — U+%04X" % (chr(cp), name.lower(), cp))
    tones = ["", "\U0001F3FB", "\U0001F3FD", "\U0001F3FF"]
    for base in ["\U0001F44D", "\U0001F44B", "\U0001F9D1\u200D\U0001F4BB", "\U0001F469\u200D\U0001F52C"]:
        lines.append("skin tones: " + " ".join(base[0] + t + base[1:] for t in tones))
    lines.append("family: \U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466 and "
                 "\U0001F469\u200D\u2764\uFE0F\u200D\U0001F468!!")
    flags = ["FR", "JP", "BR", "IN", "UA", "ZA", "KR", "DE"]
    lines.append("flags: " + "".join(chr(0x1F1E6 + ord(a) - 65) + chr(0x1F1E6 + ord(b) - 65) for a, b in flags))
    lines.append("keycaps: 1\uFE0F\u20E3 #\uFE0F\u20E3 and text\u2122 \u00A9\uFE0F \u2600\uFE0F\u2601")
    return "\n".join(lines) + "\n"


def nel_bom_doc():
    """Text with a byte-order mark at line starts and inside words (files concatenated by tools
    that keep BOMs) and NEL line ends (EBCDIC conversions)."""
    lines = []
    for i in range(40):
        lines.append("\uFEFFRecord %d: value=%d; status ok" % (i, i * 37 % 101))
        lines.append("field\u0085next field \u0085 spaced\u0085\u0085  double %d\u0085" % i)
        lines.append("word\uFEFFjoined \uFEFF \uFEFF\uFEFFx  \u0085\uFEFF end")
    return "\n".join(lines) + "\n"


def main():
    out = sys.argv[1]
    sources = [
        ("licenses", from_files("/usr/share/common-licenses/*", 40000, 220000)),
        ("copyright", from_files("/usr/share/doc/*/copyright", 6000, 180000)),
        ("man", from_files("/usr/share/man/man1/*.1.gz", 8000, 140000)),
    ]
    for lang in ["ru", "ja", "zh_CN", "uk", "ko", "pl", "de", "fr", "tr"]:
        sources.append(("man-" + lang, from_files("/usr/share/man/%s/man*/*.gz" % lang, 8000, 20000)))
    sources += [
        # the running Python's standard library (3.11 on Debian 12, 3.13 on Debian 13)
        ("python", from_files(sysconfig.get_paths()["stdlib"] + "/*.py", 12000, 200000)),
        ("nodejs-docs", from_files("/usr/share/doc/nodejs/api/*.md", 10000, 150000)),
    ]
    for lang in ["ar", "he", "hi", "th", "ka", "el", "bn", "ta", "fa", "vi", "am", "zh_TW"]:
        sources.append(("po-" + lang, catalogue(lang, 12000)))
    sources += [("emoji", [emoji_doc()]), ("nel-bom", [nel_bom_doc()])]
    docs = [d for _, ds in sources for d in ds]
    data = "\0".join(docs).encode("utf-8")
    with open(out, "wb") as f:
        f.write(data)
    summary = ", ".join("%s %d" % (name, sum(len(d.encode("utf-8")) for d in ds)) for name, ds in sources)
    print("tok_corpus: %d documents, %d bytes (%s)" % (len(docs), len(data), summary), file=sys.stderr)


main()
