"""Open files across rename, unlink and replacement (POSIX: a descriptor
refers to the file, not to its name). Every check reads the gateway with
boto3 or a fresh mount, never only the mount that wrote.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_open_files.py
"""
import os
import subprocess
import time

import pytest

from lf_helpers import MiB, det_bytes, get, list_keys as keys


def uri(repo, ref=None):
    return f"lakefs://{repo}" + (f"/{ref}" if ref else "")


def meta(s3, repo, key):
    return {k.lower(): v for k, v in
            s3.head_object(Bucket=repo, Key=key)["Metadata"].items()}


def test_logrotate_mv_keeps_both_logs(lakefs, repo, s3, mount):
    """The writer follows its file to app.log.1; the fresh app.log, whose
    close() returned 0, is never overwritten by the old descriptor."""
    m = mount(uri(repo))
    b = m.path / "main"
    fd = os.open(b / "app.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, b"old-1\n")
        os.fsync(fd)
        os.rename(b / "app.log", b / "app.log.1")
        with open(b / "app.log", "wb") as f:
            f.write(b"fresh\n")
        os.write(fd, b"old-2\n")
    finally:
        os.close(fd)
    assert get(s3, repo, "main/app.log") == b"fresh\n"
    assert get(s3, repo, "main/app.log.1") == b"old-1\nold-2\n"


def test_clean_open_file_renamed_keeps_writing_to_the_new_name(lakefs, repo, s3, mount):
    m = mount(uri(repo))
    b = m.path / "main"
    (b / "a.txt").write_bytes(b"base")
    fd = os.open(b / "a.txt", os.O_RDWR)
    try:
        os.rename(b / "a.txt", b / "b.txt")
        assert get(s3, repo, "main/b.txt") == b"base"   # moved at once
        os.pwrite(fd, b"BASE", 0)
    finally:
        os.close(fd)
    assert get(s3, repo, "main/b.txt") == b"BASE"
    assert keys(s3, repo, "main/") == ["main/b.txt"]


def test_mv_over_an_open_writer_keeps_the_new_content(lakefs, repo, s3, mount):
    m = mount(uri(repo))
    b = m.path / "main"
    with open(b / "target.txt", "wb") as old:
        old.write(b"old writer 1\n")
        old.flush()
        (b / "new.txt").write_bytes(b"the new content\n")
        os.rename(b / "new.txt", b / "target.txt")
        old.write(b"old writer 2\n")
        old.flush()
        os.fsync(old.fileno())       # succeeds: the data goes nowhere visible
        old.seek(0)
    assert get(s3, repo, "main/target.txt") == b"the new content\n"
    assert keys(s3, repo, "main/") == ["main/target.txt"]
    assert (b / "target.txt").read_bytes() == b"the new content\n"


def test_unlink_while_open_never_resurrects(lakefs, repo, s3, mount):
    m = mount(uri(repo))
    b = m.path / "main"
    fd = os.open(b / "gone.txt", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"one ")
        os.fsync(fd)
        assert get(s3, repo, "main/gone.txt") == b"one "
        os.unlink(b / "gone.txt")
        os.write(fd, b"two")
        os.fsync(fd)
        # the descriptor still reads its (anonymous) file
        assert os.pread(fd, 100, 0) == b"one two"
    finally:
        os.close(fd)
    assert keys(s3, repo, "main/") == []
    assert not (b / "gone.txt").exists()


def test_unlink_then_create_same_name_while_old_fd_writes(lakefs, repo, s3, mount):
    m = mount(uri(repo))
    b = m.path / "main"
    fd = os.open(b / "x", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"first file")
        os.unlink(b / "x")
        (b / "x").write_bytes(b"second file")
        os.write(fd, b" more")
    finally:
        os.close(fd)
    assert get(s3, repo, "main/x") == b"second file"


@pytest.mark.parametrize("size", [1 * MiB, 24 * MiB])
def test_cp_p_keeps_mode_and_mtime_on_the_object(lakefs, repo, s3, mount, tmp_path, size):
    """24 MiB is past two 8 MiB parts: the upload streams while cp writes,
    and the mode and times cp sets afterwards must still reach the object."""
    src = tmp_path / "big.bin"
    src.write_bytes(det_bytes(7, size))
    os.chmod(src, 0o751)
    os.utime(src, ns=(1400000000_000000000, 1400000000_123456789))
    m = mount(uri(repo))
    subprocess.run(["cp", "-p", str(src), str(m.path / "main" / "big.bin")], check=True,
                   timeout=120)
    h = meta(s3, repo, "main/big.bin")
    assert int(h["mode"]) & 0o7777 == 0o751
    assert h["mtime"] == "1400000000"
    assert get(s3, repo, "main/big.bin") == src.read_bytes()
    m2 = mount(uri(repo))
    st = os.stat(m2.path / "main" / "big.bin")
    assert (st.st_mode & 0o7777, st.st_mtime_ns) == (0o751, 1400000000_123456789)



def test_a_new_file_being_written_is_listed_after_the_listing_expires(lakefs, repo, s3, mount):
    """Nothing of it is on the gateway until its close, yet it exists: a
    listing asked of the gateway after the branch TTL still shows it (and
    its size), in the directory and at the branch root."""
    m = mount(uri(repo), "--branch-ttl", "0.2")
    b = m.path / "main"
    os.mkdir(b / "d")
    fds = [os.open(b / name, os.O_WRONLY | os.O_CREAT, 0o644) for name in ("top.txt", "d/in.txt")]
    try:
        for fd in fds:
            os.write(fd, b"x" * 100)
        assert keys(s3, repo, "main/") == ["main/d/"]
        for _ in range(3):   # each pass lists the gateway again
            time.sleep(0.4)
            assert sorted(os.listdir(b)) == ["d", "top.txt"]
            assert os.listdir(b / "d") == ["in.txt"]
            assert [e.stat().st_size for e in os.scandir(b / "d")] == [100]
    finally:
        for fd in fds:
            os.close(fd)
    assert keys(s3, repo, "main/") == ["main/d/", "main/d/in.txt", "main/top.txt"]
    assert sorted(os.listdir(b)) == ["d", "top.txt"]
