#!/usr/bin/env bash
# The README's test command: installs dependencies, builds, and runs every
# test (C unit tests through ctest, then the pytest suites against the local
# lakeFS gateway and real FUSE mounts). Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh

echo "== unit tests (ctest)"
(cd build && ctest --output-on-failure -j"$(nproc)")

echo "== integration tests (pytest)"
# Debian's python sees the apt-installed pytest and boto3.
/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/sim tests/integration "$@"
