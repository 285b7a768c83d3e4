"""Resources running out under a mount (docs/reliability.md, "Resources"):

- the cache directory's filesystem fills (a small tmpfs mounted by the
  test): writes fail with ENOSPC, every write that returned success is
  uploaded, reads go on, writes work again once space is freed, and the
  disk cache tier, on the same filesystem, gives its space back first;
- the daemon's RLIMIT_NOFILE lowered under it (prlimit): creates fail with
  ENFILE, nothing crashes, nothing acknowledged is lost, and all works
  again once the limit is raised;
- a cache budget far below the working set: every byte read is right.
"""
import errno
import hashlib
import os
import shutil
import subprocess
import threading

import pytest

from lf_helpers import BINARY, MiB, errno_of, get, run, wait_until


def _umount(path):
    for args in (["umount", str(path)], ["umount", "-l", str(path)]):
        if subprocess.run(args, capture_output=True).returncode == 0:
            return


@pytest.fixture
def small_fs(tmp_path):
    """A 48 MiB tmpfs at tmp_path/small, unmounted (by path) afterwards.
    Requested before `mount`, so the lakefuse mount on it goes first."""
    path = tmp_path / "small"
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        _umount(path)


def free_bytes(path):
    v = os.statvfs(path)
    return v.f_bavail * v.f_frsize


def blocks_in(cache):
    d = cache / "blocks"
    return [p for p in d.iterdir() if p.name.endswith(".blk")] if d.is_dir() else []


def flush(m):
    return subprocess.run([str(BINARY), "flush", str(m.path)], capture_output=True, text=True,
                          timeout=300)


