#!/bin/bash
# tools/gpu-check.sh — the one prepared GPU check (issue 13): on a machine with an NVIDIA GPU and a
# Python PyTorch (>= 2.1), no network and none of apl's Debian build dependencies, build apl
# against the wheel's libtorch, run the test suite with the CUDA cases on, benchmark apl against
# Hugging Face transformers, and write one JSON file and one Markdown table.
#
# Here (Debian 12, with the network):   make gpu-bundle      -> build/apl-gpu-bundle.tar.gz
# There:  tar xzf apl-gpu-bundle.tar.gz && cd apl-gpu-bundle/apl && tools/gpu-check.sh [OUTDIR]
#
#   tools/gpu-check.sh [options] [OUTDIR]
#     OUTDIR               where gpu-check.json and gpu-check.md go ($OUT when set, else build/gpu-check)
#     --no-gpu             build and run the test suite only (no CUDA needed, no benchmark)
#     --libtorch DIR       libtorch to build against (default: the torch package of $PYTHON). A
#                          wheel's torch/ folder or an official zip (DIR/include, DIR/lib), or
#                          Debian's libtorch-dev / libtorch-cuda-dev as /usr (headers under
#                          /usr/include, libraries in /usr/lib/<triplet>: built as plain `make`)
#     --debs DIR           the bundle's .deb files (default: ../debs next to this tree, else
#                          build/gpu-bundle/debs)
#     --prefix DIR         where the debs are unpacked (default: ../prefix next to the debs); never /
#     --quick              the benchmark's short form (bench/gpu.lua --quick)
#     --tests "FILES"      only these Lua test files (default: the whole suite, C tests included)
#     --jobs N             parallel compile jobs (default: the CPU count)
#     --unpack-only        unpack the debs and stop
#     --print-build-flags  unpack, then print the build's variables (KEY=value lines) and stop
#
# Environment: PYTHON (python3) runs torch, transformers and the peer benchmark. Exit status: 0
# when the build, every test and the benchmark succeed; 1 otherwise; 2 on a bad option.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
NO_GPU=0 QUICK=0 UNPACK_ONLY=0 PRINT_FLAGS=0
LIBTORCH_DIR="" DEBS="" PREFIX="" TESTS="" OUTDIR=""
JOBS=$(nproc 2>/dev/null || echo 4)

say() { echo "gpu-check: $*" >&2; }
die() { say "$*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0; }
bad_usage() { say "$1 (see --help)"; exit 2; }

# Every option that takes a value checks that it has one: "--libtorch" alone is an error.
need_value() { [ "$#" -ge 2 ] && [ -n "$2" ] || bad_usage "$1 needs a value"; }

parse_args() {
    while [ "$#" -gt 0 ]; do
        case "$1" in
            --no-gpu) NO_GPU=1 ;;
            --quick) QUICK=1 ;;
            --unpack-only) UNPACK_ONLY=1 ;;
            --print-build-flags) PRINT_FLAGS=1 ;;
            --libtorch) need_value "$@"; LIBTORCH_DIR=$2; shift ;;
            --debs) need_value "$@"; DEBS=$2; shift ;;
            --prefix) need_value "$@"; PREFIX=$2; shift ;;
            --tests) need_value "$@"; TESTS=$2; shift ;;
            --jobs) need_value "$@"; [[ "$2" =~ ^[1-9][0-9]*$ ]] || bad_usage "--jobs needs a positive integer"
                    JOBS=$2; shift ;;
            -h|--help) usage ;;
            -*) bad_usage "unknown option $1" ;;
            *) [ -z "$OUTDIR" ] || bad_usage "one output folder only (got $OUTDIR and $1)"; OUTDIR=$1 ;;
        esac
        shift
    done
    OUTDIR=${OUTDIR:-${OUT:-$ROOT/build/gpu-check}}
}

# The debs: from the bundle (this tree is apl-gpu-bundle/apl) or from `make gpu-bundle` here.
locate_debs() {
    if [ -z "$DEBS" ]; then
        if [ -d "$ROOT/../debs" ]; then DEBS="$ROOT/../debs"; else DEBS="$ROOT/build/gpu-bundle/debs"; fi
    fi
    [ -d "$DEBS" ] && compgen -G "$DEBS/*.deb" >/dev/null ||
        die "no .deb files in $DEBS: make the bundle with 'make gpu-bundle' (or pass --debs DIR)"
    DEBS=$(cd "$DEBS" && pwd)
    PREFIX=${PREFIX:-$(dirname "$DEBS")/prefix}
}

