#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (build-fuzz/) and runs each for a
# fixed time on a scratch copy of its seed corpus; exits non-zero if any
# finds a crash, leaving the input under build-fuzz/crashes/. Make such an
# input a regression: tests/fuzz/regressions/<target>/ (replayed by ctest
# in the fuzz build) and a unit test for the bug.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
CC=clang cmake -S . -B build-fuzz -DLAKEFUSE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$(nproc)" >/dev/null
(cd build-fuzz && ctest --output-on-failure -R '^fuzz_' >/dev/null) || {
  echo "fuzz: a corpus or regression input fails"; (cd build-fuzz && ctest --output-on-failure -R '^fuzz_'); exit 1; }
mkdir -p build-fuzz/crashes
status=0
for t in xml uri sigv4 config listing json; do
  work=$(mktemp -d)
  cp -r "tests/fuzz/corpus/$t/." "$work/"
  if ! build-fuzz/tests/fuzz/fuzz_$t -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix="build-fuzz/crashes/$t-" -print_final_stats=1 "$work" \
       > "build-fuzz/fuzz_$t.log" 2>&1; then
    echo "fuzz_$t: FAILED, see build-fuzz/fuzz_$t.log and build-fuzz/crashes/"
    tail -30 "build-fuzz/fuzz_$t.log"
    status=1
  else
    # awk, not grep | awk: a log without the line must give "?", not end
    # the script under pipefail.
    runs=$(awk '/stat::number_of_executed_units/ {print $2; exit}' "build-fuzz/fuzz_$t.log")
    echo "fuzz_$t: ${runs:-?} inputs in ${SECS} s, no crash"
  fi
  rm -rf "$work"
done
exit $status
