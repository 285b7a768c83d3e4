"""A file's stored mode and times (x-amz-meta-mode/-mtime) are what stat,
open, exec and access see, also after a listing, which carries no POSIX
metadata (docs/semantics.md says when a listing's defaults can still
show: within the attribute TTL after it, to `ls -l`).

Run: /usr/bin/python3 -m pytest -q tests/integration/test_attributes.py
"""
import errno
import os
import stat
import subprocess
import time

MODE_755 = stat.S_IFREG | 0o755
MTIME = 1577923200          # 2020-01-02 00:00:00 UTC
SCRIPT = b"#!/bin/sh\necho ran\n"


def uri(repo, ref=None):
    return f"lakefs://{repo}" + (f"/{ref}" if ref else "")


def put_script(s3, repo, key):
    s3.put_object(Bucket=repo, Key=key, Body=SCRIPT,
                  Metadata={"mode": str(MODE_755), "mtime": str(MTIME)})


def past_ttl(seconds=1.0):
    """The branch TTL (1 s by default) runs out: what the kernel cached
    from the listing must be asked for again."""
    time.sleep(seconds + 0.5)


def assert_stored(path):
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o755, oct(st.st_mode)
    assert int(st.st_mtime) == MTIME
    assert os.access(path, os.X_OK)
    r = subprocess.run([str(path)], capture_output=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, b"ran\n"), r


def test_stored_mode_and_mtime_survive_a_listing(lakefs, repo, s3, mount):
    put_script(s3, repo, "main/d/run.sh")
    s3.put_object(Bucket=repo, Key="main/d/other.txt", Body=b"x")
    m = mount(uri(repo))
    d = m.path / "main" / "d"
    assert sorted(os.listdir(d)) == ["other.txt", "run.sh"]
    past_ttl()
    assert_stored(d / "run.sh")
    assert (d / "run.sh").read_bytes() == SCRIPT
    # a second listing of the same content keeps what the HEAD told
    os.listdir(d)
    past_ttl()
    assert_stored(d / "run.sh")


def test_open_and_exec_after_a_listing_see_the_stored_mode(lakefs, repo, s3, mount):
    put_script(s3, repo, "main/run.sh")
    m = mount(uri(repo))
    b = m.path / "main"
    os.listdir(b)
    past_ttl()
    with open(b / "run.sh", "rb") as f:      # open first, then exec
        assert f.read() == SCRIPT
    assert_stored(b / "run.sh")


def test_files_under_a_commit_show_their_stored_mode(lakefs, repo, s3, mount):
    put_script(s3, repo, "main/run.sh")
    commit = lakefs.commit(repo, "main", "script")
    m = mount(uri(repo))
    c = m.path / commit
    assert_stored(c / "run.sh")              # looked up by name: no listing
    os.listdir(c)
    past_ttl()
    assert_stored(c / "run.sh")
    try:
        with open(c / "run.sh", "ab"):
            pass
        raise AssertionError("a commit's file opened for writing")
    except OSError as e:
        assert e.errno == errno.EROFS
