#!/bin/sh
# Installs the Debian packages apl needs, for the release it runs on; quiet and quick when all are
# present.
#   make deps             Debian 12: libtorch 1.13 (CPU) · Debian 13: libtorch 2.6 (CPU)
#   make deps CUDA=1      Debian 13: libtorch 2.6 with CUDA 12.4 (contrib and non-free enabled)
set -e
release=unknown
[ -r /etc/os-release ] && release=$(. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")

if [ -n "$CUDA" ]; then
    # contrib's CUDA build of libtorch; its nvidia-cudnn is an installer that downloads cuDNN
    # from NVIDIA on installation. python3-torch-cuda is the benchmark's baseline. apl.dist's
    # process groups need the headers of the Gloo and NCCL that libtorch-cuda links (its Gloo is
    # libgloo-cuda, which conflicts with the CPU build's libgloo-dev), and the NCCL one the CUDA
    # toolkit's headers too (nvidia-cuda-dev, ~1 GB: c10d's NCCL header includes CUDA's).
    if [ "$release" != trixie ]; then
        echo "apl deps: CUDA=1 needs Debian 13 (trixie), whose contrib has libtorch-cuda-dev 2.6;" \
             "this is '$release' (on other systems build with make LIBTORCH=<a CUDA libtorch>)" >&2
        exit 1
    fi
    TORCH="libtorch-cuda-dev python3-torch-cuda libgloo-cuda-dev libnccl-dev nvidia-cuda-dev"
else
    TORCH="libtorch-dev python3-torch libgloo-dev"
fi
case "$release" in
    bookworm) echo "apl deps: Debian 12 (bookworm), libtorch 1.13" ;;
    trixie) echo "apl deps: Debian 13 (trixie), libtorch 2.6${CUDA:+ with CUDA 12.4}" ;;
    *) echo "apl deps: '$release' is not a release apl is checked on (Debian 12 and 13); trying their packages" ;;
esac

PKGS="build-essential pkg-config $TORCH liblua5.4-dev lua5.4 lua-cjson libcjson-dev
libcurl4-openssl-dev libpcre2-dev libicu-dev libreadline-dev libopenblas0-pthread python3-numpy"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# npm runs the tokenizer's reference test; any npm will do (the machine may bring its own node).
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
[ -z "$missing" ] && exit 0
echo "apl deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ -n "$CUDA" ] && ! apt-cache show libtorch-cuda-dev >/dev/null 2>&1; then
    echo "apl deps: libtorch-cuda-dev not found: enable the contrib and non-free components in" \
         "/etc/apt/sources.list.d/debian.sources (Components: main contrib non-free)" >&2
    exit 1
fi
apt-get install -y -qq --no-install-recommends $missing >/dev/null
