"""Reliability and security of lakefuse against a misbehaving gateway: failed
requests, a gateway killed and restarted, a killed daemon, a slow gateway,
hostile answers, and secrets that must never leak.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_faults.py
"""
import collections
import errno
import hashlib
import http.server
import os
import random
import re
import signal
import socketserver
import subprocess
import sys
import pathlib
import tempfile
import threading
import time
import urllib.parse

import pytest

import importlib.util
from lf_helpers import (BINARY, PRESIGNED, MiB, BigStream, data_gets, det_bytes, errno_of,
                        faults_injected, get, is_mounted, pid_alive, set_data_faults,
                        sha256_bytes, splice_pipes_available, upload_stream_multipart,
                        wait_until)

GiB = 1 << 30


def _sim_class():
    """tests/conftest.py's Sim (the name conftest is this directory's)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "conftest.py")
    spec = importlib.util.spec_from_file_location("lakefs_conftest", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Sim


def uri(repo, ref=None):
    return f"lakefs://{repo}" + (f"/{ref}" if ref else "")


def stream_sha(stream):
    h = hashlib.sha256()
    for p in stream.pieces():
        h.update(p)
    return h.hexdigest()


def file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        for b in iter(lambda: f.read(MiB), b""):
            h.update(b)
    return h.hexdigest()


def retries_logged(log):
    """(requests, retries, failures) of the gateway's line, plus the
    storage's on the presigned path (its line also counts renewed URLs)."""
    m = re.findall(r"requests (\d+), retries (\d+), failed operations (\d+)", log)
    if not m:
        return None
    counts = tuple(map(int, m[-1]))
    s = re.findall(r"storage: requests (\d+), retries (\d+), URLs renewed \d+, "
                   r"failed operations (\d+)", log)
    if s:
        counts = tuple(a + int(b) for a, b in zip(counts, s[-1]))
    return counts


def unmount_and_count(m):
    """Unmounts and returns lakefuse's own (requests, retries, failures)
    from the line it logs at exit."""
    subprocess.run([str(BINARY), "unmount", str(m.path)], check=True, timeout=300)
    m.proc.wait(timeout=120)
    return retries_logged(m.log())


# ------------------------------------------------------------ faults
@pytest.mark.slow
def test_reads_are_exact_with_ten_percent_of_requests_failing(lakefs, repo, s3, mount):
    size = 512 * MiB
    data = BigStream(seed=31, size=size)
    upload_stream_multipart(s3, repo, "main/big.bin", data.pieces(), part_size=64 * MiB)
    want = stream_sha(data)
    m = mount(uri(repo), "--retries", "10")
    set_data_faults(lakefs, fail_rate=0.1)
    before = faults_injected(lakefs.stats())
    try:
        assert file_sha(m.path / "main" / "big.bin") == want
        rnd = random.Random(3)
        with open(m.path / "main" / "big.bin", "rb", buffering=0) as f:
            # The page cache would answer every read below from the pass
            # above, and the stream's few dozen GETs may draw only faults
            # the reader survives without a retry (a truncated stream is
            # fetched again another way): drop it, so the reads below reach
            # the gateway, about a thousand GETs under 10 % faults.
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            for _ in range(2000):
                off = rnd.randrange(size - 70000)
                n = rnd.randrange(1, 70000)
                assert os.pread(f.fileno(), n, off) == data.read_at(off, n), (off, n)
    finally:
        lakefs.set_faults(fail_rate=0.0)
    injected = faults_injected(lakefs.stats()) - before
    assert injected > 0, "the simulator injected no fault: the test proved nothing"
    requests, retries, failures = unmount_and_count(m)
    assert retries > 0 and failures == 0
    print(f"\nreads under 10% faults: gateway injected {injected} faults; lakefuse made "
          f"{requests} requests with {retries} retries, {failures} failed operations")


