#!/usr/bin/env bash
# The README's run command: installs what is missing, builds, and runs cofferd on its embedded default:
# a data directory in ./.coffer/data whose key is created on first start, and the admin and worker sockets
# in ./.coffer. Stop it with Ctrl-C (SIGINT) or SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build --product cofferd
swift build --product coffer
home="${COFFER_HOME:-$PWD/.coffer}"
mkdir -p "$home"
chmod 700 "$home"
cat >&2 <<TEXT
cofferd: serving in $home; in another shell:
  export COFFER_ADMIN_SOCKET=$home/admin.sock COFFER_WORKER_SOCKET=$home/worker.sock PATH=$PWD/.build/debug:\$PATH
TEXT
exec .build/debug/cofferd serve --init-if-missing --data-dir "$home/data" \
  --admin-socket "$home/admin.sock" --worker-socket "$home/worker.sock" "$@"
