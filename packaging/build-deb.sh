#!/usr/bin/env bash
# Builds a Debian package of lakefuse from a release build:
#   packaging/build-deb.sh [OUTDIR]    -> OUTDIR/lakefuse_<version>_<arch>.deb
# LAKEFUSE_PREBUILT=DIR packages the build in DIR as it is instead (the
# tests use it, so they need no second build).
#
# The package holds the binary, lakefuse(1), the systemd template unit and
# the docs, with Debian's copyright file (from LICENSE) and changelog
# (packaging/changelog, whose newest entry must name the binary's version).
# No mount helper: mount(8) runs fuse3's /sbin/mount.fuse for the type
# fuse.lakefuse, which runs /usr/bin/lakefuse (see lakefuse(1), MOUNT(8)
# AND FSTAB). Runtime dependencies are what dpkg-shlibdeps finds for the
# libraries the binary links (so a sanitizer build's package also pulls its
# runtime), and fuse3 for fusermount3 and mount.fuse3. `lintian` reports no
# errors on the result (tests/integration/test_package.py).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build-deb}
if [ -n "${LAKEFUSE_PREBUILT:-}" ]; then
  build=$LAKEFUSE_PREBUILT
else
  build=build-release
  # Debian's hardening flags (fortified libc calls, stack protector, full
  # RELRO and immediate binding), as a package built by debhelper gets.
  flags="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CFLAGS)"
  flags="$flags $(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CPPFLAGS)"
  ldflags=$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get LDFLAGS)
  BUILD_DIR=$build BUILD_TYPE=Release scripts/build.sh -DCMAKE_C_FLAGS="$flags" \
    -DCMAKE_EXE_LINKER_FLAGS="$ldflags" >/dev/null
fi
version=$("$build/lakefuse" --version | awk '{print $2}')
logged=$(dpkg-parsechangelog -l packaging/changelog -S Version)
if [ "$logged" != "$version" ]; then
  echo "build-deb: packaging/changelog's newest entry is $logged, the binary is $version:" \
       "add an entry for $version (dch -c packaging/changelog -v $version)" >&2
  exit 1
fi
arch=$(dpkg --print-architecture)
# laid out as debhelper does (debian/control, the root in debian/lakefuse),
# (DEBIAN/ marks it), which dpkg-shlibdeps expects
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/debian"
root=$work/debian/lakefuse
mkdir -m 755 "$root" "$root/DEBIAN"
printf 'Source: lakefuse\n\nPackage: lakefuse\nArchitecture: any\n' > "$work/debian/control"
DESTDIR="$root" cmake --install "$build" --prefix /usr >/dev/null
man="$root/usr/share/man/man1/lakefuse.1"
if [ ! -f "$man" ]; then
  echo "build-deb: $build has no man page: install scdoc (scripts/deps.sh) and build again" >&2
  exit 1
fi
gzip -9n "$man"
# as dh_strip does: no symbols, no compiler identification
strip --remove-section=.comment --remove-section=.note "$root/usr/bin/lakefuse"
install -Dm644 packaging/lakefuse@.service "$root/lib/systemd/system/lakefuse@.service"
doc=$root/usr/share/doc/lakefuse
for f in README.md docs/semantics.md docs/configuration.md docs/reliability.md; do
  install -Dm644 "$f" "$doc/$(basename "$f")"
done
install -m644 packaging/changelog "$doc/changelog"
gzip -9n "$doc/changelog"
# Debian's machine-readable form of LICENSE (the MIT licence, which that
# format calls Expat): its copyright line, then its text, indented, with
# " ." for blank lines.
{
  printf 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n'
  printf 'Upstream-Name: lakefuse\n\nFiles: *\n'
  sed -n 's/^Copyright (c) /Copyright: /p' LICENSE
  printf 'License: Expat\n'
  sed -n '/^Permission/,$p' LICENSE | sed -e 's/^$/./' -e 's/^/ /'
} > "$doc/copyright"
chmod 644 "$doc/copyright"
depends=$(cd "$work" && dpkg-shlibdeps -O debian/lakefuse/usr/bin/lakefuse \
          | sed -n 's/^shlibs:Depends=//p')
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SHLIBS_DEPENDS@/$depends/" \
    packaging/control.in > "$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
   | xargs -0 md5sum > DEBIAN/md5sums)
chmod 644 "$root/DEBIAN/md5sums"
mkdir -p "$OUT"
dpkg-deb --root-owner-group --build "$root" "$OUT/lakefuse_${version}_${arch}.deb" >/dev/null
echo "$OUT/lakefuse_${version}_${arch}.deb"