# One deb's files into the prefix. dpkg-deb where there is one; elsewhere the deb is an ar archive
# whose data.tar.* Python's tarfile reads (xz and gz; zstd only with dpkg-deb).
# GPU_CHECK_UNPACK=ar forces the second way (the tests use it).
unpack_deb() {
    local deb=$1 member
    if [ "${GPU_CHECK_UNPACK:-}" != ar ] && command -v dpkg-deb >/dev/null; then
        dpkg-deb -x "$deb" "$PREFIX"
        return
    fi
    member=$(ar t "$deb" | grep '^data\.tar') || die "$deb: no data.tar member"
    ar p "$deb" "$member" | "$PYTHON" -c '
import sys, tarfile
tarfile.open(fileobj=sys.stdin.buffer, mode="r|*").extractall(sys.argv[1])' "$PREFIX"
}

unpack_debs() {
    case "$PREFIX" in ""|/|/usr|/usr/*) die "refusing to unpack into '$PREFIX' (never into the system)" ;; esac
    mkdir -p "$PREFIX"
    PREFIX=$(cd "$PREFIX" && pwd)
    [ "$PREFIX" != / ] || die "refusing to unpack into /"
    local deb
    for deb in "$DEBS"/*.deb; do unpack_deb "$deb"; done
    # The -dev packages' .so links point at absolute /usr/lib/... paths in some packages: make
    # every absolute link inside the prefix point into the prefix.
    local link target
    while IFS= read -r link; do
        target=$(readlink "$link")
        case "$target" in /*) ln -sfn "$PREFIX$target" "$link" ;; esac
    done < <(find "$PREFIX" -type l)
    say "unpacked $(find "$DEBS" -name '*.deb' | wc -l) debs into $PREFIX"
}

# The folder of a file found under the prefix (the multiarch triplet is the bundle host's).
dir_of() {
    local f
    f=$(find "$PREFIX" -path "*/$1" -print -quit)
    [ -n "$f" ] || die "the prefix has no $1: is the bundle complete?"
    dirname "$f"
}

# What make is given so that apl builds from the prefix and runs from it without LD_LIBRARY_PATH:
# the prefix's headers first in CFLAGS (from the environment: the Makefile appends to it), Lua's
# flags as pkg-config would print them for a relocated prefix (LUA_INC, LUA_LIBS; they also reach
# the C tests' link), and an RPATH (not RUNPATH, so that libcurl's own dependencies resolve in the
# prefix too).
build_flags() {
    local libdir incdir archinc dirs="" d
    libdir=$(dir_of "liblua5.4.so")
    incdir=$PREFIX/usr/include
    archinc=$(dirname "$(dir_of curl/curl.h)")
    # Debian 12's packages put some libraries (readline, ncurses) in /lib/<triplet>, not /usr/lib.
    for d in "$libdir" "$PREFIX/lib/$(basename "$libdir")"; do
        [ -d "$d" ] && dirs="$dirs -L$d -Wl,-rpath,$d"
    done
    B_CFLAGS="-I$archinc -I$incdir -I$incdir/cjson"
    B_LUA_INC="-I$(dir_of lua5.4/lua.h)"
    B_LUA_LIBS="${dirs# } -Wl,--disable-new-dtags -llua5.4"
    B_LUA_CPATH="$(dir_of lua/5.4/cjson.so)/?.so;;"
    B_LIBTORCH=$(libtorch_make_value)
}

print_build_flags() {
    printf 'CFLAGS=%s\nLUA_INC=%s\nLUA_LIBS=%s\nLUA_CPATH_5_4=%s\nLIBTORCH=%s\n' \
        "$B_CFLAGS" "$B_LUA_INC" "$B_LUA_LIBS" "$B_LUA_CPATH" "$B_LIBTORCH"
}

# LIBTORCH for make: a wheel or zip folder as it is; Debian's /usr layout is the Makefile's
# default build (empty LIBTORCH), which knows /usr/include and /usr/lib/<triplet>.
libtorch_make_value() {
    local dir=$LIBTORCH_DIR
    if [ -z "$dir" ]; then
        dir=$("$PYTHON" -c 'import torch, os; print(os.path.dirname(torch.__file__))' 2>/dev/null) ||
            die "no libtorch: $PYTHON cannot import torch (pass --libtorch DIR)"
    fi
    if [ -f "$dir/lib/libtorch_cpu.so" ] && [ -d "$dir/include/torch/csrc/api/include" ]; then
        (cd "$dir" && pwd)
    elif [ "$(cd "$dir" && pwd)" = /usr ] && compgen -G "/usr/lib/*/libtorch_cpu.so" >/dev/null &&
         [ -d /usr/include/torch/csrc/api/include ]; then
        echo ""
    else
        die "$dir is neither a libtorch folder (include/, lib/libtorch_cpu.so) nor Debian's /usr"
    fi
}