@pytest.mark.slow
def test_writes_land_exactly_with_ten_percent_of_requests_failing(lakefs, repo, s3, mount,
                                                                  tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    files = {f"f{i:03d}.bin": det_bytes(i, random.Random(i).randrange(0, 300000))
             for i in range(200)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    m = mount(uri(repo), "--retries", "10")
    os.mkdir(m.path / "main" / "dst")
    set_data_faults(lakefs, fail_rate=0.1)
    before = faults_injected(lakefs.stats())
    big = BigStream(seed=9, size=GiB)
    try:
        subprocess.run(["cp", "-r", f"{src}/.", str(m.path / "main" / "dst")], check=True,
                       timeout=900)
        with open(m.path / "main" / "big.bin", "wb") as f:
            for piece in big.pieces():
                f.write(piece)
    finally:
        lakefs.set_faults(fail_rate=0.0)
    injected = faults_injected(lakefs.stats()) - before
    for name, data in files.items():
        assert get(s3, repo, f"main/dst/{name}") == data, name
    h = hashlib.sha256()
    body = s3.get_object(Bucket=repo, Key="main/big.bin")["Body"]
    for chunk in iter(lambda: body.read(8 * MiB), b""):
        h.update(chunk)
    assert h.hexdigest() == stream_sha(big)
    assert injected > 0
    requests, retries, failures = unmount_and_count(m)
    assert retries > 0
    print(f"\nwrites under 10% faults: gateway injected {injected} faults; lakefuse made "
          f"{requests} requests with {retries} retries, {failures} failed operations")


def test_gateway_killed_and_restarted_under_load_recovers_without_remount(lakefs, repo, s3,
                                                                         mount):
    """A reader cycles through more objects than the cache holds (each
    read fetches), the gateway is killed (-9) under it, and restarted only
    once the daemon has logged failed attempts: the reads met the outage.
    No read returns wrong bytes, a failed one fails with EIO, reads work
    again after the restart, and so does the same mount."""
    objs = {f"r{i:02d}.bin": det_bytes(40 + i, MiB + i) for i in range(24)}
    for name, data in objs.items():
        s3.put_object(Bucket=repo, Key=f"main/{name}", Body=data)
    m = mount(uri(repo), "--retries", "8", "--cache-size", "8")
    stop = threading.Event()
    phase = ["before"]
    results = []                                     # (phase, outcome)

    def reader():
        names = sorted(objs)
        i = 0
        while not stop.is_set():
            name = names[i % len(names)]
            i += 1
            try:
                with open(m.path / "main" / name, "rb") as f:
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                    outcome = "ok" if f.read() == objs[name] else f"wrong bytes in {name}"
            except OSError as e:
                outcome = errno.errorcode.get(e.errno, str(e.errno))
            results.append((phase[0], outcome))

    def oks(ph):
        return sum(1 for p, o in results if p == ph and o == "ok")

    t = threading.Thread(target=reader)
    t.start()
    try:
        wait_until(lambda: oks("before") >= 3, 60, what="reads before the outage")
        seen = len(m.log())
        phase[0] = "outage"
        lakefs.stop(signal.SIGKILL)
        wait_until(lambda: re.search(r"\(attempt \d+\)", m.log()[seen:]), 60,
                   what="the daemon to meet the outage")
    finally:
        if lakefs.proc is None:
            lakefs.start()
        phase[0] = "after"
        try:
            wait_until(lambda: oks("after") >= 5, 120, what="reads after the restart")
        finally:
            stop.set()
            t.join(120)
    outcomes = collections.Counter(o for _, o in results)
    assert not [o for o in outcomes if o.startswith("wrong")], outcomes
    assert set(outcomes) <= {"ok", "EIO"}, outcomes
    print(f"\nreads around a gateway killed and restarted: {dict(outcomes)}")
    # after the restart everything works on the same mount
    (m.path / "main" / "after.txt").write_bytes(b"after restart")
    assert get(s3, repo, "main/after.txt") == b"after restart"
    assert m.alive()


def test_killed_daemon_leaves_staged_files_that_the_next_mount_uploads(lakefs, repo, s3, mount):
    m = mount(uri(repo), "--retries", "0", "--timeout", "5", "--branch-ttl", "600")
    cache = m.cmd[m.cmd.index("--cache-dir") + 1]
    s3.put_object(Bucket=repo, Key="main/old.txt", Body=b"version 1")
    # A rewrite keeps the file's stored mode and owner, which a HEAD reads
    # (listings carry none): a lookup by name reads them while the gateway
    # answers; the listing then answers for new.txt during the outage.
    assert (m.path / "main" / "old.txt").is_file()
    assert sorted(os.listdir(m.path / "main")) == ["old.txt"]
    lakefs.set_faults(fail_rate=1.0)
    try:
        for name, body in (("new.txt", b"never uploaded"), ("old.txt", b"version 2")):
            fd = os.open(m.path / "main" / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, body)
            try:
                os.close(fd)
            except OSError as e:
                assert e.errno == errno.EIO
        m.expect_nonzero_exit = True
        os.kill(m.pid or m.proc.pid, signal.SIGKILL)
        wait_until(lambda: not m.alive(), 20, what="the daemon to die")
    finally:
        lakefs.set_faults(fail_rate=0.0)
    # The old mount point answers "Transport endpoint is not connected"
    # until the next mount clears it with a message. That daemon runs in
    # the fixture: its stderr and sanitizer reports are read, its exit
    # status checked, and it is unmounted at teardown.
    m2 = mount(uri(repo), mountpoint=m.path, cache=cache)
    wait_until(lambda: "stale mount" in m2.stderr(), 20, what="the stale-mount message")
    assert "Transport endpoint" not in m2.stderr()

    def uploaded():
        # both files, which recovery uploads independently, in any order
        try:
            return (get(s3, repo, "main/new.txt") == b"never uploaded" and
                    get(s3, repo, "main/old.txt") == b"version 2")
        except s3.exceptions.NoSuchKey:
            return False
    wait_until(uploaded, 30, what="the recovered uploads")
    assert "staged by an earlier run" in m2.log()
    assert (m2.path / "main" / "new.txt").read_bytes() == b"never uploaded"
    wait_until(lambda: "recovery: done" in m2.log(), 30, what="the end of recovery")
    problems = m2.unmount()
    assert not problems, problems
    assert m2.proc.returncode == 0
    # Nothing staged is left: no data file and no manifest in any area (an
    # emptied area whose lock was still held when recovery looked at it may
    # stay until the next mount's recovery removes it).
    left = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(cache, "staging"))
            for f in fs if f.startswith("f-")]
    assert not left, left


