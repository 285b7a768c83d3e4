"""Read path of lakefuse through a real FUSE mount.

Data is put with boto3 (or a fast raw S3 client for many small keys)
against the local lakeFS gateway simulator and checked through the mount:
bytes and sha256, errno values, and the gateway's request counters.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_read.py
"""
import concurrent.futures
import errno
import hashlib
import os
import pathlib
import random
import re
import sqlite3
import subprocess
import time
import urllib.parse

import pytest

from lf_helpers import (BINARY, MiB, BigStream, bulk_put, closed_line, closed_port,
                        data_bytes_out, data_gets, find_daemon_pids, is_mounted, pid_alive,
                        put_many_boto, readahead_kb, run, sha256_bytes, sha256_file,
                        splice_pipes_available, upload_stream_multipart, wait_until)

GiB = 1 << 30
C_LOCALE = dict(os.environ, LC_ALL="C")


# ------------------------------------------------------------------ helpers
def uri(repo, ref=None):
    return f"lakefs://{repo}" + (f"/{ref}" if ref else "")


def put(s3, repo, key, data):
    s3.put_object(Bucket=repo, Key=key, Body=data)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def make_tree(seed=1234, n=200):
    """~200 files in nested directories, sizes 0 B..5 MiB (block-boundary
    sizes included), a few names with spaces and non-ASCII characters."""
    rnd = random.Random(seed)
    dirs = ["", "a", "a/b", "a/b/c", "a/b/c/d", "e", "e/f", "with space", "ünï/cödé"]
    specials = [0, 0, 1, 4095, 4096, 4097, MiB - 1, MiB, MiB + 1, 4 * MiB, 5 * MiB]
    files = {}
    for i in range(n):
        d = dirs[i % len(dirs)]
        if i < len(specials):
            size = specials[i]
        else:
            r = rnd.random()
            if r < 0.3:
                size = rnd.randint(0, 200)
            elif r < 0.75:
                size = rnd.randint(201, 64 * 1024)
            elif r < 0.96:
                size = rnd.randint(64 * 1024, MiB)
            else:
                size = rnd.randint(MiB, 5 * MiB)
        name = f"f{i:03d}.bin" if i % 17 else f"file {i:03d}.dat"
        files[f"{d}/{name}" if d else name] = rnd.randbytes(size)
    return files


def text_files(seed=99, n=24, needle="NEEDLE-7f3a"):
    """Text files; every third one contains the needle."""
    rnd = random.Random(seed)
    files, with_needle = {}, set()
    for i in range(n):
        lines = [f"line {j} {rnd.random():.12f}" for j in range(rnd.randint(1, 400))]
        if i % 3 == 0:
            lines.insert(rnd.randrange(len(lines) + 1), f"here is the {needle} again")
            with_needle.add(f"txt/n{i:02d}.txt")
        files[f"txt/n{i:02d}.txt"] = ("\n".join(lines) + "\n").encode()
    return files, with_needle, needle


def upload_tree(s3, repo, prefix, files, threads=8):
    put_many_boto(s3, repo, [(f"{prefix}{k}", v) for k, v in files.items()], threads)


def local_tree_hashes(root):
    root = pathlib.Path(root)
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = pathlib.Path(dirpath) / n
            out[str(p.relative_to(root))] = sha256_file(p)
    return out


def expected_dirs(files):
    dirs = set()
    for k in files:
        parts = k.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return dirs


def ls_all(path):
    """Every name getdents returns, '.' and '..' included (ls -f -a: raw
    order, no sorting, nothing hidden)."""
    r = run(["ls", "-f", "-a", "-1", "--quoting-style=literal", str(path)], env=C_LOCALE)
    out = r.stdout.decode("utf-8", "surrogateescape")
    assert out.endswith("\n") or not out
    return out[:-1].split("\n") if out else []


def errno_of(fn):
    """The errno fn raised, or 'no error'."""
    try:
        fn()
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)
    return "no error"


WRITE_OPS = [
    ("open O_WRONLY", lambda b: os.close(os.open(b / "f.txt", os.O_WRONLY))),
    ("open O_RDWR", lambda b: os.close(os.open(b / "f.txt", os.O_RDWR))),
    ("open O_WRONLY|O_TRUNC", lambda b: os.close(os.open(b / "f.txt", os.O_WRONLY | os.O_TRUNC))),
    ("open O_APPEND", lambda b: os.close(os.open(b / "f.txt", os.O_WRONLY | os.O_APPEND))),
    ("create", lambda b: os.close(os.open(b / "new.txt", os.O_WRONLY | os.O_CREAT, 0o644))),
    ("create O_EXCL", lambda b: os.close(os.open(b / "new2.txt",
                                                 os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))),
    ("mkdir", lambda b: os.mkdir(b / "newdir")),
    ("mkdir nested", lambda b: os.mkdir(b / "sub" / "newdir")),
    ("unlink", lambda b: os.unlink(b / "f.txt")),
    ("unlink nested", lambda b: os.unlink(b / "sub" / "x.txt")),
    ("rmdir", lambda b: os.rmdir(b / "sub")),
    ("rename", lambda b: os.rename(b / "f.txt", b / "g.txt")),
    ("rename dir", lambda b: os.rename(b / "sub", b / "sub2")),
    ("truncate", lambda b: os.truncate(b / "f.txt", 0)),
    ("chmod", lambda b: os.chmod(b / "f.txt", 0o600)),
    ("utime", lambda b: os.utime(b / "f.txt", (1, 1))),
    ("symlink", lambda b: os.symlink("f.txt", b / "link")),
]


def seed_small(s3, repo, branch="main"):
    files = {"f.txt": b"original contents\n", "sub/x.txt": b"x" * 1000, "sub/y.bin": b"\0" * 10}
    for k, v in files.items():
        put(s3, repo, f"{branch}/{k}", v)
    return files


