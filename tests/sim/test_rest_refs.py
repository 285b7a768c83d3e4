"""REST API subset (lakefs-gateway.md section 7) and ref semantics:
checklist lines 23-26."""
import hashlib
import re

import pytest
from botocore.exceptions import ClientError

from sim_helpers import api_meta, error_of, get_bytes, list_keys, new_name, put

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def log(lakefs, repo, ref, **params):
    q = "&".join(f"{k}={v}" for k, v in params.items())
    _, body = lakefs.api("GET", f"/repositories/{repo}/refs/{ref}/commits" + ("?" + q if q else ""),
                         expect=200)
    return body


# ---------------------------------------------------------- repositories
def test_healthcheck_204(lakefs):
    assert lakefs.api("GET", "/healthcheck")[0] == 204


def test_get_user(lakefs):
    status, body = lakefs.api("GET", "/user")
    assert status == 200 and isinstance(body, dict)


def test_repository_create_get_list_409(lakefs):
    name = new_name("rest")
    status, repo = lakefs.api("POST", "/repositories",
                              {"name": name, "storage_namespace": f"local://{name}",
                               "default_branch": "trunk"})
    assert status == 201
    assert repo["id"] == name
    assert repo["default_branch"] == "trunk"
    assert repo["storage_namespace"] == f"local://{name}"
    assert repo["read_only"] is False
    assert "creation_date" in repo
    _, got = lakefs.api("GET", f"/repositories/{name}", expect=200)
    assert got["id"] == name and got["default_branch"] == "trunk"
    status, body = lakefs.api("POST", "/repositories",
                              {"name": name, "storage_namespace": f"local://{name}",
                               "default_branch": "main"})
    assert status == 409 and "message" in body
    _, lst = lakefs.api("GET", "/repositories?amount=1000", expect=200)
    assert name in [r["id"] for r in lst["results"]]
    assert set(lst["pagination"]) >= {"has_more", "next_offset", "results", "max_per_page"}
    # the default branch exists with one initial commit
    _, br = lakefs.api("GET", f"/repositories/{name}/branches/trunk", expect=200)
    assert HEX64.match(br["commit_id"])
    assert len(log(lakefs, name, "trunk")["results"]) == 1


def test_repository_unknown_404(lakefs):
    status, body = lakefs.api("GET", f"/repositories/{new_name('nope')}")
    assert status == 404 and "message" in body


@pytest.mark.parametrize("bad", ["ab", "Upper-case", "-leading", "has_underscore", "x" * 64])
def test_repository_invalid_name_400(lakefs, bad):
    status, _ = lakefs.api("POST", "/repositories",
                           {"name": bad, "storage_namespace": "local://bad",
                            "default_branch": "main"})
    assert status == 400


def test_repository_list_pagination(lakefs):
    names = sorted(new_name("pg") for _ in range(3))
    for n in names:
        lakefs.create_repo(n)
    seen, after = [], ""
    for _ in range(1000):
        _, page = lakefs.api("GET", f"/repositories?amount=2&after={after}", expect=200)
        seen += [r["id"] for r in page["results"]]
        assert len(page["results"]) <= 2
        if not page["pagination"]["has_more"]:
            break
        after = page["pagination"]["next_offset"]
    assert seen == sorted(seen)
    assert set(names) <= set(seen)


