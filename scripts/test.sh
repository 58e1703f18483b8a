#!/usr/bin/env bash
# The README's test command: installs what is missing, then runs every test: the Swift unit and
# integration tests, and the cross-language tests (the C and Python clients against a real cofferd).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build
swift test "$@"
make -C clients/c --no-print-directory
clients/python/generate.sh
.venv/bin/python -m pytest clients/tests -q -p no:cacheprovider
