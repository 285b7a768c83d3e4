"""Write path of lakefuse through a real FUSE mount: tools write to a branch
and every byte is checked through boto3 against the local lakeFS gateway.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_write_path.py
"""
import concurrent.futures
import errno
import hashlib
import io
import os
import random
import re
import sqlite3
import subprocess
import tarfile
import threading
import time

import pytest

from lf_helpers import (PRESIGNED, MiB, BigStream, det_bytes, errno_of, get, sha256_bytes,
                        wait_until, list_keys as keys)

GiB = 1 << 30


def uri(repo, ref=None):
    return f"lakefs://{repo}" + (f"/{ref}" if ref else "")


def staged_files(cache):
    """Staged data files in every mount's area of the cache directory."""
    out = []
    for d, _, names in os.walk(os.path.join(cache, "staging")):
        out += [n for n in names if n.startswith("f-") and not n.endswith(".m")]
    return out


def cache_dir(m):
    return m.cmd[m.cmd.index("--cache-dir") + 1]


# ------------------------------------------------------------------ tools
def test_tar_x_of_a_source_tree(lakefs, repo, s3, mount, tmp_path):
    rnd = random.Random(5)
    files = {}
    for i in range(2500):
        d = f"src/mod{i % 40}/sub{i % 7}"
        size = rnd.choice([0, 1, 100, 4096, 10000, rnd.randint(0, 70000)])
        files[f"{d}/f{i}.c"] = det_bytes(i, size)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            info.mtime = 1700000000
            t.addfile(info, io.BytesIO(data))
    tar = tmp_path / "src.tar"
    tar.write_bytes(buf.getvalue())
    m = mount(uri(repo))
    subprocess.run(["tar", "xf", str(tar), "-C", str(m.path / "main")], check=True, timeout=900)
    got = keys(s3, repo, "main/src/")
    # tar made each directory first: those are "dir/" markers
    assert sorted(k for k in got if not k.endswith("/")) == sorted("main/" + k for k in files)
    assert "main/src/mod3/sub3/" in got
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        bad = [k for k, ok in zip(files, ex.map(
            lambda k: get(s3, repo, "main/" + k) == files[k], files)) if not ok]
    assert bad == []
    # tar set the mode and mtime; a fresh mount reads them from the objects
    fresh = mount(uri(repo))
    st = os.stat(fresh.path / "main" / "src" / "mod3" / "sub3" / "f3.c")
    assert (st.st_mode & 0o777, int(st.st_mtime)) == (0o640, 1700000000)


def test_rsync_a_twice_transfers_nothing_the_second_time(lakefs, repo, s3, mount, tmp_path):
    src = tmp_path / "tree"
    for i in range(60):
        p = src / f"d{i % 5}" / f"file{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(det_bytes(i, 1000 * i))
        os.utime(p, ns=(1600000000_123456789 + i, 1600000000_123456789 + i))
    m = mount(uri(repo))
    dst = m.path / "main" / "tree"
    first = subprocess.run(["rsync", "-a", "--stats", f"{src}/", f"{dst}/"], check=True,
                           capture_output=True, text=True, timeout=600).stdout
    assert re.search(r"Number of regular files transferred: 60", first), first
    for i in range(60):
        assert get(s3, repo, f"main/tree/d{i % 5}/file{i}.bin") == det_bytes(i, 1000 * i)
    second = subprocess.run(["rsync", "-a", "--stats", "--itemize-changes", f"{src}/",
                             f"{dst}/"], check=True, capture_output=True, text=True,
                            timeout=600).stdout
    assert re.search(r"Number of regular files transferred: 0", second), second


