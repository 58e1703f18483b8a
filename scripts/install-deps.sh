#!/usr/bin/env bash
# Installs what Coffer builds and tests with: Debian's packages (with sudo when not root), and the Python
# client's packages in a virtual environment at .venv. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(libsodium-dev liblmdb-dev libprotobuf-c-dev protobuf-compiler protobuf-c-compiler pkg-config
          gcc make python3 python3-venv curl postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

requirements=(clients/python/requirements.txt clients/tests/requirements.txt)
stamp=.venv/.installed
if [ ! -x .venv/bin/python ] || [ ! -f "$stamp" ] || [ -n "$(find "${requirements[@]}" -newer "$stamp")" ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "${requirements[@]/#/-r}"
  touch "$stamp"
fi
