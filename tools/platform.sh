#!/usr/bin/env bash
# tools/platform.sh — builds and tests apl on each platform it supports besides the host, in
# Debian chroots made with debootstrap and cached under /var/tmp/apl-platforms (one folder per
# platform, keyed by what it installs, so later runs on the same machine reuse it).
#
#   tools/platform.sh tools           install debootstrap, qemu-user and the arm64 cross compiler
#   tools/platform.sh debian13        Debian 13, libtorch 2.6: the README's commands, then make test
#   tools/platform.sh debian13-cuda   Debian 13, libtorch-cuda 2.6: links, loads, says "CUDA: not
#                                     available" here, has apl.dist's NCCL and Gloo built in,
#                                     passes the CPU suite
#   tools/platform.sh arm64           Debian 12 arm64, libtorch 1.13: the tree cross-compiled, then
#                                     a smoke test under qemu-user against the x86 results
#
# Runs as root. Each leg copies the working tree (tracked and untracked, not ignored files) into
# the chroot's /src; /proc, /sys, /dev and /dev/pts are mounted while a chroot is in use and
# unmounted on every way out. APL_PLATFORM_CACHE moves the cache; APL_DEBIAN_MIRROR the mirror
# (default: the host's own apt source).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
CACHE=${APL_PLATFORM_CACHE:-/var/tmp/apl-platforms}
export DEBIAN_FRONTEND=noninteractive

say() { printf '== platform: %s\n' "$*" >&2; }
die() { printf 'platform: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------------------------------
# Mounts, undone on every exit path

MOUNTS=()
unmount_all() {
    local i m
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || true
    done
    # and what the tests mounted inside a root (ip netns binds its /run/netns), deepest first
    for m in "${ROOTS_USED[@]}"; do
        awk -v r="$m/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r |
            while read -r i; do umount -l "$i" 2>/dev/null || true; done
    done
    MOUNTS=()
}
ROOTS_USED=()
trap unmount_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The host's local CA certificates (a TLS-inspecting proxy's, say) are trusted in the chroot too,
# so npm reaches its registry there as it does here; node is told to read the system bundle.
trust_host_cas() {
    local root=$1
    [ -n "$(ls /usr/local/share/ca-certificates 2>/dev/null)" ] || return 0
    [ -x "$root/usr/sbin/update-ca-certificates" ] || return 0
    cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1
}

mount_into() {
    local root=$1
    ROOTS_USED+=("$root")
    # the root as a mount point of its own: `ip netns exec` (the two-machine test) remounts / as a
    # slave, which a plain folder cannot be
    mount --bind "$root" "$root" && MOUNTS+=("$root")
    mount -t proc proc "$root/proc" && MOUNTS+=("$root/proc")
    mount -t sysfs sysfs "$root/sys" && MOUNTS+=("$root/sys")
    mount --bind /dev "$root/dev" && MOUNTS+=("$root/dev")
    mount --bind /dev/pts "$root/dev/pts" && MOUNTS+=("$root/dev/pts")
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    trust_host_cas "$root"
}

# Runs a bash command line inside the chroot with a clean environment.
in_root() {
    local root=$1
    shift
    chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb CI="${CI:-}" \
        NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive bash -euo pipefail -c "$*"
}

# ------------------------------------------------------------------------------------------
# Cached roots

mirror() {
    local m=${APL_DEBIAN_MIRROR:-}
    # the host's first Debian archive source (deb822 or one-line format), not its security one
    [ -n "$m" ] || m=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
        grep -v '^ *#' | grep -oE '(https?|file)://[^ ]+' | grep -v security | head -n 1) || true
    [ -n "$m" ] || die "no Debian mirror found in the host's apt sources; set APL_DEBIAN_MIRROR"
    echo "$m"
}

