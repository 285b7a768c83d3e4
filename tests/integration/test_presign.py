"""The direct-to-storage data path (--presign) on real mounts: object bytes
move between lakefuse and the simulator's storage endpoint through
presigned URLs while the gateway and the REST API carry metadata only;
URLs that expire during a read are renewed unseen; storage faults are
retried; a server whose storage cannot presign is used through the
gateway (auto) or refused (on); the write path keeps its guarantees
(errors at close, staged files kept and uploaded later, crash recovery,
bounded memory) and what is written reads back alike through the gateway.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_presign.py
"""
import errno
import hashlib
import json
import os
import re
import signal
import subprocess
import time

import pytest

from lf_helpers import (BINARY, MiB, BigStream, bulk_put, closed_line, det_bytes, errno_of, get,
                        run, sha256_file, splice_pipes_available, vm_status, wait_until)

BIG = 256 * MiB            # the acceptance's 1 GiB, cut to keep CI fast
SERVER_BUDGET = 1 * MiB    # what may cross the gateway and the API for it


def uri(repo, ref="main"):
    return f"lakefs://{repo}/{ref}"


def server_bytes(st):
    """Bytes through the lakeFS server: gateway and REST API together."""
    return st["bytes_in"] + st["bytes_out"]


def no_secret_in_log(m):
    """Presigned URLs are secrets: their signature never reaches a log."""
    log = m.log() + m.stderr()
    assert "X-Amz-Signature" not in log and "X-Amz-Credential" not in log
    return log


def upload_big(s3, repo, key, stream):
    from lf_helpers import upload_stream_multipart
    return upload_stream_multipart(s3, repo, key, stream.pieces(), part_size=32 * MiB)


def stats_line(log, which):
    """(requests, retries, renewed, failures) from the storage line, or
    the gateway's (requests, retries, failures), logged at unmount."""
    if which == "storage":
        m = re.findall(r"storage: requests (\d+), retries (\d+), URLs renewed (\d+), "
                       r"failed operations (\d+)", log)
    else:
        m = re.findall(r"gateway: requests (\d+), retries (\d+), failed operations (\d+)", log)
    return tuple(map(int, m[-1])) if m else None


def unmount(m):
    subprocess.run([str(BINARY), "unmount", str(m.path)], check=True, timeout=300)
    m.proc.wait(timeout=120)
    return no_secret_in_log(m)


def cache_dir(m):
    return m.cmd[m.cmd.index("--cache-dir") + 1]


def staged_files(cache):
    out = []
    for d, _, names in os.walk(os.path.join(cache, "staging")):
        out += [n for n in names if n.startswith("f-") and not n.endswith(".m")]
    return out


# ------------------------------------------------------- the data path
@pytest.mark.slow
def test_large_read_moves_its_bytes_through_storage(lakefs, repo, s3, mount):
    data = BigStream(seed=101, size=BIG)
    want = upload_big(s3, repo, "main/big.bin", data)
    m = mount(uri(repo), "--presign", "on", "--cache-size", "64")
    lakefs.reset_stats()
    t0 = time.monotonic()
    assert sha256_file(m.path / "big.bin") == want
    secs = time.monotonic() - t0
    st = lakefs.stats()
    assert st["storage"]["bytes_out"] >= BIG, st
    assert server_bytes(st) < SERVER_BUDGET, st
    assert st["requests"].get("GetObject", 0) == 0, st
    # The mount's own counters (stats, metrics) say where the bytes went.
    own = json.loads(subprocess.run([str(BINARY), "stats", "--json", str(m.path)],
                                    capture_output=True, text=True, check=True).stdout)
    assert own["storage"]["requests"] == st["storage"]["requests"], (own, st)
    assert own["storage"]["bytes"]["received"] == BIG, own
    assert own["requests"]["by_op"]["GetObject"] == 0, own
    # bounded memory: the cache's 64 MiB and the daemon's own, not the object
    hwm_mib = vm_status(m.pid)["VmHWM"] / 1024
    assert hwm_mib < 64 + 160, f"daemon peak RSS {hwm_mib:.0f} MiB"
    log = unmount(m)
    assert "data path: presigned URLs" in log
    print(f"\npresigned read of {BIG >> 20} MiB: {BIG / MiB / secs:.0f} MiB/s; through the "
          f"server {server_bytes(st)} bytes (API {st['api']['requests']} calls), through "
          f"storage {st['storage']['bytes_out']} bytes in {st['storage']['requests']} "
          f"requests; peak RSS {hwm_mib:.0f} MiB")


