#!/usr/bin/env bash
# The README's test command: installs what is missing, then runs every test: the generated-code and format
# checks, the Swift unit, in-process and integration tests (with the known-answer vectors and the fuzz corpus),
# and the cross-language tests (the C and Python clients against a real cofferd).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The committed protobuf code is what proto/ generates, and the Swift sources follow .swift-format.
scripts/generate-protos.sh --check
find Sources Tests benchmarks/Benchmarks -name '*.swift' -not -path '*/Generated/*' -print0 \
  | xargs -0 swift format lint --strict --parallel
swift build
swift test "$@"
make -C clients/c --no-print-directory
.venv/bin/python -m pytest clients/tests -q -p no:cacheprovider
