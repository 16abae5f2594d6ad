#!/bin/bash
# tools/gpu-bundle.sh — `make gpu-bundle`: everything tools/gpu-check.sh needs on a GPU machine
# that has no network and none of apl's Debian build dependencies, in one tarball.
#
#   tools/gpu-bundle.sh [OUT.tar.gz]        (default build/apl-gpu-bundle.tar.gz)
#
# The tarball holds apl-gpu-bundle/{apl/ (git archive of HEAD), debs/*.deb, MANIFEST}. The debs
# are this host's release (Debian 12: glibc 2.36, older than what GPU images run, so its
# libraries load there): Lua 5.4, lua-cjson, cJSON, PCRE2, libcurl and readline with their
# headers, and the runtime libraries they need that a machine with gcc may lack. A deb is taken
# from apt's cache (/var/cache/apt/archives) or from an earlier run's build/gpu-bundle/debs when
# it is there, so a second run works offline; otherwise `apt-get download` fetches it.
# Only committed files travel: commit first. Fails when the tarball is over 48 MiB.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-"$ROOT/build/apl-gpu-bundle.tar.gz"}
STAGE="$ROOT/build/gpu-bundle"
MAX_MIB=${GPU_BUNDLE_MAX_MIB:-48}   # the issue's limit; the tests lower it to see the check fail
MAX_BYTES=$((MAX_MIB * 1024 * 1024))
APT_CACHE=${APT_CACHE:-/var/cache/apt/archives}

# What apl links or loads (tools/deps.sh's list, less libtorch, python and the compilers).
WANTED="liblua5.4-0 liblua5.4-dev lua-cjson libcjson1 libcjson-dev libpcre2-8-0 libpcre2-dev
libcurl4 libcurl4-openssl-dev libreadline8 libreadline-dev"
# Never bundled: the C library and compiler runtime (gcc's machine has its own, and a second
# libc in the prefix would break every program), zlib (loaded by Python and libtorch already),
# and packaging tools and executables that the dependency walk drags in.
BASE="libc6 libc6-dev libc-dev-bin linux-libc-dev libcrypt1 libcrypt-dev libnsl2 libnsl-dev
libtirpc3 libtirpc-dev libtirpc-common rpcsvc-proto libgcc-s1 libstdc++6 gcc-12-base gcc-13-base
gcc-14-base zlib1g dpkg tar install-info libselinux1 libacl1 libbz2-1.0 libmd0 liblzma5
ncurses-bin debconf perl-base"

die() { echo "gpu-bundle: $*" >&2; exit 1; }

# WANTED under this release's names: Debian 13 renamed libraries in its 64-bit time_t move
# (libcurl4 -> libcurl4t64, libreadline8 -> libreadline8t64), so a name apt cannot show gets "t64".
wanted_here() {
    local p
    for p in $WANTED; do
        if apt-cache show --no-all-versions "$p" >/dev/null 2>&1; then echo "$p"; else echo "${p}t64"; fi
    done
}

# The wanted packages and everything they depend on (Depends/Pre-Depends), less BASE.
package_closure() {
    # shellcheck disable=SC2046  # word splitting of the package lists is intended
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances $(wanted_here) |
        grep -v '^ ' | grep -v '^<' | sort -u |
        grep -vxF -f <(printf '%s\n' $BASE)
}

# The file names `apt-get download` gives the packages (no network needed): package_version_arch.deb.
deb_names() {
    # shellcheck disable=SC2086
    apt-get download --print-uris $1 | awk '{print $2}'
}

# Puts every listed package's deb into $STAGE/debs: from an earlier run, from apt's cache, else
# downloaded (one apt-get call for all the missing ones). Debs of other versions are removed.
fetch_debs() {
    local list=$1 pkg name f missing=""
    while read -r name; do
        pkg=${name%%_*}
        if [ ! -f "$STAGE/debs/$name" ] && [ -f "$APT_CACHE/$name" ]; then cp "$APT_CACHE/$name" "$STAGE/debs/"; fi
        [ -f "$STAGE/debs/$name" ] || missing="$missing $pkg"
    done <"$list"
    if [ -n "$missing" ]; then
        # root downloads as root (apt's _apt user cannot write into the build tree)
        # shellcheck disable=SC2086
        (cd "$STAGE/debs" && apt-get download -q -o APT::Sandbox::User=root $missing >/dev/null) ||
            die "could not download$missing: no network? put their debs in $APT_CACHE and rerun"
    fi
    for f in "$STAGE"/debs/*.deb; do
        grep -qxF "$(basename "$f")" "$list" || rm -f "$f"
    done
}

write_manifest() {
    {
        echo "apl gpu bundle, made $(date -u '+%Y-%m-%d %H:%M UTC') on $(. /etc/os-release && echo "$PRETTY_NAME")"
        echo "source: git archive of $(git -C "$ROOT" rev-parse HEAD)"
        echo "debs:"
        (cd "$STAGE/debs" && ls -1 ./*.deb | sed 's|^\./|  |')
    } >"$STAGE/MANIFEST"
}

main() {
    command -v apt-get >/dev/null || die "needs apt-get (a Debian host)"
    git -C "$ROOT" rev-parse HEAD >/dev/null 2>&1 || die "$ROOT is not a git clone"
    mkdir -p "$STAGE/debs"
    # one run at a time in a tree (the tests make the bundle too, maybe beside a developer)
    exec 9>"$ROOT/build/.gpu-bundle.lock"
    flock 9
    NAMES=$(mktemp)
    trap 'rm -f "$NAMES"' EXIT
    local closure
    closure=$(package_closure)
    deb_names "$closure" >"$NAMES"
    [ "$(wc -l <"$NAMES")" -eq "$(echo "$closure" | wc -l)" ] ||
        die "apt has no candidate for some of: $closure (run apt-get update?)"
    fetch_debs "$NAMES"
    rm -rf "$STAGE/apl"
    mkdir -p "$STAGE/apl"
    git -C "$ROOT" archive --format=tar HEAD | tar -x -C "$STAGE/apl"
    write_manifest
    mkdir -p "$(dirname "$OUT")"
    # written aside and renamed: a reader never sees half a tarball
    tar -czf "$OUT.part" -C "$ROOT/build" --transform 's|^gpu-bundle|apl-gpu-bundle|' gpu-bundle/apl gpu-bundle/debs gpu-bundle/MANIFEST
    mv "$OUT.part" "$OUT"
    local size
    size=$(stat -c %s "$OUT")
    if [ "$size" -gt "$MAX_BYTES" ]; then
        rm -f "$OUT"
        die "the bundle is $((size / 1024 / 1024)) MiB, over the $MAX_MIB MiB limit (removed $OUT)"
    fi
    echo "gpu-bundle: $OUT ($((size / 1024)) KiB, $(wc -l <"$NAMES") debs, commit $(git -C "$ROOT" rev-parse --short HEAD))"
}

main "$@"