def test_changes_between_close_and_release_are_stored(lakefs, repo, s3, mount):
    """close() flushes, but the kernel releases the file later: a chmod and
    a rename in between (rsync's way with its temporary files) ride along
    with the staged file, and the release stores them. A mapping keeps the
    file from being released until munmap, which makes the order sure (made
    with libc's mmap: Python's keeps a descriptor of its own, whose close
    would flush)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    m = mount(uri(repo))
    tmp, final = m.path / "main" / ".late.tmp", m.path / "main" / "late.bin"
    data = det_bytes(7, 50000)
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, data)
    addr = libc.mmap(None, len(data), 1, 1, fd, 0)     # PROT_READ, MAP_SHARED
    assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
    os.close(fd)                      # flushes: uploaded; no release yet
    assert get(s3, repo, "main/.late.tmp") == data
    os.chmod(tmp, 0o640)
    os.rename(tmp, final)
    assert libc.munmap(addr, len(data)) == 0     # the release
    wait_until(lambda: key_exists(s3, repo, "main/late.bin"), 10, interval=0.1,
               what="the renamed file to be stored after its release")
    assert get(s3, repo, "main/late.bin") == data
    # lakeFS answers metadata names Go-capitalised ("Mode")
    head = {k.lower(): v for k, v in
            s3.head_object(Bucket=repo, Key="main/late.bin")["Metadata"].items()}
    assert int(head["mode"]) & 0o7777 == 0o640, head
    assert not key_exists(s3, repo, "main/.late.tmp")


def key_exists(s3, repo, key):
    try:
        s3.head_object(Bucket=repo, Key=key)
        return True
    except s3.exceptions.ClientError:
        return False


def test_sqlite3_database_built_on_the_mount(lakefs, repo, s3, mount, tmp_path):
    m = mount(uri(repo))
    db = m.path / "main" / "app.db"
    con = sqlite3.connect(db)
    con.execute("create table t (id integer primary key, name text, v real)")
    con.executemany("insert into t values (?, ?, ?)",
                    ((i, f"name-{i}", i * 0.5) for i in range(10000)))
    con.commit()
    assert con.execute("select count(*), sum(id) from t").fetchone() == (10000, 49995000)
    con.execute("update t set name = 'changed' where id % 100 = 0")
    con.commit()
    con.close()
    local = tmp_path / "copy.db"
    local.write_bytes(get(s3, repo, "main/app.db"))
    con = sqlite3.connect(local)
    assert con.execute("pragma integrity_check").fetchone() == ("ok",)
    assert con.execute("select count(*) from t where name = 'changed'").fetchone() == (100,)
    con.close()


def test_dd_conv_notrunc_overwrites_the_middle(lakefs, repo, s3, mount, tmp_path):
    orig = det_bytes(1, 3 * MiB)
    s3.put_object(Bucket=repo, Key="main/f.bin", Body=orig)
    patch = tmp_path / "patch"
    patch.write_bytes(b"P" * 5000)
    m = mount(uri(repo))
    subprocess.run(["dd", f"if={patch}", f"of={m.path / 'main' / 'f.bin'}", "bs=1000",
                    "seek=1500", "conv=notrunc", "status=none"], check=True, timeout=120)
    want = orig[:1500000] + b"P" * 5000 + orig[1505000:]
    assert get(s3, repo, "main/f.bin") == want
    assert (m.path / "main" / "f.bin").read_bytes() == want


def test_appends_and_truncates(lakefs, repo, s3, mount):
    m = mount(uri(repo))
    p = m.path / "main" / "log.txt"
    subprocess.run(f"echo one > '{p}' && echo two >> '{p}' && echo three >> '{p}'", shell=True,
                   check=True, timeout=60)
    assert get(s3, repo, "main/log.txt") == b"one\ntwo\nthree\n"
    os.truncate(p, 5)
    assert get(s3, repo, "main/log.txt") == b"one\nt"
    os.truncate(p, 9)
    assert get(s3, repo, "main/log.txt") == b"one\nt\0\0\0\0"
    with open(p, "r+b") as f:
        f.truncate(2)
        f.seek(0, 2)
        f.write(b"!")
    assert get(s3, repo, "main/log.txt") == b"on!"
    # sparse write past the end
    with open(p, "r+b") as f:
        f.seek(10)
        f.write(b"end")
    assert get(s3, repo, "main/log.txt") == b"on!" + b"\0" * 7 + b"end"


def test_reads_while_writing_see_the_staged_bytes(lakefs, repo, s3, mount):
    s3.put_object(Bucket=repo, Key="main/w.txt", Body=b"old content")
    m = mount(uri(repo))
    p = m.path / "main" / "w.txt"
    with open(p, "r+b") as w:
        w.write(b"NEW")
        w.flush()
        with open(p, "rb") as r:
            assert r.read() == b"NEW content"
        # not on the branch before close
        assert get(s3, repo, "main/w.txt") == b"old content"
    assert get(s3, repo, "main/w.txt") == b"NEW content"


def test_new_file_is_listed_at_once_and_fsync_uploads(lakefs, repo, s3, mount):
    m = mount(uri(repo), "--branch-ttl", "60")
    d = m.path / "main"
    assert os.listdir(d) == []
    fd = os.open(d / "n.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"abc")
    assert "n.txt" in os.listdir(d)
    assert os.stat(d / "n.txt").st_size == 3
    os.fsync(fd)
    assert get(s3, repo, "main/n.txt") == b"abc"
    os.write(fd, b"def")
    os.close(fd)
    assert get(s3, repo, "main/n.txt") == b"abcdef"


def test_mv_files_and_directories(lakefs, repo, s3, mount):
    m = mount(uri(repo), "--branch-ttl", "60")
    b = m.path / "main"
    (b / "a.txt").write_bytes(b"A")
    (b / "b.txt").write_bytes(b"B")
    os.rename(b / "a.txt", b / "c.txt")
    assert sorted(os.listdir(b)) == ["b.txt", "c.txt"]
    os.rename(b / "c.txt", b / "b.txt")                  # over an existing file
    assert sorted(os.listdir(b)) == ["b.txt"]
    assert get(s3, repo, "main/b.txt") == b"A"
    (b / "x.txt").write_bytes(b"X")
    r = subprocess.run(["mv", "-n", str(b / "x.txt"), str(b / "b.txt")], timeout=30)
    assert get(s3, repo, "main/b.txt") == b"A" and r.returncode in (0, 1)
    os.makedirs(b / "dir" / "sub")
    for i in range(30):
        (b / "dir" / "sub" / f"f{i}").write_bytes(b"%d" % i)
    (b / "dir" / "top").write_bytes(b"top")
    os.rename(b / "dir", b / "moved")
    assert sorted(keys(s3, repo, "main/moved/")) == sorted(
        ["main/moved/", "main/moved/sub/", "main/moved/top"] +
        [f"main/moved/sub/f{i}" for i in range(30)])
    assert keys(s3, repo, "main/dir/") == []
    assert sorted(os.listdir(b / "moved" / "sub")) == sorted(f"f{i}" for i in range(30))
    assert (b / "moved" / "sub" / "f7").read_bytes() == b"7"
    # a directory over an empty one is allowed, over a non-empty one not
    os.mkdir(b / "empty")
    os.rename(b / "moved", b / "empty")
    assert (b / "empty" / "top").read_bytes() == b"top"
    assert sorted(keys(s3, repo, "main/empty/")) == sorted(
        ["main/empty/", "main/empty/sub/", "main/empty/top"] +
        [f"main/empty/sub/f{i}" for i in range(30)])
    assert keys(s3, repo, "main/moved") == []
    assert get(s3, repo, "main/empty/sub/f7") == b"7"
    os.mkdir(b / "other")
    (b / "other" / "o").write_bytes(b"o")
    assert errno_of(lambda: os.rename(b / "empty", b / "other")) == errno.ENOTEMPTY


def test_rename_of_an_open_staged_file_moves_its_upload(lakefs, repo, s3, mount):
    m = mount(uri(repo))
    b = m.path / "main"
    with open(b / "tmp.part", "wb") as f:
        f.write(b"first half ")
        os.rename(b / "tmp.part", b / "final.txt")
        f.write(b"second half")
    assert get(s3, repo, "main/final.txt") == b"first half second half"
    assert "main/tmp.part" not in keys(s3, repo, "main/")


def test_mkdir_rmdir_and_rm_rf(lakefs, repo, s3, mount):
    m = mount(uri(repo))
    b = m.path / "main"
    os.mkdir(b / "empty")
    assert keys(s3, repo, "main/empty") == ["main/empty/"]
    assert os.listdir(b / "empty") == []
    assert os.listdir(b) == ["empty"]
    os.makedirs(b / "full" / "deep")
    (b / "full" / "deep" / "f").write_bytes(b"f")
    assert errno_of(lambda: os.rmdir(b / "full")) == errno.ENOTEMPTY
    os.rmdir(b / "empty")
    assert keys(s3, repo, "main/empty") == []
    subprocess.run(["rm", "-rf", str(b / "full")], check=True, timeout=60)
    assert keys(s3, repo, "main/") == []
    assert os.listdir(b) == []


def test_eight_concurrent_writers(lakefs, repo, s3, mount):
    m = mount(uri(repo), "--part-size", "5")
    sizes = [3 * MiB + 17, 11 * MiB + 1, 6 * MiB, 1, 0, 17 * MiB + 5, 5 * MiB, 9 * MiB]

    def write(i):
        data = det_bytes(50 + i, sizes[i])
        with open(m.path / "main" / f"w{i}.bin", "wb") as f:
            for off in range(0, len(data), 256 * 1024):
                f.write(data[off:off + 256 * 1024])
        return sha256_bytes(data)

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        want = list(ex.map(write, range(8)))
    for i in range(8):
        assert sha256_bytes(get(s3, repo, f"main/w{i}.bin")) == want[i], i


@pytest.mark.slow
def test_2gib_file_is_a_multipart_upload_with_its_parts(lakefs, repo, s3, mount):
    m = mount(uri(repo))
    size = 2 * GiB + 12345
    data = BigStream(seed=77, size=size)
    h = hashlib.sha256()
    lakefs.reset_stats()
    with open(m.path / "main" / "big.bin", "wb") as f:
        for piece in data.pieces():
            f.write(piece)
            h.update(piece)
    st = lakefs.stats()
    stats = st["requests"]
    parts = -(-size // (8 * MiB))
    if PRESIGNED:
        # a presigned multipart upload: the parts go to the storage, and
        # the gateway carries none of it
        assert st["storage"]["by_operation"].get("StorageUploadPart") == parts, st["storage"]
        assert not any(stats.get(op) for op in ("CreateMultipartUpload", "UploadPart",
                                                 "CompleteMultipartUpload", "PutObject")), stats
    else:
        assert stats.get("CreateMultipartUpload") == 1
        assert stats.get("CompleteMultipartUpload") == 1
        assert stats.get("UploadPart") == parts, stats
        assert stats.get("PutObject", 0) == 0
        # the completion's ETag carries the part count (the log has the answer)
        assert re.search(r"CompleteMultipartUpload POST /%s/main/big.bin" % re.escape(repo),
                         m.log())
    head = s3.head_object(Bucket=repo, Key="main/big.bin")
    assert head["ContentLength"] == size
    got = hashlib.sha256()
    body = s3.get_object(Bucket=repo, Key="main/big.bin")["Body"]
    for chunk in iter(lambda: body.read(8 * MiB), b""):
        got.update(chunk)
    assert got.hexdigest() == h.hexdigest()


def test_close_gives_eio_when_the_gateway_fails_and_fsync_uploads_later(lakefs, repo, s3,
                                                                       mount):
    m = mount(uri(repo), "--retries", "1", "--timeout", "5", "--branch-ttl", "600")
    b = m.path / "main"
    assert os.listdir(b) == []                 # listed: creating needs no request
    lakefs.set_faults(fail_rate=1.0)
    try:
        fd = os.open(b / "keep.txt", os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, b"must not be lost")
        assert errno_of(lambda: os.close(fd)) == errno.EIO
        assert staged_files(cache_dir(m)), "the data must stay staged"
    finally:
        lakefs.set_faults(fail_rate=0.0)
    # the gateway is back: an fsync on a new descriptor uploads it
    fd = os.open(b / "keep.txt", os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    assert get(s3, repo, "main/keep.txt") == b"must not be lost"


@pytest.mark.parametrize("where", ["commit", "read-only"])
def test_writes_outside_branches_give_erofs_and_stage_nothing(lakefs, repo, s3, mount, where):
    s3.put_object(Bucket=repo, Key="main/f.txt", Body=b"f")
    cid = lakefs.commit(repo, "main", "c")
    if where == "commit":
        m = mount(uri(repo))
        base = m.path / cid
    else:
        m = mount(uri(repo), "--read-only")
        base = m.path / "main"
    for op in (lambda: open(base / "new.txt", "wb"),
               lambda: open(base / "f.txt", "r+b"),
               lambda: os.truncate(base / "f.txt", 0),
               lambda: os.mkdir(base / "d"),
               lambda: os.unlink(base / "f.txt"),
               lambda: os.rename(base / "f.txt", base / "g.txt"),
               lambda: os.chmod(base / "f.txt", 0o600)):
        assert errno_of(op) == errno.EROFS
    assert staged_files(cache_dir(m)) == []
    assert keys(s3, repo, "main/") == ["main/f.txt"]


def test_cp_a_keeps_mode_and_mtime_across_mounts(lakefs, repo, s3, mount, tmp_path):
    src = tmp_path / "s.sh"
    src.write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(src, 0o750)
    os.utime(src, ns=(1500000000_000000001, 1500000000_987654321))
    m = mount(uri(repo))
    subprocess.run(["cp", "-a", str(src), str(m.path / "main" / "s.sh")], check=True,
                   timeout=60)
    # lakeFS answers metadata names Go-capitalised ("Mode")
    head = {k.lower(): v for k, v in
            s3.head_object(Bucket=repo, Key="main/s.sh")["Metadata"].items()}
    assert head.get("mode") and int(head["mode"]) & 0o777 == 0o750
    assert head.get("mtime") == "1500000000"
    m2 = mount(uri(repo))
    st = os.stat(m2.path / "main" / "s.sh")
    assert st.st_mode & 0o777 == 0o750
    assert st.st_mtime_ns == 1500000000_987654321


def test_many_writers_to_one_file_and_readers_meanwhile(lakefs, repo, s3, mount):
    """Threads writing disjoint regions of one open file, a reader checking
    the staged bytes as they land: nothing lost, no byte from elsewhere (a
    concurrent read may see a region half written, as on a local disk), and
    no read fails, also after the file's attributes expired (the staged file
    answers for an object that does not exist yet)."""
    m = mount(uri(repo))
    p = m.path / "main" / "shared.bin"
    chunk = 64 * 1024
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    errors = []

    def writer(k):
        for j in range(16):
            i = j * 8 + k
            os.pwrite(fd, bytes([i % 251]) * chunk, i * chunk)

    def reader():
        for _ in range(50):
            try:
                data = os.pread(fd, 128 * chunk, 0)
            except OSError as e:  # e.g. ENOENT once the attributes expired
                errors.append(f"pread: {e}")
                return
            for i in range(len(data) // chunk):
                block = data[i * chunk:(i + 1) * chunk]
                if sum(block.count(v) for v in {0, i % 251}) != chunk:
                    errors.append(i)

    ts = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    ts.append(threading.Thread(target=reader))
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    os.close(fd)
    assert errors == []
    assert get(s3, repo, "main/shared.bin") == b"".join(bytes([i % 251]) * chunk
                                                        for i in range(128))


def test_files_created_in_parallel_all_listed_while_listings_expire(lakefs, repo, s3, mount,
                                                                    tmp_path):
    """Listings renewed while other writers create files must not lose the
    files this mount just wrote (a LIST that began before an upload ended
    must not replace the listing that upload updated)."""
    src = tmp_path / "small"
    src.mkdir()
    for i in range(600):
        (src / f"f{i:04d}").write_bytes(b"%d" % i)
    m = mount(uri(repo), "--branch-ttl", "0.05")
    dst = m.path / "main" / "dst"
    os.mkdir(dst)
    names = sorted(os.listdir(src))
    procs = [subprocess.Popen(["cp", "-t", str(dst)] + [str(src / n) for n in names[i:i + 100]])
             for i in range(0, 600, 100)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    assert sorted(os.listdir(dst)) == names
    assert len([k for k in keys(s3, repo, "main/dst/") if not k.endswith("/")]) == 600


@pytest.mark.parametrize("presign", ["off", "on"])
def test_a_streamed_write_is_not_copied_onto_itself_after_completion(lakefs, repo, s3, mount,
                                                                     presign):
    """A plain write of a multipart-sized file: its mtime is the time of its
    last write, which the object's own time at completion says as well, so
    no CopyObject follows (on lakeFS a copy moves every byte again). Over
    presigned URLs the completion carries the exact mtime; through the
    gateway the object's Last-Modified stands for it."""
    data = BigStream(seed=31, size=20 * MiB + 77)
    m = mount(uri(repo), "--presign", presign)
    lakefs.reset_stats()
    t0 = time.time()
    fd = os.open(m.path / "main" / "dd.bin", os.O_CREAT | os.O_WRONLY, 0o640)
    for piece in data.pieces():
        for off in range(0, len(piece), MiB):
            os.write(fd, piece[off:off + MiB])
    mtime_ns = os.fstat(fd).st_mtime_ns
    os.close(fd)
    t1 = time.time()
    st = lakefs.stats()
    assert "CopyObject" not in st["requests"], st["requests"]
    assert sha256_bytes(get(s3, repo, "main/dd.bin")) == data.sha256()
    head = s3.head_object(Bucket=repo, Key="main/dd.bin")
    meta = {k.lower(): v for k, v in head["Metadata"].items()}
    assert int(meta["mode"]) & 0o777 == 0o640
    m2 = mount(uri(repo), "--presign", presign)
    got = os.stat(m2.path / "main" / "dd.bin").st_mtime_ns
    if presign == "on":
        assert got == mtime_ns
    else:
        assert "mtime" not in meta, meta
        assert int(t0) - 1 <= got / 1e9 <= t1 + 1, (t0, got / 1e9, t1)
