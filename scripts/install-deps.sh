#!/usr/bin/env bash
# Installs the Debian packages Coffer builds and tests with. Safe to run again; uses sudo when not root.
set -euo pipefail
packages=(libsodium-dev liblmdb-dev libprotobuf-c-dev protobuf-compiler protobuf-c-compiler pkg-config)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
