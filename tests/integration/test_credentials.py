"""Credentials and time under a running mount (docs/reliability.md,
"Credentials and the clock"):

- a key rotated on the gateway: operations fail with EACCES, a write's
  close() too with its data kept staged, the refusal is logged once (not
  per request); once the lakectl file named by --config holds the new
  secret the mount takes it (it reads the file again when refused, at most
  every 5 s), the staged file is stored, and `lakefuse commit` (the REST
  API) works with the new secret too;
- credentials from the environment revoked, then restored: the same, the
  log line saying the environment cannot change under a running process;
- the gateway's clock an hour off, either way: nothing fails; the log says
  so once, and requests are signed with the gateway's time (the Date of
  its refusal).
"""
import os
import re
import subprocess

import copy
import errno

import pytest

from lf_helpers import BINARY, errno_of, get, wait_until

NEW_SECRET = "rotated/Secret+Key/0123456789abcdefEXAMPLE"
REFUSED = "the gateway refuses our requests"


def client(lakefs, secret, access_key=None):
    """A boto3 client of the gateway with other credentials."""
    other = copy.copy(lakefs)
    other.secret_key = secret
    other.access_key = access_key or lakefs.access_key
    return other.s3()


def write_lakectl(path, lakefs, secret):
    tmp = path.with_suffix(".tmp")
    tmp.write_text("credentials:\n"
                   f"  access_key_id: {lakefs.access_key}\n"
                   f"  secret_access_key: \"{secret}\"\n"
                   "server:\n"
                   f"  endpoint_url: {lakefs.endpoint}\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)       # as an editor or a secrets agent would


def write_file(path, data):
    """open, write, close as a program does; the errno of the first step
    that failed, or 0."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as e:
        return e.errno
    try:
        os.write(fd, data)
    except OSError as e:
        os.close(fd)
        return e.errno
    try:
        os.close(fd)
    except OSError as e:
        return e.errno
    return 0


def lakefuse(*args, timeout=120):
    return subprocess.run([str(BINARY), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


class Refusal:
    """What a test does around a refusal of the mount's keys: before it,
    objects the mount has not read and a file open for writing with its
    bytes written; during it (check), every operation fails with EACCES,
    the file's close() too, and its bytes stay staged: the mount still
    serves them."""

    def __init__(self, m, repo, s3, tag):
        self.m, self.tag = m, tag
        for i in range(3):
            s3.put_object(Bucket=repo, Key=f"main/{tag}-unread-{i}", Body=b"u" * 10)
        self.data = os.urandom(3000)
        self.fd = os.open(m.path / f"{tag}-staged.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        assert os.write(self.fd, self.data) == len(self.data)

    def check(self):
        m, tag = self.m, self.tag
        assert errno_of(lambda: os.close(self.fd)) == errno.EACCES
        for i in range(3):
            assert errno_of(lambda: (m.path / f"{tag}-unread-{i}").read_bytes()) == errno.EACCES
        assert errno_of(lambda: os.listdir(m.path / f"{tag}-never-listed")) == errno.EACCES
        assert write_file(m.path / f"{tag}-new.bin", b"n") == errno.EACCES
        for _ in range(5):
            assert errno_of(lambda: os.stat(m.path / f"{tag}-unread-0")) == errno.EACCES
        assert (m.path / f"{tag}-staged.bin").read_bytes() == self.data


def test_rotated_key_is_read_again_from_the_lakectl_file(lakefs, repo, mount, tmp_path, s3):
    cfg = tmp_path / "lakectl.yaml"
    write_lakectl(cfg, lakefs, lakefs.secret_key)
    m = mount(f"lakefs://{repo}/main", "--config", cfg, access_key=False, secret_key=False)
    assert write_file(m.path / "before.txt", b"before") == 0
    assert get(s3, repo, "main/before.txt") == b"before"

    refusal = Refusal(m, repo, s3, "rot")
    lakefs.set_secret(lakefs.access_key, NEW_SECRET)   # rotated; the file is not yet
    refusal.check()
    log = m.log()
    assert log.count(REFUSED) == 1, m.tail(60)
    assert f"the lakectl file {cfg}" in log

    write_lakectl(cfg, lakefs, NEW_SECRET)
    wait_until(lambda: errno_of(lambda: (m.path / "rot-unread-1").read_bytes()) == 0,
               timeout=60, interval=0.5, what="the mount to take the new secret")
    assert (m.path / "rot-unread-2").read_bytes() == b"u" * 10
    assert "took new ones from the lakectl file" in m.log()
    assert NEW_SECRET not in m.log()
    # The staged file goes up at the next flush.
    r = lakefuse("flush", m.path)
    assert r.returncode == 0, r.stderr
    s3new = client(lakefs, NEW_SECRET)
    assert get(s3new, repo, "main/rot-staged.bin") == refusal.data
    assert write_file(m.path / "after.txt", b"after") == 0
    assert get(s3new, repo, "main/after.txt") == b"after"
    # The REST API (the versioning verbs) takes the new secret too.
    r = lakefuse("commit", m.path, "-m", "after the rotation")
    assert r.returncode == 0, r.stderr
    assert m.log().count(REFUSED) == 1


def test_environment_key_revoked_then_restored(lakefs, repo, mount, s3):
    m = mount(f"lakefs://{repo}/main")
    assert write_file(m.path / "before.txt", b"before") == 0
    refusal = Refusal(m, repo, s3, "rev")
    lakefs.set_secret(lakefs.access_key, None)            # revoked
    try:
        refusal.check()
        log = m.log()
        assert log.count(REFUSED) == 1, m.tail(60)
        assert "the environment, which cannot change under a running process" in log
        lakefs.restore_secret()
        wait_until(lambda: errno_of(lambda: (m.path / "rev-unread-1").read_bytes()) == 0,
                   timeout=60, interval=0.5, what="requests accepted again")
        assert lakefuse("flush", m.path).returncode == 0
        assert get(s3, repo, "main/rev-staged.bin") == refusal.data
        assert "the gateway accepts our requests again" in m.log()
    finally:
        lakefs.restore_secret()


@pytest.mark.parametrize("skew", [3600, -3600])
def test_gateway_clock_an_hour_off_is_corrected(lakefs, repo, mount, s3, skew):
    s3.put_object(Bucket=repo, Key="main/seen.txt", Body=b"seen")
    m = mount(f"lakefs://{repo}/main")
    assert (m.path / "seen.txt").read_bytes() == b"seen"
    lakefs.set_faults(clock_skew_s=skew)
    data = os.urandom(70000)
    assert write_file(m.path / "skewed.bin", data) == 0
    assert (m.path / "skewed.bin").read_bytes() == data
    assert sorted(os.listdir(m.path)) == ["seen.txt", "skewed.bin"]
    found = re.findall(r"the gateway's clock is (\d+) s (ahead of|behind) this machine's",
                       m.log())
    assert len(found) == 1, m.tail(40)
    secs, way = int(found[0][0]), found[0][1]
    assert abs(secs - abs(skew)) <= 5 and way == ("ahead of" if skew > 0 else "behind")
    assert "set this machine's clock right" in m.log()
    # Back to the machine's time: corrected again, nothing fails.
    lakefs.set_faults()
    assert write_file(m.path / "after.bin", b"after") == 0
    assert get(s3, repo, "main/skewed.bin") == data
    assert get(s3, repo, "main/after.bin") == b"after"
    assert REFUSED not in m.log()