# root_for NAME SUITE ARCH SETUP INSTALLS: sets ROOT to the cached root for this platform, making it
# first if needed (not in a subshell: the mounts it makes must stay in MOUNTS for the exit trap).
# The key hashes the suite, the architecture, the setup function and INSTALLS (the text that says
# what it installs); roots of the same NAME with another key are removed.
root_for() {
    local name=$1 suite=$2 arch=$3 setup=$4 installs=$5 key dir url
    url=$(mirror)
    key=$(printf '%s\n' "$suite" "$arch" "$(declare -f "$setup")" "$installs" | sha256sum | cut -c1-12)
    dir=$CACHE/$name-$key
    if [ ! -e "$dir/.apl-ready" ]; then
        mkdir -p "$CACHE"
        # exactly NAME-<key>: debian13-* would also take debian13-cuda-*
        rm -rf "${CACHE:?}/$name"-????????????
        say "making $name ($suite, $arch) in $dir"
        debootstrap --variant=minbase --arch="$arch" --components=main,contrib,non-free \
            --include=ca-certificates "$suite" "$dir.tmp" "$url" >"$CACHE/$name.debootstrap.log" 2>&1 ||
            die "debootstrap $suite/$arch failed; see $CACHE/$name.debootstrap.log"
        mount_into "$dir.tmp"
        copy_tree "$dir.tmp"
        "$setup" "$dir.tmp"
        unmount_all
        touch "$dir.tmp/.apl-ready"
        mv "$dir.tmp" "$dir"
    fi
    ROOT=$dir
}

# The working tree into ROOT/src, fresh each time, with its .git: a clone, as the README assumes
# (make gpu-bundle archives the committed tree).
copy_tree() {
    local root=$1
    rm -rf "$root/src"
    mkdir -p "$root/src"
    git -C "$SRC" ls-files -z -co --exclude-standard |
        tar -C "$SRC" --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$root/src" -xf -
    cp -a "$SRC/.git" "$root/src/.git"
}

# ------------------------------------------------------------------------------------------
# Debian 13, libtorch 2.6 (CPU): the README's install command, as a new user runs it

README_INSTALL='apt-get update -qq && apt-get install -y -qq make >/dev/null && make deps'
# What the host's test run has besides `make deps` (.ci/run installs the same there), so that
# nothing that runs on the host is skipped here: git (make gpu-bundle archives the clone),
# Chromium (the report page's test), the reference BLAS (the BLAS warning's tests), iproute2
# (apl.dist's two-machine test, in network namespaces).
TEST_PKGS="git chromium libblas3 iproute2"

setup_debian13() {
    in_root "$1" "cd /src && $README_INSTALL && apt-get install -y -qq --no-install-recommends $TEST_PKGS >/dev/null"
}

leg_debian13() {
    root_for debian13 trixie amd64 setup_debian13 "$(cat tools/deps.sh) $TEST_PKGS"
    mount_into "$ROOT"
    copy_tree "$ROOT"
    in_root "$ROOT" "cd /src && $README_INSTALL && make -j2 && ./apl --version && make test"
}

# ------------------------------------------------------------------------------------------
# Debian 13, libtorch-cuda 2.6 (contrib, CUDA 12.4 from non-free)
#
# contrib's nvidia-cudnn downloads cuDNN from NVIDIA when installed, which fails offline. A local
# package of the same name stands in: it holds a stub libcudnn.so.9 that defines, under the
# library's symbol version, every cuDNN function libtorch-cuda imports, each returning an error.
# It satisfies the package dependency and the loader (libtorch_cuda.so is linked with BIND_NOW);
# no GPU-less run calls cuDNN. On a GPU machine install the real nvidia-cudnn instead.

CUDNN_STUB_VERSION=9.0.0.312~cuda12+aplstub1

setup_debian13_cuda() {
    local root=$1
    in_root "$root" "apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        build-essential make $TEST_PKGS >/dev/null"
    in_root "$root" "mkdir -p /tmp/stub && cd /tmp/stub && apt-get download -q libtorch-cuda-2.6 \
        && dpkg-deb -x libtorch-cuda-2.6_*.deb x && bash /src/tools/cudnn-stub.sh x '$CUDNN_STUB_VERSION' \
        && apt-get install -y -qq ./nvidia-cudnn_*.deb >/dev/null && rm -rf /tmp/stub"
    in_root "$root" "cd /src && make deps CUDA=1"
}

