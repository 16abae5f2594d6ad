#!/usr/bin/python3
"""Unicode normalization references for the tokenizer's NFC / NFKC normalizers, by Python's
unicodedata: every 5th document of the corpus in NFD (so that NFC has work to do), then its NFC and
its NFKC form; all separated by NUL bytes.

    /usr/bin/python3 tests/ref/tok_norm.py build/tok/corpus.txt build/tok/norm.txt
"""
import sys
import unicodedata

docs = open(sys.argv[1], "rb").read().decode("utf-8").split("\0")
out = []
for d in docs[::5]:
    nfd = unicodedata.normalize("NFD", d)
    out += [nfd, unicodedata.normalize("NFC", nfd), unicodedata.normalize("NFKC", nfd)]
open(sys.argv[2], "wb").write("\0".join(out).encode("utf-8"))
print("tok_norm: %d documents, Unicode %s" % (len(out) // 3, unicodedata.unidata_version), file=sys.stderr)
