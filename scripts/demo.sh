#!/usr/bin/env bash
# The README's main command: installs dependencies, builds, starts the local
# lakeFS gateway with a demo repository, mounts it and shows it.
#
# Idempotent: a gateway or mount already running from an earlier run is
# reused. State lives in .demo/ (gateway data, logs, PIDs); the mount point
# is $LAKEFUSE_MOUNT (default /mnt/lakefs). Stop everything with
# `scripts/demo.sh stop`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=$ROOT/.demo
MNT=${LAKEFUSE_MOUNT:-/mnt/lakefs}
PORT=${LAKEFUSE_DEMO_PORT:-8765}
export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
ENDPOINT=http://127.0.0.1:$PORT

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ "${1:-}" = stop ]; then
  mountpoint -q "$MNT" && fusermount3 -u "$MNT" || true
  if alive "$STATE/gateway.pid"; then kill "$(cat "$STATE/gateway.pid")"; fi
  rm -f "$STATE/gateway.pid"
  echo "demo stopped"
  exit 0
fi

scripts/deps.sh
scripts/build.sh
mkdir -p "$STATE"

if ! alive "$STATE/gateway.pid"; then
  echo "== starting the local lakeFS gateway on $ENDPOINT"
  /usr/bin/python3 tests/lakefs_sim/server.py --listen "127.0.0.1:$PORT" \
    --data-dir "$STATE/data" --access-key-id "$AWS_ACCESS_KEY_ID" \
    --secret-access-key "$AWS_SECRET_ACCESS_KEY" \
    > "$STATE/gateway.out" 2> "$STATE/gateway.log" &
  echo $! > "$STATE/gateway.pid"
  for _ in $(seq 100); do
    grep -q '^listening on' "$STATE/gateway.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q '^listening on' "$STATE/gateway.out" || { cat "$STATE/gateway.log"; exit 1; }
fi
/usr/bin/python3 scripts/seed_demo.py --endpoint "$ENDPOINT"

mkdir -p "$MNT"
if ! mountpoint -q "$MNT"; then
  # A mount left behind by a killed daemon answers "Transport endpoint is
  # not connected"; clear it before mounting again.
  fusermount3 -u -z "$MNT" 2>/dev/null || true
  echo "== mounting on $MNT"
  build/lakefuse mount --endpoint "$ENDPOINT" --cache-dir "$STATE/cache" \
    --log-file "$STATE/lakefuse.log" "$MNT"
fi

echo "== ls $MNT/demo"
ls -l "$MNT/demo"
echo "== ls -l $MNT/demo/main/data"
ls -l "$MNT/demo/main/data"
cat <<MSG

The demo repository is mounted at $MNT/demo:
  $MNT/demo/main/...        branch main (read-write: try cp, vi, sqlite3)
  $MNT/demo/v1/...          tag v1 (read-only)
  $MNT/demo/<commit-id>/... any commit, immutable
Commit IDs: see $STATE/commits.txt. Logs: $STATE/lakefuse.log.
Stop with: scripts/demo.sh stop
MSG