def check_all_erofs(base, files):
    got = {name: errno_of(lambda op=op: op(base)) for name, op in WRITE_OPS}
    wrong = {k: v for k, v in got.items() if v != "EROFS"}
    assert not wrong, f"expected EROFS from every write under {base}; got {wrong}"
    # and nothing changed, seen through the mount
    for k, v in files.items():
        assert read_file(base / k) == v, k
    names = sorted(os.listdir(base))
    assert names == sorted({k.split("/")[0] for k in files}), names


def listed_keys(s3, repo, prefix):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=repo, Prefix=prefix):
        keys += [c["Key"] for c in page.get("Contents", [])]
    return sorted(keys)


# ------------------------------------------------------------------ tests
def test_cp_r_tree_matches_upload(lakefs, repo, s3, mount, tmp_path):
    files = make_tree()
    upload_tree(s3, repo, "main/tree/", files)
    m = mount(uri(repo))
    dst = tmp_path / "copy"
    dst.mkdir()
    run(["cp", "-r", str(m.path / "main" / "tree"), str(dst)], timeout=180)
    got = local_tree_hashes(dst / "tree")
    want = {k: sha256_bytes(v) for k, v in files.items()}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    assert not missing and not extra and not differ, (
        f"missing {missing[:10]}, extra {extra[:10]}, differ {differ[:10]}")
    # sizes as stat reports them through the mount
    for k, v in list(files.items())[:40]:
        assert os.stat(m.path / "main" / "tree" / k).st_size == len(v), k


