"""REST endpoints behind lakefuse's versioning verbs (commit, status, log,
branch, reset, pinned mounts, xattrs from object stat), held to what
treeverse/lakeFS's source does: pkg/api/controller.go, api/swagger.yml
(whose request validator runs before the controller), pkg/catalog and
pkg/graveler. test_rest_refs.py covers the basic shapes; this file covers
reset, the exact error answers, pagination edges and metadata keys. Every
test checks the bytes the S3 gateway serves afterwards where a change of
state is involved."""
import base64
import hashlib
import re
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from sim_helpers import error_of, get_bytes, list_keys, new_name, put

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def head(lakefs, repo, branch="main"):
    _, br = lakefs.api("GET", f"/repositories/{repo}/branches/{branch}", expect=200)
    return br["commit_id"]


def reset(lakefs, repo, branch, body):
    return lakefs.api("PUT", f"/repositories/{repo}/branches/{branch}", body)


def diff(lakefs, repo, branch="main", query=""):
    _, d = lakefs.api("GET", f"/repositories/{repo}/branches/{branch}/diff{query}", expect=200)
    return d


def missing(s3, repo, key):
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=repo, Key=key)
    return error_of(ei) == (404, "NoSuchKey")


def raw_post(lakefs, path, body):
    """POST returning (status, content type, raw body): create-branch
    answers plain text, which lakefs.api would try to parse as JSON."""
    import json
    tok = base64.b64encode(f"{lakefs.access_key}:{lakefs.secret_key}".encode()).decode()
    req = urllib.request.Request(lakefs.endpoint + "/api/v1" + path,
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": "Basic " + tok,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


@pytest.fixture
def committed(lakefs, s3, repo):
    """main with a/1, a/2, b/1 and top committed; returns the commit ID."""
    for k in ("a/1", "a/2", "b/1", "top"):
        put(s3, repo, f"main/{k}", f"committed {k}".encode())
    return lakefs.commit(repo, "main", "base")


# ------------------------------------------------------------------ reset
def test_reset_object_restores_committed_bytes_and_deletions(lakefs, s3, repo, committed):
    put(s3, repo, "main/a/1", b"changed")
    put(s3, repo, "main/new", b"uncommitted")
    s3.delete_object(Bucket=repo, Key="main/a/2")
    status, body = reset(lakefs, repo, "main", {"type": "object", "path": "a/1"})
    assert (status, body) == (204, None)
    assert get_bytes(s3, repo, "main/a/1") == b"committed a/1"
    assert s3.head_object(Bucket=repo, Key="main/a/1")["ETag"] == \
        '"%s"' % hashlib.md5(b"committed a/1").hexdigest()
    # the other changes stay
    assert get_bytes(s3, repo, "main/new") == b"uncommitted"
    assert missing(s3, repo, "main/a/2")
    # an uncommitted new object is dropped, a staged deletion undone
    assert reset(lakefs, repo, "main", {"type": "object", "path": "new"})[0] == 204
    assert missing(s3, repo, "main/new")
    assert reset(lakefs, repo, "main", {"type": "object", "path": "a/2"})[0] == 204
    assert get_bytes(s3, repo, "main/a/2") == b"committed a/2"
    assert diff(lakefs, repo)["results"] == []
    assert list_keys(s3, repo, "main/")[0] == ["main/a/1", "main/a/2", "main/b/1", "main/top"]
    assert head(lakefs, repo) == committed
    assert lakefs.api("POST", f"/repositories/{repo}/branches/main/commits",
                      {"message": "nothing left"})[0] == 400


def test_reset_object_without_uncommitted_change_is_a_204_no_op(lakefs, s3, repo, committed):
    # graveler.ResetKey: a key not in staging is "nothing to do", not an error
    put(s3, repo, "main/b/1", b"keep me")
    for path in ("a/1", "never-existed"):
        assert reset(lakefs, repo, "main", {"type": "object", "path": path}) == (204, None)
    assert get_bytes(s3, repo, "main/a/1") == b"committed a/1"
    assert get_bytes(s3, repo, "main/b/1") == b"keep me"
    assert missing(s3, repo, "main/never-existed")
    assert [(x["type"], x["path"]) for x in diff(lakefs, repo)["results"]] == [("changed", "b/1")]


def test_reset_common_prefix(lakefs, s3, repo, committed):
    put(s3, repo, "main/a/1", b"changed")
    put(s3, repo, "main/a/new", b"n")
    s3.delete_object(Bucket=repo, Key="main/a/2")
    put(s3, repo, "main/ab", b"outside the prefix")
    put(s3, repo, "main/b/1", b"changed too")
    assert reset(lakefs, repo, "main", {"type": "common_prefix", "path": "a/"}) == (204, None)
    assert get_bytes(s3, repo, "main/a/1") == b"committed a/1"
    assert get_bytes(s3, repo, "main/a/2") == b"committed a/2"
    assert missing(s3, repo, "main/a/new")
    assert get_bytes(s3, repo, "main/ab") == b"outside the prefix"
    assert get_bytes(s3, repo, "main/b/1") == b"changed too"
    assert sorted((x["type"], x["path"]) for x in diff(lakefs, repo)["results"]) == \
        [("added", "ab"), ("changed", "b/1")]
    # the prefix is a plain byte prefix: "a" also takes "ab"
    assert reset(lakefs, repo, "main", {"type": "common_prefix", "path": "a"})[0] == 204
    assert missing(s3, repo, "main/ab")
    assert [x["path"] for x in diff(lakefs, repo)["results"]] == ["b/1"]


@pytest.mark.parametrize("body", [{"type": "reset"}, {"type": "common_prefix"},
                                  {"type": "common_prefix", "path": ""}])
def test_reset_whole_branch(lakefs, s3, repo, committed, body):
    # ResetEntries does not validate the path: an empty prefix is everything
    put(s3, repo, "main/a/1", b"changed")
    put(s3, repo, "main/z/new", b"n")
    s3.delete_object(Bucket=repo, Key="main/top")
    assert reset(lakefs, repo, "main", body) == (204, None)
    assert list_keys(s3, repo, "main/")[0] == ["main/a/1", "main/a/2", "main/b/1", "main/top"]
    for k in ("a/1", "a/2", "b/1", "top"):
        assert get_bytes(s3, repo, f"main/{k}") == f"committed {k}".encode()
    assert diff(lakefs, repo)["results"] == []
    assert head(lakefs, repo) == committed
    # the branch keeps working after the reset
    put(s3, repo, "main/after", b"x")
    assert lakefs.commit(repo, "main") != committed
    assert get_bytes(s3, repo, "main/after") == b"x"


def test_reset_keeps_other_branches(lakefs, s3, repo, committed):
    lakefs.create_branch(repo, "dev")
    put(s3, repo, "dev/a/1", b"dev change")
    put(s3, repo, "main/a/1", b"main change")
    assert reset(lakefs, repo, "main", {"type": "reset"})[0] == 204
    assert get_bytes(s3, repo, "main/a/1") == b"committed a/1"
    assert get_bytes(s3, repo, "dev/a/1") == b"dev change"


def test_reset_survives_restart(lakefs, s3, repo, committed):
    put(s3, repo, "main/a/1", b"changed")
    put(s3, repo, "main/new", b"n")
    assert reset(lakefs, repo, "main", {"type": "object", "path": "a/1"})[0] == 204
    lakefs.restart(kill9=True)
    s3 = lakefs.s3()
    assert get_bytes(s3, repo, "main/a/1") == b"committed a/1"
    assert get_bytes(s3, repo, "main/new") == b"n"


def test_reset_errors(lakefs, s3, repo, committed):
    put(s3, repo, "main/a/1", b"changed")
    lakefs.create_tag(repo, "rel", committed)
    lakefs.create_tag(repo, "v1.0", committed)
    cases = [
        ("main", {"type": "bogus", "path": "a/1"}, 400),        # swagger enum
        ("main", {"path": "a/1"}, 400),                          # type is required
        ("main", {"type": "object"}, 400),                       # ErrPathRequiredValue
        ("main", {"type": "object", "path": ""}, 400),
        ("nope", {"type": "object", "path": "a/1"}, 404),        # branch not found
        ("nope", {"type": "reset"}, 404),
        ("nope", {"type": "common_prefix", "path": "a/"}, 404),
        ("rel", {"type": "reset"}, 404),                         # a tag is no branch
        (committed, {"type": "reset"}, 404),
        ("v1.0", {"type": "reset"}, 400),                        # not a valid branch ID
    ]
    for branch, body, want in cases:
        status, answer = reset(lakefs, repo, branch, body)
        assert status == want, (branch, body, status, answer)
        assert isinstance(answer, dict) and answer["message"], (branch, body)
    status, answer = lakefs.api("PUT", f"/repositories/{new_name('nope')}/branches/main",
                                {"type": "reset"})
    assert status == 404 and answer["message"] == "repository not found"
    _, answer = reset(lakefs, repo, "main", {"type": "object"})
    assert answer["message"] == "argument path: missing path: required value: validation error"
    # nothing was reset by any of them
    assert get_bytes(s3, repo, "main/a/1") == b"changed"


# ----------------------------------------------------------------- commit
def test_commit_no_changes_answer(lakefs, s3, repo, committed):
    url = f"/repositories/{repo}/branches/main/commits"
    assert lakefs.api("POST", url, {"message": "m"}) == (400, {"message": "commit: no changes"})
    # staged writes that cancel out are no change either
    put(s3, repo, "main/tmp", b"t")
    s3.delete_object(Bucket=repo, Key="main/tmp")
    assert lakefs.api("POST", url, {"message": "m"}) == (400, {"message": "commit: no changes"})
    assert head(lakefs, repo) == committed
    status, c = lakefs.api("POST", url, {"message": "empty", "allow_empty": True})
    assert status == 201 and HEX64.match(c["id"]) and c["parents"] == [committed]
    assert get_bytes(s3, repo, f"{c['id']}/top") == b"committed top"


def test_commit_metadata_round_trip(lakefs, s3, repo):
    md = {"author": "ada", "ticket": "LF-1", "empty": "", "unicode": "zürich ✓"}
    put(s3, repo, "main/f", b"x")
    status, c = lakefs.api("POST", f"/repositories/{repo}/branches/main/commits",
                           {"message": "with metadata", "metadata": md})
    assert status == 201 and c["metadata"] == md
    _, got = lakefs.api("GET", f"/repositories/{repo}/commits/{c['id']}", expect=200)
    assert got["metadata"] == md and got["message"] == "with metadata"
    _, lg = lakefs.api("GET", f"/repositories/{repo}/refs/main/commits?amount=1", expect=200)
    assert lg["results"][0]["id"] == c["id"] and lg["results"][0]["metadata"] == md
    # no metadata: an empty object, never null
    put(s3, repo, "main/g", b"y")
    _, c2 = lakefs.api("POST", f"/repositories/{repo}/branches/main/commits", {"message": "plain"},
                       expect=201)
    assert c2["metadata"] == {}
    assert c2["parents"] == [c["id"]] and c2["generation"] == c["generation"] + 1


def test_commit_of_staged_deletions(lakefs, s3, repo, committed):
    s3.delete_object(Bucket=repo, Key="main/a/1")
    s3.delete_object(Bucket=repo, Key="main/top")
    d = diff(lakefs, repo)["results"]
    assert [(x["type"], x["path"]) for x in d] == [("removed", "a/1"), ("removed", "top")]
    c = lakefs.commit(repo, "main", "deletions")
    assert head(lakefs, repo) == c
    assert list_keys(s3, repo, f"{c}/")[0] == [f"{c}/a/2", f"{c}/b/1"]
    assert list_keys(s3, repo, "main@/")[0] == ["main@/a/2", "main@/b/1"]
    assert missing(s3, repo, f"{c}/top")
    assert get_bytes(s3, repo, f"{committed}/top") == b"committed top"
    assert diff(lakefs, repo)["results"] == []
    _, d = lakefs.api("GET", f"/repositories/{repo}/refs/{committed}/diff/{c}", expect=200)
    assert [(x["type"], x["path"]) for x in d["results"]] == [("removed", "a/1"), ("removed", "top")]


def test_commit_errors(lakefs, s3, repo, committed):
    put(s3, repo, "main/x", b"x")
    lakefs.create_tag(repo, "rel", committed)
    lakefs.create_tag(repo, "v1.0", committed)
    url = "/repositories/%s/branches/%s/commits"
    # a tag or commit ID in the branch slot: "branch not found" when it is a
    # valid branch ID, else the branch ID validation error
    for ref, want in (("rel", 404), (committed, 404), ("nope", 404), ("v1.0", 400),
                      ("main~1", 400)):
        status, body = lakefs.api("POST", url % (repo, ref), {"message": "m"})
        assert status == want, (ref, status, body)
    # (lakeFS runs the prepare-commit hook on the ref first: for a ref that
    # resolves to nothing its 404 carries the hook's message instead)
    assert lakefs.api("POST", url % (repo, "rel"), {"message": "m"}) == \
        (404, {"message": "branch not found"})
    assert lakefs.api("POST", url % (repo, "v1.0"), {"message": "m"}) == \
        (400, {"message": "argument branch: branch id: invalid value: validation error"})
    assert lakefs.api("POST", url % (new_name("nope"), "main"), {"message": "m"})[0] == 404
    assert lakefs.api("POST", url % (repo, "main"), {})[0] == 400           # message required
    assert lakefs.api("POST", url % (repo, "main"), {"message": "m", "metadata": {"k": 1}})[0] \
        == 400
    assert head(lakefs, repo) == committed
    assert get_bytes(s3, repo, "main/x") == b"x"
    assert get_bytes(s3, repo, "rel/top") == b"committed top"


# ------------------------------------------------------------ branch diff
def test_branch_diff_prefix_and_pagination(lakefs, s3, repo, committed):
    for i in range(5):
        put(s3, repo, f"main/a/n{i}", b"n" * i)
    put(s3, repo, "main/b/1", b"changed")
    s3.delete_object(Bucket=repo, Key="main/a/1")
    d = diff(lakefs, repo, query="?prefix=a/")
    assert [(x["type"], x["path"]) for x in d["results"]] == \
        [("removed", "a/1")] + [("added", f"a/n{i}") for i in range(5)]
    for x in d["results"]:
        assert set(x) == {"type", "path", "path_type", "size_bytes"}
        assert x["path_type"] == "object"
    sizes = {x["path"]: x["size_bytes"] for x in d["results"]}
    # a removal is a tombstone in lakeFS's staging area: no entry, size 0
    assert sizes == {"a/1": 0, **{f"a/n{i}": i for i in range(5)}}
    assert d["pagination"] == {"has_more": False, "next_offset": "", "results": 6,
                               "max_per_page": 1000}
    seen, after = [], ""
    for _ in range(10):
        page = diff(lakefs, repo, query=f"?amount=2&after={after}")
        seen += [x["path"] for x in page["results"]]
        assert len(page["results"]) <= 2
        if not page["pagination"]["has_more"]:
            break
        after = page["pagination"]["next_offset"]
        assert after == page["results"][-1]["path"]
    assert seen == ["a/1"] + [f"a/n{i}" for i in range(5)] + ["b/1"]
    page = diff(lakefs, repo, query="?prefix=a/&after=a/n3")
    assert [x["path"] for x in page["results"]] == ["a/n4"]
    assert diff(lakefs, repo, query="?prefix=zzz")["results"] == []


def test_branch_diff_amount_limits(lakefs, s3, repo, committed):
    put(s3, repo, "main/a/1", b"changed")
    base = f"/repositories/{repo}/branches/main/diff"
    assert lakefs.api("GET", base + "?amount=1000")[0] == 200
    # swagger's PaginationAmount: maximum 1000, minimum -1; the request
    # validator rejects anything else before the controller sees it
    for bad in ("1001", "-2", "x"):
        status, body = lakefs.api("GET", base + "?amount=" + bad)
        assert status == 400 and body["message"], bad
    for dflt in ("0", "-1"):
        assert len(diff(lakefs, repo, query="?amount=" + dflt)["results"]) == 1


def test_branch_diff_delimiter(lakefs, s3, repo, committed):
    put(s3, repo, "main/a/1", b"changed")
    put(s3, repo, "main/a/sub/deep", b"d")
    s3.delete_object(Bucket=repo, Key="main/b/1")
    put(s3, repo, "main/top", b"changed top")
    put(s3, repo, "main/zz", b"z")
    d = diff(lakefs, repo, query="?delimiter=/")
    assert d["results"] == [
        {"type": "prefix_changed", "path": "a/", "path_type": "common_prefix"},
        {"type": "prefix_changed", "path": "b/", "path_type": "common_prefix"},
        {"type": "changed", "path": "top", "path_type": "object", "size_bytes": 11},
        {"type": "added", "path": "zz", "path_type": "object", "size_bytes": 1},
    ]
    d = diff(lakefs, repo, query="?prefix=a/&delimiter=/")
    assert [(x["type"], x["path"], x["path_type"]) for x in d["results"]] == \
        [("changed", "a/1", "object"), ("prefix_changed", "a/sub/", "common_prefix")]
    # pages across common prefixes; after a common prefix its whole subtree is skipped
    page = diff(lakefs, repo, query="?delimiter=/&amount=1")
    assert [x["path"] for x in page["results"]] == ["a/"]
    assert page["pagination"]["next_offset"] == "a/"
    page = diff(lakefs, repo, query="?delimiter=/&amount=2&after=a/")
    assert [x["path"] for x in page["results"]] == ["b/", "top"]
    assert page["pagination"] == {"has_more": True, "next_offset": "top", "results": 2,
                                  "max_per_page": 1000}


def test_branch_diff_errors(lakefs, repo):
    assert lakefs.api("GET", f"/repositories/{repo}/branches/nope/diff")[0] == 404
    assert lakefs.api("GET", f"/repositories/{repo}/branches/v1.0/diff")[0] == 400
    assert lakefs.api("GET", f"/repositories/{new_name('nope')}/branches/main/diff")[0] == 404


# -------------------------------------------------------------------- log
@pytest.fixture
def history(lakefs, s3, repo):
    """Three commits on main after the initial one; tag rel on the middle.
    Returns [c3, c2, c1, initial] (newest first)."""
    ids = [head(lakefs, repo)]
    for i in range(1, 4):
        put(s3, repo, "main/f", f"v{i}".encode())
        ids.append(lakefs.commit(repo, "main", f"c{i}"))
    lakefs.create_tag(repo, "rel", ids[2])
    return ids[::-1]


def log_ids(lakefs, repo, ref, query=""):
    _, body = lakefs.api("GET", f"/repositories/{repo}/refs/{ref}/commits{query}", expect=200)
    return [c["id"] for c in body["results"]], body["pagination"]


def test_log_of_every_kind_of_ref(lakefs, s3, repo, history):
    c3, c2, c1, c0 = history
    assert log_ids(lakefs, repo, "main")[0] == [c3, c2, c1, c0]
    for ref in ("rel", c2, c2[:10], "main~1", "main^1", f"{c3}~1", "rel~0"):
        assert log_ids(lakefs, repo, ref)[0] == [c2, c1, c0], ref
    assert log_ids(lakefs, repo, "main~3")[0] == [c0]
    # uncommitted writes do not show in the log; main@ logs like main, main@~1 is
    # no ref (@ must be the only modifier)
    put(s3, repo, "main/f", b"staged")
    assert log_ids(lakefs, repo, "main@")[0] == [c3, c2, c1, c0]
    assert lakefs.api("GET", f"/repositories/{repo}/refs/main@~1/commits")[0] == 400


def test_log_amount_after_and_pagination(lakefs, repo, history):
    c3, c2, c1, c0 = history
    ids, pag = log_ids(lakefs, repo, "main", "?amount=3")
    assert ids == [c3, c2, c1]
    assert pag == {"has_more": True, "next_offset": c1, "results": 3, "max_per_page": 1000}
    ids, pag = log_ids(lakefs, repo, "main", f"?amount=3&after={c1}")
    assert ids == [c0] and pag["has_more"] is False and pag["next_offset"] == ""
    # `after` is itself a ref (catalog.ListCommits dereferences it)
    assert log_ids(lakefs, repo, "main", "?after=rel")[0] == [c1, c0]
    assert log_ids(lakefs, repo, "main", f"?after={c3[:8]}")[0] == [c2, c1, c0]
    assert log_ids(lakefs, repo, "main", "?after=main~2")[0] == [c0]
    # a commit outside the log: nothing after it
    assert log_ids(lakefs, repo, "rel", f"?after={c3}")[0] == []
    _, pag = log_ids(lakefs, repo, "main", "?amount=4")
    assert pag["has_more"] is False


def test_log_errors(lakefs, repo, history):
    base = f"/repositories/{repo}/refs/%s/commits"
    assert lakefs.api("GET", base % "nope")[0] == 404
    assert lakefs.api("GET", base % "main~9")[0] == 404
    assert lakefs.api("GET", base % "main" + "?after=nope")[0] == 404
    assert lakefs.api("GET", base % "main$")[0] == 400
    assert lakefs.api("GET", base % "main" + "?amount=1001")[0] == 400
    assert lakefs.api("GET", f"/repositories/{new_name('nope')}/refs/main/commits")[0] == 404


# -------------------------------------------------------- branches, tags
def test_branch_create_from_any_ref(lakefs, s3, repo, history):
    c3, c2, c1, c0 = history
    put(s3, repo, "main/f", b"uncommitted on main")
    for name, source, want in (("from-branch", "main", c3), ("from-tag", "rel", c2),
                               ("from-id", c1, c1), ("from-short", c1[:12], c1),
                               ("from-expr", "main~2", c1), ("from-at", "main@", c3)):
        status, ctype, body = raw_post(lakefs, f"/repositories/{repo}/branches",
                                       {"name": name, "source": source})
        # the controller writes the commit ID as a bare text body
        assert (status, body) == (201, want.encode()), (name, status, body)
        assert ctype.startswith("text/plain")
        assert head(lakefs, repo, name) == want
    # a new branch starts from the source's commit, without main's staged write
    assert get_bytes(s3, repo, "from-branch/f") == b"v3"
    assert get_bytes(s3, repo, "from-tag/f") == b"v2"
    assert get_bytes(s3, repo, "from-expr/f") == b"v1"
    assert get_bytes(s3, repo, "from-short/f") == b"v1"


def test_branch_create_errors(lakefs, s3, repo, history):
    c3 = history[0]
    url = f"/repositories/{repo}/branches"
    lakefs.create_branch(repo, "dev")
    cases = [
        ({"name": "dev", "source": "main"}, 409, "branch already exists: not unique"),
        ({"name": "rel", "source": "main"}, 409, "tag ID rel: conflict found"),
        ({"name": c3, "source": "main"}, 409, f"commit ID {c3}: conflict found"),
        ({"name": "new", "source": "nope"}, 404, None),
        ({"name": "new", "source": "main~9"}, 404, None),
        ({"name": "-lead", "source": "main"}, 400, None),
        ({"name": "a/b", "source": "main"}, 400, None),
        ({"name": "a.b", "source": "main"}, 400, None),
        ({"name": "", "source": "main"}, 400, None),
        ({"name": "new"}, 400, None),
        ({"source": "main"}, 400, None),
        ({"name": "new", "source": ""}, 400, None),
        # lakeFS does not map ErrCreateBranchNoCommit: an internal error
        ({"name": "new", "source": "main$"}, 500,
         "source reference 'main$': can't create a branch without commit"),
    ]
    for body, want, message in cases:
        status, answer = lakefs.api("POST", url, body)
        assert status == want, (body, status, answer)
        if message is not None:
            assert answer == {"message": message}
    _, answer = lakefs.api("POST", url, {"name": "a.b", "source": "main"})
    assert answer["message"] == ("argument branch: branch id: invalid value: validation error: "
                                 "branch id must consist of letters, digits, underscores and "
                                 "dashes, and cannot start with a dash")
    _, lst = lakefs.api("GET", url, expect=200)
    assert [b["id"] for b in lst["results"]] == ["dev", "main"]


def test_branch_and_tag_lists_paginate(lakefs, s3, repo, history):
    c3, c2, c1, _ = history
    names = [f"b{i}" for i in range(5)]
    for n in names:
        lakefs.create_branch(repo, n, source=c1)
    for n in ("t0", "t1", "t2"):
        lakefs.create_tag(repo, n, c2)
    for kind, want in (("branches", names + ["main"]), ("tags", ["rel", "t0", "t1", "t2"])):
        url = f"/repositories/{repo}/{kind}"
        seen, after = [], ""
        for _ in range(10):
            _, page = lakefs.api("GET", f"{url}?amount=2&after={after}", expect=200)
            for x in page["results"]:
                assert set(x) == {"id", "commit_id"}
            seen += page["results"]
            assert page["pagination"]["results"] == len(page["results"]) <= 2
            if not page["pagination"]["has_more"]:
                assert page["pagination"]["next_offset"] == ""
                break
            after = page["pagination"]["next_offset"]
            assert after == page["results"][-1]["id"]
        assert [x["id"] for x in seen] == want
        assert lakefs.api("GET", f"{url}?amount=1001")[0] == 400
    _, page = lakefs.api("GET", f"/repositories/{repo}/branches?prefix=b&after=b2", expect=200)
    assert page["results"] == [{"id": "b3", "commit_id": c1}, {"id": "b4", "commit_id": c1}]
    _, page = lakefs.api("GET", f"/repositories/{repo}/tags?prefix=t", expect=200)
    assert page["results"] == [{"id": t, "commit_id": c2} for t in ("t0", "t1", "t2")]
    _, page = lakefs.api("GET", f"/repositories/{repo}/branches?prefix=main", expect=200)
    assert page["results"] == [{"id": "main", "commit_id": c3}]


def test_get_branch_and_tag(lakefs, s3, repo, history):
    c3, c2 = history[:2]
    put(s3, repo, "main/f", b"staged")        # a staged write does not move the head
    assert lakefs.api("GET", f"/repositories/{repo}/branches/main") == \
        (200, {"id": "main", "commit_id": c3})
    assert lakefs.api("GET", f"/repositories/{repo}/tags/rel") == \
        (200, {"id": "rel", "commit_id": c2})
    assert lakefs.api("GET", f"/repositories/{repo}/branches/rel") == \
        (404, {"message": "branch not found"})
    assert lakefs.api("GET", f"/repositories/{repo}/tags/main") == \
        (404, {"message": "tag not found"})
    assert lakefs.api("GET", f"/repositories/{repo}/branches/{c3}")[0] == 404
    assert lakefs.api("GET", f"/repositories/{repo}/branches/v1.0")[0] == 400
    assert lakefs.api("GET", f"/repositories/{repo}/tags/a..b")[0] == 400
    assert lakefs.api("GET", f"/repositories/{new_name('nope')}/branches/main")[0] == 404
    assert lakefs.api("GET", f"/repositories/{new_name('nope')}/tags/rel")[0] == 404
    # a tag cannot take a branch's name (Catalog.CreateTag)
    assert lakefs.api("POST", f"/repositories/{repo}/tags", {"id": "main", "ref": c2}) == \
        (409, {"message": "branch name main: conflict found"})


# ------------------------------------------------------------ object stat
def stat(lakefs, repo, ref, path, query=""):
    return lakefs.api("GET", f"/repositories/{repo}/refs/{ref}/objects/stat?path={path}{query}")


def test_stat_user_metadata_as_lakefs_stores_it(lakefs, s3, repo):
    before = int(time.time())
    put(s3, repo, "main/d/f.csv", b"a,b\n", ContentType="text/csv",
        Metadata={"Color": "Blue", "multi-Word": "x y", "n": "1"})
    status, st = stat(lakefs, repo, "main", "d/f.csv", "&user_metadata=true")
    assert status == 200
    assert set(st) == {"path", "path_type", "physical_address", "checksum", "size_bytes",
                       "mtime", "content_type", "metadata"}
    assert st["path"] == "d/f.csv" and st["path_type"] == "object"
    assert st["size_bytes"] == 4
    assert st["checksum"] == hashlib.md5(b"a,b\n").hexdigest()
    assert st["content_type"] == "text/csv"
    assert before - 1 <= st["mtime"] <= time.time() + 1
    assert st["physical_address"].startswith(f"local://{repo}/")
    # amzMetaAsMetadata: the "X-Amz-Meta-" prefix kept, the name lower-cased
    assert st["metadata"] == {"X-Amz-Meta-color": "Blue", "X-Amz-Meta-multi-word": "x y",
                              "X-Amz-Meta-n": "1"}
    # user_metadata defaults to true; false gives an empty object
    assert stat(lakefs, repo, "main", "d/f.csv")[1]["metadata"] == st["metadata"]
    assert stat(lakefs, repo, "main", "d/f.csv", "&user_metadata=false")[1]["metadata"] == {}
    # the S3 gateway hands the same metadata back
    h = s3.head_object(Bucket=repo, Key="main/d/f.csv")
    assert {k.lower(): v for k, v in h["Metadata"].items()} == \
        {"color": "Blue", "multi-word": "x y", "n": "1"}


def test_stat_follows_refs_and_metadata_replacement(lakefs, s3, repo):
    put(s3, repo, "main/f", b"one", Metadata={"v": "1"})
    c1 = lakefs.commit(repo, "main")
    s3.copy_object(Bucket=repo, Key="main/f", CopySource=f"{repo}/main/f",
                   Metadata={"v": "2"}, MetadataDirective="REPLACE")
    put(s3, repo, "main/plain", b"no metadata")
    assert stat(lakefs, repo, "main", "f")[1]["metadata"] == {"X-Amz-Meta-v": "2"}
    for ref in (c1, "main@", c1[:10]):
        status, st = stat(lakefs, repo, ref, "f")
        assert status == 200 and st["metadata"] == {"X-Amz-Meta-v": "1"}, ref
        assert st["checksum"] == hashlib.md5(b"one").hexdigest()
    assert stat(lakefs, repo, "main", "plain")[1]["metadata"] == {}
    assert stat(lakefs, repo, "main@", "plain")[0] == 404
    assert stat(lakefs, repo, "nope", "f")[0] == 404
    assert lakefs.api("GET", f"/repositories/{repo}/refs/main/objects/stat")[0] == 400
    # listings carry metadata only for objects that have some
    _, ls = lakefs.api("GET", f"/repositories/{repo}/refs/main/objects/ls", expect=200)
    assert {x["path"]: x.get("metadata") for x in ls["results"]} == \
        {"f": {"X-Amz-Meta-v": "2"}, "plain": None}
    _, ls = lakefs.api("GET", f"/repositories/{repo}/refs/main/objects/ls?user_metadata=false",
                       expect=200)
    assert all("metadata" not in x for x in ls["results"])
