"""Mounting a prefix: `lakefuse mount lakefs://REPO/REF/PATH DIR` shows the
directory PATH of REF at DIR, and nothing outside it. Every byte is checked
through boto3 against the local lakeFS gateway.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_subdir.py
"""
import errno
import os

import pytest

from lf_helpers import errno_of, get, is_mounted, list_keys as keys


def seed(s3, repo):
    """data/ holds the files; its neighbours must stay out of sight."""
    for key, body in [("main/top.txt", b"outside"),
                      ("main/data/a.csv", b"id,v\n1,2\n"),
                      ("main/data/raw/b.bin", b"\x00\x01\x02"),
                      ("main/datax/c.txt", b"a neighbour sharing the prefix's spelling"),
                      ("main/data.txt", b"a file next to the directory")]:
        s3.put_object(Bucket=repo, Key=key, Body=body)


def test_reads_and_lists_only_the_prefix(lakefs, repo, s3, mount):
    seed(s3, repo)
    m = mount(f"lakefs://{repo}/main/data/")
    assert sorted(os.listdir(m.path)) == ["a.csv", "raw"]
    assert os.listdir(m.path / "raw") == ["b.bin"]
    assert (m.path / "a.csv").read_bytes() == b"id,v\n1,2\n"
    assert (m.path / "raw" / "b.bin").read_bytes() == b"\x00\x01\x02"
    assert os.stat(m.path / "a.csv").st_size == 9
    # Names outside the prefix do not exist here, whatever their spelling.
    for name in ["top.txt", "data", "datax", "data.txt", "c.txt", "main"]:
        assert errno_of(lambda: os.stat(m.path / name)) == errno.ENOENT, name


def test_writes_land_under_the_prefix(lakefs, repo, s3, mount):
    seed(s3, repo)
    m = mount(f"lakefs://{repo}/main/data")
    (m.path / "new.txt").write_bytes(b"written through the subdirectory mount")
    os.mkdir(m.path / "out")
    (m.path / "out" / "x.txt").write_bytes(b"deeper")
    with open(m.path / "a.csv", "ab") as f:
        f.write(b"3,4\n")
    assert get(s3, repo, "main/data/new.txt") == b"written through the subdirectory mount"
    assert get(s3, repo, "main/data/out/x.txt") == b"deeper"
    assert get(s3, repo, "main/data/a.csv") == b"id,v\n1,2\n3,4\n"
    # Nothing was written at the ref's root or beside the prefix.
    assert keys(s3, repo, "main/new") == [] and keys(s3, repo, "main/out") == []
    assert keys(s3, repo, "main/") == sorted([
        "main/top.txt", "main/data.txt", "main/datax/c.txt", "main/data/a.csv",
        "main/data/raw/b.bin", "main/data/new.txt", "main/data/out/", "main/data/out/x.txt"])
    os.unlink(m.path / "new.txt")
    assert keys(s3, repo, "main/data/new.txt") == []
    assert get(s3, repo, "main/top.txt") == b"outside"


def test_rename_inside_the_prefix(lakefs, repo, s3, mount, tmp_path):
    seed(s3, repo)
    m = mount(f"lakefs://{repo}/main/data")
    os.rename(m.path / "a.csv", m.path / "renamed.csv")
    os.rename(m.path / "raw", m.path / "cooked")
    assert sorted(os.listdir(m.path)) == ["cooked", "renamed.csv"]
    assert get(s3, repo, "main/data/renamed.csv") == b"id,v\n1,2\n"
    assert get(s3, repo, "main/data/cooked/b.bin") == b"\x00\x01\x02"
    assert keys(s3, repo, "main/data/a.csv") == [] and keys(s3, repo, "main/data/raw/") == []
    assert keys(s3, repo, "main/renamed.csv") == [] and keys(s3, repo, "main/cooked") == []
    # Out of the mount is another file system: the kernel says EXDEV and
    # the object stays where it was.
    assert errno_of(lambda: os.rename(m.path / "renamed.csv", tmp_path / "x.csv")) == errno.EXDEV
    assert get(s3, repo, "main/data/renamed.csv") == b"id,v\n1,2\n"


