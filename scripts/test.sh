#!/usr/bin/env bash
# The README's test command: installs dependencies, builds, and runs every
# test. Exits non-zero if anything fails.
#
#   1. C unit tests (ctest), on the plain, the ASan+UBSan and the
#      ThreadSanitizer builds;
#   2. the local lakeFS gateway's conformance suite (tests/sim);
#   3. the integration suite (real FUSE mounts against the gateway) on the
#      plain build, and again on the ASan+UBSan build so every scenario is
#      also a memory-safety check; a valgrind memcheck scenario; the
#      open-file and write-path stress tests on the ThreadSanitizer build;
#   4. the libFuzzer targets, each for a short fixed time.
# Extra arguments go to pytest (e.g. -k sqlite, -x); a suite where they
# select nothing is passed over, but not every suite.
# Under CI=true (.ci/run) a skipped test fails the run (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
BUILD_DIR=build-asan scripts/build.sh -DLAKEFUSE_SANITIZE=ON
BUILD_DIR=build-tsan scripts/build.sh -DLAKEFUSE_SANITIZE=thread

# A daemon broken at start must stop the run here, with its message, and
# not turn into a suite of skips.
for bin in build/lakefuse build-asan/lakefuse build-tsan/lakefuse; do
  "$bin" mount --help >/dev/null || { echo "$bin cannot run (mount --help failed)"; exit 1; }
done

echo "== unit tests (ctest)"
(cd build && ctest --output-on-failure -j"$(nproc)")
(cd build-asan && ctest --output-on-failure -j"$(nproc)")
(cd build-tsan && ctest --output-on-failure -j"$(nproc)")

# Debian's python sees the apt-installed pytest and boto3. -rsxX: every
# skip, xfail and xpass in the summary, with its reason.
PYTEST=(/usr/bin/python3 -m pytest -q -rsxX -p no:cacheprovider)
selected=0
# pytest exits 5 when nothing was selected: with extra arguments (-k sqlite
# leaves nothing in tests/sim) that suite is passed over.
suite() {
  local rc=0
  "${PYTEST[@]}" "$@" || rc=$?
  if [ "$rc" -eq 5 ] && [ "$NEXTRA" -gt 0 ]; then
    echo "(the arguments select nothing here)"
    return 0
  fi
  [ "$rc" -ne 0 ] || selected=1
  return "$rc"
}
NEXTRA=$#

echo "== local lakeFS gateway conformance (pytest)"
suite tests/sim "$@"

echo "== integration tests (pytest)"
suite tests/integration "$@"

echo "== integration tests on the ASan+UBSan build (pytest)"
LAKEFUSE_BIN=$PWD/build-asan/lakefuse suite tests/integration "$@"

# Races: the tests that drive concurrent writers, renames and unlinks, and
# the versioning verbs (which run beside the FUSE threads), on a daemon
# built with ThreadSanitizer (a report fails the test).
echo "== write-path races on the ThreadSanitizer build (pytest)"
LAKEFUSE_BIN=$PWD/build-tsan/lakefuse suite tests/integration/test_stress.py \
  tests/integration/test_upload_races.py \
  tests/integration/test_open_files.py tests/integration/test_versioning.py "$@"

if [ "$selected" -eq 0 ]; then
  echo "no test selected by: $*"
  exit 1
fi

if [ -x scripts/fuzz.sh ]; then
  echo "== fuzz targets (${FUZZ_SECONDS:-10} s each)"
  scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
fi
