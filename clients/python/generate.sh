#!/usr/bin/env bash
# Generates coffer_client/_generated from proto/ with Debian's protoc. The generated code is committed, so that
# `pip install clients/python` needs no protoc; run this after changing a .proto file and commit the result.
# With --check, generates into a temporary directory and fails if the committed code differs.
set -euo pipefail
cd "$(dirname "$0")"
out=coffer_client/_generated
check=false
[ "${1:-}" = "--check" ] && check=true
if $check; then
  target=$(mktemp -d)
  trap 'rm -rf "$target"' EXIT
else
  target=$out
  rm -rf "$target"
fi
mkdir -p "$target"
protoc --proto_path=../../proto --python_out="$target" coffer/v1/coffer.proto
touch "$target/__init__.py" "$target/coffer/__init__.py" "$target/coffer/v1/__init__.py"
if $check; then
  diff -r -x __pycache__ "$out" "$target" >/dev/null || {
    echo "clients/python/generate.sh: the committed Python protobuf code is stale; run clients/python/generate.sh" >&2
    exit 1
  }
fi
