"""Versions from the mount: `lakefuse commit/status/log/branch/reset/flush/
refs PATH` run by the daemon serving PATH, pinned snapshots (--pin), and
lakeFS's attributes as read-only xattrs.

Every outcome is checked on the gateway: committed bytes are read back at
the commit ID the verb printed, through boto3.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_versioning.py
"""
import errno
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from lf_helpers import BINARY, errno_of, get, list_keys, wait_until

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def lf(*args, check=None, input=None, user=None, timeout=120):
    """Runs `lakefuse VERB ...`; returns CompletedProcess (text)."""
    cmd = [str(BINARY), *map(str, args)]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if check is not None:
        assert r.returncode == check, f"{cmd}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def commit(path, msg="test commit", *extra):
    r = lf("commit", path, "-m", msg, *extra, check=0)
    cid = r.stdout.strip().splitlines()[-1]
    assert HEX64.match(cid), r.stdout
    return cid


def head_of(lakefs, repo, branch="main"):
    _, b = lakefs.api("GET", f"/repositories/{repo}/branches/{branch}", expect=200)
    return b["commit_id"]


def seed_commit(lakefs, s3, repo, files):
    for k, v in files.items():
        s3.put_object(Bucket=repo, Key=f"main/{k}", Body=v)
    _, c = lakefs.api("POST", f"/repositories/{repo}/branches/main/commits",
                      {"message": "seed"}, expect=201)
    return c["id"]


