#!/usr/bin/env bash
# The README's test command: installs dependencies, builds, and runs every
# test. Exits non-zero if anything fails.
#
#   1. C unit tests (ctest), on the plain and on the ASan+UBSan build;
#   2. the local lakeFS gateway's conformance suite (tests/sim);
#   3. the integration suite (real FUSE mounts against the gateway) on the
#      plain build, and again on the ASan+UBSan build so every scenario is
#      also a memory-safety check; a valgrind memcheck scenario;
#   4. the libFuzzer targets, each for a short fixed time.
# Extra arguments go to pytest (e.g. -k sqlite, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
BUILD_DIR=build-asan scripts/build.sh -DLAKEFUSE_SANITIZE=ON

echo "== unit tests (ctest)"
(cd build && ctest --output-on-failure -j"$(nproc)")
(cd build-asan && ctest --output-on-failure -j"$(nproc)")

# Debian's python sees the apt-installed pytest and boto3.
PYTEST=(/usr/bin/python3 -m pytest -q -p no:cacheprovider)
echo "== local lakeFS gateway conformance (pytest)"
"${PYTEST[@]}" tests/sim "$@"

echo "== integration tests (pytest)"
"${PYTEST[@]}" tests/integration "$@"

echo "== integration tests on the ASan+UBSan build (pytest)"
LAKEFUSE_BIN=$PWD/build-asan/lakefuse "${PYTEST[@]}" tests/integration "$@"

if [ -x scripts/fuzz.sh ]; then
  echo "== fuzz targets (${FUZZ_SECONDS:-10} s each)"
  scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
fi
