#!/bin/sh
# Installs the Debian packages apl needs; quiet and quick when all are present.
set -e
PKGS="build-essential pkg-config libtorch-dev liblua5.4-dev lua5.4 lua-cjson libcjson-dev
libcurl4-openssl-dev libpcre2-dev libicu-dev libreadline-dev libopenblas0-pthread python3-numpy python3-torch"
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
apt-get install -y -qq --no-install-recommends $missing >/dev/null
