"""Buckets and listings: checklist lines 1-9 plus the listing details of
lakefs-gateway.md section 3 (branches at the root, max-keys, tokens,
start-after, encoding-type=url, directory markers)."""
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

import rawhttp
from rawhttp import findall, findtext
from sim_helpers import error_of, list_keys, new_name, put

BIG_N = 2500


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def big_repo(lakefs):
    """A repository whose main holds main/big/k0000..k2499 (1 byte each)
    plus one other key outside big/. Shared by the pagination tests."""
    name = new_name("big")
    lakefs.create_repo(name)
    s3 = lakefs.s3(max_pool_connections=16)

    def up(i):
        s3.put_object(Bucket=name, Key=f"main/big/k{i:04d}", Body=b"x")

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(up, range(BIG_N)))
    s3.put_object(Bucket=name, Key="main/other.txt", Body=b"o")
    return name


def big_keys():
    return [f"main/big/k{i:04d}" for i in range(BIG_N)]


def raw_list(lakefs, repo, **params):
    """Raw GET /repo?params; returns the Response."""
    return rawhttp.request(lakefs, "GET", f"/{repo}", query=params)


# ----------------------------------------------------------- 1. buckets
def test_c01_list_buckets_lists_created_repositories(lakefs, s3, repo):
    other = new_name()
    lakefs.create_repo(other)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert repo in names and other in names


def test_c01_unknown_repository_is_nosuchbucket_404(s3):
    missing = new_name("nope")
    with pytest.raises(ClientError) as ei:
        s3.list_objects_v2(Bucket=missing, Prefix="main/")
    assert error_of(ei) == (404, "NoSuchBucket")
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=missing, Key="main/a")
    assert error_of(ei) == (404, "NoSuchBucket")


def test_c01_unknown_repository_raw_xml_error(lakefs):
    missing = new_name("nope")
    r = raw_list(lakefs, missing, **{"list-type": "2", "prefix": "main/"})
    assert r.status == 404
    assert r.error_code == "NoSuchBucket"
    assert "xml" in (r.header("content-type") or "")