make_args() {
    MAKE_ARGS=(-j "$JOBS" "LIBTORCH=$B_LIBTORCH" "LUA_INC=$B_LUA_INC" "LUA_LIBS=$B_LUA_LIBS")
}

# make does not track flags: a build made with others (the developer's CPU build, another
# libtorch, another prefix) is rebuilt whole (make -B), or its stale objects would be linked.
build_apl() {
    local stamp="$ROOT/build/.gpu-check-flags" want always=()
    want=$(print_build_flags)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then always=(-B); fi
    say "building apl against ${B_LIBTORCH:-the Debian libtorch in /usr}"
    CFLAGS="$B_CFLAGS" make -C "$ROOT" "${always[@]}" "${MAKE_ARGS[@]}" apl
    mkdir -p "$ROOT/build"
    echo "$want" >"$stamp"
    "$ROOT/apl" --version
}

# The references the tests compare against and their judge server run under $APL_PYTHON
# (tests/lib/test.lua): here the Python that has torch, which brings NumPy.
warn_missing_refs() {
    export APL_PYTHON=${APL_PYTHON:-$(command -v "$PYTHON")}
    "$APL_PYTHON" -c 'import numpy' 2>/dev/null ||
        say "warning: $APL_PYTHON has no numpy; the tests that compare with NumPy references will fail"
}

# Runs `make test` (C and Lua tests, or the --tests files); its last line is "N passed, N failed...".
run_tests() {
    warn_missing_refs
    local log="$OUTDIR/tests.log" rc=0
    say "running the test suite (log: $log)"
    CFLAGS="$B_CFLAGS" make -C "$ROOT" "${MAKE_ARGS[@]}" test ${TESTS:+"TESTS=$TESTS"} 2>&1 | tee "$log" ||
        rc=$?
    TESTS_SUMMARY=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1 || true)
    TESTS_SUMMARY=${TESTS_SUMMARY:-"the suite did not finish (exit $rc)"}
    TESTS_RC=$rc
}

# The LoRA check (issue 15): tests/lua/test_peft.lua, part of the suite, has peft load adapters
# apl saved and compares the logits; its lines of the log, summed up.
peft_summary() {
    local log="$OUTDIR/tests.log" ok notok skipped
    ok=$(grep -c "^ok .*peft loads apl's adapter" "$log" || true)
    notok=$(grep -c "^NOT OK .*peft loads apl's adapter" "$log" || true)
    skipped=$(grep -c "^skipped peft loads apl's adapter" "$log" || true)
    echo "peft loads apl's LoRA adapters: $ok passed, $notok failed, $skipped skipped"
}

cuda_ready() {
    "$ROOT/apl" --version | grep -q '^CUDA: available'
}

# The benchmark also writes the report (JSON + Markdown) with the tests' summary in it.
run_bench_and_report() {
    local args=(--out "$OUTDIR" --tests "$TESTS_SUMMARY" --tests-rc "$TESTS_RC" --python "$PYTHON"
                --stages "$STAGES")
    if [ "$NO_GPU" = 1 ]; then
        args+=(--no-bench)
    elif ! cuda_ready; then
        say "apl reports no CUDA device: the benchmark is skipped (run with --no-gpu to say so)"
        args+=(--no-bench --fail "CUDA not available to apl")
    fi
    [ "$QUICK" = 1 ] && args+=(--quick)
    "$ROOT/apl" "$ROOT/bench/gpu.lua" "${args[@]}"
}

main() {
    parse_args "$@"
    locate_debs
    unpack_debs
    [ "$UNPACK_ONLY" = 1 ] && return 0
    build_flags
    if [ "$PRINT_FLAGS" = 1 ]; then print_build_flags; return 0; fi
    export LUA_CPATH_5_4="$B_LUA_CPATH"
    make_args
    mkdir -p "$OUTDIR"
    OUTDIR=$(cd "$OUTDIR" && pwd)
    # the issue asks for the whole check in under 10 minutes on one H100: each stage is timed
    local t0=$SECONDS
    build_apl
    STAGES="build $((SECONDS - t0)) s"
    t0=$SECONDS
    run_tests
    STAGES="$STAGES, tests $((SECONDS - t0)) s"
    local rc=0
    run_bench_and_report || rc=$?
    say "$STAGES, all $SECONDS s"
    say "tests: $TESTS_SUMMARY"
    say "$(peft_summary)"
    say "report: $OUTDIR/gpu-check.json, $OUTDIR/gpu-check.md"
    [ "$TESTS_RC" = 0 ] && [ "$rc" = 0 ]
}

main "$@"