@pytest.mark.slow
def test_large_write_moves_its_bytes_through_storage(lakefs, repo, s3, mount):
    data = BigStream(seed=202, size=BIG)
    m = mount(uri(repo), "--presign", "on", "--cache-size", "64")
    lakefs.reset_stats()
    t0 = time.monotonic()
    with open(m.path / "big.bin", "wb") as f:
        for piece in data.pieces():
            f.write(piece)
    secs = time.monotonic() - t0
    st = lakefs.stats()
    assert st["storage"]["bytes_in"] >= BIG, st
    assert server_bytes(st) < SERVER_BUDGET, st
    assert st["storage"]["by_operation"].get("StorageUploadPart", 0) >= BIG // (8 * MiB)
    assert not any(op in st["requests"] for op in ("PutObject", "UploadPart")), st
    hwm_mib = vm_status(m.pid)["VmHWM"] / 1024
    assert hwm_mib < 64 + 160, f"daemon peak RSS {hwm_mib:.0f} MiB"
    h = hashlib.sha256()
    body = s3.get_object(Bucket=repo, Key="main/big.bin")["Body"]
    for chunk in iter(lambda: body.read(8 * MiB), b""):
        h.update(chunk)
    assert h.hexdigest() == data.sha256()
    unmount(m)
    print(f"\npresigned write of {BIG >> 20} MiB: {BIG / MiB / secs:.0f} MiB/s to close; "
          f"through the server {server_bytes(st)} bytes (API {st['api']['requests']} calls), "
          f"through storage {st['storage']['bytes_in']} bytes")