def test_slow_gateway_ls_and_cat_finish_and_ctrl_c_interrupts(lakefs, repo, s3, mount):
    s3.put_object(Bucket=repo, Key="main/a.txt", Body=b"slow but sure")
    m = mount(uri(repo), "--timeout", "60")
    lakefs.set_faults(latency_ms=2000)
    try:
        # each request waits 2 s: few requests, none sent one after another
        # needlessly, is what keeps this usable (counted, not timed)
        before = sum(lakefs.stats()["requests"].values())
        assert subprocess.run(["ls", str(m.path / "main")], capture_output=True, text=True,
                              timeout=120, check=True).stdout.split() == ["a.txt"]
        assert subprocess.run(["cat", str(m.path / "main" / "a.txt")], capture_output=True,
                              timeout=120, check=True).stdout == b"slow but sure"
        made = sum(lakefs.stats()["requests"].values()) - before
        assert made <= 6, f"{made} requests for an ls and a cat"
    finally:
        lakefs.set_faults(latency_ms=0)
    # a reader blocked on a very slow gateway, interrupted: the file is
    # open (and not cached) before the gateway slows down
    s3.put_object(Bucket=repo, Key="main/b.bin", Body=det_bytes(2, 8 * MiB))
    # the mount sees it once its listing of main is older than the TTL
    wait_until(lambda: (m.path / "main" / "b.bin").exists(), 30, what="b.bin on the mount")
    interrupt_a_stalled_read(lakefs, m.path / "main" / "b.bin", 4 * MiB)
    assert m.alive()


