"""scripts/demo.sh as a new user meets it: it mounts a repository with a
SQLite database to query and change, explains its refs, prints its stop
command with the variables it was started with, and `stop` fails (non-zero,
saying why, gateway left running) while the mount is busy.

Uses the plain build (build/lakefuse): the demo builds and runs that one.
Run: /usr/bin/python3 -m pytest -q tests/integration/test_demo.py
"""
import os
import pathlib
import signal
import sqlite3
import subprocess

import pytest

from lf_helpers import closed_port, is_mounted, pid_alive, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def demo(tmp_path):
    env = dict(os.environ, LAKEFUSE_MOUNT=str(tmp_path / "mnt"),
               LAKEFUSE_DEMO_PORT=str(closed_port()),
               LAKEFUSE_DEMO_STATE=str(tmp_path / "state"))
    yield env
    # Whatever the test did: no mount and no gateway left behind.
    mnt = env["LAKEFUSE_MOUNT"]
    if is_mounted(mnt):
        subprocess.run(["fusermount3", "-u", "-z", mnt], capture_output=True, timeout=30)
    pidfile = tmp_path / "state" / "gateway.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text())
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)


def lakefuse(*args):
    r = subprocess.run([str(ROOT / "build" / "lakefuse"), *map(str, args)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"lakefuse {args}: {r.stderr}"
    return r.stdout


def demo_sh(env, *args):
    return subprocess.run([str(ROOT / "scripts" / "demo.sh"), *args], capture_output=True,
                          text=True, timeout=600, env=env, cwd=ROOT)


def test_demo_mounts_explains_and_stops_only_when_it_can(demo):
    r = demo_sh(demo)
    assert r.returncode == 0, r.stderr[-3000:]
    mnt = pathlib.Path(demo["LAKEFUSE_MOUNT"])
    state = pathlib.Path(demo["LAKEFUSE_DEMO_STATE"])
    stop = (f"Stop with: LAKEFUSE_MOUNT={mnt} LAKEFUSE_DEMO_PORT={demo['LAKEFUSE_DEMO_PORT']} "
            f"LAKEFUSE_DEMO_STATE={state} scripts/demo.sh stop")
    assert stop in r.stdout, r.stdout
    assert "warning" not in r.stdout + r.stderr and "[ " not in r.stdout, "a quiet build"

    # The commits file says what each line is, and that main moves.
    commits = (state / "commits.txt").read_text()
    kinds = [ln.split()[0] for ln in commits.splitlines() if not ln.startswith("#")]
    assert kinds == ["tag", "commit", "commit", "branch"], commits
    assert "main moves" in commits or "moves with every" in commits

    # The database it invites you to query and change.
    db = mnt / "demo" / "main" / "weather.db"
    old = sqlite3.connect(f"file:{mnt}/demo/v1/weather.db?mode=ro", uri=True)
    assert old.execute("SELECT count(*) FROM readings").fetchone()[0] == 2352
    old.close()  # (a with block would leave it open, and the mount busy)
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM readings").fetchone()[0] == 4704
    con.execute("UPDATE stations SET lat = 38.72 WHERE city = 'Lisbon'")
    con.commit()
    con.close()
    con = sqlite3.connect(db)
    assert con.execute("SELECT lat FROM stations WHERE city = 'Lisbon'").fetchone()[0] == 38.72
    con.close()

    # The README's workflow: see what changed, commit, read the commit before.
    repo = mnt / "demo"
    assert "changed weather.db" in lakefuse("status", repo / "main").splitlines()
    cid = lakefuse("commit", repo / "main", "-m", "Lisbon moved").splitlines()[-1]
    assert lakefuse("log", repo / "main", "-n", "2").splitlines()[0].startswith(cid + " ")
    before = sqlite3.connect(f"file:{repo}/main~1/weather.db?mode=ro", uri=True)
    assert before.execute("SELECT lat FROM stations WHERE city = 'Lisbon'").fetchone()[0] == 38.7
    before.close()
    lakefuse("branch", repo / "main", "try")
    os.unlink(repo / "try" / "weather.db")
    lakefuse("reset", repo / "try", "-y")
    assert (repo / "try" / "weather.db").stat().st_size == db.stat().st_size

    # A shell inside the mount: stop refuses, says why, keeps the gateway.
    gateway = int((state / "gateway.pid").read_text())
    holder = subprocess.Popen(["sleep", "600"], cwd=mnt / "demo" / "main")
    try:
        r = demo_sh(demo, "stop")
        assert r.returncode != 0, r
        assert "NOT stopped" in r.stderr and "busy" in r.stderr, r.stderr
        assert f"pid {holder.pid} (sleep)" in r.stderr, r.stderr
        assert is_mounted(mnt) and pid_alive(gateway)
    finally:
        holder.kill()
        holder.wait(timeout=30)

    # Without the variables, stop finds the demo where it was started.
    env = {k: v for k, v in demo.items() if k not in ("LAKEFUSE_MOUNT", "LAKEFUSE_DEMO_PORT")}
    r = demo_sh(env, "stop")
    assert r.returncode == 0, r.stderr
    assert "demo stopped" in r.stdout
    assert not is_mounted(mnt)
    wait_until(lambda: not pid_alive(gateway), 30, what="the demo gateway to stop")
