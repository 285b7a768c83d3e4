"""lakefuse against answers lost after the gateway did the work (the
simulator's "lost" and "reset_mid_body" faults, aimed by rules at one step):
the outcome a user sees must be the one the gateway holds. Each test first
proves its fault fired (the simulator's faults_by_kind), then checks the
bytes on the gateway.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_lost_answers.py
"""
import os

import pytest

from lf_helpers import MiB, det_bytes, get, wait_until, list_keys as keys


def uri(repo):
    return f"lakefs://{repo}"


def aim(lakefs, operation, kind, **kw):
    """One fault on the next `operation`; returns a function that tells
    whether it fired (the rule is spent and the kind was counted)."""
    before = lakefs.stats()["faults_by_kind"].get(kind, 0)
    lakefs.set_faults(rules=[dict(operation=operation, kind=kind, **kw)])

    def fired():
        return (lakefs.faults()["rules"] == [] and
                lakefs.stats()["faults_by_kind"].get(kind, 0) > before)
    return fired


def write_file(path, data):
    """open, write, close; returns the errno of close (0: stored)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        try:
            os.close(fd)
        except OSError as e:
            return e.errno
    return 0


def test_put_whose_answer_is_lost_is_stored_and_close_succeeds(lakefs, repo, s3, mount):
    m = mount(uri(repo), "--retries", "3")
    data = det_bytes(1, 300_000)
    fired = aim(lakefs, "PutObject", "lost")
    assert write_file(m.path / "main" / "p.bin", data) == 0
    assert fired(), lakefs.faults()
    assert get(s3, repo, "main/p.bin") == data


def test_multipart_upload_whose_complete_answer_is_lost(lakefs, repo, s3, mount):
    """The gateway assembled the object, the answer never came: close()
    returns 0 and the object is stored intact (found by HEAD, not by a
    resend the gateway can only refuse)."""
    m = mount(uri(repo), "--retries", "3", "--part-size", "5")
    data = det_bytes(2, 12 * MiB + 345)
    fired = aim(lakefs, "CompleteMultipartUpload", "lost")
    rc = write_file(m.path / "main" / "mp.bin", data)
    assert fired(), lakefs.faults()
    assert get(s3, repo, "main/mp.bin") == data      # the gateway's truth
    assert rc == 0, f"close() failed with {os.strerror(rc)} though the object is stored"


@pytest.mark.parametrize("operation,kind", [("CopyObject", "lost"),
                                            ("DeleteObject", "lost"),
                                            ("DeleteObject", "reset_mid_body")])
def test_rename_whose_step_answer_is_lost(lakefs, repo, s3, mount, operation, kind):
    """A rename is a copy, then a delete of the old key; either answer
    lost: the rename succeeds and the gateway holds the new key only."""
    data = det_bytes(3, 200_000)
    s3.put_object(Bucket=repo, Key="main/old.bin", Body=data)
    m = mount(uri(repo), "--retries", "3")
    b = m.path / "main"
    assert os.path.exists(b / "old.bin")
    fired = aim(lakefs, operation, kind)
    os.rename(b / "old.bin", b / "new.bin")
    assert fired(), lakefs.faults()
    assert keys(s3, repo, "main/") == ["main/new.bin"]
    assert get(s3, repo, "main/new.bin") == data
    assert (b / "new.bin").read_bytes() == data


def test_get_reset_mid_body_reads_exact_bytes(lakefs, repo, s3, mount):
    data = det_bytes(4, 6 * MiB + 7)
    s3.put_object(Bucket=repo, Key="main/g.bin", Body=data)
    m = mount(uri(repo), "--retries", "3")
    fired = aim(lakefs, "GetObject", "reset_mid_body")
    assert (m.path / "main" / "g.bin").read_bytes() == data
    assert fired(), lakefs.faults()


def test_listing_whose_answer_is_cut_is_retried(lakefs, repo, s3, mount):
    for i in range(5):
        s3.put_object(Bucket=repo, Key=f"main/d/f{i}", Body=b"x")
    m = mount(uri(repo), "--retries", "3")
    fired = aim(lakefs, "ListObjectsV2", "reset_mid_body", path_contains=f"/{repo}")
    assert sorted(os.listdir(m.path / "main" / "d")) == [f"f{i}" for i in range(5)]
    wait_until(fired, 10, what="the cut listing")