def test_ctrl_c_interrupts_a_stream_stalled_on_the_gateway(lakefs, repo, s3, mount):
    """The same for a stream (an object over half the cache, read from its
    start): the read waits for its stream's first bytes, and Ctrl-C ends
    the wait."""
    if not splice_pipes_available():
        pytest.skip("pipes of 4 MiB cannot be made here (needs root or fs.pipe-max-size)")
    s3.put_object(Bucket=repo, Key="main/s.bin", Body=det_bytes(4, 24 * MiB))
    m = mount(uri(repo), "--cache-size", "16", "--timeout", "60")
    interrupt_a_stalled_read(lakefs, m.path / "main" / "s.bin", 0)
    assert m.alive()
    # and the stream reads on once the gateway is back
    with open(m.path / "main" / "s.bin", "rb") as f:
        assert sha256_bytes(f.read()) == sha256_bytes(det_bytes(4, 24 * MiB))


def interrupt_a_stalled_read(lakefs, path, off):
    """A program that catches SIGINT opens path, the gateway then answers
    only after 10 minutes, the program reads 1 MiB at off, and once that
    read's GET has reached the gateway gets SIGINT: its read must end
    (EINTR), long before the gateway would have answered."""
    code = ("import os, signal, sys, time\n"
            "class Stop(Exception): pass\n"
            "def h(*a): raise Stop()\n"
            "signal.signal(signal.SIGINT, h)\n"
            f"fd = os.open({str(path)!r}, os.O_RDONLY)\n"
            "print('ready', flush=True)\n"
            "sys.stdin.readline()\n"
            "t = time.monotonic()\n"
            "try:\n"
            f"    os.pread(fd, 1 << 20, {off})\n"
            "    print('finished', flush=True)\n"
            "except Stop:\n"
            "    print('interrupted %.2f' % (time.monotonic() - t), flush=True)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        set_data_faults(lakefs, latency_ms=600_000)
        gets = data_gets(lakefs.stats())
        p.stdin.write("go\n")
        p.stdin.flush()
        # the read is stuck on the gateway once its GET arrived there
        wait_until(lambda: data_gets(lakefs.stats()) > gets, 60,
                   what="the read's GET at the gateway (or the storage)")
        p.send_signal(signal.SIGINT)
        try:
            out = p.communicate(timeout=120)[0]
        except subprocess.TimeoutExpired:
            pytest.fail("the read stalled on the gateway was not interrupted by SIGINT")
        assert out.startswith("interrupted"), out
    finally:
        lakefs.set_faults(latency_ms=0)
        if p.poll() is None:
            p.kill()
            p.wait()


# ------------------------------------------------------------ hostile answers
HOSTILE = {
    "truncated": b'<?xml version="1.0"?><ListBucketResult><Contents><Key>main/a',
    "entities": (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
                 b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;">]>'
                 b'<ListBucketResult><Contents><Key>main/&c;</Key></Contents></ListBucketResult>'),
    "external": (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                 b'<ListBucketResult><Contents><Key>main/&x;</Key></Contents>'
                 b'</ListBucketResult>'),
    "deep": b"<ListBucketResult>" + b"<a>" * 100000 + b"</a>" * 100000 + b"</ListBucketResult>",
    "huge": b"<ListBucketResult>" + b"<Contents><Key>main/x</Key></Contents>" * 1400000 +
            b"</ListBucketResult>",
    "not-xml": b"\x00\xff\xfe garbage",
    # Go's encoder would have replaced the bytes; a broken server may not
    "bad-utf8": b"<ListBucketResult><Contents><Key>main/\xff\xfe</Key></Contents>"
                b"</ListBucketResult>",
}
ODD_KEYS = ["main/ok.txt", "main/..", "main/.", "main//double", "main/ctl\x01x",
            "main/" + "n" * 300, "main/bad\ufffdutf8", "main/sub/../../escape"]


class Hostile(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    mode = "odd"
    pages = 0
    stop_trickle = threading.Event()


class HostileHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, status, body=b"", ctype="application/xml"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.reply(404)

    def do_GET(self):
        from urllib.parse import parse_qs, urlparse
        u = urlparse(self.path)
        q = parse_qs(u.query)
        prefix = q.get("prefix", [""])[0]
        if u.path == "/":
            return self.reply(200, b"<ListAllMyBucketsResult><Buckets><Bucket><Name>evil</Name>"
                                   b"</Bucket></Buckets></ListAllMyBucketsResult>")
        if "/" not in prefix:  # branches, and the mount's own checks
            return self.reply(200, b"<ListBucketResult><IsTruncated>false</IsTruncated>"
                                   b"<CommonPrefixes><Prefix>main/</Prefix></CommonPrefixes>"
                                   b"</ListBucketResult>")
        if prefix != "main/" or q.get("max-keys", [""])[0] == "1":
            return self.reply(200, b"<ListBucketResult><IsTruncated>false</IsTruncated>"
                                   b"</ListBucketResult>")
        if self.server.mode == "endless":
            # more to come, always with the same token: must not loop
            self.server.pages += 1
            return self.reply(200, b"<ListBucketResult><IsTruncated>true</IsTruncated>"
                                   b"<NextContinuationToken>again</NextContinuationToken>"
                                   b"<Contents><Key>main/k%d</Key><Size>1</Size></Contents>"
                                   b"</ListBucketResult>" % self.server.pages)
        if self.server.mode == "trickle":
            body = (b"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>"
                    b"main/slow</Key></Contents></ListBucketResult>")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(len(body)):
                    if self.server.stop_trickle.is_set():
                        return
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass
            return
        if self.server.mode == "odd":
            body = b"<ListBucketResult><IsTruncated>false</IsTruncated>"
            for k in ODD_KEYS:
                # control characters cannot appear in XML 1.0 at all; the
                # rest go as they are, invalid UTF-8 included
                raw = k.encode("utf-8", "surrogateescape").replace(b"\x01", b"\x7f")
                body += (b"<Contents><Key>" + raw +
                         b"</Key><Size>1</Size><ETag>\"e\"</ETag></Contents>")
            return self.reply(200, body + b"</ListBucketResult>")
        return self.reply(200, HOSTILE[self.server.mode])


@pytest.fixture
def hostile(tmp_path):
    srv = Hostile(("127.0.0.1", 0), HostileHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.stop_trickle.set()
    srv.shutdown()
    srv.server_close()


def test_hostile_listings_give_eio_and_never_crash(hostile, mount, lakefs):
    ep = f"http://127.0.0.1:{hostile.server_address[1]}"
    # not lakeFS: no REST API to ask about presigned URLs
    m = mount("lakefs://evil", "--retries", "0", "--presign", "off", endpoint=ep)
    for mode in HOSTILE:
        hostile.mode = mode
        try:
            os.listdir(m.path / "main")
            got = 0
        except OSError as e:
            got = e.errno
        assert got == errno.EIO, (mode, got)
        assert m.alive(), mode
        time.sleep(1.1)  # past the branch TTL: the next listing is fetched again
    hostile.mode = "odd"
    names = os.listdir(m.path / "main")
    assert "ok.txt" in names
    assert all(n not in (".", "..", "") and "/" not in n and len(n.encode()) <= 255
               for n in names), names
    assert m.alive()
    assert "evil" in m.log()


def test_endless_or_trickled_listings_end_with_eio(hostile, mount):
    ep = f"http://127.0.0.1:{hostile.server_address[1]}"
    m = mount("lakefs://evil", "--retries", "1", "--timeout", "3", "--presign", "off",
              endpoint=ep)
    hostile.mode = "endless"
    try:
        os.listdir(m.path / "main")
        got = 0
    except OSError as e:
        got = e.errno
    assert got == errno.EIO and hostile.pages < 10, (got, hostile.pages)
    time.sleep(1.1)
    # 2 bytes a second: below any sane rate, and the whole answer would
    # take a minute; given up on, it is EIO, not the listing
    hostile.mode = "trickle"
    try:
        os.listdir(m.path / "main")
        got = 0
    except OSError as e:
        got = e.errno
    assert got == errno.EIO
    assert m.alive()


# ------------------------------------------------------------ security
def secret_found(secret, outputs):
    """Names of the outputs (name -> bytes) that hold the secret, as it is
    or percent-encoded."""
    forms = {secret.encode(), urllib.parse.quote(secret, safe="").encode()}
    return [name for name, data in outputs.items() if any(f in data for f in forms)]


def daemon_outputs(m):
    """Everything a mount's daemon wrote: log, stderr, sanitizer reports,
    every file under its cache directory."""
    out = {"log": m.log().encode(), "stderr": m.stderr().encode()}
    for p in sorted(m.san_dir.iterdir()) if m.san_dir.is_dir() else []:
        out[f"sanitizer {p.name}"] = p.read_bytes()
    cache = pathlib.Path(m.cmd[m.cmd.index("--cache-dir") + 1])
    for p in sorted(cache.rglob("*")) if cache.is_dir() else []:
        if p.is_file():
            out[f"cache {p.relative_to(cache)}"] = p.read_bytes()
    return out


def requests_seen(lakefs):
    return sum(lakefs.stats()["requests"].values())


def test_secret_key_never_leaks(lakefs, repo, s3, mount, mount_bg):
    """The real secret signs the requests of a busy mount at debug level
    (reads, writes, listings, uploads that fail and stay staged) and of a
    mount the gateway rejects: it is in no output, log, sanitizer report,
    cache file or command line of any of them; a rejected wrong secret is
    not echoed either."""
    secret = lakefs.secret_key
    s3.put_object(Bucket=repo, Key="main/a.txt", Body=b"a")
    m = mount(uri(repo), "--retries", "1", "--timeout", "5")
    (m.path / "main" / "w.txt").write_bytes(b"w")
    assert get(s3, repo, "main/w.txt") == b"w"      # signed with the secret, accepted
    assert sorted(os.listdir(m.path / "main")) == ["a.txt", "w.txt"]
    assert (m.path / "main" / "a.txt").read_bytes() == b"a"
    cmdline = open(f"/proc/{m.pid}/cmdline", "rb").read()
    lakefs.set_faults(fail_rate=1.0)
    try:
        with pytest.raises(OSError):
            (m.path / "main" / "x.txt").write_bytes(b"x")
    finally:
        lakefs.set_faults()
    problems = m.unmount()           # its last words (and the staged upload) included
    assert not problems, problems
    outputs = daemon_outputs(m)
    outputs["cmdline"] = cmdline
    assert "debug" in m.log()
    assert secret_found(secret, outputs) == []

    # The real secret with an access key the gateway does not know: it
    # signs, the gateway refuses.
    before = requests_seen(lakefs)
    res = mount_bg(uri(repo), access_key="AKIANOTAKNOWNKEY0000", timeout=60)
    assert res.returncode not in (0, None), res
    assert requests_seen(lakefs) > before, "the mount never reached the gateway"
    assert re.search(r"credential|access|denied|key", res.stderr, re.I), res.stderr
    rejected = {"stdout": res.stdout.encode(), "stderr": res.stderr.encode(),
                "log": res.log().encode()}
    assert secret_found(secret, rejected) == []

    # A wrong secret: signs, refused, and neither it nor the real one shows.
    bad = "wrong" + secret[5:]
    before = requests_seen(lakefs)
    res = mount_bg(uri(repo), secret_key=bad, timeout=60)
    assert res.returncode not in (0, None), res
    assert requests_seen(lakefs) > before, "the mount never reached the gateway"
    rejected = {"stdout": res.stdout.encode(), "stderr": res.stderr.encode(),
                "log": res.log().encode()}
    assert secret_found(bad, rejected) == [] and secret_found(secret, rejected) == []


def test_staging_is_private(lakefs, repo, s3, mount):
    m = mount(uri(repo))
    cache = m.cmd[m.cmd.index("--cache-dir") + 1]
    f = open(m.path / "main" / "open.txt", "wb")
    f.write(b"staged")
    f.flush()
    staging = os.path.join(cache, "staging")
    assert os.stat(cache).st_mode & 0o777 == 0o700
    assert os.stat(staging).st_mode & 0o777 == 0o700
    # one area per mount (a directory), its files private
    areas = os.listdir(staging)
    assert len(areas) == 1
    area = os.path.join(staging, areas[0])
    assert os.stat(area).st_mode & 0o777 == 0o700
    names = os.listdir(area)
    assert len(names) > 1
    for n in names:
        assert os.stat(os.path.join(area, n)).st_mode & 0o777 == 0o600, n
    f.close()


NOBODY = 65534


def errno_as_nobody(path):
    """Lists path as uid/gid 65534 in a forked child; returns 0 or the
    errno the listing failed with (255: the child could not become that
    user)."""
    pid = os.fork()
    if pid == 0:
        code = 254
        try:
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            except OSError:
                os._exit(255)
            os.listdir(path)
            code = 0
        except OSError as e:
            code = e.errno if 0 < e.errno < 250 else 253
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture
def public_dir():
    """A directory every user can reach (pytest's own tmp dirs are 0700,
    so there another user is refused before any mount is involved);
    removed (empty directories only: never a live mount) at teardown."""
    d = tempfile.mkdtemp(prefix="lakefuse-public-", dir="/tmp")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    for sub in sorted(pathlib.Path(d).iterdir(), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        os.rmdir(d)
    except OSError:
        pass


def test_other_users_see_nothing_without_allow_other(public_dir, lakefs, repo, s3, mount):
    """Another user can reach the mount point, is refused by the mount
    (EACCES) while the owner lists it, and gets in once the mount has
    allow_other: the refusal is the mount's, not a directory's mode."""
    if os.geteuid() != 0:
        pytest.skip("acting as another user needs root")
    s3.put_object(Bucket=repo, Key="main/a.txt", Body=b"a")
    private, shared = public_dir / "private", public_dir / "shared"
    for d in (private, shared):
        d.mkdir()
        os.chmod(d, 0o755)
        assert errno_as_nobody(d) == 0, "the mount point itself is not reachable"
    m = mount(uri(repo), mountpoint=private)
    assert os.listdir(m.path) == ["main"]
    assert errno_as_nobody(m.path) == errno.EACCES
    m2 = mount(uri(repo), "-o", "allow_other", mountpoint=shared)
    assert errno_as_nobody(m2.path) == 0
    assert errno_as_nobody(m2.path / "main") == 0


def make_ca(tmp, name):
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=tmp)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem")
    return tmp / f"{name}.pem", tmp / f"{name}.key"


def test_https_with_ca_bundle_and_insecure(tmp_path, mount, monkeypatch):
    ca, ca_key = make_ca(tmp_path, "lakefuse-test-ca")
    other, _ = make_ca(tmp_path, "other-ca")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=tmp_path)  # noqa
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "srv.key", "-out", "srv.csr")
    (tmp_path / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "srv.csr", "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "srv.pem")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the helpers' own HTTPS calls
    sim = _sim_class()(tmp_path / "tls-data", extra_args=["--tls-cert", str(tmp_path / "srv.pem"),
                                                 "--tls-key", str(tmp_path / "srv.key")])
    sim.start()
    try:
        assert sim.endpoint.startswith("https://")
        sim.create_repo("tls-repo")
        import boto3
        s3 = boto3.client("s3", endpoint_url=sim.endpoint, aws_access_key_id=sim.access_key,
                          aws_secret_access_key=sim.secret_key, region_name="us-east-1",
                          verify=str(ca))
        s3.put_object(Bucket="tls-repo", Key="main/s.txt", Body=b"secure")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=sim.access_key,
                   AWS_SECRET_ACCESS_KEY=sim.secret_key)
        m = mount("lakefs://tls-repo", "--ca-bundle", str(ca), endpoint=sim.endpoint, access_key=sim.access_key, secret_key=sim.secret_key)
        assert (m.path / "main" / "s.txt").read_bytes() == b"secure"
        (tmp_path / "nomnt").mkdir()
        bad = subprocess.run([str(BINARY), "mount", "--endpoint", sim.endpoint, "--ca-bundle",
                              str(other), "lakefs://tls-repo", str(tmp_path / "nomnt")],
                             capture_output=True, text=True, timeout=60, env=env)
        assert bad.returncode != 0
        assert re.search(r"certificate|SSL|TLS", bad.stderr, re.I), bad.stderr
        m2 = mount("lakefs://tls-repo", "--insecure", endpoint=sim.endpoint,
                   access_key=sim.access_key, secret_key=sim.secret_key)
        assert (m2.path / "main" / "s.txt").read_bytes() == b"secure"
        assert "NOT verified" in m2.log()
    finally:
        sim.stop()


@pytest.mark.slow
def test_gateway_down_30s_in_the_middle_of_cp_r(lakefs, repo, s3, mount, tmp_path):
    """cp -r into the mount while the gateway goes away for 30 s. The
    gateway is slowed (200 ms a request) so cp is surely mid-copy when it
    stops, which it does once some files have arrived. During the outage a
    read of an existing, never-read file fails with EIO (not ENOENT: it
    exists), and soon. Afterwards every file is on the branch byte-exact,
    except those whose create cp reported failed (never staged, so never
    uploaded); what failed at close was staged and goes up at unmount, and
    staging ends empty."""
    src = tmp_path / "src"
    src.mkdir()
    files = {f"f{i:03d}.bin": det_bytes(1000 + i, 256 * 1024 + i) for i in range(400)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    s3.put_object(Bucket=repo, Key="main/cold.bin", Body=det_bytes(5, 4 * MiB))
    m = mount(uri(repo), "--retries", "2", "--timeout", "5")
    cache = m.cmd[m.cmd.index("--cache-dir") + 1]
    dst = m.path / "main" / "dst"
    os.mkdir(dst)
    assert "cold.bin" in os.listdir(m.path / "main")
    # over presigned URLs the files go to the storage (a PUT there, then a
    # link through the API)
    put = "StoragePutObject" if PRESIGNED else "PutObject"

    def puts():
        st = lakefs.stats()
        return st["requests"].get(put, 0) + st["storage"]["by_operation"].get(put, 0)
    set_data_faults(lakefs, latency_ms=200)
    cp = subprocess.Popen(["cp", "-r", f"{src}/.", str(dst)], stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: puts() >= 10, 120, what="cp to be under way")
        # One upload fails at close for sure (every attempt reset), so its
        # file stays staged through the outage.
        set_data_faults(lakefs, latency_ms=200, rules=[dict(operation=put, kind="reset",
                                                            count=3)])
        wait_until(lambda: lakefs.faults()["rules"] == [], 120, what="the failed upload")
        lakefs.stop()
        assert cp.poll() is None, "cp finished before the outage: it proved nothing"
        t0 = time.monotonic()
        read_errno = errno_of(lambda: (m.path / "main" / "cold.bin").read_bytes())
        read_took = time.monotonic() - t0
        time.sleep(30)      # the outage's length: cp goes on meeting it
    finally:
        if lakefs.proc is None:
            lakefs.start()
    err = cp.communicate(timeout=600)[1]
    assert read_errno == errno.EIO, f"a read during the outage gave {read_errno}"
    assert read_took < 30, read_took
    # cp gives up on a file whose destination it cannot stat or create:
    # nothing written, nothing staged
    not_created = set(re.findall(r"cannot (?:stat|create regular file) '[^']*/(f\d{3}\.bin)'",
                                 err))
    kinds = collections.Counter(re.sub(r"'[^']*'", "'…'", line) for line in err.splitlines())
    failed = set(re.findall(r"(f\d{3}\.bin)", err))
    at_close = set(re.findall(r"failed to close '[^']*/(f\d{3}\.bin)'", err))
    assert at_close, f"no upload failed at close: {err[-2000:]!r}"
    assert failed - at_close, f"cp met no failure in a 30 s outage: {err[-2000:]!r}"
    res = subprocess.run([str(BINARY), "unmount", str(m.path)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    m.proc.wait(timeout=120)
    on_branch = {}
    for name in files:
        try:
            on_branch[name] = get(s3, repo, f"main/dst/{name}")
        except s3.exceptions.NoSuchKey:
            pass
    missing = sorted(set(files) - set(on_branch) - not_created)
    wrong = sorted(n for n, b in on_branch.items() if b != files[n])
    assert not missing and not wrong, (missing[:10], wrong[:10], err[-2000:])
    staging = os.path.join(cache, "staging")
    assert not [n for n in os.listdir(staging) if not n.startswith(".")]
    print(f"\ngateway down 30 s: cp reported {len(failed)} failures of {len(files)} files, "
          f"{len(not_created)} before writing, {len(at_close)} at close; {len(on_branch)} on "
          f"the branch; {dict(kinds)}")


