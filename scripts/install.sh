#!/usr/bin/env bash
# Builds lakefuse (quietly, unless the build fails) and installs it into
# $PREFIX/bin (default /usr/local/bin, on PATH on Debian), with sudo when
# that directory is not writable. Idempotent.
#
#   PREFIX=$HOME/.local scripts/install.sh     # no root needed
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

scripts/deps.sh
echo "== building lakefuse"
if ! scripts/build.sh > "$LOG" 2>&1; then
  tail -n 30 "$LOG" >&2
  echo "build failed (above: the end of its output)" >&2
  exit 1
fi
SUDO=""
mkdir -p "$PREFIX/bin" 2>/dev/null || true
[ -w "$PREFIX/bin" ] || SUDO="sudo"
$SUDO cmake --install build --prefix "$PREFIX" > "$LOG" 2>&1 || { cat "$LOG" >&2; exit 1; }
echo "installed $PREFIX/bin/lakefuse ($("$PREFIX/bin/lakefuse" --version))"
case ":$PATH:" in
  *":$PREFIX/bin:"*) ;;
  *) echo "note: $PREFIX/bin is not on your PATH; add it, e.g. export PATH=\"$PREFIX/bin:\$PATH\"" ;;
esac
