#!/usr/bin/env bash
# tests/platform/arm64_tests.sh — run inside the arm64 root under qemu-user by
# `tools/platform.sh arm64`: the C unit tests (the AVX-512 kernel tests skip: no kernels off x86),
# the smoke test against the x86 results in build/smoke, and apl.dist's tests (2 Gloo ranks,
# the launcher, faults; the cases that need Python or iproute2 skip). Ends with one
# "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
passed=0 failed=0

# run NAME COMMAND...: shows its output and adds its "N passed, N failed"; a command that fails
# without reporting a failed test counts as one.
run() {
    local name=$1 out rc p f
    shift
    echo "== $name"
    out=$("$@" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    read -r p f < <(printf '%s\n' "$out" | sed -nE 's/^([0-9]+) passed, ([0-9]+) failed.*/\1 \2/p' | tail -n 1)
    p=${p:-0} f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)) failed=$((failed + f))
}

./apl --version
for t in build/tests/test_*; do run "$t" "$t"; done
run smoke ./apl tests/platform/arm64_smoke.lua check build/smoke
run dist ./apl tests/run.lua tests/lua/test_dist.lua
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
