"""One branch, two lakefuse daemons (docs/semantics.md, "Many mounts of one
branch"): two mounts of the same branch against one gateway.

- Both create one new name at once: exactly one create is stored (the
  upload only creates, If-None-Match: *); the other close() fails with
  EEXIST, its log says another client created the name, its bytes stay
  staged (the mount still serves them) and a rename stores them elsewhere
  without touching the winner's object.
- Both overwrite one existing file: the object is one writer's whole
  content, never a mix; the last close wins.
- A file closed on A is read by `cat` on B once the branch TTL passed.
- A directory renamed on A while B lists it: every listing ends, each
  name B shows is a whole file of the tree, and B then sees the new tree.
- B writes new files into a directory while A renames it or removes it
  with rm -rf: no file B closed is lost (it is under the old or the new
  name, byte for byte, unless A's rm deleted that very key after it
  existed, which A's log shows).
"""
import errno
import hashlib
import os
import re
import subprocess
import threading

from lf_helpers import MiB, errno_of, get, list_keys, wait_until


def both(mount, repo, *extra):
    a = mount(f"lakefs://{repo}/main", "--branch-ttl", "1", *extra)
    b = mount(f"lakefs://{repo}/main", "--branch-ttl", "1", *extra)
    return a, b


def at_once(*fns):
    """Runs each fn in its own thread, released together; their results
    (an errno or a value) in order."""
    gate = threading.Barrier(len(fns))
    out = [None] * len(fns)

    def run(i, fn):
        gate.wait()
        try:
            out[i] = fn()
        except OSError as e:
            out[i] = e

    ts = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def pattern(tag, size):
    block = hashlib.sha256(tag).digest() * 2048        # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def close_errno(fd):
    return errno_of(lambda: os.close(fd))


