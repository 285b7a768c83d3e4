"""`lakefuse stats`, --metrics-file and what `lakefuse unmount` says about
uploads still waiting, on real mounts with real traffic: the counters move
as the gateway saw the requests (the simulator counts them too), the
metrics file is valid Prometheus text that is never seen half-written,
and an unmount with a held-back upload names what is left.

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration/test_stats.py
"""
import errno
import json
import os
import pty
import re
import select
import shutil
import subprocess
import tempfile
import threading
import time

from lf_helpers import BINARY, errno_of, get, is_mounted, wait_until

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(rf"^({NAME})(?:\{{(.*)\}})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def lf(*args, timeout=60):
    return subprocess.run([str(BINARY), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def stats(path):
    r = lf("stats", "--json", path)
    assert r.returncode == 0, r
    assert r.stdout.count("\n") == 1, "one line of JSON"
    return json.loads(r.stdout)


def stats_when(path, pred, what, timeout=30):
    """stats(path) once pred holds of it."""
    def check():
        s = stats(path)
        return s if pred(s) else None
    return wait_until(check, timeout, what=what)


def closed(s):
    return s["open_files"] == {"read": 0, "write": 0}


def unescape(v):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def parse_labels(text):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        assert m, f"malformed labels at {text[pos:]!r}"
        assert m.group(1) not in labels, f"label {m.group(1)} twice"
        labels[m.group(1)] = unescape(m.group(2))
        pos = m.end()
        if pos < len(text):
            assert text[pos] == ",", text
            pos += 1
    return labels


def parse_prom(text):
    """{name: {"type", "help", "samples": {frozenset(labels): value}}}, with
    every rule of the text exposition format we rely on checked."""
    assert text.endswith("\n"), "the file ends with a newline"
    fams, current = {}, None
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert re.fullmatch(NAME, name) and name not in fams, line
            assert help_, f"{name}: empty HELP"
            fams[name] = {"help": help_, "type": None, "samples": {}}
            current = name
        elif line.startswith("# TYPE "):
            name, typ = line[7:].split(" ")
            assert name == current and fams[name]["type"] is None, line
            assert typ in ("counter", "gauge"), line
            fams[name]["type"] = typ
        else:
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            name = m.group(1)
            assert name == current and fams[name]["type"], f"{name}: sample before its TYPE"
            key = frozenset(parse_labels(m.group(2) or "").items())
            assert key not in fams[name]["samples"], f"{line!r} twice"
            fams[name]["samples"][key] = float(m.group(3))
    for name, f in fams.items():
        assert name.startswith("lakefuse_"), name
        assert f["samples"], f"{name}: no samples"
        assert name.endswith("_total") == (f["type"] == "counter"), name
    return fams


def value(fams, name, **labels):
    for key, v in fams[name]["samples"].items():
        d = dict(key)
        if all(d.get(k) == w for k, w in labels.items()):
            return v
    raise KeyError((name, labels))


def assert_monotonic(before, after):
    for name, f in before.items():
        if f["type"] != "counter":
            continue
        for key, v in f["samples"].items():
            assert after[name]["samples"][key] >= v, (name, dict(key))


def test_counters_follow_real_traffic(lakefs, repo, s3, mount, tmp_path):
    data = os.urandom(3 << 20)
    s3.put_object(Bucket=repo, Key="main/in/data.bin", Body=data)
    prom = tmp_path / "metrics" / "lakefuse.prom"
    prom.parent.mkdir()
    m = mount(f"lakefs://{repo}", "--metrics-file", prom, "--metrics-interval", "0.1")
    wait_until(prom.exists, 10, what="the first metrics file")
    first = parse_prom(prom.read_text())
    assert value(first, "lakefuse_start_time_seconds") > time.time() - 600
    lakefs.reset_stats()
    before = stats(m.path)
    assert before["mountpoint"] == str(m.path)

    assert (m.path / "main" / "in" / "data.bin").read_bytes() == data
    (m.path / "main" / "out.txt").write_bytes(b"x" * 1000)
    assert sorted(os.listdir(m.path / "main")) == ["in", "out.txt"]

    # close() returns before the kernel's release reaches the daemon.
    after = stats_when(m.path / "main" / "in", closed, "the handles' release")  # any path
    sim = {k: v for k, v in lakefs.stats()["requests"].items() if k != "API"}
    ours = {op: n - before["requests"]["by_op"].get(op, 0)
            for op, n in after["requests"]["by_op"].items()}
    assert {k: v for k, v in ours.items() if v} == sim, "the gateway saw what we counted"
    assert sim.get("GetObject", 0) >= 1 and sim.get("PutObject") == 1
    assert after["requests"]["total"] - before["requests"]["total"] == sum(sim.values())
    assert after["bytes"]["received"] - before["bytes"]["received"] >= len(data)
    assert after["bytes"]["sent"] - before["bytes"]["sent"] == 1000
    assert after["cache"]["memory"]["misses"] > before["cache"]["memory"]["misses"]
    assert after["cache"]["memory"]["bytes"] >= len(data)
    assert after["uploads"]["done"] == before["uploads"]["done"] + 1
    assert after["uploads"]["waiting_files"] == 0 and after["uploads"]["failed"] == 0
    assert after["errors"]["total"] == 0 and after["retries"]["total"] == 0

    # The metrics file catches up with the same numbers (nothing moves
    # them any more).
    def caught_up():
        fams = parse_prom(prom.read_text())
        return fams if (value(fams, "lakefuse_uploads_total") == after["uploads"]["done"] and
                        value(fams, "lakefuse_requests_total", op="PutObject") ==
                        after["requests"]["by_op"]["PutObject"]) else None
    later = wait_until(caught_up, 10, what="the metrics file to show the upload")
    assert_monotonic(first, later)
    for op, n in after["requests"]["by_op"].items():
        assert value(later, "lakefuse_requests_total", op=op) == n, op
    assert value(later, "lakefuse_sent_bytes_total") == after["bytes"]["sent"]
    assert value(later, "lakefuse_received_bytes_total") == after["bytes"]["received"]
    assert value(later, "lakefuse_cache_limit_bytes", tier="memory") == 256 << 20
    for f in later.values():
        for key in f["samples"]:
            assert dict(key)["mountpoint"] == str(m.path)

    text = lf("stats", m.path)
    assert text.returncode == 0, text
    assert text.stdout.startswith(f"lakefuse stats of {m.path}, up ")
    assert re.search(r"^requests +\d+ \(.*GetObject \d+", text.stdout, re.M), text.stdout
    assert re.search(r"^uploads +0 waiting", text.stdout, re.M), text.stdout

    m.unmount()
    assert not prom.exists(), "a mount that is gone leaves no frozen counters behind"
    assert [p.name for p in prom.parent.iterdir()] == []


def test_open_files_and_stats_for_another_user(lakefs, repo, s3, mount):
    # A mount point other users can reach (pytest's directories are 0700).
    top = tempfile.mkdtemp(prefix="lf-stats-")
    os.chmod(top, 0o755)
    os.mkdir(os.path.join(top, "mnt"))
    s3.put_object(Bucket=repo, Key="main/r.txt", Body=b"read me")
    m = mount(f"lakefs://{repo}/main", "-o", "allow_other", mountpoint=os.path.join(top, "mnt"))
    with open(m.path / "r.txt", "rb") as r, open(m.path / "w.txt", "wb") as w:
        w.write(b"being written")
        assert r.read() == b"read me"
        during = stats(m.path)
        assert during["open_files"] == {"read": 1, "write": 1}
        assert during["staging"]["files"] >= 1
    after = stats_when(m.path, closed, "the handles' release")
    assert after["uploads"]["waiting_files"] == 0 and after["uploads"]["done"] >= 1
    # Counters change nothing: a user who may only look may ask for them.
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        str(BINARY), "stats", "--json", str(m.path / "r.txt")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    assert json.loads(r.stdout)["uploads"]["done"] == after["uploads"]["done"]
    m.unmount()
    shutil.rmtree(top)


def test_metrics_file_is_replaced_atomically(lakefs, repo, s3, mount, tmp_path):
    for i in range(20):
        s3.put_object(Bucket=repo, Key=f"main/f{i}", Body=os.urandom(64 << 10))
    prom = tmp_path / "lakefuse.prom"
    m = mount(f"lakefs://{repo}/main", "--metrics-file", prom, "--metrics-interval", "0.1",
              "--branch-ttl", "0")
    wait_until(prom.exists, 10, what="the first metrics file")
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            for i in range(20):
                (m.path / f"f{i}").read_bytes()
            os.listdir(m.path)

    t = threading.Thread(target=traffic)
    t.start()
    seen, versions, last, reads = [], set(), None, 0
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            with open(prom) as f:
                st = os.fstat(f.fileno())
                versions.add((st.st_ino, st.st_mtime_ns))   # inode numbers are reused
                text = f.read()
            reads += 1
            fams = parse_prom(text)      # never half-written
            for x in ("read", "write"):     # the last family is there: the file is whole
                value(fams, "lakefuse_open_files", mode=x)
            if last is not None:
                assert_monotonic(last, fams)
            last = fams
            seen.append(value(fams, "lakefuse_requests_total", op="ListObjectsV2"))
    finally:
        stop.set()
        t.join()
    assert len(versions) >= 5, f"the file was replaced {len(versions)} times in 3 s"
    assert seen[-1] > seen[0], "the counters moved while the traffic ran"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert reads > 50 and leftovers == []


def test_metrics_file_in_a_missing_directory_is_refused(lakefs, repo, mount_bg, tmp_path):
    res = mount_bg(f"lakefs://{repo}", "--metrics-file", tmp_path / "no" / "m.prom")
    assert res.returncode == 1, res
    assert "--metrics-file" in res.stderr and "No such file or directory" in res.stderr
    assert not is_mounted(res.path)


def held_back_upload(lakefs, m, name, data):
    """A closed file whose uploads failed (close's and release's, both
    attempts of each answered 500): it waits in staging for the next
    flush."""
    assert os.listdir(m.path / "main") == []   # listed: creating needs no request
    lakefs.set_faults(rules=[dict(operation="PutObject", kind="error500", count=4)])
    before = stats(m.path)

    def write():
        with open(m.path / "main" / name, "wb") as f:
            f.write(data)
    assert errno_of(write) == errno.EIO
    # The release after close tries once more, in the background.
    after = stats_when(m.path, lambda s: s["uploads"]["failed"] ==
                       before["uploads"]["failed"] + 2, "the second failed upload")
    assert after["uploads"]["waiting_files"] == 1
    assert after["uploads"]["waiting_bytes"] == len(data)
    assert after["errors"]["by_kind"]["server"] - before["errors"]["by_kind"]["server"] == 4
    assert after["retries"]["by_kind"]["server"] - before["retries"]["by_kind"]["server"] == 2
    assert after["failed_operations"] == before["failed_operations"] + 2
    assert after["requests"]["by_op"]["PutObject"] == before["requests"]["by_op"]["PutObject"] + 4
    assert lakefs.faults()["rules"] == []


def test_unmount_says_what_is_left_to_upload(lakefs, repo, s3, mount):
    m = mount(f"lakefs://{repo}", "--retries", "1", "--branch-ttl", "600")
    data = b"y" * 4321
    held_back_upload(lakefs, m, "late.bin", data)
    lakefs.set_faults(rules=[dict(operation="PutObject", kind="error500", count=1)])
    r = lf("unmount", m.path, timeout=120)
    assert r.returncode == 0, r
    assert r.stderr == f"lakefuse: uploading 1 file (4.2 KiB) before unmounting {m.path}\n"
    assert not is_mounted(m.path)
    assert get(s3, repo, "main/late.bin") == data


def test_unmount_on_a_terminal_counts_down(lakefs, repo, s3, mount):
    m = mount(f"lakefs://{repo}", "--retries", "1", "--branch-ttl", "600")
    data = b"z" * 100
    held_back_upload(lakefs, m, "slow.bin", data)
    lakefs.set_faults(latency_ms=1500)      # the upload now takes a while
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([str(BINARY), "unmount", str(m.path)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        out = b""
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            assert ready, "unmount hung"
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        assert p.wait(timeout=60) == 0, out
    finally:
        lakefs.set_faults()
        os.close(master)
    text = out.decode()
    assert "\r\x1b[Klakefuse: uploading before unmount: 1 file (100 B) left" in text, text
    assert text.endswith("\r\x1b[Klakefuse: uploaded 1 file (100 B) before unmounting\r\n"), text
    assert get(s3, repo, "main/slow.bin") == data


def test_watch_prints_a_block_every_second(lakefs, repo, mount):
    m = mount(f"lakefs://{repo}")
    p = subprocess.Popen([str(BINARY), "stats", "--watch", "--json", str(m.path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 20
        while len(lines) < 3 and time.monotonic() < deadline:
            lines.append(p.stdout.readline())
    finally:
        p.terminate()
        p.wait(timeout=10)
    docs = [json.loads(x) for x in lines]
    assert len(docs) == 3
    ups = [d["uptime_seconds"] for d in docs]
    assert 0.8 < ups[1] - ups[0] < 2.5 and 0.8 < ups[2] - ups[1] < 2.5, ups

    # On a terminal each block replaces the last.
    master, slave = pty.openpty()
    p = subprocess.Popen([str(BINARY), "stats", "--watch", str(m.path)], stdout=slave,
                         stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 20
        while out.count(b"\x1b[H\x1b[2J") < 2 and time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                out += os.read(master, 4096)
    finally:
        p.terminate()
        p.wait(timeout=10)
        os.close(master)
    blocks = out.split(b"\x1b[H\x1b[2J")
    assert len(blocks) >= 3 and blocks[1].startswith(b"lakefuse stats of "), out


def test_stats_usage_and_outside_a_mount(tmp_path):
    r = lf("stats", tmp_path)
    assert r.returncode == 1 and "not inside a lakefuse mount" in r.stderr, r
    r = lf("stats")
    assert r.returncode == 2 and "missing PATH" in r.stderr, r
    r = lf("status", "--json", tmp_path)
    assert r.returncode == 2 and "--json is for stats" in r.stderr, r
