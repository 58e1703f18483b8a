#!/usr/bin/env bash
# Generates coffer_client/_generated from proto/ with protoc. Run before using the module from a checkout.
set -euo pipefail
cd "$(dirname "$0")"
out=coffer_client/_generated
rm -rf "$out"
mkdir -p "$out"
protoc --proto_path=../../proto --python_out="$out" coffer/v1/coffer.proto
