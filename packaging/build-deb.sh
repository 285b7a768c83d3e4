#!/usr/bin/env bash
# Builds a Debian package of lakefuse from a release build:
#   packaging/build-deb.sh [OUTDIR]    -> OUTDIR/lakefuse_<version>_<arch>.deb
# LAKEFUSE_PREBUILT=DIR packages the build in DIR as it is instead (the
# tests use it, so they need no second build).
#
# The package holds the binary, lakefuse(1), the systemd template unit and
# the docs. No mount helper: mount(8) runs fuse3's /sbin/mount.fuse for the
# type fuse.lakefuse, which runs /usr/bin/lakefuse (see lakefuse(1), MOUNT(8)
# AND FSTAB). Runtime dependencies are the shared libraries the binary
# links, as Debian 12 names them, and fuse3 for fusermount3 and mount.fuse3.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build-deb}
if [ -n "${LAKEFUSE_PREBUILT:-}" ]; then
  build=$LAKEFUSE_PREBUILT
else
  build=build-release
  BUILD_DIR=$build BUILD_TYPE=Release scripts/build.sh >/dev/null
fi
version=$("$build/lakefuse" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
chmod 755 "$root"
trap 'rm -rf "$root"' EXIT
DESTDIR="$root" cmake --install "$build" --prefix /usr >/dev/null
man="$root/usr/share/man/man1/lakefuse.1"
if [ ! -f "$man" ]; then
  echo "build-deb: $build has no man page: install scdoc (scripts/deps.sh) and build again" >&2
  exit 1
fi
gzip -9n "$man"
strip "$root/usr/bin/lakefuse"
install -Dm644 packaging/lakefuse@.service "$root/lib/systemd/system/lakefuse@.service"
for doc in README.md docs/semantics.md docs/configuration.md docs/reliability.md; do
  install -Dm644 "$doc" "$root/usr/share/doc/lakefuse/$(basename "$doc")"
done
mkdir -p "$root/DEBIAN"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" packaging/control.in > "$root/DEBIAN/control"
mkdir -p "$OUT"
dpkg-deb --root-owner-group --build "$root" "$OUT/lakefuse_${version}_${arch}.deb" >/dev/null
echo "$OUT/lakefuse_${version}_${arch}.deb"