def hold_open(path, data):
    """A process that writes data to path and keeps it open until killed."""
    p = subprocess.Popen(["/usr/bin/python3", "-c",
                          "import sys, time\n"
                          "f = open(sys.argv[1], 'wb'); f.write(sys.argv[2].encode()); f.flush()\n"
                          "print('ready', flush=True); time.sleep(300)",
                          str(path), data.decode()], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def status_lines(path):
    r = lf("status", path, check=0)
    return sorted(r.stdout.splitlines())


def test_commit_holds_every_closed_file(lakefs, repo, s3, mount):
    m = mount(f"lakefs://{repo}/main")
    os.mkdir(m.path / "batch")
    want = {}
    for i in range(50):
        data = os.urandom(1000 + i * 37)
        (m.path / "batch" / f"f{i:02}.bin").write_bytes(data)
        want[f"batch/f{i:02}.bin"] = data
    cid = commit(m.path / "batch", "fifty files", "--meta", "job=test", "--meta", "run=7")
    assert head_of(lakefs, repo) == cid
    for k, v in want.items():
        assert get(s3, repo, f"{cid}/{k}") == v, k
    _, c = lakefs.api("GET", f"/repositories/{repo}/commits/{cid}", expect=200)
    assert c["message"] == "fifty files"
    assert c["metadata"] == {"job": "test", "run": "7"}
    # Nothing left to commit: lakeFS's own words, and a failure.
    r = lf("commit", m.path, "-m", "again")
    assert r.returncode == 1
    assert "no changes" in r.stderr.lower(), r.stderr
    assert head_of(lakefs, repo) == cid


def test_commit_waits_for_failed_uploads_and_commits_nothing(lakefs, repo, s3, mount):
    m = mount(f"lakefs://{repo}/main", "--retries", "0")
    before = head_of(lakefs, repo)
    (m.path / "ok.txt").write_bytes(b"uploaded before the outage")
    lakefs.set_faults(rules=[dict(operation="PutObject", kind="error500", count=100000)])
    for name in ("a.txt", "b.txt"):
        with pytest.raises(OSError) as e:
            with open(m.path / name, "wb") as f:
                f.write(name.encode() * 10)
        assert e.value.errno == errno.EIO
    assert set(status_lines(m.path)) >= {"pending a.txt", "pending b.txt", "added ok.txt"}
    r = lf("commit", m.path, "-m", "during the outage")
    assert r.returncode == 1
    assert "a.txt" in r.stderr and "b.txt" in r.stderr and "nothing committed" in r.stderr
    assert head_of(lakefs, repo) == before
    lakefs.set_faults()
    cid = commit(m.path, "after the outage")
    assert get(s3, repo, f"{cid}/a.txt") == b"a.txt" * 10
    assert get(s3, repo, f"{cid}/b.txt") == b"b.txt" * 10
    assert get(s3, repo, f"{cid}/ok.txt") == b"uploaded before the outage"
    assert status_lines(m.path) == []


def test_status_names_every_kind_of_change(lakefs, repo, s3, mount):
    seed_commit(lakefs, s3, repo, {"keep.txt": b"k", "edit.txt": b"old", "gone.txt": b"g",
                                   "sub/x.txt": b"x"})
    m = mount(f"lakefs://{repo}/main")
    (m.path / "edit.txt").write_bytes(b"new")
    os.unlink(m.path / "gone.txt")
    (m.path / "new.txt").write_bytes(b"n")
    # Held open by another process: a descriptor of ours would be closed
    # (and so flushed) in every child the test starts.
    holder = hold_open(m.path / "sub" / "open.txt", b"not closed yet")
    try:
        lines = status_lines(m.path)
        assert "open sub/open.txt" in lines, lines
        assert {"changed edit.txt", "removed gone.txt", "added new.txt"} <= set(lines), lines
        assert not any("keep.txt" in ln for ln in lines)
        # Under a directory: only what is there.
        assert "open sub/open.txt" in status_lines(m.path / "sub")
        assert not any("new.txt" in ln for ln in status_lines(m.path / "sub"))
        # A commit leaves the open file's unsaved writes out and says so.
        r = lf("commit", m.path, "-m", "with one open", check=0)
        assert "sub/open.txt" in r.stderr and "open for writing" in r.stderr
    finally:
        holder.kill()
        holder.wait()
    cid = r.stdout.strip().splitlines()[-1]
    assert get(s3, repo, f"{cid}/new.txt") == b"n"
    assert get(s3, repo, f"{cid}/edit.txt") == b"new"
    assert list_keys(s3, repo, f"{cid}/gone.txt") == []


def test_log_lists_commits_newest_first(lakefs, repo, s3, mount):
    m = mount(f"lakefs://{repo}/main")
    (m.path / "one").write_bytes(b"1")
    c1 = commit(m.path, "first change")
    (m.path / "two").write_bytes(b"2")
    c2 = commit(m.path / "two", "second change\nwith a body")
    r = lf("log", m.path, check=0)
    lines = r.stdout.splitlines()
    assert lines[0].startswith(c2 + " ") and lines[0].endswith("second change"), lines
    assert lines[1].startswith(c1 + " ") and lines[1].endswith("first change"), lines
    assert re.match(r"^[0-9a-f]{64} \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", lines[0])
    assert lf("log", m.path, "-n", "1", check=0).stdout.splitlines() == lines[:1]
    # Any ref: the log of a commit starts there.
    m2 = mount(f"lakefs://{repo}/{c1}")
    assert lf("log", m2.path, "-n", "1", check=0).stdout.split()[0] == c1


def test_branch_appears_at_once_with_the_files(lakefs, repo, s3, mount):
    m = mount(f"lakefs://{repo}", "--repo-ttl", "60")
    assert sorted(os.listdir(m.path)) == ["main"]
    assert errno_of(lambda: os.stat(m.path / "exp")) == errno.ENOENT  # cached as absent
    (m.path / "main" / "data.csv").write_bytes(b"a,b\n1,2\n")
    commit(m.path / "main", "data")
    r = lf("branch", m.path / "main" / "data.csv", "exp", check=0)
    assert "exp" in r.stdout
    assert sorted(os.listdir(m.path)) == ["exp", "main"]
    assert (m.path / "exp" / "data.csv").read_bytes() == b"a,b\n1,2\n"
    assert head_of(lakefs, repo, "exp") == head_of(lakefs, repo, "main")
    r = lf("branch", m.path / "main", "exp")
    assert r.returncode == 1 and "already exists" in r.stderr


def test_reset_restores_committed_bytes_at_once(lakefs, repo, s3, mount):
    seed_commit(lakefs, s3, repo, {"a.txt": b"committed a", "d/b.txt": b"committed b",
                                   "d/c.txt": b"committed c", "top.txt": b"committed top"})
    # A long TTL: only the reset's own invalidation can make this pass.
    m = mount(f"lakefs://{repo}/main", "--branch-ttl", "300")
    p = m.path
    (p / "a.txt").write_bytes(b"changed a")
    (p / "d" / "b.txt").write_bytes(b"changed b")
    os.unlink(p / "d" / "c.txt")
    (p / "d" / "new.txt").write_bytes(b"added")
    (p / "top.txt").write_bytes(b"changed top")
    assert (p / "a.txt").read_bytes() == b"changed a"

    lf("reset", p / "a.txt", "-y", check=0)
    assert (p / "a.txt").read_bytes() == b"committed a"
    assert os.stat(p / "a.txt").st_size == len(b"committed a")
    assert (p / "d" / "b.txt").read_bytes() == b"changed b"  # not touched

    os.mkdir(p / "d" / "newdir")
    (p / "d" / "newdir" / "n.txt").write_bytes(b"in a new directory")
    inside = subprocess.Popen(["sleep", "300"], cwd=p / "d")  # a shell sitting in d
    try:
        lf("reset", p / "d", "-y", check=0)
        # d still exists, so its users keep a working directory.
        assert os.readlink(f"/proc/{inside.pid}/cwd") == str(p / "d")
    finally:
        inside.kill()
        inside.wait()
    assert sorted(os.listdir(p / "d")) == ["b.txt", "c.txt"]
    assert errno_of(lambda: os.stat(p / "d" / "newdir")) == errno.ENOENT
    assert (p / "d" / "b.txt").read_bytes() == b"committed b"
    assert (p / "d" / "c.txt").read_bytes() == b"committed c"
    assert (p / "top.txt").read_bytes() == b"changed top"

    (p / "extra.txt").write_bytes(b"x")
    lf("reset", p, "-y", check=0)
    assert sorted(os.listdir(p)) == ["a.txt", "d", "top.txt"]
    assert (p / "top.txt").read_bytes() == b"committed top"
    assert status_lines(p) == []
    assert get(s3, repo, "main/top.txt") == b"committed top"


def test_reset_drops_staged_copies_that_failed_to_upload(lakefs, repo, s3, mount):
    seed_commit(lakefs, s3, repo, {"f.txt": b"committed"})
    m = mount(f"lakefs://{repo}/main", "--retries", "0")
    lakefs.set_faults(rules=[dict(operation="PutObject", kind="error500", count=100000)])
    with pytest.raises(OSError):
        with open(m.path / "f.txt", "wb") as f:
            f.write(b"never uploaded")
    # close() returns before the kernel's release of the handle reaches
    # the daemon, and reset keeps what a handle still holds: wait for it.
    wait_until(lambda: status_lines(m.path) == ["pending f.txt"], 30,
               what="f.txt pending and no longer open")
    lf("reset", m.path / "f.txt", "-y", check=0)
    lakefs.set_faults()
    assert "pending f.txt" not in status_lines(m.path)
    assert (m.path / "f.txt").read_bytes() == b"committed"
    # Nothing comes back later (unmount flushes what is staged).
    m.unmount()
    assert get(s3, repo, "main/f.txt") == b"committed"


def test_flush_uploads_and_reports(lakefs, repo, s3, mount):
    m = mount(f"lakefs://{repo}/main", "--retries", "0")
    lakefs.set_faults(rules=[dict(operation="PutObject", kind="error500", count=100000)])
    with pytest.raises(OSError):
        (m.path / "late.txt").write_bytes(b"late")
    r = lf("flush", m.path)
    assert r.returncode == 1 and "late.txt" in r.stderr
    lakefs.set_faults()
    lf("flush", m.path, check=0)
    assert get(s3, repo, "main/late.txt") == b"late"


def test_pinned_mount_stays_while_the_branch_moves(lakefs, repo, s3, mount):
    c1 = seed_commit(lakefs, s3, repo, {"v.txt": b"version 1"})
    m = mount(f"lakefs://{repo}/main", "--pin")
    assert m.log().count(c1) >= 1
    s3.put_object(Bucket=repo, Key="main/v.txt", Body=b"version 2")
    s3.put_object(Bucket=repo, Key="main/w.txt", Body=b"new")
    lakefs.api("POST", f"/repositories/{repo}/branches/main/commits", {"message": "2"},
               expect=201)
    time.sleep(1.5)  # past every TTL
    assert (m.path / "v.txt").read_bytes() == b"version 1"
    assert sorted(os.listdir(m.path)) == ["v.txt"]
    assert os.getxattr(m.path, "user.lakefs.commit_id").decode() == c1
    assert os.getxattr(m.path, "user.lakefs.ref_type").decode() == "commit"
    assert errno_of(lambda: (m.path / "x").write_bytes(b"x")) == errno.EROFS
    r = lf("status", m.path, check=0)
    assert r.stdout == ""


def test_xattrs_name_the_commit_and_the_object(lakefs, repo, s3, mount):
    c1 = seed_commit(lakefs, s3, repo, {"plain.txt": b"p"})
    s3.put_object(Bucket=repo, Key="main/meta.csv", Body=b"a,b\n", ContentType="text/csv",
                  Metadata={"Color": "blue", "owner": "data-team"})
    lakefs.api("POST", f"/repositories/{repo}/tags", {"id": "v1", "ref": c1}, expect=201)
    m = mount(f"lakefs://{repo}")
    main = m.path / "main"
    assert os.getxattr(main, "user.lakefs.ref_type") == b"branch"
    assert os.getxattr(main, "user.lakefs.commit_id").decode() == head_of(lakefs, repo)
    assert os.getxattr(m.path / "v1", "user.lakefs.ref_type") == b"tag"
    assert os.getxattr(m.path / "v1", "user.lakefs.commit_id").decode() == c1
    assert os.getxattr(m.path / c1, "user.lakefs.ref_type") == b"commit"
    assert set(os.listxattr(main)) == {"user.lakefs.commit_id", "user.lakefs.ref_type"}

    f = main / "meta.csv"
    etag = s3.head_object(Bucket=repo, Key="main/meta.csv")["ETag"].strip('"')
    assert os.getxattr(f, "user.lakefs.etag").decode() == etag
    assert os.getxattr(f, "user.lakefs.content_type") == b"text/csv"
    assert os.getxattr(f, "user.lakefs.meta.color") == b"blue"
    assert os.getxattr(f, "user.lakefs.meta.owner") == b"data-team"
    names = set(os.listxattr(f))
    assert {"user.lakefs.etag", "user.lakefs.content_type", "user.lakefs.meta.color",
            "user.lakefs.meta.owner"} <= names
    assert not any(n.endswith((".mode", ".mtime", ".uid", ".gid")) for n in names)
    # A file written through the mount: its POSIX metadata is not a user key.
    (main / "mine.txt").write_bytes(b"m")
    assert not any(n.startswith("user.lakefs.meta.") for n in os.listxattr(main / "mine.txt"))
    for path, name in [(f, "user.lakefs.meta.nope"), (main, "user.lakefs.etag"),
                       (f, "user.other"), (f, "security.selinux")]:
        assert errno_of(lambda: os.getxattr(path, name)) == errno.ENODATA, name
    # Read-only.
    assert errno_of(lambda: os.setxattr(f, "user.lakefs.etag", b"x")) in (errno.ENOTSUP,
                                                                           errno.EPERM)


def test_refs_lists_branches_and_tags_with_commits(lakefs, repo, s3, mount):
    c1 = seed_commit(lakefs, s3, repo, {"a": b"a"})
    lakefs.api("POST", f"/repositories/{repo}/tags", {"id": "v1", "ref": c1}, expect=201)
    lakefs.api("POST", f"/repositories/{repo}/branches", {"name": "dev", "source": "main"},
               expect=201)
    m = mount(f"lakefs://{repo}/main")
    lines = lf("refs", m.path, check=0).stdout.splitlines()
    assert f"branch main {c1}" in lines and f"branch dev {c1}" in lines
    assert f"tag v1 {c1}" in lines


def test_verbs_outside_a_mount_and_on_the_wrong_ref(lakefs, repo, s3, mount, tmp_path):
    r = lf("status", tmp_path)
    assert r.returncode == 1 and "not inside a lakefuse mount" in r.stderr
    r = lf("commit", tmp_path)
    assert r.returncode == 2 and "-m" in r.stderr
    c1 = seed_commit(lakefs, s3, repo, {"a": b"a"})
    m = mount(f"lakefs://{repo}/{c1}")
    r = lf("commit", m.path, "-m", "x")
    assert r.returncode == 1 and "not a branch" in r.stderr
    m2 = mount(f"lakefs://{repo}")
    r = lf("status", m2.path)
    assert r.returncode == 1 and "not inside a ref" in r.stderr


def test_other_users_may_read_but_not_change(lakefs, repo, s3, mount):
    # A mount point other users can reach (pytest's directories are 0700).
    top = tempfile.mkdtemp(prefix="lf-others-")
    os.chmod(top, 0o755)
    os.mkdir(os.path.join(top, "mnt"))
    m = mount(f"lakefs://{repo}/main", "-o", "allow_other", mountpoint=os.path.join(top, "mnt"))
    (m.path / "f.txt").write_bytes(b"f")
    # The mount's root is the mounting user's: others may look, not write.
    r = lf("status", m.path, user=65534)
    assert r.returncode == 0, r.stderr
    assert "added f.txt" in r.stdout
    r = lf("commit", m.path, "-m", "not mine", user=65534)
    assert r.returncode == 1 and "permission denied" in r.stderr
    assert lf("log", m.path, user=65534).returncode == 0
    m.unmount()
    shutil.rmtree(top)


def test_a_commit_whose_answer_is_lost_is_still_reported(lakefs, repo, s3, mount):
    m = mount(f"lakefs://{repo}/main")
    (m.path / "f.txt").write_bytes(b"data")
    lakefs.set_faults(rules=[dict(operation="API", path_contains="/commits", kind="lost",
                                  count=1)])
    r = lf("commit", m.path, "-m", "lost answer", check=0)
    cid = r.stdout.strip().splitlines()[-1]
    assert lakefs.faults()["rules"] == []      # the fault did fire
    assert head_of(lakefs, repo) == cid
    assert get(s3, repo, f"{cid}/f.txt") == b"data"
    assert "answer was lost" in m.log()
