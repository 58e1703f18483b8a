#!/usr/bin/env bash
# Regenerates the committed Swift code for proto/ with Debian's protoc and a protoc-gen-swift built from the
# swift-protobuf version that Package.swift names. Run it after changing a .proto file and commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."

version=1.39.0
tools=.build-protoc-gen-swift
plugin="$tools/swift-protobuf/.build/release/protoc-gen-swift"

command -v protoc >/dev/null || { echo "generate-protos: protoc is missing: apt-get install protobuf-compiler" >&2; exit 1; }
if [ ! -x "$plugin" ]; then
  mkdir -p "$tools"
  [ -d "$tools/swift-protobuf" ] || git clone --quiet --branch "$version" https://github.com/apple/swift-protobuf "$tools/swift-protobuf"
  swift build --package-path "$tools/swift-protobuf" -c release --product protoc-gen-swift
fi

generate() { # proto-file output-dir visibility
  mkdir -p "$2"
  protoc --plugin=protoc-gen-swift="$plugin" --proto_path=proto \
    --swift_out="$2" --swift_opt=Visibility="$3" --swift_opt=FileNaming=DropPath "$1"
}

generate coffer/storage/v1/records.proto Sources/CofferStore/Generated Internal
for file in proto/coffer/v1/*.proto; do
  [ -e "$file" ] || continue
  generate "${file#proto/}" Sources/CofferWire/Generated Public
done
