"""`lakefuse unmount` uploads what is staged before unmounting, says so when
it cannot, and the next mount on the same cache directory finishes the job."""
import errno
import os
import subprocess

from lf_helpers import BINARY, is_mounted, wait_until


def staged_files(cache):
    """Staged data files in every mount's area of the cache directory."""
    out = []
    for d, _, names in os.walk(os.path.join(cache, "staging")):
        out += [n for n in names if n.startswith("f-") and not n.endswith(".m")]
    return out


def unmount(path):
    return subprocess.run([str(BINARY), "unmount", str(path)], capture_output=True, text=True,
                          timeout=120)


def test_unmount_reports_uploads_that_failed_and_next_mount_finishes(lakefs, repo, s3, mount):
    m = mount(f"lakefs://{repo}", "--retries", "0", "--timeout", "5", "--branch-ttl", "600")
    cache = m.cmd[m.cmd.index("--cache-dir") + 1]
    # Listed now, so creating a name needs no request: only the upload fails.
    assert os.listdir(m.path / "main") == []
    # The latency holds each failing request open a while: the daemon's
    # last attempt, made as it exits after fusermount3 has returned, takes
    # long enough to be seen (a clean-clone CI run once saw the faults
    # turned off under it: it stored the file, and the next mount had
    # nothing left to do).
    lakefs.set_faults(fail_rate=1.0, latency_ms=200)
    try:
        with open(m.path / "main" / "late.txt", "wb") as f:
            f.write(b"written while the gateway failed\n")
            try:
                f.close()
                closed = 0
            except OSError as e:
                closed = e.errno
        assert closed == errno.EIO, "close() must report the failed upload"
        res = unmount(m.path)
        # That last attempt is part of the unmount: the command waits for
        # the daemon, so its word is final and a mount started now on the
        # same cache directory can adopt what is left.
        assert m.proc.poll() is not None, "unmount returned before its daemon exited"
        m.proc.wait(timeout=60)
    finally:
        lakefs.set_faults(fail_rate=0.0)
    assert res.returncode != 0 and "could not be uploaded" in res.stderr, res
    assert "once more as it exits" in res.stderr, res
    assert "control request" not in m.log()  # asking who serves the mount is no request
    assert not is_mounted(m.path)
    assert staged_files(cache), "the written data must stay staged"

    # A new mount on the same cache directory uploads it, in the background.
    m2 = mount(f"lakefs://{repo}", "--cache-dir", cache)
    wait_until(lambda: "recovery: done" in m2.log(), 60, what="the recovery")
    got = s3.get_object(Bucket=repo, Key="main/late.txt")["Body"].read()
    assert got == b"written while the gateway failed\n"
    assert "staged by an earlier run" in m2.log()
    assert staged_files(cache) == []
    # the emptied area is gone; only the new mount's own is left
    assert len(os.listdir(os.path.join(cache, "staging"))) == 1


def test_unmount_with_nothing_pending_succeeds(lakefs, repo, s3, mount):
    m = mount(f"lakefs://{repo}")
    (m.path / "main" / "ok.txt").write_bytes(b"fine")
    res = unmount(m.path)
    assert res.returncode == 0, res
    assert not is_mounted(m.path)
    assert s3.get_object(Bucket=repo, Key="main/ok.txt")["Body"].read() == b"fine"
