#!/usr/bin/env bash
# The README's run command: installs what is missing, builds, and starts cofferd on its embedded default,
# a data directory in ./.coffer whose key is created on first start.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build --product cofferd
data="${COFFER_DATA_DIR:-$PWD/.coffer/data}"
if [ ! -e "$data/data.mdb" ]; then
  .build/debug/cofferd init --data-dir "$data"
fi
exec .build/debug/cofferd status --data-dir "$data"