def test_prefix_of_a_tag_is_read_only(lakefs, repo, s3, mount):
    seed(s3, repo)
    lakefs.create_tag(repo, "v1", lakefs.commit(repo, "main", "seed"))
    m = mount(f"lakefs://{repo}/v1/data")
    assert sorted(os.listdir(m.path)) == ["a.csv", "raw"]
    assert (m.path / "a.csv").read_bytes() == b"id,v\n1,2\n"
    assert errno_of(lambda: (m.path / "n.txt").write_bytes(b"x")) == errno.EROFS
    assert errno_of(lambda: os.unlink(m.path / "a.csv")) == errno.EROFS
    assert keys(s3, repo, "main/data/") == ["main/data/a.csv", "main/data/raw/b.bin"]


def test_prefix_that_does_not_exist_on_a_branch_is_made_by_writing(lakefs, repo, s3, mount):
    seed(s3, repo)
    m = mount(f"lakefs://{repo}/main/fresh/start")
    assert os.listdir(m.path) == []
    (m.path / "first.txt").write_bytes(b"the prefix's first file")
    assert get(s3, repo, "main/fresh/start/first.txt") == b"the prefix's first file"
    assert "nothing under 'fresh/start'" in m.log()


@pytest.mark.parametrize("uri_tail,words", [
    ("v1/nope", ["nothing under 'nope'", "ref 'v1'"]),
    ("main/top.txt", ["is a file, not a directory"]),
    ("main/data/../top", ["the path 'data/../top' is not valid"]),
])
def test_bad_prefixes_fail_before_mounting(lakefs, repo, s3, mount_bg, uri_tail, words):
    seed(s3, repo)
    lakefs.create_tag(repo, "v1", lakefs.commit(repo, "main", "seed"))
    res = mount_bg(f"lakefs://{repo}/{uri_tail}")
    assert res.returncode not in (0, None), res
    for w in words:
        assert w in res.stderr, res
    assert not is_mounted(res.path)


def test_fsname_names_the_prefix(lakefs, repo, s3, mount):
    seed(s3, repo)
    m = mount(f"lakefs://{repo}/main/data/raw/")
    with open("/proc/self/mountinfo") as f:
        line = next(ln for ln in f if f" {m.path} " in ln)
    assert f"fuse.lakefuse lakefs://{repo}/main/data/raw " in line
    assert os.listdir(m.path) == ["b.bin"]


def test_verbs_and_xattrs_act_on_the_prefix(lakefs, repo, s3, mount):
    """Versioning verbs and xattrs in a subdirectory mount: status and reset
    cover the prefix only; paths are the branch's; commit takes the branch."""
    from test_versioning import lf, status_lines
    seed(s3, repo)
    _, c = lakefs.api("POST", f"/repositories/{repo}/branches/main/commits",
                      {"message": "seed"}, expect=201)
    m = mount(f"lakefs://{repo}/main/data")
    (m.path / "new.txt").write_bytes(b"new")
    s3.put_object(Bucket=repo, Key="main/top.txt", Body=b"changed outside the prefix")
    assert status_lines(m.path) == ["added data/new.txt"]
    assert os.getxattr(m.path, "user.lakefs.commit_id").decode() == c["id"]
    assert os.getxattr(m.path, "user.lakefs.ref_type") == b"branch"
    lf("reset", m.path, "-y", check=0)
    assert sorted(os.listdir(m.path)) == ["a.csv", "raw"]
    # The change outside the prefix is untouched by the reset.
    assert get(s3, repo, "main/top.txt") == b"changed outside the prefix"
    (m.path / "again.txt").write_bytes(b"again")
    cid = lf("commit", m.path, "-m", "both", check=0).stdout.split()[-1]
    assert get(s3, repo, f"{cid}/data/again.txt") == b"again"
    assert get(s3, repo, f"{cid}/top.txt") == b"changed outside the prefix"