def test_concurrent_create_exactly_one_wins(lakefs, repo, mount, s3):
    a, b = both(mount, repo)
    for i, size in enumerate([5, 70000, 17 * MiB]):     # PUT, PUT, multipart complete
        name = f"race{i}.bin"
        da, db = pattern(b"A%d" % i, size), pattern(b"B%d" % i, size + 1)
        fa = os.open(a.path / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        fb = os.open(b.path / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        assert os.write(fa, da) == len(da) and os.write(fb, db) == len(db)
        ea, eb = at_once(lambda: close_errno(fa), lambda: close_errno(fb))
        assert sorted([ea, eb]) == [0, errno.EEXIST], (ea, eb)
        winner, loser, wdata, ldata = (a, b, da, db) if ea == 0 else (b, a, db, da)
        assert get(s3, repo, f"main/{name}") == wdata
        assert "another client created it" in loser.log()
        # The loser's bytes stay staged: its mount serves them, and they
        # are stored under another name; the winner's object stays.
        assert (loser.path / name).read_bytes() == ldata
        os.rename(loser.path / name, loser.path / f"{name}.mine")
        assert get(s3, repo, f"main/{name}.mine") == ldata
        assert get(s3, repo, f"main/{name}") == wdata
        assert (winner.path / name).read_bytes() == wdata


def test_removing_the_losing_file_keeps_the_winners(lakefs, repo, mount, s3):
    a, b = both(mount, repo)
    fa = os.open(a.path / "x", os.O_WRONLY | os.O_CREAT, 0o644)
    fb = os.open(b.path / "x", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fa, b"from a")
    os.write(fb, b"from b")
    assert close_errno(fa) == 0
    assert close_errno(fb) == errno.EEXIST
    os.unlink(b.path / "x")            # drops b's staged copy only
    assert get(s3, repo, "main/x") == b"from a"
    wait_until(lambda: (b.path / "x").exists() and (b.path / "x").read_bytes() == b"from a",
               timeout=30, what="b to see a's file")


def test_overwrites_from_two_mounts_never_mix(lakefs, repo, mount, s3):
    s3.put_object(Bucket=repo, Key="main/shared.bin", Body=b"original")
    a, b = both(mount, repo)
    for rnd, size in enumerate([3 * MiB, 20 * MiB]):
        da, db = pattern(b"a%d" % rnd, size), pattern(b"b%d" % rnd, size + MiB // 2)
        wait_until(lambda: (a.path / "shared.bin").exists() and (b.path / "shared.bin").exists(),
                   timeout=30, what="both to see the file")
        fa = os.open(a.path / "shared.bin", os.O_WRONLY | os.O_TRUNC)
        fb = os.open(b.path / "shared.bin", os.O_WRONLY | os.O_TRUNC)
        # Interleaved writes, then both close at once.
        step = MiB // 4
        for off in range(0, max(len(da), len(db)), step):
            if off < len(da):
                os.pwrite(fa, da[off:off + step], off)
            if off < len(db):
                os.pwrite(fb, db[off:off + step], off)
        ea, eb = at_once(lambda: close_errno(fa), lambda: close_errno(fb))
        assert (ea, eb) == (0, 0)
        got = get(s3, repo, "main/shared.bin")
        assert got in (da, db), (len(got), hashlib.sha256(got).hexdigest())
    # In turn: the last close wins.
    for first, second, tag in ((a, b, b"x"), (b, a, b"y")):
        with open(first.path / "shared.bin", "wb") as f:
            f.write(tag * 1000)
        wait_until(lambda: second.path.joinpath("shared.bin").stat().st_size == 1000,
                   timeout=30, what="the other mount to see the new size")
        with open(second.path / "shared.bin", "wb") as f:
            f.write(tag * 2000)
        assert get(s3, repo, "main/shared.bin") == tag * 2000


def test_closed_on_a_is_read_on_b_after_the_ttl(lakefs, repo, mount, s3):
    a, b = both(mount, repo)
    os.mkdir(a.path / "d")
    assert os.listdir(b.path / "d") == []        # b caches the empty listing
    assert errno_of(lambda: (b.path / "d" / "f").read_bytes()) == errno.ENOENT
    for version in (b"first version", b"second, longer version " * 100):
        (a.path / "d" / "f").write_bytes(version)
        seen = wait_until(lambda: subprocess.run(["cat", str(b.path / "d" / "f")],
                                                 capture_output=True).stdout == version,
                          timeout=30, interval=0.2, what="cat on b to show a's file")
        assert seen
        assert os.listdir(b.path / "d") == ["f"]


def test_directory_renamed_on_a_while_b_lists(lakefs, repo, mount, s3):
    names = {f"f{i:03d}" for i in range(300)}
    a, b = both(mount, repo)
    os.mkdir(a.path / "old")
    for n in sorted(names):
        (a.path / "old" / n).write_bytes(n.encode() * 10)
    wait_until(lambda: set(os.listdir(b.path / "old")) == names, timeout=30,
               what="b to list the tree",
               absent_is_false=True)
    stop = threading.Event()
    seen, problems = [], []

    def lister():
        while not stop.is_set():
            for d in ("old", "new"):
                try:
                    got = set(os.listdir(b.path / d))
                except OSError as e:
                    if e.errno != errno.ENOENT:
                        problems.append((d, e))
                    continue
                seen.append((d, len(got)))
                if not got <= names:
                    problems.append((d, sorted(got - names)[:5]))
                for n in list(got)[:3]:      # what is listed is a whole file
                    try:
                        data = (b.path / d / n).read_bytes()
                    except OSError as e:
                        if e.errno not in (errno.ENOENT,):
                            problems.append((d, n, e))
                        continue
                    if data != n.encode() * 10:
                        problems.append((d, n, data[:20]))

    ts = [threading.Thread(target=lister) for _ in range(3)]
    for t in ts:
        t.start()
    try:
        os.rename(a.path / "old", a.path / "new")
    finally:
        stop.set()
        for t in ts:
            t.join()
    assert problems == [], problems[:10]
    assert seen
    # b may remember "new" as absent (its listers looked before the rename)
    # until its TTL passes.
    wait_until(lambda: set(os.listdir(b.path / "new")) == names and
               not (b.path / "old").exists(), timeout=30, what="b to see the new tree",
               absent_is_false=True)
    assert list_keys(s3, repo, "main/old/") == []


class Writer(threading.Thread):
    """Writes `count` new files into m/d, one after another; `going` is
    set once the first ten are closed, so the other mount's change lands
    in the middle. done: {name: bytes} of files whose close() succeeded;
    failed: the errno of each that did not."""

    def __init__(self, m, d, count):
        super().__init__()
        self.m, self.d, self.count = m, d, count
        self.going = threading.Event()
        self.done, self.failed = {}, []

    def run(self):
        try:
            for i in range(self.count):
                name = f"b{i:03d}"
                data = pattern(name.encode(), 1000 + i)
                try:
                    with open(self.m.path / self.d / name, "wb") as f:
                        f.write(data)
                    self.done[name] = data
                except OSError as e:
                    self.failed.append(e.errno)
                if i == 10:
                    self.going.set()
        finally:
            self.going.set()


def deleted_keys(m, repo):
    return set(re.findall(r"DeleteObject DELETE /%s/main/(\S+): HTTP 204" % re.escape(repo),
                          m.log()))


def test_b_writes_survive_a_rename_of_their_directory_on_a(lakefs, repo, mount, s3):
    a, b = both(mount, repo)
    os.mkdir(a.path / "w")
    for i in range(50):
        (a.path / "w" / f"a{i:02d}").write_bytes(b"a" * i)
    wait_until(lambda: len(os.listdir(b.path / "w")) == 50, timeout=30, what="b to see w",
               absent_is_false=True)
    w = Writer(b, "w", 150)
    w.start()
    w.going.wait()
    os.rename(a.path / "w", a.path / "w2")
    w.join()
    done, failed = w.done, w.failed
    assert failed == []
    old, new = set(list_keys(s3, repo, "main/w/")), set(list_keys(s3, repo, "main/w2/"))
    for name, data in done.items():
        keys = [k for k in (f"main/w/{name}", f"main/w2/{name}") if k in old | new]
        assert keys, f"{name} closed on b is lost"
        assert any(get(s3, repo, k) == data for k in keys), name
    for i in range(50):
        assert get(s3, repo, f"main/w2/a{i:02d}") == b"a" * i


def test_b_writes_survive_rm_rf_of_their_directory_on_a(lakefs, repo, mount, s3):
    a, b = both(mount, repo)
    os.mkdir(a.path / "w")
    for i in range(50):
        (a.path / "w" / f"a{i:02d}").write_bytes(b"a" * i)
    wait_until(lambda: len(os.listdir(b.path / "w")) == 50, timeout=30, what="b to see w",
               absent_is_false=True)
    w = Writer(b, "w", 300)
    w.start()
    w.going.wait()
    # a's listing holds some of b's files: rm removes them while b writes on.
    wait_until(lambda: any(n.startswith("b") for n in os.listdir(a.path / "w")), timeout=30,
               what="a to list some of b's files")
    subprocess.run(["rm", "-rf", str(a.path / "w")], capture_output=True, timeout=300)
    w.join()
    done, failed = w.done, w.failed
    assert failed == []
    present = set(list_keys(s3, repo, "main/w/"))
    removed = deleted_keys(a, repo)
    for name, data in done.items():
        key = f"w/{name}"
        if f"main/{key}" in present:
            assert get(s3, repo, f"main/{key}") == data, name
        else:
            assert key in removed, f"{name} closed on b is gone, and a's rm never deleted it"
    assert not any(k.startswith("main/w/a") for k in present)
