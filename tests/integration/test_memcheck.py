"""The daemon under valgrind's memcheck through a read and write scenario:
no invalid access, no uninitialised value used, no definite leak. The
cache is small enough that the big file's read is spliced (where 4 MiB
pipes can be had), so streams are part of it."""
import os
import re
import shutil
import signal
import subprocess

import pytest

from lf_helpers import (ROOT, MiB, det_bytes, is_mounted, sha256_bytes, splice_pipes_available,
                        wait_until)

# Always the plain build: valgrind and AddressSanitizer do not mix.
BINARY = os.path.join(ROOT, "build", "lakefuse")
pytestmark = pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind not installed")


@pytest.mark.slow
def test_read_write_scenario_is_clean_under_memcheck(lakefs, repo, s3, tmp_path):
    big = det_bytes(7, 5 * MiB + 5)
    s3.put_object(Bucket=repo, Key="main/data/big.bin", Body=big)
    s3.put_object(Bucket=repo, Key="main/data/small.txt", Body=b"small\n")
    mnt, cache, vlog, log = (tmp_path / "mnt", tmp_path / "cache", tmp_path / "vg.log",
                             tmp_path / "lakefuse.log")
    mnt.mkdir()
    env = dict(os.environ, AWS_ACCESS_KEY_ID=lakefs.access_key,
               AWS_SECRET_ACCESS_KEY=lakefs.secret_key)
    cmd = ["valgrind", "--error-exitcode=99", "--leak-check=full",
           "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
           "--track-origins=yes", f"--log-file={vlog}",
           str(BINARY), "mount", "--foreground", "--endpoint", lakefs.endpoint,
           "--cache-dir", str(cache), "--log-file", str(log), "--log-level", "debug",
           "--part-size", "5", "--cache-size", "8", f"lakefs://{repo}", str(mnt)]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: is_mounted(mnt), 60, what="the mount under valgrind")
        base = mnt / "main"
        assert sorted(os.listdir(base / "data")) == ["big.bin", "small.txt"]
        assert (base / "data" / "big.bin").read_bytes() == big
        with open(base / "data" / "big.bin", "rb") as f:
            f.seek(2 * MiB + 3)
            assert f.read(1000) == big[2 * MiB + 3:2 * MiB + 1003]
        # writes: small, multipart, append, rename, metadata, delete
        (base / "out").mkdir()
        (base / "out" / "a.txt").write_bytes(b"hello")
        with open(base / "out" / "a.txt", "ab") as f:
            f.write(b" world")
        payload = det_bytes(9, 11 * MiB)
        (base / "out" / "m.bin").write_bytes(payload)
        os.rename(base / "out" / "a.txt", base / "out" / "b.txt")
        os.chmod(base / "out" / "b.txt", 0o600)
        os.unlink(base / "data" / "small.txt")
        assert (base / "out" / "b.txt").read_bytes() == b"hello world"
    finally:
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
    got = s3.get_object(Bucket=repo, Key="main/out/m.bin")["Body"].read()
    assert sha256_bytes(got) == sha256_bytes(payload)
    assert s3.get_object(Bucket=repo, Key="main/out/b.txt")["Body"].read() == b"hello world"
    if splice_pipes_available():
        assert re.search(r"closed big\.bin after \d+ reads of \d+ bytes .*, [1-9]\d* bytes spliced",
                         log.read_text()), log.read_text()[-3000:]
    elif os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail("4 MiB pipes cannot be made here (CAP_SYS_RESOURCE or fs.pipe-max-size): "
                    "the spliced path went unchecked under memcheck")
    report = vlog.read_text()
    assert "ERROR SUMMARY: 0 errors" in report, report[-4000:]
    assert "definitely lost: 0 bytes" in report or "All heap blocks were freed" in report \
        or "definitely lost" not in report, report[-4000:]
    assert proc.returncode == 0, f"exit {proc.returncode}\n{report[-4000:]}"
