#!/usr/bin/env bash
# Builds a Debian package of lakefuse from a release build:
#   packaging/build-deb.sh [OUTDIR]    -> OUTDIR/lakefuse_<version>_<arch>.deb
# Runtime dependencies are the shared libraries the binary links, as Debian
# 12 names them, and fuse3 for fusermount3.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build-deb}
BUILD_DIR=build-release BUILD_TYPE=Release scripts/build.sh >/dev/null
version=$(build-release/lakefuse --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
chmod 755 "$root"
trap 'rm -rf "$root"' EXIT
DESTDIR="$root" cmake --install build-release --prefix /usr >/dev/null
strip "$root/usr/bin/lakefuse"
install -Dm644 packaging/lakefuse@.service "$root/lib/systemd/system/lakefuse@.service"
install -Dm644 README.md "$root/usr/share/doc/lakefuse/README.md"
install -Dm644 docs/semantics.md "$root/usr/share/doc/lakefuse/semantics.md"
install -Dm644 docs/configuration.md "$root/usr/share/doc/lakefuse/configuration.md"
mkdir -p "$root/DEBIAN"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" packaging/control.in > "$root/DEBIAN/control"
mkdir -p "$OUT"
dpkg-deb --root-owner-group --build "$root" "$OUT/lakefuse_${version}_${arch}.deb" >/dev/null
echo "$OUT/lakefuse_${version}_${arch}.deb"