leg_debian13_cuda() {
    root_for debian13-cuda trixie amd64 setup_debian13_cuda "$(cat tools/deps.sh tools/cudnn-stub.sh) $TEST_PKGS"
    mount_into "$ROOT"
    copy_tree "$ROOT"
    in_root "$ROOT" '
        cd /src
        make deps CUDA=1
        make -j2
        ldd ./apl >/tmp/ldd
        grep -q "libtorch_cuda.so" /tmp/ldd || { echo "apl is not linked against libtorch_cuda.so" >&2; exit 1; }
        ./apl --version | tee /tmp/version
        grep -qx "CUDA: not available" /tmp/version || { echo "expected \"CUDA: not available\"" >&2; exit 1; }
        # apl.dist: NCCL compiled and linked in (it runs only where several GPUs are)
        ./apl -e "local d = require \"apl.core.dist\"; assert(d.has_nccl and d.has_gloo, \"apl.dist: NCCL or Gloo not built in\")"
        # tools/gpu-check.sh as on a GPU machine, with this libtorch-cuda standing in for a
        # wheel: the bundle made, unpacked into a prefix, apl built from it, the CUDA tests run
        make gpu-bundle
        rm -rf /tmp/gpu && mkdir /tmp/gpu && tar -xzf build/apl-gpu-bundle.tar.gz -C /tmp/gpu
        (cd /tmp/gpu/apl-gpu-bundle/apl && tools/gpu-check.sh --no-gpu --libtorch /usr --jobs 2 \
            --tests "tests/lua/test_cuda.lua tests/lua/test_model.lua" /tmp/gpu/out)
        make test'
}

# ------------------------------------------------------------------------------------------
# arm64: Debian 12's arm64 libtorch 1.13 in a root that serves as the cross compiler's sysroot
# and, under qemu-user, runs the result. Compiling in the emulator would take ~10x longer.

ARM64_PKGS="libc6-dev libstdc++-12-dev libgomp1 libtorch-dev liblua5.4-dev lua5.4 lua-cjson \
libcjson-dev libcurl4-openssl-dev libpcre2-dev libreadline-dev libopenblas0-pthread pkg-config libgloo-dev"

setup_arm64() {
    in_root "$1" "apt-get update -qq && apt-get install -y -qq --no-install-recommends $ARM64_PKGS >/dev/null"
    relative_links "$1"
}

# Debian's -dev links (libreadline.so) and alternatives (libblas.so.3) point at absolute paths,
# which a cross linker would follow out of the root into the host's own folders: made relative,
# they resolve the same inside the chroot and inside the root from outside.
relative_links() {
    local root=$1 link target
    while IFS= read -r -d '' link; do
        target=$(readlink "$link")
        case "$target" in /*) ln -sfn "$(realpath -m -s --relative-to="$(dirname "$link")" "$root$target")" "$link" ;; esac
    done < <(find "$root/usr/lib" "$root/etc/alternatives" -type l -print0)
}

enable_qemu() {
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "qemu-aarch64 is not registered with binfmt_misc"
}

leg_arm64() {
    enable_qemu
    root_for arm64 bookworm arm64 setup_arm64 "$ARM64_PKGS"
    copy_tree "$ROOT"
    say "cross-compiling the tree for arm64"
    make -C "$ROOT/src" -j2 CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ SYSROOT="$ROOT" all c-tests
    say "x86 reference results"
    mkdir -p "$ROOT/src/build/smoke"
    ./apl tests/platform/arm64_smoke.lua write "$ROOT/src/build/smoke"
    say "C unit tests and the smoke test under qemu-user"
    mount_into "$ROOT"
    file -b "$ROOT/src/apl" | grep -q aarch64 || die "the cross build did not make an arm64 apl"
    in_root "$ROOT" "cd /src && tests/platform/arm64_tests.sh"
}

# ------------------------------------------------------------------------------------------

install_tools() {
    local need=""
    for p in debootstrap qemu-user-static binfmt-support gcc-aarch64-linux-gnu g++-aarch64-linux-gnu file; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
    done
    [ -z "$need" ] && return
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need >/dev/null
}

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount)"
case "${1:-}" in
    tools) install_tools ;;
    debian13) leg_debian13 ;;
    debian13-cuda) leg_debian13_cuda ;;
    arm64) leg_arm64 ;;
    *) die "usage: tools/platform.sh tools | debian13 | debian13-cuda | arm64" ;;
esac