@pytest.mark.slow
def test_1gib_object_reads_back_byte_exact(lakefs, repo, s3, mount):
    stream = BigStream(seed=20240601, size=GiB, chunk=8 * MiB)
    want = upload_stream_multipart(s3, repo, "main/big/one-gib.bin", stream.pieces(),
                                   part_size=16 * MiB)
    m = mount(uri(repo))
    path = m.path / "main" / "big" / "one-gib.bin"
    assert os.stat(path).st_size == GiB
    t0 = time.monotonic()
    h = hashlib.sha256()
    n = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(MiB)
            if not b:
                break
            h.update(b)
            n += len(b)
    dt = time.monotonic() - t0
    print(f"1 GiB through the mount: {dt:.1f} s, {GiB / dt / 1e6:.0f} MB/s")
    assert n == GiB
    if h.hexdigest() != want:
        # find the first bad 8 MiB piece for the report
        with open(path, "rb") as f:
            for i in range(GiB // stream.chunk):
                if f.read(stream.chunk) != stream.piece(i):
                    pytest.fail(f"sha256 mismatch; first differing 8 MiB piece: {i}")
        pytest.fail("sha256 mismatch")


@pytest.mark.parametrize("async_read", [False, True], ids=["sync", "async-read"])
def test_stream_is_fetched_once_in_large_requests(lakefs, repo, s3, mount, async_read):
    """A stream right after the mount returns: 1 MiB FUSE reads from the
    first file on (the kernel readahead is set before INIT is answered),
    every byte fetched once, mostly in 8 MiB GETs, also when the kernel sends its
    readahead in parallel (--async-read), and the bytes are exact."""
    size = 96 * MiB + 4321
    stream = BigStream(seed=77, size=size, chunk=8 * MiB)
    want = upload_stream_multipart(s3, repo, "main/stream.bin", stream.pieces(),
                                   part_size=16 * MiB)
    m = mount(uri(repo), *(["--async-read"] if async_read else []))
    if os.geteuid() == 0:
        assert readahead_kb(m.path) == 4096
    lakefs.reset_stats()
    assert sha256_file(m.path / "main" / "stream.bin") == want   # 1 MiB reads
    st = lakefs.stats()
    gets = data_gets(st)
    # nothing fetched twice: 256 MiB of cache never evicts a 96 MiB file
    assert data_bytes_out(st) <= size + 64 * 1024, st
    if async_read:
        # Reads arrive in any order; one that overtakes the window fetches
        # its block on demand, as often as the schedule makes it happen.
        # What holds on any schedule: a GET fetches whole 1 MiB blocks,
        # each once.
        assert gets <= -(-size // MiB), st["requests"]
    else:
        # In-order reads open each window at the same points on any
        # schedule: 8 MiB GETs once past the window's 1, 2 and 4 MiB start
        assert gets <= -(-size // (8 * MiB)) + 4, st["requests"]
    print(f"\n{gets} GETs for {size} bytes")
    if os.geteuid() == 0:
        # the debug line at release: "... (K KiB each)"; 128 without the tuning
        pat = re.compile(r"closed stream\.bin after \d+ reads of \d+ bytes \((\d+) KiB each\)")
        assert wait_until(lambda: pat.search(m.log()), timeout=10), m.log()[-2000:]
        assert int(pat.search(m.log()).group(1)) >= 900


@pytest.mark.parametrize("mode", [[], ["--direct-io"], ["--no-splice"], ["--async-read"]],
                         ids=["default", "direct-io", "no-splice", "async-read"])
def test_big_sequential_reads_are_spliced(lakefs, repo, s3, mount, mode):
    """An object over half the cache, read sequentially: its bytes go from
    the gateway's socket to the kernel with splice (the daemon's own count
    of spliced bytes is the whole file; 0 with --no-splice, and with
    --async-read, whose reads arrive out of order), byte-exact, each byte
    fetched once in large GETs."""
    copies = "--no-splice" in mode or "--async-read" in mode
    if not copies and not splice_pipes_available():
        pytest.skip("pipes of 4 MiB cannot be made here (needs root or fs.pipe-max-size)")
    size = 40 * MiB + 4321
    stream = BigStream(seed=78, size=size, chunk=8 * MiB)
    want = upload_stream_multipart(s3, repo, "main/spliced.bin", stream.pieces(),
                                   part_size=16 * MiB)
    m = mount(uri(repo), "--cache-size", "32", *mode)
    lakefs.reset_stats()
    assert sha256_file(m.path / "main" / "spliced.bin") == want   # 1 MiB reads
    st = lakefs.stats()
    assert data_bytes_out(st) <= size + 64 * 1024, st   # nothing fetched twice
    # Large GETs: the window's 1, 2 and 4 MiB start, then 8 MiB. Readahead
    # sent in parallel (--async-read, through the blocks) also fetches a
    # block on demand whenever a read overtakes the window, which depends
    # on the schedule: there only "whole blocks, each once" holds.
    gets = data_gets(st)
    if "--async-read" in mode:
        assert gets <= -(-size // MiB), st["requests"]
    else:
        assert gets <= -(-size // (8 * MiB)) + 4, st["requests"]
    read, spliced, gets = closed_line(m, "spliced.bin")
    assert read == size
    assert spliced == (0 if copies else size)


def test_replaced_object_mid_stream_gives_eio_never_mixed(lakefs, repo, s3, mount):
    """A spliced stream whose object is replaced: what it read came from the
    version opened, until a read meets a GET answered by the new one: EIO."""
    if not splice_pipes_available():
        pytest.skip("pipes of 4 MiB cannot be made here (needs root or fs.pipe-max-size)")
    size = 96 * MiB
    a = BigStream(seed=5, size=size)
    b = BigStream(seed=6, size=size)
    upload_stream_multipart(s3, repo, "main/moving.bin", a.pieces(), part_size=16 * MiB)
    m = mount(uri(repo), "--cache-size", "32")
    off, err = 0, None
    with open(m.path / "main" / "moving.bin", "rb", buffering=0) as f:
        for _ in range(8):
            assert f.read(MiB) == a.read_at(off, MiB)
            off += MiB
        upload_stream_multipart(s3, repo, "main/moving.bin", b.pieces(), part_size=16 * MiB)
        try:
            while off < size:
                got = f.read(MiB)
                assert got == a.read_at(off, len(got)), f"mixed versions at {off}"
                off += len(got)
        except OSError as e:
            err = e.errno
    assert err == errno.EIO, f"read the whole replaced object without EIO (at {off})"
    assert off < size
    assert re.search(r"object replaced while open", m.log())


def test_direct_io_bypasses_the_page_cache(lakefs, repo, s3, mount):
    """--direct-io: bytes exact through read() and a private mmap; a shared
    mmap works where the kernel can keep it coherent (FUSE_DIRECT_IO_ALLOW_MMAP,
    Linux 6.6 on), which the log says, and fails with ENODEV elsewhere;
    writes still work."""
    import mmap
    data = random.Random(11).randbytes(5 * MiB + 3)
    put(s3, repo, "main/dio.bin", data)
    m = mount(uri(repo), "--direct-io")
    path = m.path / "main" / "dio.bin"
    assert read_file(path) == data
    allowed = "--direct-io: shared mmap allowed" in m.log()
    refused = "--direct-io: a shared mmap of a file open for reading fails" in m.log()
    assert allowed != refused, m.log()[-2000:]
    kernel = tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    if kernel >= (6, 6):
        assert allowed, "Linux 6.6 and later offer FUSE_DIRECT_IO_ALLOW_MMAP"
    fd = os.open(path, os.O_RDONLY)
    try:
        with mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ) as mm:
            assert mm[:] == data
        if allowed:
            with mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) as mm:
                assert mm[:] == data
        else:
            with pytest.raises(OSError) as e:
                mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
            assert e.value.errno == errno.ENODEV
    finally:
        os.close(fd)
    (m.path / "main" / "dio-new.bin").write_bytes(data[:MiB])
    assert s3.get_object(Bucket=repo, Key="main/dio-new.bin")["Body"].read() == data[:MiB]


def test_random_preads_match_local_copy(lakefs, repo, s3, mount):
    size = 24 * MiB + 12345
    data = random.Random(7).randbytes(size)
    put(s3, repo, "main/rand.bin", data)
    m = mount(uri(repo))
    rnd = random.Random(8)
    fd = os.open(m.path / "main" / "rand.bin", os.O_RDONLY)
    bad = []
    try:
        for i in range(500):
            kind = rnd.random()
            if kind < 0.25:
                n = rnd.randint(1, 512)
            elif kind < 0.6:
                n = rnd.randint(513, 128 * 1024)
            elif kind < 0.9:
                n = rnd.randint(128 * 1024, 2 * MiB)
            else:
                n = rnd.randint(2 * MiB, 6 * MiB)
            r = rnd.random()
            if r < 0.05:
                off = size - rnd.randint(0, 4096)            # straddles EOF
            elif r < 0.08:
                off = size + rnd.randint(0, 10000)           # past EOF: empty
            elif r < 0.15:
                off = rnd.randint(0, size // MiB) * MiB      # block aligned
            else:
                off = rnd.randint(0, size - 1)
            got = os.pread(fd, n, off)
            if got != data[off:off + n]:
                bad.append((i, off, n, len(got)))
    finally:
        os.close(fd)
    assert not bad, f"{len(bad)} of 500 reads differ, first: {bad[:5]} (index, offset, size, got)"


DIFF_RE = re.compile(r"^diff -r (\S+) (\S+)$")
ONLY_RE = re.compile(r"^Only in (.+): (.+)$")


def parse_diff_r(out):
    events = set()
    for line in out.splitlines():
        mo = ONLY_RE.match(line)
        if mo:
            events.add(("only", f"{mo.group(1)}/{mo.group(2)}"))
            continue
        md = DIFF_RE.match(line)
        if md:
            events.add(("differ", md.group(1), md.group(2)))
            continue
        mb = re.match(r"^Binary files (\S+) and (\S+) differ$", line)
        if mb:
            events.add(("differ", mb.group(1), mb.group(2)))
    return events


def test_diff_r_branch_against_commit(lakefs, repo, s3, mount):
    before = {"keep.txt": b"same\n", "mod.txt": b"old line\n", "del.txt": b"bye\n",
              "sub/keep2.txt": b"same2\n", "sub/mod2.txt": b"old2\n", "sub/del2.txt": b"bye2\n",
              "gone/only.txt": b"whole dir goes\n"}
    for k, v in before.items():
        put(s3, repo, f"main/{k}", v)
    c1 = lakefs.commit(repo, "main", "before")
    put(s3, repo, "main/mod.txt", b"new line\n")
    put(s3, repo, "main/sub/mod2.txt", b"new2\n")
    s3.delete_object(Bucket=repo, Key="main/del.txt")
    s3.delete_object(Bucket=repo, Key="main/sub/del2.txt")
    s3.delete_object(Bucket=repo, Key="main/gone/only.txt")
    put(s3, repo, "main/add.txt", b"hello\n")
    put(s3, repo, "main/sub/add2.txt", b"hello2\n")
    put(s3, repo, "main/newdir/x.txt", b"x\n")
    lakefs.commit(repo, "main", "after")
    put(s3, repo, "main/staged.txt", b"uncommitted\n")   # staged: part of main's tree too
    m = mount(uri(repo))
    r = subprocess.run(["diff", "-r", "main", c1], cwd=m.path, capture_output=True, text=True,
                       timeout=60, env=C_LOCALE)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stderr == ""
    want = {("only", "main/add.txt"), ("only", "main/sub/add2.txt"),
            ("only", "main/newdir"), ("only", "main/staged.txt"),
            ("only", f"{c1}/del.txt"), ("only", f"{c1}/sub/del2.txt"), ("only", f"{c1}/gone"),
            ("differ", "main/mod.txt", f"{c1}/mod.txt"),
            ("differ", "main/sub/mod2.txt", f"{c1}/sub/mod2.txt")}
    got = parse_diff_r(r.stdout)
    assert got == want, f"unexpected: {got - want}; missing: {want - got}\n{r.stdout}"
    assert "< new line" in r.stdout and "> old line" in r.stdout


def test_commit_content_unchanged_after_branch_moves(lakefs, repo, s3, mount):
    put(s3, repo, "main/data.bin", b"A" * 300000)
    put(s3, repo, "main/dir/one.txt", b"one\n")
    c1 = lakefs.commit(repo, "main", "first")
    m = mount(uri(repo))
    base = m.path / c1
    assert read_file(base / "data.bin") == b"A" * 300000
    assert sorted(os.listdir(base)) == ["data.bin", "dir"]
    st1 = os.stat(base / "data.bin")
    # the branch moves on
    put(s3, repo, "main/data.bin", b"B" * 123)
    put(s3, repo, "main/dir/two.txt", b"two\n")
    s3.delete_object(Bucket=repo, Key="main/dir/one.txt")
    lakefs.commit(repo, "main", "second")
    # the branch shows the change once its TTL passes (bounded wait)...
    wait_until(lambda: read_file(m.path / "main" / "data.bin") == b"B" * 123, 20,
               interval=0.2, what="main/data.bin to show the new contents")
    # ... the commit never changes
    assert read_file(base / "data.bin") == b"A" * 300000
    st2 = os.stat(base / "data.bin")
    assert (st2.st_size, st2.st_mtime) == (st1.st_size, st1.st_mtime)
    assert sorted(os.listdir(base / "dir")) == ["one.txt"]
    assert read_file(base / "dir" / "one.txt") == b"one\n"


@pytest.mark.parametrize("with_uri", [True, False], ids=["repo-uri", "no-uri"])
def test_tag_and_ref_expressions_open_by_name(lakefs, repo, s3, mount, with_uri):
    put(s3, repo, "main/f.txt", b"v1\n")
    c1 = lakefs.commit(repo, "main", "one")
    lakefs.create_tag(repo, "v1.0", c1)
    put(s3, repo, "main/f.txt", b"v2\n")
    put(s3, repo, "main/only-in-2.txt", b"2\n")
    c2 = lakefs.commit(repo, "main", "two")
    put(s3, repo, "main/f.txt", b"v3 staged\n")
    m = mount(uri(repo)) if with_uri else mount(None)
    root = m.path if with_uri else m.path / repo
    expect = {"v1.0": b"v1\n", "main~1": b"v1\n", "main^1": b"v1\n", c1: b"v1\n",
              "main@": b"v2\n", c2: b"v2\n", "main": b"v3 staged\n"}
    got = {}
    for ref in expect:
        try:
            got[ref] = read_file(root / ref / "f.txt")
        except OSError as e:
            got[ref] = f"OSError {errno.errorcode.get(e.errno)}"
    assert got == expect
    assert os.path.isdir(root / "v1.0") and os.path.isdir(root / "main~1")
    assert sorted(os.listdir(root / "main~1")) == ["f.txt"]
    assert sorted(os.listdir(root / "main@")) == ["f.txt", "only-in-2.txt"]
    assert sorted(os.listdir(root)) == ["main"], "tags, commits and expressions must not be listed"
    assert errno_of(lambda: os.stat(root / "no-such-ref")) == "ENOENT"
    assert errno_of(lambda: os.stat(root / "v1.0" / "no-such-file")) == "ENOENT"


@pytest.mark.parametrize("where", ["branch", "commit"])
def test_ls_l_5000_files_request_counts(lakefs, repo, s3, mount, where):
    n = 5000
    items = [(f"main/many/f{i:05d}", b"x" * (i % 97)) for i in range(n)]
    bulk_put(lakefs, repo, items)
    ref = "main"
    if where == "commit":
        ref = lakefs.commit(repo, "main", "many")
    m = mount(uri(repo))
    d = m.path / ref / "many"
    os.stat(d)                        # the lookup of the directory itself is not counted
    lakefs.reset_stats()
    t0 = time.monotonic()
    r = run(["ls", "-l", "--color=never", str(d)], env=C_LOCALE, timeout=120)
    dt = time.monotonic() - t0
    st = lakefs.stats()
    reqs = st["requests"]
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("total ")
    sizes = {}
    for line in lines[1:]:
        f = line.split()
        sizes[f[8]] = int(f[4])
        assert f[0].startswith("-r"), line
    assert sizes == {k.rsplit("/", 1)[1]: len(v) for k, v in items}
    print(f"ls -l of {n} files on a {where}: {dt:.2f} s, requests {reqs}")
    assert reqs.get("HeadObject", 0) == 0, reqs
    assert reqs.get("ListObjectsV2", 0) <= 6, reqs
    assert data_gets(st) == 0, st


@pytest.mark.slow
def test_directory_of_100k_entries_lists_correctly(lakefs, repo, s3, mount):
    n = 100_000
    t0 = time.monotonic()
    bulk_put(lakefs, repo, [(f"main/huge/k{i:06d}", b"") for i in range(n)], threads=16)
    put(s3, repo, "main/huge/zz-last.txt", b"last\n")
    print(f"uploaded {n} keys in {time.monotonic() - t0:.1f} s")
    m = mount(uri(repo))
    d = m.path / "main" / "huge"
    os.stat(d)
    lakefs.reset_stats()
    t0 = time.monotonic()
    names = ls_all(d)
    dt = time.monotonic() - t0
    reqs = lakefs.stats()["requests"]
    print(f"listing {n} entries: {dt:.1f} s, requests {reqs}")
    want = {f"k{i:06d}" for i in range(n)} | {"zz-last.txt", ".", ".."}
    assert len(names) == len(want), f"{len(names)} names for {len(want)} entries (duplicates?)"
    assert set(names) == want
    assert reqs.get("ListObjectsV2", 0) <= 110, reqs
    assert reqs.get("HeadObject", 0) == 0, reqs
    assert read_file(d / "zz-last.txt") == b"last\n"
    assert os.stat(d / "k099999").st_size == 0


@pytest.mark.parametrize("ref_kind", ["commit", "tag", "main~1"])
def test_writes_under_commit_give_erofs(lakefs, repo, s3, mount, ref_kind):
    files = seed_small(s3, repo)
    cid = lakefs.commit(repo, "main", "one")
    put(s3, repo, "main/later.txt", b"later")
    lakefs.commit(repo, "main", "two")
    ref = {"commit": cid, "tag": "t1", "main~1": "main~1"}[ref_kind]
    if ref_kind == "tag":
        lakefs.create_tag(repo, "t1", cid)
    m = mount(uri(repo))
    check_all_erofs(m.path / ref, files)
    assert listed_keys(s3, repo, "main/") == sorted(
        [f"main/{k}" for k in files] + ["main/later.txt"])


def test_read_only_mount_gives_erofs_on_branch(lakefs, repo, s3, mount):
    files = seed_small(s3, repo)
    m = mount(uri(repo), "--read-only")
    check_all_erofs(m.path / "main", files)
    assert errno_of(lambda: os.mkdir(m.path / "newbranch")) == "EROFS"
    assert listed_keys(s3, repo, "main/") == sorted(f"main/{k}" for k in files)


def test_ref_uri_mount_is_that_tree(lakefs, repo, s3, mount):
    files = seed_small(s3, repo)
    cid = lakefs.commit(repo, "main", "one")
    put(s3, repo, "main/f.txt", b"changed\n")
    m = mount(uri(repo, cid))
    assert sorted(os.listdir(m.path)) == ["f.txt", "sub"]
    assert read_file(m.path / "f.txt") == files["f.txt"]
    assert errno_of(lambda: os.close(os.open(m.path / "n", os.O_WRONLY | os.O_CREAT))) == "EROFS"
    m2 = mount(uri(repo, "main"))
    assert read_file(m2.path / "f.txt") == b"changed\n"
    assert sorted(os.listdir(m2.path / "sub")) == ["x.txt", "y.bin"]


# ------------------------------------------------------- mount command errors
@pytest.mark.parametrize("case", ["bad-endpoint", "bad-secret", "missing-repo"])
def test_background_mount_fails_fast_with_clear_message(lakefs, repo, mount_bg, case):
    kw = {}
    target = uri(repo)
    if case == "bad-endpoint":
        kw["endpoint"] = f"http://127.0.0.1:{closed_port()}"
        pattern = r"connection refused"
    elif case == "bad-secret":
        kw["secret_key"] = "this-is-not-the-secret-" + lakefs.secret_key[:8]
        pattern = r"credential|access denied|signature|secret"
    else:
        target = uri("no-such-repo-" + repo[-8:])
        pattern = r"not found|does not exist|no such"
    before = sum(lakefs.stats()["requests"].values())
    res = mount_bg(target, **kw, timeout=30)
    assert res.returncode not in (0, None), f"mount should fail: {res}"
    assert res.elapsed < 15, f"took {res.elapsed:.1f} s: {res}"
    assert not res.live_on_return
    assert re.search(pattern, res.stderr, re.I | re.S), f"unclear message: {res.stderr!r}"
    if case == "missing-repo":
        assert "no-such-repo-" in res.stderr
    if case != "bad-endpoint":
        # it signed with the secret it was given and the gateway answered
        assert sum(lakefs.stats()["requests"].values()) > before
    # neither the secret it was given nor the real one is echoed anywhere
    given = kw.get("secret_key", lakefs.secret_key)
    for secret in {given, lakefs.secret_key}:
        for name, text in (("stdout", res.stdout), ("stderr", res.stderr), ("log", res.log())):
            assert secret not in text and urllib.parse.quote(secret, safe="") not in text, name
    assert not find_daemon_pids(BINARY, res.path), "a daemon was left running"


def test_mount_on_busy_mountpoint_fails(lakefs, repo, s3, mount, mount_bg):
    put(s3, repo, "main/f.txt", b"1")
    m = mount(uri(repo))
    res = mount_bg(uri(repo), mountpoint=m.path, timeout=30)
    assert res.returncode not in (0, None), f"second mount on a busy mountpoint succeeded: {res}"
    assert res.elapsed < 15
    assert re.search(r"busy|already|mount ?point|in use", res.stderr, re.I), res.stderr
    assert read_file(m.path / "main" / "f.txt") == b"1"


def test_background_mount_is_live_on_return_and_unmounts(lakefs, repo, s3, mount_bg):
    put(s3, repo, "main/hello.txt", b"hello\n")
    res = mount_bg(uri(repo), check=True)
    m = res.mount
    # no polling: the mount must already work
    assert os.listdir(m.path) == ["main"]
    assert read_file(m.path / "main" / "hello.txt") == b"hello\n"
    assert pid_alive(m.pid)
    r = run([str(BINARY), "unmount", str(m.path)], timeout=30)
    assert r.returncode == 0
    assert not is_mounted(m.path)
    wait_until(lambda: not pid_alive(m.pid), 15, what="the daemon to exit after unmount")


def test_lakectl_environment_variables(lakefs, repo, s3, mount):
    put(s3, repo, "main/hello.txt", b"hello\n")
    env = {"LAKECTL_SERVER_ENDPOINT_URL": lakefs.endpoint,
           "LAKECTL_CREDENTIALS_ACCESS_KEY_ID": lakefs.access_key,
           "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY": lakefs.secret_key}
    # only LAKECTL_* variables: no AWS_* credentials at all
    m = mount(uri(repo), endpoint=False, access_key=False, secret_key=False, env=env)
    assert "--endpoint" not in m.cmd
    assert read_file(m.path / "main" / "hello.txt") == b"hello\n"
    assert lakefs.secret_key not in open(f"/proc/{m.pid}/cmdline", "rb").read().decode(
        errors="replace")


# ----------------------------------------------------------------- tools
def test_unix_tools_tar_find_grep_du_wc(lakefs, repo, s3, mount, tmp_path):
    files = make_tree(seed=555, n=60)
    txt, with_needle, needle = text_files()
    files.update(txt)
    upload_tree(s3, repo, "main/tree/", files)
    m = mount(uri(repo))
    base = m.path / "main"
    env = C_LOCALE

    # find
    r = run(["find", "tree", "-type", "f"], cwd=base, env=env)
    assert sorted(r.stdout.decode().splitlines()) == sorted(f"tree/{k}" for k in files)
    r = run(["find", "tree", "-mindepth", "1", "-type", "d"], cwd=base, env=env)
    assert set(r.stdout.decode().splitlines()) == {f"tree/{d}" for d in expected_dirs(files)}

    # tar out of the mount, extract, compare
    tarball = tmp_path / "t.tar"
    r = run(["tar", "-cf", str(tarball), "tree"], cwd=base, env=env, check=False, timeout=180)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "untar"
    out.mkdir()
    run(["tar", "-xf", str(tarball), "-C", str(out)])
    assert local_tree_hashes(out / "tree") == {k: sha256_bytes(v) for k, v in files.items()}

    # grep -r
    r = run(["grep", "-r", "-l", needle, "tree"], cwd=base, env=env, check=False)
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.decode().splitlines()) == {f"tree/{k}" for k in with_needle}
    r = run(["grep", "-r", "-c", "^line 0 ", "tree/txt"], cwd=base, env=env)
    assert all(line.endswith(":1") for line in r.stdout.decode().splitlines())

    # du: apparent sizes of files
    r = run(["du", "-a", "-b", "tree"], cwd=base, env=env)
    du = {}
    for line in r.stdout.decode().splitlines():
        size, path = line.split("\t", 1)
        du[path] = int(size)
    for k, v in files.items():
        assert du.get(f"tree/{k}") == len(v), k

    # wc
    names = sorted(txt)
    r = run(["wc", "-l", "-c"] + [f"tree/{k}" for k in names], cwd=base, env=env)
    rows = [line.split() for line in r.stdout.decode().splitlines()]
    for (lines, nbytes, path), k in zip(rows, names):
        assert path == f"tree/{k}"
        assert int(lines) == txt[k].count(b"\n") and int(nbytes) == len(txt[k]), k
    assert rows[-1][2] == "total" and int(rows[-1][1]) == sum(len(txt[k]) for k in names)

    # sha256sum over find -exec
    r = run(["find", "tree", "-type", "f", "-exec", "sha256sum", "{}", "+"], cwd=base, env=env,
            timeout=180)
    sums = {}
    for line in r.stdout.decode().splitlines():
        digest, path = line.split("  ", 1)
        sums[path] = digest
    assert sums == {f"tree/{k}": sha256_bytes(v) for k, v in files.items()}


def test_sqlite3_read_only_query(lakefs, repo, s3, mount, tmp_path):
    db = tmp_path / "local.sqlite"
    con = sqlite3.connect(db)
    con.execute("create table t (id integer primary key, name text, v real)")
    con.execute("create index t_name on t(name)")
    con.executemany("insert into t values (?, ?, ?)",
                    ((i, f"name-{i % 1000:04d}", i * 0.5) for i in range(1, 30001)))
    con.commit()
    con.close()
    s3.upload_file(str(db), repo, "main/db/data.sqlite")
    m = mount(uri(repo))
    path = m.path / "main" / "db" / "data.sqlite"
    assert os.stat(path).st_size == db.stat().st_size
    u = f"file:{urllib.parse.quote(str(path))}?mode=ro&immutable=1"
    r = run(["sqlite3", u, "select count(*), sum(id) from t; "
             "select count(*) from t where name = 'name-0042';"])
    assert r.stdout.decode().split() == ["30000|450015000", "30"]
    con = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True)
    try:
        assert con.execute("select sum(v) from t where id between 100 and 199").fetchone() == (
            sum(i * 0.5 for i in range(100, 200)),)
        assert con.execute("pragma integrity_check").fetchone() == ("ok",)
    finally:
        con.close()


# ---------------------------------------------------- listing edge cases
def test_directory_marker_objects_are_hidden(lakefs, repo, s3, mount):
    for k, v in [("main/d/", b""), ("main/d/f.txt", b"f"), ("main/d/sub/", b""),
                 ("main/d/sub/g.txt", b"g"), ("main/e/", b""), ("main/top.txt", b"t")]:
        put(s3, repo, k, v)
    m = mount(uri(repo))
    b = m.path / "main"
    assert sorted(os.listdir(b)) == ["d", "e", "top.txt"]
    assert os.path.isdir(b / "d") and os.path.isdir(b / "e") and os.path.isdir(b / "d" / "sub")
    assert sorted(ls_all(b / "d")) == [".", "..", "f.txt", "sub"]
    assert sorted(ls_all(b / "d" / "sub")) == [".", "..", "g.txt"]
    assert sorted(ls_all(b / "e")) == [".", ".."]
    assert read_file(b / "d" / "sub" / "g.txt") == b"g"


def test_keys_that_cannot_be_file_names_are_skipped(lakefs, repo, s3, mount):
    good = {"ok1": b"one", "ok2": b"two", "sub/fine": b"fine", "a/b": b"ab"}
    bad = [".", "..", "./x", "../y", "a//b", "z" * 300, "sub/" + "y" * 256, "sub//c",
           "w/" + "v" * 400 + "/inner"]
    for k, v in good.items():
        put(s3, repo, f"main/odd/{k}", v)
    for k in bad:
        put(s3, repo, f"main/odd/{k}", b"bad")
    m = mount(uri(repo))
    odd = m.path / "main" / "odd"
    names = ls_all(odd)
    assert names.count(".") == 1 and names.count("..") == 1, names
    assert "" not in names
    assert all(len(n.encode()) <= 255 for n in names), [n[:20] for n in names]
    assert {"ok1", "ok2", "sub", "a"} <= set(names), names
    assert sorted(n for n in ls_all(odd / "sub") if n not in (".", "..")) == ["fine"]
    assert sorted(n for n in ls_all(odd / "a") if n not in (".", "..")) == ["b"]
    for k, v in good.items():
        assert read_file(odd / k) == v
    r = subprocess.run(["find", str(odd)], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert m.alive(), "the daemon died"
    assert read_file(m.path / "main" / "odd" / "ok1") == b"one"


# --------------------------------------------------- roots of the mount
def test_root_without_uri_lists_repositories(lakefs, repo, s3, mount):
    other = repo + "-b"
    lakefs.create_repo(other)
    lakefs.create_branch(other, "dev")
    put(s3, repo, "main/hello.txt", b"hello\n")
    put(s3, other, "dev/x.txt", b"x\n")
    want = sorted(b["Name"] for b in s3.list_buckets()["Buckets"])
    m = mount(None)
    assert sorted(os.listdir(m.path)) == want
    assert sorted(os.listdir(m.path / other)) == ["dev", "main"]
    assert read_file(m.path / repo / "main" / "hello.txt") == b"hello\n"
    assert read_file(m.path / other / "dev" / "x.txt") == b"x\n"
    assert errno_of(lambda: os.stat(m.path / "no-such-repo-x")) == "ENOENT"


def test_repo_uri_lists_branches(lakefs, repo, s3, mount):
    put(s3, repo, "main/a.txt", b"a")
    # lakeFS branches from the source's last commit, not its staged writes.
    lakefs.commit(repo, "main", "a.txt")
    lakefs.create_branch(repo, "dev")
    lakefs.create_branch(repo, "feature-x")
    put(s3, repo, "dev/only-dev.txt", b"d")
    m = mount(uri(repo))
    assert sorted(os.listdir(m.path)) == ["dev", "feature-x", "main"]
    assert all(os.path.isdir(m.path / b) for b in ("dev", "feature-x", "main"))
    assert sorted(os.listdir(m.path / "dev")) == ["a.txt", "only-dev.txt"]
    assert sorted(os.listdir(m.path / "feature-x")) == ["a.txt"]


# ------------------------------------------------------ changes under us
def test_object_replaced_while_open_gives_eio(lakefs, repo, s3, mount):
    size = 64 * MiB
    a = BigStream(seed=1, size=size)
    b = BigStream(seed=2, size=size)
    upload_stream_multipart(s3, repo, "main/big.bin", a.pieces(), part_size=16 * MiB)
    # A readahead window that cannot reach 48 MiB: with the default 64 MiB
    # one, a first read slow enough to open it whole fetched the range
    # before the replacement on some schedules (and the old bytes were
    # the right answer there).
    m = mount(uri(repo), "--readahead-max", "8")
    path = m.path / "main" / "big.bin"
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, MiB, 0) == a.read_at(0, MiB)
        upload_stream_multipart(s3, repo, "main/big.bin", b.pieces(), part_size=16 * MiB)
        try:
            got = os.pread(fd, MiB, 48 * MiB)
        except OSError as e:
            assert e.errno == errno.EIO, f"expected EIO, got {errno.errorcode.get(e.errno)}"
        else:
            if got == b.read_at(48 * MiB, MiB):
                pytest.fail("read returned the NEW object's bytes on a handle opened on the old "
                            "one (mixed data)")
            if got == a.read_at(48 * MiB, MiB):
                pytest.fail("read returned the old object's bytes (consistent, but EIO expected "
                            "for an uncached range of a replaced object)")
            pytest.fail(f"read returned {len(got)} bytes matching neither version")
    finally:
        os.close(fd)
    # a new open sees the new object (bounded wait for the branch TTL)
    wait_until(lambda: read_file_range(path, 48 * MiB, MiB) == b.read_at(48 * MiB, MiB), 20,
               interval=0.25, what="a new open to see the replaced object")


def read_file_range(path, off, n):
    try:
        with open(path, "rb") as f:
            f.seek(off)
            return f.read(n)
    except OSError:
        return None


def test_parallel_readers_get_right_bytes(lakefs, repo, s3, mount):
    """8 readers at once, each closing as soon as its last reply is out:
    the close must never race the read that answered it."""
    size = 24 * MiB + 12345
    want = {}
    for i in range(8):
        data = BigStream(seed=100 + i, size=size)
        upload_stream_multipart(s3, repo, f"main/par/p{i}.bin", data.pieces(),
                                part_size=8 * MiB)
        h = hashlib.sha256()
        for piece in data.pieces():
            h.update(piece)
        want[i] = h.hexdigest()
    m = mount(uri(repo))

    def read(i, bs):
        h = hashlib.sha256()
        with open(m.path / "main" / "par" / f"p{i}.bin", "rb", buffering=0) as f:
            while True:
                b = f.read(bs)
                if not b:
                    break
                h.update(b)
        return h.hexdigest()

    for bs in (128 * 1024, MiB):
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            got = dict(zip(range(8), ex.map(lambda i: read(i, bs), range(8))))
        assert got == want
    assert m.alive()


def test_disk_cache_serves_what_memory_evicted(lakefs, repo, s3, mount):
    """--cache-size 16 cannot hold a 48 MiB file; --disk-cache-size can:
    the second read (page cache dropped) needs no GET, and the block
    files stay within their limit, private, under cache-dir/blocks."""
    size = 48 * MiB + 777
    data = BigStream(seed=61, size=size)
    upload_stream_multipart(s3, repo, "main/d.bin", data.pieces(), part_size=16 * MiB)
    want = hashlib.sha256(b"".join(data.pieces())).hexdigest()
    m = mount(uri(repo), "--cache-size", "16", "--disk-cache-size", "64")
    path = m.path / "main" / "d.bin"
    assert sha256_file(path) == want
    lakefs.reset_stats()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1\n")
    assert sha256_file(path) == want
    assert data_gets(lakefs.stats()) == 0
    blocks = pathlib.Path(m.cmd[m.cmd.index("--cache-dir") + 1]) / "blocks"
    files = [p for p in blocks.iterdir() if p.is_file()]
    assert files and sum(p.stat().st_size for p in files) <= 64 * MiB
    assert blocks.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files)


def small_tree(sim, repo, n):
    files = {f"f{i:03d}.dat": (b"%05d" % i) * 4000 for i in range(n)}
    bulk_put(sim, repo, [(f"main/small/{k}", v) for k, v in files.items()])
    return files


def gets(lakefs):
    return data_gets(lakefs.stats())


def test_files_read_in_listing_order_are_fetched_ahead(lakefs, repo, s3, mount, tmp_path):
    """Three files of a directory read in listing order make a walk: the
    next ones' bytes are fetched ahead (GETs beyond the files read, in
    flight before the reader asks), and a whole tree copy then fetches
    every file exactly once, byte-exact."""
    files = small_tree(lakefs, repo, 40)
    m = mount(uri(repo))
    d = m.path / "main" / "small"
    names = sorted(os.listdir(d))
    lakefs.reset_stats()
    for k in names[:3]:
        assert read_file(d / k) == files[k]
    # the fourth and later files arrive without being read
    assert wait_until(lambda: gets(lakefs) >= 3 + 4, timeout=10), lakefs.stats()
    for k in names[3:]:
        assert read_file(d / k) == files[k]
    assert gets(lakefs) == len(files), lakefs.stats()
    # a fresh mount: cp -r, each file fetched once
    m2 = mount(uri(repo))
    lakefs.reset_stats()
    run(["cp", "-r", str(m2.path / "main" / "small"), str(tmp_path / "copy")], timeout=120)
    assert {p.name: p.read_bytes() for p in (tmp_path / "copy").iterdir()} == files
    assert gets(lakefs) == len(files), lakefs.stats()


def test_files_read_in_no_order_fetch_nothing_more(lakefs, repo, s3, mount):
    """A reader that does not walk the listing pays for nothing: reading
    every other file, from the end back, and then a shuffled sample
    that never has three in order, makes exactly one GET per file read."""
    files = small_tree(lakefs, repo, 60)
    m = mount(uri(repo))
    d = m.path / "main" / "small"
    names = sorted(os.listdir(d))
    order = names[::-2] + [names[i] for i in (0, 30, 2, 50, 4, 40, 6)]
    lakefs.reset_stats()
    for k in order:
        assert read_file(d / k) == files[k]
    time.sleep(0.5)   # anything fetched ahead would have been sent by now
    assert gets(lakefs) == len(set(order)), lakefs.stats()


def test_default_mode_reads_big_objects_direct_and_small_ones_cached(lakefs, repo, s3, mount):
    """No option: an object over half --cache-size is opened with direct
    I/O where the kernel keeps its shared mmaps coherent (the log says
    so), and a shared mmap of it gives its bytes; a small file keeps the
    page cache (a second read costs no request). --page-cache keeps the
    big one in the page cache too."""
    import mmap
    big = random.Random(12).randbytes(12 * MiB + 5)
    small = random.Random(13).randbytes(MiB)
    put(s3, repo, "main/big.bin", big)
    put(s3, repo, "main/small.bin", small)
    kernel = tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    for args in ([], ["--page-cache"]):
        m = mount(uri(repo), "--cache-size", "16", *args)
        d = m.path / "main"
        direct = "objects from 8 MiB on are read with direct I/O" in m.log()
        assert direct == (not args and kernel >= (6, 6)), m.log()[-2000:]
        for name, data in (("big.bin", big), ("small.bin", small)):
            assert read_file(d / name) == data
            fd = os.open(d / name, os.O_RDONLY)
            try:
                with mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) as mm:
                    assert mm[:] == data
            finally:
                os.close(fd)
        lakefs.reset_stats()
        assert read_file(d / "small.bin") == small
        assert read_file(d / "big.bin") == big
        st = lakefs.stats()
        if direct:
            # the big file through lakefuse again: what its cache gave
            # back (blocks of a file over half the cache go as they are
            # read) is fetched again, at most once; the small one comes
            # from the page cache
            assert data_gets(st) >= 1, st
            assert data_bytes_out(st) <= len(big) + 64 * 1024, st
        else:
            assert data_gets(st) == 0, st
        m.unmount()

