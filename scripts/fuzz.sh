#!/usr/bin/env bash
# Fuzzes frame and request decoding with libFuzzer (and AddressSanitizer), starting from the regression corpus
# in Tests/Fuzz/Corpus. New inputs go to .build-fuzz/corpus; a crash leaves its input in .build-fuzz/ (copy
# it into Tests/Fuzz/Corpus once fixed, so the tests replay it).
#   scripts/fuzz.sh              # fuzz for 60 seconds
#   scripts/fuzz.sh -max_total_time=600
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --scratch-path .build-fuzz --product coffer-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xswiftc -use-ld=lld
mkdir -p .build-fuzz/corpus
exec "$(swift build --scratch-path .build-fuzz --show-bin-path)/coffer-fuzz" \
  -max_total_time=60 -artifact_prefix=.build-fuzz/ "$@" .build-fuzz/corpus Tests/Fuzz/Corpus