def test_auto_presigns_small_files_and_they_read_back_alike_through_the_gateway(
        lakefs, repo, s3, mount):
    small = {f"d/s{i}.bin": det_bytes(i, n) for i, n in enumerate([1, 100, 4096, 70000])}
    files = {f"d/f{i}.bin": det_bytes(10 + i, n) for i, n in
             enumerate([131072, 300000, 5 * MiB + 3])}
    m = mount(uri(repo), "--presign", "auto")
    lakefs.reset_stats()
    for name, body in list(files.items()) + list(small.items()):
        p = m.path / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(body)
    os.chmod(m.path / "d/f1.bin", 0o640)
    os.utime(m.path / "d/f1.bin", ns=(1700000000_123456789, 1700000000_123456789))
    fd = os.open(m.path / "d/f1.bin", os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    st = lakefs.stats()
    # files from 128 KiB on go to the storage; smaller ones are one gateway
    # PUT each (where a presigned upload would make two API calls)
    assert st["storage"]["bytes_in"] >= sum(map(len, files.values())), st
    assert st["storage"]["by_operation"].get("StoragePutObject", 0) == len(files), st
    assert st["bytes_in"] < sum(map(len, small.values())) + 200_000, st
    files.update(small)
    for name, body in files.items():
        assert get(s3, repo, "main/" + name) == body, name
    head = s3.head_object(Bucket=repo, Key="main/d/f1.bin")
    meta = {k.lower(): v for k, v in head["Metadata"].items()}
    assert meta["mode"] == str(0o100640) and meta["mtime"] == "1700000000"
    assert meta["mtime-nsec"] == "123456789"
    assert "data path: presigned URLs" in unmount(m)
    # the gateway's data path reads the same attributes and bytes
    g = mount(uri(repo), "--presign", "off")
    s = os.stat(g.path / "d/f1.bin")
    assert (s.st_mode & 0o777, s.st_mtime_ns) == (0o640, 1700000000_123456789)
    for name, body in files.items():
        assert (g.path / name).read_bytes() == body


def test_files_written_through_the_gateway_read_through_storage(lakefs, repo, s3, mount):
    s3.put_object(Bucket=repo, Key="main/g.bin", Body=det_bytes(7, 3 * MiB),
                  Metadata={"mode": str(0o100600)})
    m = mount(uri(repo), "--presign", "on")
    lakefs.reset_stats()
    assert (m.path / "g.bin").read_bytes() == det_bytes(7, 3 * MiB)
    assert os.stat(m.path / "g.bin").st_mode & 0o777 == 0o600
    st = lakefs.stats()
    assert st["storage"]["bytes_out"] >= 3 * MiB and st["requests"].get("GetObject", 0) == 0
    # replaced while open: the reader gets EIO, never a mix of two versions
    with open(m.path / "g.bin", "rb", buffering=0) as f:
        assert f.read(1000) == det_bytes(7, 3 * MiB)[:1000]
        s3.put_object(Bucket=repo, Key="main/g.bin", Body=det_bytes(8, 3 * MiB))
        f.seek(2 * MiB)
        try:
            got = f.read(MiB)
            assert got == det_bytes(7, 3 * MiB)[2 * MiB:], "bytes of another version"
        except OSError as e:
            assert e.errno == errno.EIO


# ---------------------------------------------------- expiring URLs
@pytest.mark.slow
def test_urls_expiring_every_two_seconds_during_a_twenty_second_read(other_sim, s3, mount):
    sim = other_sim("--presign-expiry", "2")
    repo = f"exp-{time.time_ns() % 10 ** 9}"
    sim.create_repo(repo)
    size = 64 * MiB
    data = BigStream(seed=303, size=size, chunk=MiB)
    s3s = sim.s3()
    want = upload_big(s3s, repo, "main/slow.bin", data)
    m = mount(uri(repo), "--presign", "on", "--request-size", "1", "--readahead-max", "1",
              "--max-requests", "2", endpoint=sim.endpoint)
    sim.set_faults(storage={"latency_ms": 600})
    sim.reset_stats()
    t0 = time.monotonic()
    try:
        assert sha256_file(m.path / "slow.bin", bufsize=256 * 1024) == want
    finally:
        sim.set_faults()
    secs = time.monotonic() - t0
    st = sim.stats()
    assert 12 <= secs <= 60, f"the read took {secs:.1f} s, not about 20"
    # a URL lives 2 s: each was renewed before it ran out, or after a 403
    stats = st["api"]["requests"]
    assert stats >= secs / 2 - 1, (stats, secs)
    log = unmount(m)
    requests, retries, renewed, failures = stats_line(log, "storage")
    assert failures == 0
    print(f"\n{size >> 20} MiB read in {secs:.1f} s with URLs living 2 s: {stats} API calls, "
          f"{requests} storage requests, {renewed} URLs renewed after a refusal, "
          f"{retries} retries")


# ------------------------------------------------------------- faults
@pytest.mark.slow
def test_ten_percent_storage_faults_reads_and_writes_exact(lakefs, repo, s3, mount, tmp_path):
    big = BigStream(seed=404, size=96 * MiB)
    want = upload_big(s3, repo, "main/in.bin", big)
    small = {f"s{i:02d}.bin": det_bytes(100 + i, (i * 37_000) % 400_000 + 1) for i in range(40)}
    m = mount(uri(repo), "--presign", "on", "--retries", "10")
    lakefs.set_faults(storage={"fail_rate": 0.1})
    try:
        assert sha256_file(m.path / "in.bin") == want
        out = BigStream(seed=405, size=64 * MiB)
        with open(m.path / "out.bin", "wb") as f:
            for piece in out.pieces():
                f.write(piece)
        for name, body in small.items():
            (m.path / name).write_bytes(body)
    finally:
        lakefs.set_faults()
    st = lakefs.stats()
    assert st["storage"]["faults"] > 0, "no storage fault was injected: nothing proved"
    h = hashlib.sha256()
    body = s3.get_object(Bucket=repo, Key="main/out.bin")["Body"]
    for chunk in iter(lambda: body.read(8 * MiB), b""):
        h.update(chunk)
    assert h.hexdigest() == out.sha256()
    for name, data in small.items():
        assert get(s3, repo, "main/" + name) == data, name
    log = unmount(m)
    requests, retries, renewed, failures = stats_line(log, "storage")
    assert retries > 0 and failures == 0, (requests, retries, renewed, failures)
    assert re.search(r"storage (GET|PUT|UploadPart) .*\(attempt \d+\)", log)
    print(f"\n10% storage faults: {st['storage']['faults']} injected; {requests} storage "
          f"requests, {retries} retries, {failures} failed operations")


def test_ctrl_c_interrupts_a_read_stalled_on_the_storage(lakefs, repo, s3, mount):
    """A program opens a file, the storage then answers only after 10
    minutes, the program reads, and once that read's GET reached the
    storage gets SIGINT: the read ends (EINTR) long before."""
    s3.put_object(Bucket=repo, Key="main/b.bin", Body=det_bytes(2, 8 * MiB))
    m = mount(uri(repo), "--presign", "on", "--timeout", "900")
    code = ("import os, signal, sys, time\n"
            "class Stop(Exception): pass\n"
            "def h(*a): raise Stop()\n"
            "signal.signal(signal.SIGINT, h)\n"
            f"fd = os.open({str(m.path / 'b.bin')!r}, os.O_RDONLY)\n"
            "print('ready', flush=True)\n"
            "sys.stdin.readline()\n"
            "t = time.monotonic()\n"
            "try:\n"
            "    os.pread(fd, 1 << 20, 4 << 20)\n"
            "    print('finished', flush=True)\n"
            "except Stop:\n"
            "    print('interrupted %.2f' % (time.monotonic() - t), flush=True)\n")
    p = subprocess.Popen(["/usr/bin/python3", "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        lakefs.set_faults(storage={"latency_ms": 600_000})
        gets = lakefs.stats()["storage"]["by_operation"].get("StorageGetObject", 0)
        p.stdin.write("go\n")
        p.stdin.flush()
        wait_until(lambda: lakefs.stats()["storage"]["by_operation"].get(
            "StorageGetObject", 0) > gets, 60, what="the read's GET at the storage")
        p.send_signal(signal.SIGINT)
        out = p.communicate(timeout=120)[0]
        assert out.startswith("interrupted"), out
        assert float(out.split()[1]) < 60
    finally:
        lakefs.set_faults()
        if p.poll() is None:
            p.kill()
            p.wait()
    assert m.alive()


def test_lost_link_answer_is_found_made(lakefs, repo, s3, mount):
    m = mount(uri(repo), "--presign", "on")
    # the staging location passes, its link is made and its answer lost
    lakefs.set_faults(rules=[{"operation": "API", "kind": "lost", "skip": 1, "count": 1,
                              "path_contains": "/staging/backing"}])
    try:
        (m.path / "l.bin").write_bytes(b"linked once" * 20000)
    finally:
        lakefs.set_faults()
    assert get(s3, repo, "main/l.bin") == b"linked once" * 20000
    assert "the answer was lost; the object is linked" in m.log()


def test_failed_link_keeps_the_file_staged_and_fsync_uploads_later(lakefs, repo, s3, mount):
    m = mount(uri(repo), "--presign", "on", "--retries", "1", "--branch-ttl", "600")
    assert os.listdir(m.path) == []
    lakefs.set_faults(rules=[{"operation": "API", "kind": "error500", "count": 1000,
                              "path_contains": "/staging/backing"}])
    try:
        fd = os.open(m.path / "keep.bin", os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, b"must not be lost" * 10000)
        assert errno_of(lambda: os.close(fd)) == errno.EIO
        assert staged_files(cache_dir(m)), "the data must stay staged"
    finally:
        lakefs.set_faults()
    fd = os.open(m.path / "keep.bin", os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    assert get(s3, repo, "main/keep.bin") == b"must not be lost" * 10000
    assert lakefs.stats()["storage"]["by_operation"].get("StoragePutObject", 0) >= 1


def test_killed_daemon_staged_files_are_recovered_through_storage(lakefs, repo, s3, mount):
    m = mount(uri(repo), "--presign", "on", "--retries", "0", "--timeout", "5",
              "--branch-ttl", "600")
    cache = cache_dir(m)
    assert os.listdir(m.path) == []
    lakefs.set_faults(storage={"fail_rate": 1.0, "kinds": ["error500"]})
    try:
        fd = os.open(m.path / "new.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"staged, then recovered" * 10000)
        assert errno_of(lambda: os.close(fd)) == errno.EIO
        m.expect_nonzero_exit = True
        os.kill(m.pid, signal.SIGKILL)
        wait_until(lambda: not m.alive(), 20, what="the daemon to die")
    finally:
        lakefs.set_faults()
    lakefs.reset_stats()
    m2 = mount(uri(repo), "--presign", "on", mountpoint=m.path, cache=cache)

    def uploaded():
        try:
            return get(s3, repo, "main/new.bin") == b"staged, then recovered" * 10000
        except s3.exceptions.NoSuchKey:
            return False
    wait_until(uploaded, 30, what="the recovered upload")
    assert lakefs.stats()["storage"]["by_operation"].get("StoragePutObject", 0) >= 1
    wait_until(lambda: "recovery: done" in m2.log(), 30, what="the end of recovery")


# ------------------------------------- servers that cannot presign (all or part)
def test_no_presign_server_auto_works_through_the_gateway(other_sim, mount):
    sim = other_sim("--no-presign")
    repo = f"np-{time.time_ns() % 10 ** 9}"
    sim.create_repo(repo)
    s3s = sim.s3()
    s3s.put_object(Bucket=repo, Key="main/r.bin", Body=det_bytes(1, 2 * MiB))
    m = mount(uri(repo), "--presign", "auto", endpoint=sim.endpoint)
    sim.reset_stats()
    assert (m.path / "r.bin").read_bytes() == det_bytes(1, 2 * MiB)
    (m.path / "w.bin").write_bytes(det_bytes(2, 20 * MiB))
    assert get(s3s, repo, "main/w.bin") == det_bytes(2, 20 * MiB)
    st = sim.stats()
    assert st["storage"]["requests"] == 0
    assert st["bytes_out"] >= 2 * MiB and st["bytes_in"] >= 20 * MiB
    log = unmount(m)
    assert "does not support presigned URLs: data goes through the gateway" in log


def test_no_presign_server_on_fails_the_mount_saying_why(other_sim, mount_bg):
    sim = other_sim("--no-presign")
    repo = f"nq-{time.time_ns() % 10 ** 9}"
    sim.create_repo(repo)
    r = mount_bg(uri(repo), "--presign", "on", endpoint=sim.endpoint)
    assert r.returncode != 0 and not r.live_on_return, r
    assert "--presign on" in r.stderr and "does not support presigned URLs" in r.stderr, r
    assert "pre_sign_support: false" in r.stderr, r


def test_no_presigned_multipart_server_sends_big_files_through_the_gateway(other_sim, mount):
    sim = other_sim("--no-presign-multipart")
    repo = f"nm-{time.time_ns() % 10 ** 9}"
    sim.create_repo(repo)
    m = mount(uri(repo), "--presign", "on", endpoint=sim.endpoint)
    sim.reset_stats()
    (m.path / "small.bin").write_bytes(det_bytes(3, 300_000))
    (m.path / "big.bin").write_bytes(det_bytes(4, 24 * MiB))
    s3s = sim.s3()
    assert get(s3s, repo, "main/small.bin") == det_bytes(3, 300_000)
    assert get(s3s, repo, "main/big.bin") == det_bytes(4, 24 * MiB)
    st = sim.stats()
    assert st["storage"]["by_operation"].get("StoragePutObject", 0) >= 1
    assert st["storage"]["by_operation"].get("StorageUploadPart", 0) == 0
    assert st["requests"].get("UploadPart", 0) >= 3
    # reads still come from the storage
    sim.reset_stats()
    assert (m.path / "big.bin").read_bytes() == det_bytes(4, 24 * MiB)
    assert sim.stats()["storage"]["bytes_out"] >= 24 * MiB
    unmount(m)


# ------------------------------------- with the default mode's speed work
@pytest.mark.parametrize("mode", [[], ["--direct-io"]], ids=["default", "direct-io"])
def test_big_presigned_reads_are_spliced_from_the_storage(lakefs, repo, s3, mount, mode):
    """An object over half the cache read sequentially over presigned URLs
    goes from the storage's socket to the kernel with splice, as on the
    gateway path (the daemon's count of spliced bytes is the whole file),
    byte-exact, each byte fetched once, none through the gateway; the
    default mode opens it with direct I/O, and a shared mmap of it still
    gives its bytes."""
    import mmap
    if not splice_pipes_available():
        pytest.skip("pipes of 4 MiB cannot be made here (needs root or fs.pipe-max-size)")
    size = 40 * MiB + 4321
    stream = BigStream(seed=505, size=size, chunk=8 * MiB)
    want = upload_big(s3, repo, "main/spliced.bin", stream)
    m = mount(uri(repo), "--presign", "on", "--cache-size", "32", *mode)
    lakefs.reset_stats()
    assert sha256_file(m.path / "spliced.bin") == want     # 1 MiB reads
    st = lakefs.stats()
    assert st["requests"].get("GetObject", 0) == 0, st
    assert size <= st["storage"]["bytes_out"] <= size + 64 * 1024, st   # each byte once
    assert server_bytes(st) < SERVER_BUDGET, st
    read, spliced, _ = closed_line(m, "spliced.bin")
    assert (read, spliced) == (size, size)
    fd = os.open(m.path / "spliced.bin", os.O_RDONLY)
    try:
        with mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) as mm:
            assert hashlib.sha256(mm[:]).hexdigest() == want
    finally:
        os.close(fd)
    log = unmount(m)
    if not mode and "objects from 16 MiB on are read with direct I/O" not in log:
        assert "big objects are read through the page cache" in log, log[-2000:]


def storage_gets(sim):
    return sim.stats()["storage"]["by_operation"].get("StorageGetObject", 0)


def test_files_read_in_listing_order_are_fetched_ahead_from_the_storage(
        lakefs, repo, s3, mount, tmp_path):
    """The directory walk's read-ahead (src/fs_ahead.c) fetches the next
    files through the presigned store: after three files read in listing
    order the next ones' bytes come from the storage before they are
    asked for, every file is fetched exactly once (a tree copy on a fresh
    mount too), byte-exact, and no GET goes to the gateway."""
    files = {f"f{i:03d}.dat": (b"%05d" % i) * 4000 for i in range(40)}
    bulk_put(lakefs, repo, [(f"main/small/{k}", v) for k, v in files.items()])
    m = mount(uri(repo), "--presign", "on")
    d = m.path / "small"
    names = sorted(os.listdir(d))
    lakefs.reset_stats()
    for k in names[:3]:
        assert (d / k).read_bytes() == files[k]
    assert wait_until(lambda: storage_gets(lakefs) >= 3 + 4, timeout=10), lakefs.stats()
    for k in names[3:]:
        assert (d / k).read_bytes() == files[k]
    st = lakefs.stats()
    assert storage_gets(lakefs) == len(files), st["storage"]
    assert st["requests"].get("GetObject", 0) == 0, st["requests"]
    m2 = mount(uri(repo), "--presign", "on")
    lakefs.reset_stats()
    run(["cp", "-r", str(m2.path / "small"), str(tmp_path / "copy")], timeout=120)
    assert {p.name: p.read_bytes() for p in (tmp_path / "copy").iterdir()} == files
    assert storage_gets(lakefs) == len(files), lakefs.stats()["storage"]
    assert lakefs.stats()["requests"].get("GetObject", 0) == 0


# --------------------------------------------- two mounts, one new name
def test_creating_a_name_another_mount_stored_gives_eexist_on_every_upload_kind(
        lakefs, repo, s3, mount):
    """Two presigned mounts create the same new names; A closes first. B's
    close is EEXIST for each way an upload goes: a gateway PutObject
    (under 128 KiB), a link with If-None-Match (under the part size) and
    a presigned multipart upload, whose completion takes no condition and
    is preceded by a HEAD (docs/semantics.md, "Many mounts of one branch");
    A's object stays, B's bytes stay staged and are B's to rename."""
    a = mount(uri(repo), "--presign", "on", "--branch-ttl", "1")
    b = mount(uri(repo), "--presign", "on", "--branch-ttl", "1")
    for i, size in enumerate([70000, 300000, 17 * MiB]):
        name = f"new{i}.bin"
        da, db = det_bytes(600 + i, size), det_bytes(700 + i, size + 1)
        fa = os.open(a.path / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        fb = os.open(b.path / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        assert os.write(fa, da) == len(da) and os.write(fb, db) == len(db)
        lakefs.reset_stats()
        os.close(fa)
        assert errno_of(lambda: os.close(fb)) == errno.EEXIST, name
        st = lakefs.stats()
        if size >= 8 * MiB:   # both went up as presigned multipart uploads
            assert st["storage"]["by_operation"].get("StorageUploadPart", 0) >= 4, st
            assert st["requests"].get("CompleteMultipartUpload", 0) == 0, st
        assert get(s3, repo, f"main/{name}") == da
        assert "another client created it" in b.log()
        assert (b.path / name).read_bytes() == db
        os.rename(b.path / name, b.path / f"{name}.mine")
        assert get(s3, repo, f"main/{name}.mine") == db
        assert get(s3, repo, f"main/{name}") == da