def test_cache_disk_full_enospc_then_recovers(small_fs, repo, mount, s3):
    reads = {f"r{i}": os.urandom(4 * MiB) for i in range(6)}
    for name, data in reads.items():
        s3.put_object(Bucket=repo, Key=f"main/{name}", Body=data)
    cache = small_fs / "cache"
    m = mount(f"lakefs://{repo}/main", "--cache-size", "8", "--disk-cache-size", "64",
              "--no-splice", cache=cache)
    # Reading 24 MiB through 8 MiB of memory: the disk tier keeps the rest.
    for name, data in reads.items():
        assert (m.path / name).read_bytes() == data
    wait_until(lambda: len(blocks_in(cache)) >= 4, timeout=60, what="the disk tier in use")

    # Another program fills the disk, all but 10 MiB.
    filler = small_fs / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * (free_bytes(small_fs) - 10 * MiB))

    # Eight files written round robin, 1 MiB at a time, all kept open:
    # more than fits. Every byte a write() accepted is recorded.
    fds, acked = [], {}
    for i in range(8):
        fds.append(os.open(m.path / f"w{i}", os.O_WRONLY | os.O_CREAT, 0o644))
        acked[f"w{i}"] = b""
    failure = None
    for rnd in range(6):
        for i, fd in enumerate(fds):
            chunk = hashlib.sha256(b"%d-%d" % (i, rnd)).digest() * (MiB // 32)
            try:
                n = os.write(fd, chunk)
            except OSError as e:
                failure = e.errno
                break
            acked[f"w{i}"] += chunk[:n]
            if n < len(chunk):
                failure = "short"
                break
        if failure:
            break
    assert failure in (errno.ENOSPC, "short"), failure
    assert sum(map(len, acked.values())) > 10 * MiB      # the tier's space was given back
    # The disk tier holds nothing while writes need the space.
    assert blocks_in(cache) == [], [p.name for p in blocks_in(cache)]
    assert "disk cache: gave back" in m.log()

    # Reads go on while the disk is full.
    for name, data in reads.items():
        assert (m.path / name).read_bytes() == data

    # Every close stores what its writes were acknowledged for.
    close_errs = [errno_of(lambda fd=fd: os.close(fd)) for fd in fds]
    assert all(e in (0, errno.ENOSPC) for e in close_errs), close_errs

    # Space back: writes work again, and whatever waited is stored.
    filler.unlink()
    data = os.urandom(9 * MiB)
    (m.path / "after").write_bytes(data)
    assert get(s3, repo, "main/after") == data
    r = flush(m)
    assert r.returncode == 0, r.stderr
    for name, want in acked.items():
        assert get(s3, repo, f"main/{name}") == want, name
    assert m.alive()


def nofile_of(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    raise AssertionError("no open files limit")


def test_low_nofile_limit_clear_errors_no_crash(repo, mount, s3):
    for i in range(20):
        s3.put_object(Bucket=repo, Key=f"main/in/{i}", Body=b"%d" % i * 1000)
    m = mount(f"lakefs://{repo}/main")
    assert len(os.listdir(m.path / "in")) == 20
    (m.path / "warm").write_bytes(b"w")
    used = len(os.listdir(f"/proc/{m.pid}/fd"))
    soft, hard = nofile_of(m.pid)
    limit = used + 6
    # The soft limit only: raising it back needs no privilege.
    run(["prlimit", f"--pid={m.pid}", f"--nofile={limit}:{hard}"])
    try:
        fds, errs, acked = [], [], {}
        for i in range(30):
            name = f"new{i}"
            try:
                fd = os.open(m.path / name, os.O_WRONLY | os.O_CREAT, 0o644)
            except OSError as e:
                errs.append(e.errno)
                continue
            try:
                data = b"%d" % i * 500
                os.write(fd, data)
                acked[name] = data
            except OSError as e:
                errs.append(e.errno)
            fds.append((name, fd))
        assert errs, "the limit never bit"
        assert set(errs) <= {errno.ENFILE, errno.EIO}, errs
        # Reads: served, or a clear failure; never wrong bytes.
        for i in range(20):
            try:
                got = (m.path / "in" / str(i)).read_bytes()
                assert got == b"%d" % i * 1000
            except OSError as e:
                assert e.errno in (errno.EIO, errno.ENFILE), e
        closed = {}
        for name, fd in fds:
            closed[name] = errno_of(lambda fd=fd: os.close(fd))
        assert m.alive()
    finally:
        run(["prlimit", f"--pid={m.pid}", f"--nofile={soft}:{hard}"])
    assert "Too many open files" in m.log()
    # All works again; nothing acknowledged was lost.
    (m.path / "later").write_bytes(b"later")
    assert get(s3, repo, "main/later") == b"later"
    r = flush(m)
    assert r.returncode == 0, r.stderr
    for name, data in acked.items():
        assert get(s3, repo, f"main/{name}") == data, (name, closed.get(name))
    for i in range(20):
        assert (m.path / "in" / str(i)).read_bytes() == b"%d" % i * 1000


def test_cache_budget_far_below_working_set(repo, mount, s3):
    objs = {f"big{i}": os.urandom(12 * MiB + i * 4099) for i in range(5)}
    for name, data in objs.items():
        s3.put_object(Bucket=repo, Key=f"main/{name}", Body=data)
    m = mount(f"lakefs://{repo}/main", "--cache-size", "8", "--readahead-max", "32")
    bad, errors = [], []

    def reader(name, data, seed):
        try:
            with open(m.path / name, "rb", buffering=0) as f:
                got = f.read()
                if got != data:
                    bad.append((name, "sequential"))
                rnd = hashlib.sha256(seed).digest()
                for k in range(40):
                    off = int.from_bytes(rnd[k % 28:k % 28 + 4], "big") * (k + 1) % len(data)
                    f.seek(off)
                    if f.read(70000) != data[off:off + 70000]:
                        bad.append((name, off))
        except OSError as e:
            errors.append((name, e))

    threads = [threading.Thread(target=reader, args=(n, d, n.encode() + bytes([j])))
               for j in range(2) for n, d in objs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and bad == [], (errors, bad)
    assert m.alive()