# -------------------------------------------------------------- branches
def test_branches_create_get_list_delete(lakefs, s3, repo):
    _, main = lakefs.api("GET", f"/repositories/{repo}/branches/main", expect=200)
    assert main["id"] == "main" and HEX64.match(main["commit_id"])
    status, _ = lakefs.api("POST", f"/repositories/{repo}/branches",
                           {"name": "feature-x", "source": "main"})
    assert status == 201
    _, fx = lakefs.api("GET", f"/repositories/{repo}/branches/feature-x", expect=200)
    assert fx["commit_id"] == main["commit_id"]
    status, _ = lakefs.api("POST", f"/repositories/{repo}/branches",
                           {"name": "feature-x", "source": "main"})
    assert status == 409
    _, lst = lakefs.api("GET", f"/repositories/{repo}/branches", expect=200)
    assert [b["id"] for b in lst["results"]] == ["feature-x", "main"]
    assert "pagination" in lst
    put(s3, repo, "feature-x/f", b"x")
    assert lakefs.api("DELETE", f"/repositories/{repo}/branches/feature-x")[0] == 204
    assert lakefs.api("GET", f"/repositories/{repo}/branches/feature-x")[0] == 404
    _, lst = lakefs.api("GET", f"/repositories/{repo}/branches", expect=200)
    assert [b["id"] for b in lst["results"]] == ["main"]
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=repo, Key="feature-x/f")
    assert error_of(ei)[0] == 404
    r = s3.list_objects_v2(Bucket=repo, Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["main/"]


def test_branch_errors(lakefs, repo):
    assert lakefs.api("POST", f"/repositories/{repo}/branches",
                      {"name": "b1", "source": "no-such-ref"})[0] == 404
    assert lakefs.api("POST", f"/repositories/{repo}/branches",
                      {"name": "bad/name", "source": "main"})[0] == 400
    assert lakefs.api("GET", f"/repositories/{repo}/branches/nope")[0] == 404
    assert lakefs.api("DELETE", f"/repositories/{repo}/branches/nope")[0] == 404


# --------------------------------------------------------------- commits
def test_commit_fields_and_log_newest_first(lakefs, s3, repo):
    _, head0 = lakefs.api("GET", f"/repositories/{repo}/branches/main", expect=200)
    put(s3, repo, "main/a", b"a")
    status, c1 = lakefs.api("POST", f"/repositories/{repo}/branches/main/commits",
                            {"message": "first", "metadata": {"k": "v"}})
    assert status == 201
    assert HEX64.match(c1["id"])
    assert c1["parents"] == [head0["commit_id"]]
    assert c1["message"] == "first"
    assert c1["metadata"] == {"k": "v"}
    assert c1["committer"]
    assert isinstance(c1["creation_date"], int)
    assert "meta_range_id" in c1
    put(s3, repo, "main/b", b"b")
    c2 = lakefs.commit(repo, "main", "second")
    _, br = lakefs.api("GET", f"/repositories/{repo}/branches/main", expect=200)
    assert br["commit_id"] == c2
    body = log(lakefs, repo, "main")
    assert [c["id"] for c in body["results"]] == [c2, c1["id"], head0["commit_id"]]
    assert [c["message"] for c in body["results"]][:2] == ["second", "first"]
    _, got = lakefs.api("GET", f"/repositories/{repo}/commits/{c1['id']}", expect=200)
    assert got["id"] == c1["id"] and got["message"] == "first"
    assert lakefs.api("GET", f"/repositories/{repo}/commits/{'0' * 64}")[0] == 404


def test_log_amount_and_after(lakefs, s3, repo):
    ids = []
    for i in range(5):
        put(s3, repo, f"main/f{i}", b"x")
        ids.append(lakefs.commit(repo, "main", f"c{i}"))
    ids.reverse()
    page = log(lakefs, repo, "main", amount=2)
    assert [c["id"] for c in page["results"]] == ids[:2]
    assert page["pagination"]["has_more"] is True
    nxt = page["pagination"]["next_offset"]
    page2 = log(lakefs, repo, "main", amount=2, after=nxt)
    assert [c["id"] for c in page2["results"]] == ids[2:4]
    # the log of a commit ID starts at that commit
    page3 = log(lakefs, repo, ids[2])
    assert [c["id"] for c in page3["results"]][:3] == ids[2:5]


def test_commit_nothing_to_commit_400(lakefs, s3, repo):
    status, body = lakefs.api("POST", f"/repositories/{repo}/branches/main/commits",
                              {"message": "empty"})
    assert status == 400 and "message" in body
    status, c = lakefs.api("POST", f"/repositories/{repo}/branches/main/commits",
                           {"message": "empty ok", "allow_empty": True})
    assert status == 201 and HEX64.match(c["id"])
    put(s3, repo, "main/x", b"x")
    lakefs.commit(repo, "main")
    assert lakefs.api("POST", f"/repositories/{repo}/branches/main/commits",
                      {"message": "again"})[0] == 400


def test_commit_to_unknown_branch_404(lakefs, repo):
    assert lakefs.api("POST", f"/repositories/{repo}/branches/nope/commits",
                      {"message": "m"})[0] == 404


# ------------------------------------------------------------------ tags
def test_tags_create_list(lakefs, s3, repo):
    put(s3, repo, "main/a", b"a")
    cid = lakefs.commit(repo, "main")
    status, t = lakefs.api("POST", f"/repositories/{repo}/tags", {"id": "v1.0", "ref": cid})
    assert status == 201 and t["id"] == "v1.0" and t["commit_id"] == cid
    status, t2 = lakefs.api("POST", f"/repositories/{repo}/tags", {"id": "from-branch", "ref": "main"})
    assert status == 201 and t2["commit_id"] == cid
    assert lakefs.api("POST", f"/repositories/{repo}/tags", {"id": "v1.0", "ref": cid})[0] == 409
    assert lakefs.api("POST", f"/repositories/{repo}/tags", {"id": "x", "ref": "nope"})[0] == 404
    _, lst = lakefs.api("GET", f"/repositories/{repo}/tags", expect=200)
    assert [(t["id"], t["commit_id"]) for t in lst["results"]] == \
        [("from-branch", cid), ("v1.0", cid)]


# ------------------------------------------------------------------ diff
def test_c26_branch_diff_added_changed_removed(lakefs, s3, repo):
    put(s3, repo, "main/keep", b"k")
    put(s3, repo, "main/change", b"old")
    put(s3, repo, "main/remove", b"r")
    lakefs.commit(repo, "main")
    _, d = lakefs.api("GET", f"/repositories/{repo}/branches/main/diff", expect=200)
    assert d["results"] == []
    put(s3, repo, "main/added/new", b"new!")
    put(s3, repo, "main/change", b"newer")
    s3.delete_object(Bucket=repo, Key="main/remove")
    _, d = lakefs.api("GET", f"/repositories/{repo}/branches/main/diff", expect=200)
    got = {(x["type"], x["path"], x["path_type"]) for x in d["results"]}
    assert got == {("added", "added/new", "object"), ("changed", "change", "object"),
                   ("removed", "remove", "object")}
    sizes = {x["path"]: x.get("size_bytes") for x in d["results"]}
    assert sizes["added/new"] == 4 and sizes["change"] == 5
    assert "pagination" in d
    # add then delete of a new key is no change; rewriting equal bytes is not either
    put(s3, repo, "main/tmp", b"t")
    s3.delete_object(Bucket=repo, Key="main/tmp")
    _, d = lakefs.api("GET", f"/repositories/{repo}/branches/main/diff", expect=200)
    assert "tmp" not in {x["path"] for x in d["results"]}
    lakefs.commit(repo, "main")
    _, d = lakefs.api("GET", f"/repositories/{repo}/branches/main/diff", expect=200)
    assert d["results"] == []


def test_refs_diff(lakefs, s3, repo):
    put(s3, repo, "main/a", b"a")
    put(s3, repo, "main/b", b"b")
    c1 = lakefs.commit(repo, "main")
    put(s3, repo, "main/b", b"b2")
    put(s3, repo, "main/c", b"c")
    s3.delete_object(Bucket=repo, Key="main/a")
    c2 = lakefs.commit(repo, "main")
    _, d = lakefs.api("GET", f"/repositories/{repo}/refs/{c1}/diff/{c2}", expect=200)
    got = {(x["type"], x["path"]) for x in d["results"]}
    assert got == {("removed", "a"), ("changed", "b"), ("added", "c")}
    # lakeFS's default diff is three-dot (changes of right since the merge
    # base): nothing when right is an ancestor of left; two_dot compares trees
    _, d = lakefs.api("GET", f"/repositories/{repo}/refs/{c2}/diff/{c1}", expect=200)
    assert d["results"] == []
    _, d = lakefs.api("GET", f"/repositories/{repo}/refs/{c2}/diff/{c1}?type=two_dot",
                      expect=200)
    assert {(x["type"], x["path"]) for x in d["results"]} == \
        {("added", "a"), ("changed", "b"), ("removed", "c")}
    _, d = lakefs.api("GET", f"/repositories/{repo}/refs/main/diff/{c2}", expect=200)
    assert d["results"] == []


# --------------------------------------------------------- objects ls/stat
def test_objects_ls_and_stat(lakefs, s3, repo):
    put(s3, repo, "main/dir/a.txt", b"hello", ContentType="text/plain", Metadata={"m": "1"})
    put(s3, repo, "main/dir/sub/b", b"bb")
    put(s3, repo, "main/top", b"t")
    _, ls = lakefs.api("GET", f"/repositories/{repo}/refs/main/objects/ls?prefix=dir/&delimiter=/",
                       expect=200)
    got = [(x["path"], x["path_type"]) for x in ls["results"]]
    assert got == [("dir/a.txt", "object"), ("dir/sub/", "common_prefix")]
    obj = ls["results"][0]
    assert obj["size_bytes"] == 5
    assert obj["checksum"].strip('"') == hashlib.md5(b"hello").hexdigest()
    _, ls = lakefs.api("GET", f"/repositories/{repo}/refs/main/objects/ls", expect=200)
    assert [x["path"] for x in ls["results"]] == ["dir/a.txt", "dir/sub/b", "top"]
    _, ls = lakefs.api("GET", f"/repositories/{repo}/refs/main/objects/ls?amount=1&after=dir/a.txt",
                       expect=200)
    assert [x["path"] for x in ls["results"]] == ["dir/sub/b"]
    assert ls["pagination"]["has_more"] is True
    _, st = lakefs.api("GET", f"/repositories/{repo}/refs/main/objects/stat?path=dir/a.txt",
                       expect=200)
    assert st["path"] == "dir/a.txt" and st["path_type"] == "object"
    assert st["size_bytes"] == 5
    assert st["content_type"] == "text/plain"
    assert api_meta(st["metadata"]) == {"m": "1"}
    assert isinstance(st["mtime"], int)
    assert st["checksum"].strip('"') == hashlib.md5(b"hello").hexdigest()
    assert lakefs.api("GET", f"/repositories/{repo}/refs/main/objects/stat?path=missing")[0] == 404


def test_merge(lakefs, s3, repo):
    lakefs.create_branch(repo, "dev")
    put(s3, repo, "dev/feature", b"f")
    lakefs.commit(repo, "dev")
    status, body = lakefs.api("POST", f"/repositories/{repo}/refs/dev/merge/main",
                              {"message": "merge dev"})
    assert status in (200, 201)
    assert HEX64.match(body["reference"])
    assert get_bytes(s3, repo, "main/feature") == b"f"
    _, br = lakefs.api("GET", f"/repositories/{repo}/branches/main", expect=200)
    assert br["commit_id"] == body["reference"]


# ------------------------------------------------- 23-25. ref semantics
def test_c23_commit_freezes_content(lakefs, s3, repo):
    put(s3, repo, "main/f", b"version 1")
    put(s3, repo, "main/d/g", b"g1")
    cid = lakefs.commit(repo, "main")
    put(s3, repo, "main/f", b"version 2")
    put(s3, repo, "main/new", b"n")
    s3.delete_object(Bucket=repo, Key="main/d/g")
    lakefs.commit(repo, "main")
    put(s3, repo, "main/f", b"version 3 uncommitted")
    assert get_bytes(s3, repo, f"{cid}/f") == b"version 1"
    assert get_bytes(s3, repo, f"{cid}/d/g") == b"g1"
    assert list_keys(s3, repo, f"{cid}/")[0] == [f"{cid}/d/g", f"{cid}/f"]
    assert list_keys(s3, repo, "main/")[0] == ["main/f", "main/new"]
    assert get_bytes(s3, repo, "main/f") == b"version 3 uncommitted"
    h = s3.head_object(Bucket=repo, Key=f"{cid}/f")
    assert h["ETag"] == '"%s"' % hashlib.md5(b"version 1").hexdigest()


def test_c24_main_at_shows_committed_content_only(lakefs, s3, repo):
    put(s3, repo, "main/committed", b"c")
    lakefs.commit(repo, "main")
    put(s3, repo, "main/committed", b"changed, not committed")
    put(s3, repo, "main/staged", b"s")
    assert get_bytes(s3, repo, "main@/committed") == b"c"
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=repo, Key="main@/staged")
    assert error_of(ei) == (404, "NoSuchKey")
    assert list_keys(s3, repo, "main@/")[0] == ["main@/committed"]
    assert list_keys(s3, repo, "main/")[0] == ["main/committed", "main/staged"]
    # main$ is the staging view (= main)
    assert get_bytes(s3, repo, "main$/staged") == b"s"