def test_head_bucket_200_and_404(s3, repo):
    assert s3.head_bucket(Bucket=repo)["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(ClientError) as ei:
        s3.head_bucket(Bucket=new_name("nope"))
    assert error_of(ei)[0] == 404


# ------------------------------------------------------ 2-3. branch listing
def test_c02_root_listing_with_delimiter_lists_branches_only(lakefs, s3, repo):
    put(s3, repo, "main/file.txt", b"1")
    put(s3, repo, "main/dir/x", b"1")
    lakefs.commit(repo, "main")
    lakefs.create_branch(repo, "dev")
    lakefs.create_branch(repo, "feature-1")
    lakefs.create_tag(repo, "v1", "main")
    r = s3.list_objects_v2(Bucket=repo, Delimiter="/")
    assert [p["Prefix"] for p in r.get("CommonPrefixes", [])] == \
        ["dev/", "feature-1/", "main/"]
    assert r.get("Contents", []) == []
    assert r["IsTruncated"] is False
    # an explicit empty prefix is the same
    raw = raw_list(lakefs, repo, **{"list-type": "2", "prefix": "",
                                    "delimiter": "/"})
    assert raw.status == 200
    root = raw.xml()
    assert [findtext(cp, "Prefix") for cp in findall(root, "CommonPrefixes")] \
        == ["dev/", "feature-1/", "main/"]
    assert findall(root, "Contents") == []


def test_c02_root_listing_v1_lists_branches(lakefs, s3, repo):
    lakefs.create_branch(repo, "dev")
    r = s3.list_objects(Bucket=repo, Delimiter="/")
    assert [p["Prefix"] for p in r.get("CommonPrefixes", [])] == ["dev/", "main/"]
    assert r.get("Contents", []) == []


def test_c03_branch_listing_filtered_by_prefix(lakefs, s3, repo):
    for b in ["a1", "a2", "a3", "b1"]:
        lakefs.create_branch(repo, b)
    r = s3.list_objects_v2(Bucket=repo, Prefix="a", Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a1/", "a2/", "a3/"]
    r = s3.list_objects_v2(Bucket=repo, Prefix="m", Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["main/"]
    r = s3.list_objects_v2(Bucket=repo, Prefix="zz", Delimiter="/")
    assert r.get("CommonPrefixes", []) == [] and r.get("Contents", []) == []


def test_c03_branch_listing_paginated_by_branch_name(lakefs, s3, repo):
    for b in ["a1", "a2", "a3", "b1"]:
        lakefs.create_branch(repo, b)
    p1 = s3.list_objects_v2(Bucket=repo, Prefix="a", Delimiter="/", MaxKeys=2)
    assert [p["Prefix"] for p in p1["CommonPrefixes"]] == ["a1/", "a2/"]
    assert p1["IsTruncated"] is True
    assert p1["NextContinuationToken"] == "a2"
    p2 = s3.list_objects_v2(Bucket=repo, Prefix="a", Delimiter="/", MaxKeys=2,
                            ContinuationToken=p1["NextContinuationToken"])
    assert [p["Prefix"] for p in p2["CommonPrefixes"]] == ["a3/"]
    assert p2["IsTruncated"] is False
    # all branches in pages of 2 by name, no prefix
    seen, token = [], None
    while True:
        kw = dict(Bucket=repo, Delimiter="/", MaxKeys=2)
        if token:
            kw["ContinuationToken"] = token
        page = s3.list_objects_v2(**kw)
        seen += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == ["a1/", "a2/", "a3/", "b1/", "main/"]


def test_c03_branch_listing_v1_marker(lakefs, s3, repo):
    for b in ["a1", "a2", "a3"]:
        lakefs.create_branch(repo, b)
    p1 = s3.list_objects(Bucket=repo, Delimiter="/", MaxKeys=2)
    assert [p["Prefix"] for p in p1["CommonPrefixes"]] == ["a1/", "a2/"]
    assert p1["IsTruncated"] is True
    p2 = s3.list_objects(Bucket=repo, Delimiter="/", MaxKeys=2,
                         Marker=p1["NextMarker"])
    assert [p["Prefix"] for p in p2["CommonPrefixes"]] == ["a3/", "main/"]
    assert p2["IsTruncated"] is False


def test_tags_and_commits_not_listed_but_resolvable(lakefs, s3, repo):
    put(s3, repo, "main/f", b"tagged")
    cid = lakefs.commit(repo, "main")
    lakefs.create_tag(repo, "release-1", cid)
    r = s3.list_objects_v2(Bucket=repo, Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["main/"]
    for ref in ["release-1", cid, cid[:16]]:
        assert s3.get_object(Bucket=repo, Key=f"{ref}/f")["Body"].read() == b"tagged"


# -------------------------------------------------------- 4. directory view
def test_c04_branch_listing_files_and_subdirs(s3, repo):
    for k in ["a.txt", "b.txt", "dir1/x", "dir1/y", "dir1/sub/q", "dir2/z"]:
        put(s3, repo, "main/" + k, k.encode())
    r = s3.list_objects_v2(Bucket=repo, Prefix="main/", Delimiter="/")
    assert [c["Key"] for c in r["Contents"]] == ["main/a.txt", "main/b.txt"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["main/dir1/", "main/dir2/"]
    assert r["KeyCount"] == 4
    r = s3.list_objects_v2(Bucket=repo, Prefix="main/dir1/", Delimiter="/")
    assert [c["Key"] for c in r["Contents"]] == ["main/dir1/x", "main/dir1/y"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["main/dir1/sub/"]
    # no delimiter: everything, recursively, in key order
    keys, prefixes = list_keys(s3, repo, "main/")
    assert keys == ["main/a.txt", "main/b.txt", "main/dir1/sub/q",
                    "main/dir1/x", "main/dir1/y", "main/dir2/z"]
    assert prefixes == []
    # a partial name prefix
    keys, _ = list_keys(s3, repo, "main/dir", delimiter="/")
    assert keys == []


def test_c04_listing_contents_fields(s3, repo):
    import hashlib
    put(s3, repo, "main/f.bin", b"hello", Metadata={"k": "v"})
    r = s3.list_objects_v2(Bucket=repo, Prefix="main/", Delimiter="/")
    (c,) = r["Contents"]
    assert c["Key"] == "main/f.bin"
    assert c["Size"] == 5
    assert c["ETag"] == '"%s"' % hashlib.md5(b"hello").hexdigest()
    assert c["StorageClass"] == "STANDARD"
    assert c["LastModified"].year >= 2024
    assert "Metadata" not in c


def test_directory_marker_keys_are_ordinary_objects(s3, repo):
    put(s3, repo, "main/d/", b"")
    put(s3, repo, "main/d/f", b"x")
    put(s3, repo, "main/empty/", b"")
    r = s3.list_objects_v2(Bucket=repo, Prefix="main/", Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["main/d/", "main/empty/"]
    assert r.get("Contents", []) == []
    r = s3.list_objects_v2(Bucket=repo, Prefix="main/d/", Delimiter="/")
    assert [(c["Key"], c["Size"]) for c in r["Contents"]] == \
        [("main/d/", 0), ("main/d/f", 1)]
    r = s3.list_objects_v2(Bucket=repo, Prefix="main/empty/", Delimiter="/")
    assert [c["Key"] for c in r["Contents"]] == ["main/empty/"]
    h = s3.head_object(Bucket=repo, Key="main/d/")
    assert h["ContentLength"] == 0


# ---------------------------------------------------------- 5-6. paging
def test_c05_v2_pagination_2500_keys(s3, big_repo):
    pages, token = [], None
    while True:
        kw = dict(Bucket=big_repo, Prefix="main/big/")
        if token is not None:
            kw["ContinuationToken"] = token
        page = s3.list_objects_v2(**kw)
        keys = [c["Key"] for c in page.get("Contents", [])]
        pages.append(keys)
        if token is not None:
            assert page.get("ContinuationToken") == token
        if not page["IsTruncated"]:
            assert "NextContinuationToken" not in page
            break
        token = page["NextContinuationToken"]
        # lakeFS: <ref>/<last key>; clients must treat it as opaque
        assert token == keys[-1]
        assert len(pages) < 10
    assert [len(p) for p in pages] == [1000, 1000, 500]
    assert sum(pages, []) == big_keys()


def test_c05_v2_tokens_passed_back_verbatim_raw(lakefs, big_repo):
    """The token is echoed in the next request byte for byte (raw client,
    no encoding-type) and the pages join up."""
    r1 = raw_list(lakefs, big_repo, **{"list-type": "2", "prefix": "main/big/",
                                       "max-keys": "700"})
    assert r1.status == 200
    root = r1.xml()
    token = findtext(root, "NextContinuationToken")
    assert findtext(root, "IsTruncated") == "true" and token
    r2 = raw_list(lakefs, big_repo, **{"list-type": "2", "prefix": "main/big/",
                                       "max-keys": "700",
                                       "continuation-token": token})
    root2 = r2.xml()
    assert findtext(root2, "ContinuationToken") == token
    k1 = [findtext(c, "Key") for c in findall(root, "Contents")]
    k2 = [findtext(c, "Key") for c in findall(root2, "Contents")]
    assert k1 + k2 == big_keys()[:1400]
    assert findtext(root2, "KeyCount") == "700"


def test_c05_v2_start_after(s3, big_repo):
    r = s3.list_objects_v2(Bucket=big_repo, Prefix="main/big/",
                           StartAfter="main/big/k1499")
    keys = [c["Key"] for c in r["Contents"]]
    assert keys == big_keys()[1500:2500]
    assert r["IsTruncated"] is False
    r = s3.list_objects_v2(Bucket=big_repo, Prefix="main/big/",
                           StartAfter="main/big/k0999", MaxKeys=10)
    assert [c["Key"] for c in r["Contents"]] == big_keys()[1000:1010]
    assert r["IsTruncated"] is True


def test_max_keys_above_1000_honoured_up_to_catalog_limit(s3, big_repo):
    """The spec says max-keys is capped at 1000; lakeFS's gateway passes it
    through to the catalog, which caps object listings at 10000
    (ListEntriesLimitMax). lakefuse never asks for more than 1000."""
    r = s3.list_objects_v2(Bucket=big_repo, Prefix="main/big/", MaxKeys=5000)
    assert len(r["Contents"]) == 2500
    assert r["IsTruncated"] is False
    r = s3.list_objects_v2(Bucket=big_repo, Prefix="main/big/", MaxKeys=2000)
    assert len(r["Contents"]) == 2000
    assert r["IsTruncated"] is True
    r = s3.list_objects(Bucket=big_repo, Prefix="main/big/", MaxKeys=2000)
    assert len(r["Contents"]) == 2000
    assert r["IsTruncated"] is True
    r = s3.list_objects_v2(Bucket=big_repo, Prefix="main/big/")
    assert len(r["Contents"]) == 1000 and r["IsTruncated"] is True


def test_max_keys_small_values(s3, big_repo):
    r = s3.list_objects_v2(Bucket=big_repo, Prefix="main/big/", MaxKeys=3)
    assert [c["Key"] for c in r["Contents"]] == big_keys()[:3]
    assert r["IsTruncated"] is True and r["KeyCount"] == 3


def test_c06_v1_marker_nextmarker_pages_same_keys(s3, big_repo):
    # with a delimiter the server returns NextMarker
    keys, marker, n = [], None, 0
    while True:
        kw = dict(Bucket=big_repo, Prefix="main/big/", Delimiter="/")
        if marker is not None:
            kw["Marker"] = marker
        page = s3.list_objects(**kw)
        keys += [c["Key"] for c in page.get("Contents", [])]
        n += 1
        if not page["IsTruncated"]:
            break
        marker = page["NextMarker"]
        assert marker == keys[-1]
        assert n < 10
    assert n == 3
    assert keys == big_keys()


def test_c06_v1_without_delimiter_uses_last_key_as_marker(s3, big_repo):
    keys, marker, n = [], None, 0
    while True:
        kw = dict(Bucket=big_repo, Prefix="main/big/")
        if marker is not None:
            kw["Marker"] = marker
        page = s3.list_objects(**kw)
        got = [c["Key"] for c in page.get("Contents", [])]
        keys += got
        n += 1
        if not page["IsTruncated"]:
            break
        marker = page.get("NextMarker") or got[-1]
        assert n < 10
    assert n == 3
    assert keys == big_keys()


def test_c06_v1_marker_mid_listing(s3, big_repo):
    r = s3.list_objects(Bucket=big_repo, Prefix="main/big/", Marker="main/big/k2495")
    assert [c["Key"] for c in r["Contents"]] == big_keys()[2496:]
    assert r["IsTruncated"] is False


def test_paginators_see_every_key_once(s3, big_repo):
    keys, _ = list_keys(s3, big_repo, "main/")
    assert keys == big_keys() + ["main/other.txt"]
    keys, _ = list_keys(s3, big_repo, "main/", v2=False)
    assert keys == big_keys() + ["main/other.txt"]
    keys, prefixes = list_keys(s3, big_repo, "main/", delimiter="/")
    assert keys == ["main/other.txt"] and prefixes == ["main/big/"]


# ------------------------------------------------------- 7. encoding-type
ODD_KEYS = ["a b.txt", "plus+sign.txt", "pct%41.txt", "ünï çødé ☃.txt",
            "amp&lt<gt>.txt", "dir with space/inner+x.txt", "tilde~star*.txt"]


@pytest.fixture
def odd_repo(s3, repo):
    for k in ODD_KEYS:
        put(s3, repo, "main/" + k, k.encode())
    return repo


def test_c07_encoding_type_url_is_ignored_as_lakefs_does(lakefs, odd_repo):
    """Checklist 7 expects url-encoded keys; lakeFS's listobjects.go never
    reads encoding-type, so keys come back verbatim and no EncodingType
    element is sent. A client must not URL-decode lakeFS keys."""
    for v2 in (True, False):
        params = {"prefix": "main/", "delimiter": "/", "encoding-type": "url"}
        if v2:
            params["list-type"] = "2"
        r = raw_list(lakefs, odd_repo, **params)
        assert r.status == 200, r
        root = r.xml()
        assert findtext(root, "EncodingType") in (None, "")
        keys = [findtext(c, "Key") for c in findall(root, "Contents")]
        cps = [findtext(c, "Prefix") for c in findall(root, "CommonPrefixes")]
        assert keys == sorted("main/" + k for k in ODD_KEYS if "/" not in k)
        assert cps == ["main/dir with space/"]
        # '+' and '%' survive verbatim
        assert any(k.startswith("main/plus") and "+" in k for k in keys)
        assert any(k.startswith("main/pct") and "%41" in k for k in keys)


def test_c07_without_encoding_type_keys_are_verbatim(lakefs, odd_repo):
    r = raw_list(lakefs, odd_repo, **{"list-type": "2", "prefix": "main/"})
    root = r.xml()
    keys = [findtext(c, "Key") for c in findall(root, "Contents")]
    assert keys == sorted("main/" + k for k in ODD_KEYS)
    assert findtext(root, "EncodingType") in (None, "")


def test_c07_boto3_decoded_keys_match(s3, odd_repo):
    # botocore asks for encoding-type=url and decodes the answer
    keys, _ = list_keys(s3, odd_repo, "main/")
    assert keys == sorted("main/" + k for k in ODD_KEYS)
    keys, prefixes = list_keys(s3, odd_repo, "main/", delimiter="/", v2=False)
    assert prefixes == ["main/dir with space/"]
    keys, _ = list_keys(s3, odd_repo, "main/dir with space/", delimiter="/")
    assert keys == ["main/dir with space/inner+x.txt"]
    for k in ODD_KEYS:
        assert s3.get_object(Bucket=odd_repo, Key="main/" + k)["Body"].read() == k.encode()


def test_c07_encoded_continuation_and_start_after(s3, odd_repo):
    r = s3.list_objects_v2(Bucket=odd_repo, Prefix="main/", MaxKeys=2)
    seen = [c["Key"] for c in r["Contents"]]
    while r["IsTruncated"]:
        r = s3.list_objects_v2(Bucket=odd_repo, Prefix="main/", MaxKeys=2,
                               ContinuationToken=r["NextContinuationToken"])
        seen += [c["Key"] for c in r["Contents"]]
    assert seen == sorted("main/" + k for k in ODD_KEYS)
    after = sorted("main/" + k for k in ODD_KEYS)[2]
    r = s3.list_objects_v2(Bucket=odd_repo, Prefix="main/", StartAfter=after)
    assert [c["Key"] for c in r["Contents"]] == sorted("main/" + k for k in ODD_KEYS)[3:]


# ------------------------------------------------------ 8. refs in listings
@pytest.fixture
def history(lakefs, s3, repo):
    """c1 = {a, b, d/x}; c2 = {b (changed), c, d/x}; main has an extra
    uncommitted key u; tag t1 -> c1."""
    put(s3, repo, "main/a", b"a1")
    put(s3, repo, "main/b", b"b1")
    put(s3, repo, "main/d/x", b"x1")
    c1 = lakefs.commit(repo, "main", "first")
    s3.delete_object(Bucket=repo, Key="main/a")
    put(s3, repo, "main/b", b"b2")
    put(s3, repo, "main/c", b"c2")
    c2 = lakefs.commit(repo, "main", "second")
    lakefs.create_tag(repo, "t1", c1)
    put(s3, repo, "main/u", b"uncommitted")
    return {"repo": repo, "c1": c1, "c2": c2}


def _tree(s3, repo, ref):
    keys, _ = list_keys(s3, repo, f"{ref}/")
    return [k[len(ref) + 1:] for k in keys]


def test_c08_listing_commit_tag_short_id_and_tilde(lakefs, s3, history):
    repo, c1, c2 = history["repo"], history["c1"], history["c2"]
    assert len(c1) == 64 and all(ch in "0123456789abcdef" for ch in c1)
    c1_tree = ["a", "b", "d/x"]
    for ref in [c1, "t1", c1[:12], "main~1"]:
        assert _tree(s3, repo, ref) == c1_tree, ref
        r = s3.list_objects_v2(Bucket=repo, Prefix=f"{ref}/", Delimiter="/")
        assert [c["Key"] for c in r["Contents"]] == [f"{ref}/a", f"{ref}/b"]
        assert [p["Prefix"] for p in r["CommonPrefixes"]] == [f"{ref}/d/"]
    assert _tree(s3, repo, c2) == ["b", "c", "d/x"]
    assert _tree(s3, repo, "main") == ["b", "c", "d/x", "u"]
    assert _tree(s3, repo, "main@") == ["b", "c", "d/x"]
    assert _tree(s3, repo, "main~2") == []  # the initial commit is empty


def test_c08_v1_listing_of_refs(s3, history):
    repo, c1 = history["repo"], history["c1"]
    for ref in [c1, "t1", c1[:12], "main~1"]:
        keys, _ = list_keys(s3, repo, f"{ref}/", v2=False)
        assert keys == [f"{ref}/a", f"{ref}/b", f"{ref}/d/x"]


def test_c08_get_through_refs(s3, history):
    repo, c1 = history["repo"], history["c1"]
    for ref in [c1, "t1", c1[:10], "main~1"]:
        assert s3.get_object(Bucket=repo, Key=f"{ref}/b")["Body"].read() == b"b1"
        assert s3.get_object(Bucket=repo, Key=f"{ref}/a")["Body"].read() == b"a1"
    assert s3.get_object(Bucket=repo, Key="main/b")["Body"].read() == b"b2"
    assert s3.get_object(Bucket=repo, Key="main^1/b")["Body"].read() == b"b1"


# ------------------------------------------------------- 9. unknown refs
def test_c09_unknown_ref_v2_400_v1_empty(lakefs, s3, repo):
    put(s3, repo, "main/a", b"a")
    r = raw_list(lakefs, repo, **{"list-type": "2", "prefix": "nosuchref/"})
    assert r.status == 400, r
    assert r.error_code == "BadRequest"
    with pytest.raises(ClientError) as ei:
        s3.list_objects_v2(Bucket=repo, Prefix="nosuchref/", Delimiter="/")
    assert error_of(ei)[0] == 400
    r = raw_list(lakefs, repo, prefix="nosuchref/", delimiter="/")
    assert r.status == 200, r
    root = r.xml()
    assert findall(root, "Contents") == [] and findall(root, "CommonPrefixes") == []
    assert findtext(root, "IsTruncated") == "false"
    r1 = s3.list_objects(Bucket=repo, Prefix="nosuchref/")
    assert r1.get("Contents", []) == []


def test_c09_unknown_commit_id_v2_400(lakefs, repo):
    r = raw_list(lakefs, repo, **{"list-type": "2", "prefix": "f" * 64 + "/"})
    assert r.status == 400
    r = raw_list(lakefs, repo, prefix="f" * 64 + "/")
    assert r.status == 200 and findall(r.xml(), "Contents") == []


def test_consistency_put_delete_visible_in_listing_at_once(s3, repo):
    for i in range(20):
        put(s3, repo, f"main/k{i}", b"v")
        keys, _ = list_keys(s3, repo, "main/")
        assert f"main/k{i}" in keys
        s3.delete_object(Bucket=repo, Key=f"main/k{i}")
        keys, _ = list_keys(s3, repo, "main/")
        assert f"main/k{i}" not in keys
