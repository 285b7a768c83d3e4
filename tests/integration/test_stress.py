"""Write-path stress: several threads race writes, fsync, close, rename,
unlink, truncate and directory renames on a few names of one mount for a
bounded time, then every file on the gateway is checked against what POSIX
allows for that history.

The model. Every write puts one whole record of a fixed length at offset 0
in a single write(2) (atomic against other writes on a local file), and
truncates go to 0, so whatever the interleaving each file can only hold one
complete record that some thread wrote, or nothing. Once every thread is
done and every descriptor closed (each close() returned 0: anything else
fails the test), the mount is the single writer's POSIX truth, and the
gateway must hold exactly the same names with exactly the same bytes: a
name on the gateway that the mount does not show is a resurrected file, a
difference in bytes is a lost or misplaced write. A fresh mount must agree
too, and no staged file may be left behind.

LAKEFUSE_STRESS_SECONDS sets the duration (default 12 s per run; the
ASan and TSan passes of the suite run it too).
Run: /usr/bin/python3 -m pytest -q tests/integration/test_stress.py
"""
import errno
import hashlib
import os
import random
import threading
import time

import pytest

from lf_helpers import file_tree, gateway_files

RECORD = 4096
FILES = ["a", "b", "c", "d1/x", "d1/y", "d2/x"]
DIRS = ["d1", "d2"]
ALLOWED = {errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY}


def uri(repo):
    return f"lakefs://{repo}"


def record(tid, seq):
    """A fixed-length record that names its writer."""
    head = f"thread {tid} write {seq}\n".encode()
    body = hashlib.sha256(head).digest() * (RECORD // 32)
    return (head + body)[:RECORD]


class Stress:
    def __init__(self, root, seconds, seed, dir_renames=True):
        self.root = root
        self.dir_renames = dir_renames
        self.deadline = time.monotonic() + seconds
        self.seed = seed
        self.written = {b""}
        self.lock = threading.Lock()
        self.errors = []
        self.ops = 0
        self.reads = []      # what whole reads returned
        self.read_eio = 0

    def path(self, name):
        return os.path.join(self.root, name)

    def note(self, rec):
        with self.lock:
            self.written.add(rec)

    def tolerate(self, fn, *args):
        try:
            fn(*args)
        except OSError as e:
            if e.errno not in ALLOWED:
                raise

    # -- operations -----------------------------------------------------
    def op_write(self, rnd, rec):
        self.note(rec)
        fd = os.open(self.path(rnd.choice(FILES)), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            assert os.write(fd, rec) == RECORD
            if rnd.random() < 0.3:
                os.fsync(fd)
        finally:
            os.close(fd)

    def op_hold(self, rnd, rec):
        """A descriptor kept open while other threads rename and unlink."""
        self.note(rec)
        fd = os.open(self.path(rnd.choice(FILES)), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            assert os.pwrite(fd, rec, 0) == RECORD
            time.sleep(rnd.random() * 0.02)
            if rnd.random() < 0.5:
                os.fsync(fd)
            assert os.pwrite(fd, rec, 0) == RECORD
        finally:
            os.close(fd)

    def op_rename(self, rnd, rec):
        if self.dir_renames and rnd.random() < 0.2:
            src, dst = rnd.sample(DIRS, 2)
        else:
            src, dst = rnd.sample(FILES, 2)
        os.rename(self.path(src), self.path(dst))

    def op_unlink(self, rnd, rec):
        os.unlink(self.path(rnd.choice(FILES)))

    def op_truncate(self, rnd, rec):
        os.truncate(self.path(rnd.choice(FILES)), 0)

    def op_mkdir(self, rnd, rec):
        os.mkdir(self.path(rnd.choice(DIRS)))

    def op_read(self, rnd, rec):
        """Reads race renames onto the name they opened: the replaced
        object is gone from the gateway, and the read gets EIO, never
        another file's bytes (docs/semantics.md). Nothing else may fail."""
        try:
            with open(self.path(rnd.choice(FILES)), "rb") as f:
                data = f.read()
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            with self.lock:
                self.read_eio += 1
            return
        with self.lock:
            self.reads.append(data)

    OPS = [(op_write, 4), (op_hold, 2), (op_rename, 2), (op_unlink, 1), (op_truncate, 1),
           (op_mkdir, 1), (op_read, 2)]

    def worker(self, tid):
        rnd = random.Random(self.seed * 1000 + tid)
        fns = [f for f, w in self.OPS for _ in range(w)]
        seq = 0
        try:
            while time.monotonic() < self.deadline:
                seq += 1
                fn = rnd.choice(fns)
                self.tolerate(fn, self, rnd, record(tid, seq))
                with self.lock:
                    self.ops += 1
        except BaseException as e:  # recorded, and the test fails on it
            self.errors.append(f"thread {tid}, {fn.__name__}: {e!r}")

    def run(self, threads):
        for d in DIRS:
            os.mkdir(self.path(d))
        ts = [threading.Thread(target=self.worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


@pytest.mark.slow
@pytest.mark.parametrize("seed,dir_renames", [(1, False), (2, True)],
                         ids=["files", "with-directory-renames"])
def test_racing_writers_renames_and_unlinks_match_the_model(lakefs, repo, s3, mount, seed,
                                                            dir_renames):
    seconds = float(os.environ.get("LAKEFUSE_STRESS_SECONDS", "12"))
    m = mount(uri(repo))
    st = Stress(str(m.path / "main"), seconds, seed, dir_renames)
    st.run(threads=4)
    assert not st.errors, (st.errors, [l for l in m.log().splitlines()
                                       if " error: " in l or " warn: " in l][-20:])
    assert st.ops > 20, f"only {st.ops} operations ran"
    # One mount alone: no create of its own may meet an object of its own
    # and take it for another client's (EEXIST at close).
    assert "another client created" not in m.log(), [
        l for l in m.log().splitlines() if "another client created" in l][:3]

    # A read sees one record or nothing, or a record being written over
    # (a read racing a write to the same bytes), never another length.
    assert all(len(d) in (0, RECORD) for d in st.reads)
    seen = file_tree(m.path / "main")
    for name, data in seen.items():
        assert data in st.written, f"{name}: {len(data)} bytes that no write produced"
    on_gateway = gateway_files(s3, repo)
    assert sorted(on_gateway) == sorted(seen), "names on the gateway differ from the mount"
    for name in seen:
        assert on_gateway[name] == seen[name], f"{name}: gateway bytes differ from the mount"
    m2 = mount(uri(repo))
    assert file_tree(m2.path / "main") == seen
    cache = m.cmd[m.cmd.index("--cache-dir") + 1]
    assert m.unmount() == []
    left = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(cache, "staging"))
            for f in fs if f.startswith("f-")]
    assert left == [], f"staged files left after unmount: {left}"
