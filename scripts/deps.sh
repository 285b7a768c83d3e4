#!/usr/bin/env bash
# Installs lakefuse's build, run and test dependencies from Debian's archive.
# Idempotent: does nothing (and needs no network) when all are present.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config scdoc
  libfuse3-dev fuse3 libcurl4-openssl-dev libssl-dev libxml2-dev libjansson-dev
  python3 python3-pytest python3-boto3
  # used by tests and benchmarks: real tools run on the mount
  curl sqlite3 rsync openssl
  # libFuzzer and the sanitizer runtimes for the fuzz targets
  clang valgrind
  # the package's checks: dpkg-shlibdeps, lintian, systemd-analyze verify
  dpkg-dev lintian systemd
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
