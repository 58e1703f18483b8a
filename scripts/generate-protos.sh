#!/usr/bin/env bash
# Regenerates the committed Swift code for proto/ with Debian's protoc and the protoc-gen-swift of the
# swift-protobuf version this package resolves (built from the package's own checkout), and, through
# clients/python/generate.sh, the Python client's. Run it after changing a .proto file and commit the result.
# With --check, generates into a temporary directory and fails if the committed code differs: the README's
# test command runs it so.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v protoc >/dev/null || { echo "generate-protos: protoc is missing: apt-get install protobuf-compiler" >&2; exit 1; }
swift build --product protoc-gen-swift >/dev/null
plugin="$(swift build --show-bin-path)/protoc-gen-swift"

check=false
[ "${1:-}" = "--check" ] && check=true
root=.
if $check; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
fi

generate() { # proto-file output-dir visibility
  mkdir -p "$root/$2"
  protoc --plugin=protoc-gen-swift="$plugin" --proto_path=proto \
    --swift_out="$root/$2" --swift_opt=Visibility="$3" --swift_opt=FileNaming=DropPath "$1"
}

generate coffer/storage/v1/records.proto Sources/CofferStore/Generated Internal
for file in proto/coffer/v1/*.proto; do
  [ -e "$file" ] || continue
  generate "${file#proto/}" Sources/CofferWire/Generated Public
done

if $check; then
  status=0
  for dir in Sources/CofferStore/Generated Sources/CofferWire/Generated; do
    diff -ru "$dir" "$root/$dir" || status=1
  done
  if [ $status -ne 0 ]; then
    echo "generate-protos: the committed code differs from proto/; run scripts/generate-protos.sh and commit" >&2
    exit 1
  fi
  echo "generate-protos: the committed code matches proto/"
fi

# The Python client's copy, which ships inside its package.
clients/python/generate.sh "$@"