def test_c25_tag_resolves_like_its_commit(lakefs, s3, repo):
    put(s3, repo, "main/a", b"tagged")
    cid = lakefs.commit(repo, "main")
    lakefs.create_tag(repo, "rel", cid)
    put(s3, repo, "main/a", b"later")
    lakefs.commit(repo, "main")
    assert get_bytes(s3, repo, "rel/a") == get_bytes(s3, repo, f"{cid}/a") == b"tagged"
    assert list_keys(s3, repo, "rel/")[0] == ["rel/a"]
    assert log(lakefs, repo, "rel")["results"][0]["id"] == cid


def test_c25_branch_from_commit_starts_with_its_content(lakefs, s3, repo):
    put(s3, repo, "main/a", b"at c1")
    put(s3, repo, "main/b", b"b")
    c1 = lakefs.commit(repo, "main")
    put(s3, repo, "main/a", b"at c2")
    s3.delete_object(Bucket=repo, Key="main/b")
    lakefs.commit(repo, "main")
    lakefs.create_branch(repo, "old", source=c1)
    _, br = lakefs.api("GET", f"/repositories/{repo}/branches/old", expect=200)
    assert br["commit_id"] == c1
    assert get_bytes(s3, repo, "old/a") == b"at c1"
    assert list_keys(s3, repo, "old/")[0] == ["old/a", "old/b"]
    # and diverges independently
    put(s3, repo, "old/a", b"on old")
    assert get_bytes(s3, repo, "main/a") == b"at c2"
    assert get_bytes(s3, repo, f"{c1}/a") == b"at c1"
    lakefs.create_branch(repo, "from-tag-src", source="main~1")
    assert get_bytes(s3, repo, "from-tag-src/a") == b"at c1"


def test_branches_are_isolated(lakefs, s3, repo):
    lakefs.create_branch(repo, "dev")
    put(s3, repo, "dev/only-dev", b"d")
    put(s3, repo, "main/only-main", b"m")
    assert list_keys(s3, repo, "dev/")[0] == ["dev/only-dev"]
    assert list_keys(s3, repo, "main/")[0] == ["main/only-main"]


def test_ambiguous_or_unknown_short_id_not_found(lakefs, s3, repo):
    put(s3, repo, "main/a", b"a")
    cid = lakefs.commit(repo, "main")
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=repo, Key="0000000/a" if not cid.startswith("0000000") else "fffffff/a")
    assert error_of(ei)[0] == 404
