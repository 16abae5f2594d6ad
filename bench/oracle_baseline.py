#!/usr/bin/python3
"""oracle_baseline.py — the Python peer of bench/oracle.lua: the way a Python (TRL-style) user
labels pairs against an OpenAI-compatible judge — one blocking HTTP request per pair, run by a
ThreadPoolExecutor with as many workers as apl keeps requests in flight.

    /usr/bin/python3 bench/oracle_baseline.py BASE_URL N IN_FLIGHT

Prints one line: {"labels_per_s": ..., "correct": ..., "n": N}.
"""
import json
import re
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

PREFERRED = re.compile(r"Preferred:\s*([AB])\b")


def label(base, i):
    user = ("Which continuation is more positive?\n\nContinuation A:\na good film %d\n\n"
            "Continuation B:\na dull film %d\n\n" % (i, i))
    body = json.dumps({"model": "bench-judge", "temperature": 0.05, "max_tokens": 256,
                       "messages": [{"role": "user", "content": user}]}).encode()
    req = urllib.request.Request(base + "/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        text = json.load(r)["choices"][0]["message"]["content"]
    m = PREFERRED.search(text)
    return m.group(1) if m else None


def main():
    base, n, in_flight = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        answers = list(pool.map(lambda i: label(base, i), range(n)))
    dt = time.perf_counter() - t0
    print(json.dumps({"labels_per_s": n / dt, "correct": answers.count("A"), "n": n}))


if __name__ == "__main__":
    main()
