#!/usr/bin/python3
"""Python's decoding of byte strings with errors="replace" (one U+FFFD per maximal bad subpart),
the behaviour HF's decoders share: hex byte strings in, hex UTF-8 of the decoded text out.

    /usr/bin/python3 tests/ref/tok_lossy.py 61ff e282   ->   61efbfbd efbfbd
"""
import sys

print(" ".join(bytes.fromhex(h).decode("utf-8", errors="replace").encode("utf-8").hex() for h in sys.argv[1:]))
