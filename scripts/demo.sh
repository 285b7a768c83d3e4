#!/usr/bin/env bash
# The README's main command: installs dependencies, builds, starts the local
# lakeFS gateway with a demo repository, mounts it and shows it.
#
#   LAKEFUSE_MOUNT       where to mount (default /mnt/lakefs)
#   LAKEFUSE_DEMO_PORT   the local gateway's port on 127.0.0.1 (default 8765)
#   LAKEFUSE_DEMO_STATE  the state directory (default .demo; for tests)
#
# Idempotent: a gateway or mount already running from an earlier run is
# reused. State lives in .demo/ (gateway data, logs, PIDs, the build log,
# env.sh with the demo's endpoint and keys). `scripts/demo.sh stop`
# unmounts and stops the gateway; it remembers where the demo was started,
# and exits non-zero, saying why, when the unmount fails (then the gateway
# keeps running, since the mount still needs it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${LAKEFUSE_DEMO_STATE:-$ROOT/.demo}
SHOWN=${STATE#"$ROOT"/}   # .demo, as messages name it

# stop without variables acts on the demo as it was started
if [ "${1:-}" = stop ] && [ -f "$STATE/env.sh" ]; then
  saved_mnt=$(. "$STATE/env.sh"; echo "$LAKEFUSE_MOUNT")
  saved_port=$(. "$STATE/env.sh"; echo "$LAKEFUSE_DEMO_PORT")
  MNT=${LAKEFUSE_MOUNT:-$saved_mnt}
  PORT=${LAKEFUSE_DEMO_PORT:-$saved_port}
else
  MNT=${LAKEFUSE_MOUNT:-/mnt/lakefs}
  PORT=${LAKEFUSE_DEMO_PORT:-8765}
fi
export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
ENDPOINT=http://127.0.0.1:$PORT
STOP="LAKEFUSE_MOUNT=$MNT LAKEFUSE_DEMO_PORT=$PORT${LAKEFUSE_DEMO_STATE:+ LAKEFUSE_DEMO_STATE=$STATE} scripts/demo.sh stop"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ "${1:-}" = stop ]; then
  if mountpoint -q "$MNT"; then
    if ! build/lakefuse unmount "$MNT"; then
      echo "demo NOT stopped: $MNT is still mounted (see above); the gateway keeps running" >&2
      exit 1
    fi
  fi
  if alive "$STATE/gateway.pid"; then kill "$(cat "$STATE/gateway.pid")"; fi
  rm -f "$STATE/gateway.pid" "$STATE/env.sh"
  echo "demo stopped"
  exit 0
fi

scripts/deps.sh
mkdir -p "$STATE"
echo "== building lakefuse (log: $SHOWN/build.log)"
if ! scripts/build.sh > "$STATE/build.log" 2>&1; then
  tail -n 30 "$STATE/build.log" >&2
  echo "build failed; the whole log is in $SHOWN/build.log" >&2
  exit 1
fi

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
/usr/bin/python3 scripts/seed_demo.py --endpoint "$ENDPOINT" --state "$STATE"
cat > "$STATE/env.sh" <<ENV
# The demo's gateway and keys: source this file to use them in a shell.
export LAKEFUSE_MOUNT='$MNT' LAKEFUSE_DEMO_PORT='$PORT'
export LAKEFS_ENDPOINT='$ENDPOINT'
export AWS_ACCESS_KEY_ID='$AWS_ACCESS_KEY_ID' AWS_SECRET_ACCESS_KEY='$AWS_SECRET_ACCESS_KEY'
ENV

mkdir -p "$MNT"
if ! mountpoint -q "$MNT"; then
  # A mount left behind by a killed daemon answers "Transport endpoint is
  # not connected"; clear it before mounting again.
  fusermount3 -u -z "$MNT" 2>/dev/null || true
  build/lakefuse mount --endpoint "$ENDPOINT" --cache-dir "$STATE/cache" \
    --log-file "$STATE/lakefuse.log" "$MNT"
fi

echo "== ls $MNT/demo"
ls -l "$MNT/demo"
echo "== ls -l $MNT/demo/main"
ls -l "$MNT/demo/main"
cat <<MSG

The demo repository is mounted at $MNT/demo:
  $MNT/demo/main/...        branch main (read-write: try cp, vi, sqlite3)
  $MNT/demo/v1/...          tag v1 (read-only)
  $MNT/demo/<commit-id>/... any commit, immutable
Which ref is what: $SHOWN/commits.txt. Logs: $SHOWN/lakefuse.log.
Try:
  sqlite3 $MNT/demo/main/weather.db 'SELECT city, round(avg(temperature), 1) FROM readings GROUP BY city'
  sqlite3 $MNT/demo/main/weather.db "UPDATE stations SET lat = 38.72 WHERE city = 'Lisbon'"
  sqlite3 $MNT/demo/v1/weather.db 'SELECT count(*) FROM readings'     # the first commit
The demo's endpoint and keys, for lakefuse or curl in your shell: source $SHOWN/env.sh
Stop with: $STOP
MSG
