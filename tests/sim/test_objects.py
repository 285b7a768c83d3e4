"""Objects: checklist lines 10-18 plus the object details of
lakefs-gateway.md section 4 (0-byte objects, HEAD ranges, copies across
repositories, DeleteObjects limits, unsupported subresources)."""
import hashlib

import pytest
from botocore.exceptions import ClientError

import rawhttp
from sim_helpers import error_of, get_bytes, list_keys, md5_hex, meta, new_name, put, rand_bytes


def quoted_md5(data):
    return '"%s"' % md5_hex(data)


def assert_absent(s3, repo, key):
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=repo, Key=key)
    assert error_of(ei)[0] == 404


# ------------------------------------------------ 10. PUT / GET / HEAD
def test_c10_put_get_bytes_etag_metadata_content_type(s3, repo):
    data = rand_bytes(100_000)
    r = put(s3, repo, "main/dir/obj.bin", data, ContentType="application/x-test",
            Metadata={"color": "blue", "Owner-Name": "ann"})
    assert r["ETag"] == quoted_md5(data)
    g = s3.get_object(Bucket=repo, Key="main/dir/obj.bin")
    assert g["Body"].read() == data
    assert g["ETag"] == quoted_md5(data)
    assert g["ContentType"] == "application/x-test"
    assert g["ContentLength"] == len(data)
    assert meta(g["Metadata"]) == {"color": "blue", "owner-name": "ann"}
    assert g["LastModified"].year >= 2024
    assert g["AcceptRanges"] == "bytes"
    h = s3.head_object(Bucket=repo, Key="main/dir/obj.bin")
    assert h["ETag"] == quoted_md5(data)
    assert h["ContentType"] == "application/x-test"
    assert h["ContentLength"] == len(data)
    assert meta(h["Metadata"]) == {"color": "blue", "owner-name": "ann"}
    assert h["LastModified"] == g["LastModified"]


def test_c10_raw_headers_on_get_and_head(lakefs, s3, repo):
    put(s3, repo, "main/h.txt", b"hello", ContentType="text/plain",
        Metadata={"k": "v"})
    for method in ("GET", "HEAD"):
        r = rawhttp.request(lakefs, method, f"/{repo}/main/h.txt")
        assert r.status == 200
        assert r.header("etag") == quoted_md5(b"hello")
        assert r.header("content-length") == "5"
        assert r.header("content-type") == "text/plain"
        assert r.header("x-amz-meta-k") == "v"
        assert r.header("last-modified")
        assert r.header("accept-ranges") == "bytes"
        assert r.body == (b"hello" if method == "GET" else b"")


def test_c10_overwrite_replaces_bytes_and_metadata(s3, repo):
    put(s3, repo, "main/o", b"one", Metadata={"a": "1"})
    put(s3, repo, "main/o", b"two!")
    g = s3.get_object(Bucket=repo, Key="main/o")
    assert g["Body"].read() == b"two!"
    assert meta(g["Metadata"]) == {}
    assert g["ETag"] == quoted_md5(b"two!")


def test_zero_byte_object(s3, repo):
    r = put(s3, repo, "main/empty", b"")
    assert r["ETag"] == quoted_md5(b"")
    g = s3.get_object(Bucket=repo, Key="main/empty")
    assert g["Body"].read() == b"" and g["ContentLength"] == 0
    assert s3.head_object(Bucket=repo, Key="main/empty")["ContentLength"] == 0
    keys, _ = list_keys(s3, repo, "main/")
    assert keys == ["main/empty"]


def test_keys_with_odd_characters_round_trip(s3, repo):
    for k in ["sp ace", "plus+", "pct%20", "ü☃", "a=b&c", "q?x", "hash#1",
              "deep/er/and/deeper/f"]:
        put(s3, repo, "main/" + k, k.encode())
        assert get_bytes(s3, repo, "main/" + k) == k.encode()


def test_default_content_type(lakefs, repo):
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/noct", body=b"x")
    assert r.status == 200
    h = rawhttp.request(lakefs, "HEAD", f"/{repo}/main/noct")
    assert h.status == 200 and h.header("content-type")


def test_put_to_unknown_ref_is_nosuchbucket(s3, repo):
    with pytest.raises(ClientError) as ei:
        put(s3, repo, "nosuchbranch/x", b"x")
    assert error_of(ei) == (404, "NoSuchBucket")


# -------------------------------------------------------- 11. Range GET
def test_c11_range_gets(lakefs, s3, repo):
    data = bytes(range(256)) * 4  # 1024 bytes
    put(s3, repo, "main/r", data)
    cases = [("bytes=10-19", 10, 19), ("bytes=1000-", 1000, 1023),
             ("bytes=-24", 1000, 1023), ("bytes=0-0", 0, 0),
             ("bytes=1020-5000", 1020, 1023), ("bytes=0-", 0, 1023)]
    for rng, a, b in cases:
        g = s3.get_object(Bucket=repo, Key="main/r", Range=rng)
        assert g["ResponseMetadata"]["HTTPStatusCode"] == 206, rng
        assert g["ContentRange"] == f"bytes {a}-{b}/1024", rng
        assert g["ContentLength"] == b - a + 1
        assert g["Body"].read() == data[a:b + 1], rng
        raw = rawhttp.request(lakefs, "GET", f"/{repo}/main/r", headers={"Range": rng})
        assert raw.status == 206 and raw.header("content-range") == f"bytes {a}-{b}/1024"
        assert raw.body == data[a:b + 1]


def test_c11_range_past_end_416(lakefs, s3, repo):
    put(s3, repo, "main/r", b"0123456789")
    for rng in ["bytes=10-", "bytes=10-20", "bytes=100-200"]:
        with pytest.raises(ClientError) as ei:
            s3.get_object(Bucket=repo, Key="main/r", Range=rng)
        assert error_of(ei) == (416, "InvalidRange"), rng
    raw = rawhttp.request(lakefs, "GET", f"/{repo}/main/r", headers={"Range": "bytes=10-"})
    assert raw.status == 416 and raw.error_code == "InvalidRange"


def test_head_with_range_content_length(s3, repo):
    put(s3, repo, "main/r", b"0123456789")
    h = s3.head_object(Bucket=repo, Key="main/r", Range="bytes=2-5")
    assert h["ContentLength"] == 4


# ---------------------------------------------------- 12. missing keys
def test_c12_head_missing_404_no_body(lakefs, repo):
    r = rawhttp.request(lakefs, "HEAD", f"/{repo}/main/missing")
    assert r.kind == "ok" and r.status == 404
    assert r.body == b""


def test_c12_get_missing_nosuchkey(lakefs, s3, repo):
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=repo, Key="main/missing")
    assert error_of(ei) == (404, "NoSuchKey")
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/missing")
    assert r.status == 404 and r.error_code == "NoSuchKey"
    fields = rawhttp.error_fields(r.body)
    assert "Message" in fields and "RequestId" in fields and "Resource" in fields
    # unknown ref
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=repo, Key="nosuchref/missing")
    assert error_of(ei) == (404, "NoSuchKey")


# ------------------------------------------- 13-14. commits are read-only
@pytest.fixture
def committed(lakefs, s3, repo):
    put(s3, repo, "main/a", b"committed-a")
    cid = lakefs.commit(repo, "main")
    lakefs.create_tag(repo, "v1", cid)
    return repo, cid


def test_c13_put_to_commit_or_tag_is_nosuchbucket(s3, committed):
    repo, cid = committed
    for ref in [cid, "v1", cid[:12]]:
        for key in ("a", "new"):
            with pytest.raises(ClientError) as ei:
                put(s3, repo, f"{ref}/{key}", b"overwrite")
            assert error_of(ei) == (404, "NoSuchBucket"), (ref, key)
    for ref in [cid, "v1", "main"]:
        assert get_bytes(s3, repo, f"{ref}/a") == b"committed-a"
        assert list_keys(s3, repo, f"{ref}/")[0] == [f"{ref}/a"]


def test_c13_copy_to_commit_is_nosuchbucket(s3, committed):
    repo, cid = committed
    with pytest.raises(ClientError) as ei:
        s3.copy_object(Bucket=repo, Key=f"{cid}/b", CopySource=f"{repo}/main/a")
    assert error_of(ei) == (404, "NoSuchBucket")
    assert list_keys(s3, repo, f"{cid}/")[0] == [f"{cid}/a"]


def test_c14_delete_under_commit_is_204_and_changes_nothing(lakefs, s3, committed):
    repo, cid = committed
    for ref in [cid, "v1"]:
        r = s3.delete_object(Bucket=repo, Key=f"{ref}/a")
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
        raw = rawhttp.request(lakefs, "DELETE", f"/{repo}/{ref}/a")
        assert raw.status == 204
    for ref in [cid, "v1", "main"]:
        assert get_bytes(s3, repo, f"{ref}/a") == b"committed-a"
    _, diff = lakefs.api("GET", f"/repositories/{repo}/branches/main/diff", expect=200)
    assert diff["results"] == []


def test_delete_missing_key_is_204(s3, repo):
    r = s3.delete_object(Bucket=repo, Key="main/never-existed")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_delete_then_get_404(s3, repo):
    put(s3, repo, "main/d", b"x")
    assert s3.delete_object(Bucket=repo, Key="main/d")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert_absent(s3, repo, "main/d")


# ------------------------------------------------ 15. conditional PUT
def test_c15_if_none_match_star(lakefs, repo):
    path = f"/{repo}/main/cond"
    r = rawhttp.request(lakefs, "PUT", path, body=b"first", headers={"If-None-Match": "*"})
    assert r.status == 200, r
    r = rawhttp.request(lakefs, "PUT", path, body=b"second", headers={"If-None-Match": "*"})
    assert r.status == 412 and r.error_code == "PreconditionFailed", r
    assert rawhttp.request(lakefs, "GET", path).body == b"first"


def test_c15_if_match_not_implemented(lakefs, repo):
    """Checklist 15 expects 412 for a stale If-Match; open-source lakeFS
    (apiutil.BuildConditionFromParams) answers NotImplemented for any
    If-Match, stale or not, and stores nothing."""
    path = f"/{repo}/main/cond"
    r = rawhttp.request(lakefs, "PUT", path, body=b"v1")
    etag1 = r.header("etag")
    assert etag1 == quoted_md5(b"v1")
    for etag in (etag1, quoted_md5(b"stale")):
        r = rawhttp.request(lakefs, "PUT", path, body=b"v2", headers={"If-Match": etag})
        assert r.status == 501 and r.error_code == "NotImplemented", r
    assert rawhttp.request(lakefs, "GET", path).body == b"v1"


def test_get_ignores_if_match_and_if_none_match(lakefs, s3, repo):
    """lakeFS does not honour conditional headers on GET."""
    put(s3, repo, "main/g", b"data")
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/g", headers={"If-Match": '"nope"'})
    assert r.status == 200 and r.body == b"data"
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/g",
                        headers={"If-None-Match": quoted_md5(b"data")})
    assert r.status == 200 and r.body == b"data"


# ------------------------------------------------------- 16. BadDigest
def test_c16_content_md5_not_verified(lakefs, s3, repo):
    """Checklist 16 expects 400 BadDigest; lakeFS's putobject.go never
    checks Content-MD5, so a mismatched digest is stored as sent. lakefuse
    therefore compares the returned ETag (the body's MD5) itself."""
    path = f"/{repo}/main/md5"
    r = rawhttp.request(lakefs, "PUT", path, body=b"actual body",
                        headers={"Content-MD5": rawhttp.md5_b64(b"other body")})
    assert r.status == 200, r
    assert r.header("etag") == quoted_md5(b"actual body")
    assert get_bytes(s3, repo, "main/md5") == b"actual body"
    r = rawhttp.request(lakefs, "PUT", path, body=b"second",
                        headers={"Content-MD5": rawhttp.md5_b64(b"second")})
    assert r.status == 200
    assert get_bytes(s3, repo, "main/md5") == b"second"


# --------------------------------------------------------- 17. CopyObject
def test_c17_copy_within_branch_keeps_metadata(s3, repo):
    put(s3, repo, "main/src", b"source", ContentType="text/x-src", Metadata={"m": "1"})
    r = s3.copy_object(Bucket=repo, Key="main/dst", CopySource=f"{repo}/main/src")
    assert r["CopyObjectResult"]["ETag"] == quoted_md5(b"source")
    g = s3.get_object(Bucket=repo, Key="main/dst")
    assert g["Body"].read() == b"source"
    assert meta(g["Metadata"]) == {"m": "1"}
    assert g["ContentType"] == "text/x-src"
    # the copy is independent of its source
    put(s3, repo, "main/src", b"changed")
    assert get_bytes(s3, repo, "main/dst") == b"source"
    s3.delete_object(Bucket=repo, Key="main/src")
    assert get_bytes(s3, repo, "main/dst") == b"source"


def test_c17_copy_replace_metadata(s3, repo):
    put(s3, repo, "main/src", b"source", ContentType="text/x-src", Metadata={"m": "1"})
    s3.copy_object(Bucket=repo, Key="main/dst", CopySource=f"{repo}/main/src",
                   MetadataDirective="REPLACE", Metadata={"n": "2"},
                   ContentType="text/x-new")
    h = s3.head_object(Bucket=repo, Key="main/dst")
    assert meta(h["Metadata"]) == {"n": "2"}
    # (the spec says nothing of Content-Type under REPLACE; lakeFS keeps the source's)
    s3.copy_object(Bucket=repo, Key="main/dst2", CopySource=f"{repo}/main/src",
                   MetadataDirective="COPY", Metadata={"ignored": "x"})
    assert meta(s3.head_object(Bucket=repo, Key="main/dst2")["Metadata"]) == {"m": "1"}


def test_c17_copy_across_branches(lakefs, s3, repo):
    lakefs.create_branch(repo, "dev")
    put(s3, repo, "dev/only-on-dev", b"dev data", Metadata={"b": "dev"})
    s3.copy_object(Bucket=repo, Key="main/from-dev", CopySource=f"{repo}/dev/only-on-dev")
    g = s3.get_object(Bucket=repo, Key="main/from-dev")
    assert g["Body"].read() == b"dev data" and meta(g["Metadata"]) == {"b": "dev"}
    s3.copy_object(Bucket=repo, Key="dev/back", CopySource=f"{repo}/main/from-dev")
    assert get_bytes(s3, repo, "dev/back") == b"dev data"


def test_c17_copy_from_commit_id_source(lakefs, s3, repo):
    put(s3, repo, "main/f", b"old")
    cid = lakefs.commit(repo, "main")
    put(s3, repo, "main/f", b"new")
    s3.copy_object(Bucket=repo, Key="main/restored", CopySource=f"{repo}/{cid}/f")
    assert get_bytes(s3, repo, "main/restored") == b"old"
    s3.copy_object(Bucket=repo, Key="main/restored2",
                   CopySource={"Bucket": repo, "Key": "main@/f"})
    assert get_bytes(s3, repo, "main/restored2") == b"old"


def test_c17_copy_across_repositories(lakefs, s3, repo):
    other = new_name()
    lakefs.create_repo(other)
    put(s3, other, "main/x", b"from other repo", Metadata={"r": "o"})
    s3.copy_object(Bucket=repo, Key="main/x", CopySource=f"{other}/main/x")
    g = s3.get_object(Bucket=repo, Key="main/x")
    assert g["Body"].read() == b"from other repo" and meta(g["Metadata"]) == {"r": "o"}


def test_c17_copy_missing_source_nosuchkey(s3, repo):
    with pytest.raises(ClientError) as ei:
        s3.copy_object(Bucket=repo, Key="main/dst", CopySource=f"{repo}/main/absent")
    assert error_of(ei) == (404, "NoSuchKey")
    assert_absent(s3, repo, "main/dst")


def test_c17_copy_malformed_source_invalid_argument(lakefs, s3, repo):
    put(s3, repo, "main/src", b"s")
    for src in [f"/{repo}", f"{repo}", "/"]:
        r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/dst",
                            headers={"x-amz-copy-source": src})
        assert r.status == 400 and r.error_code == "InvalidArgument", (src, r)
    assert_absent(s3, repo, "main/dst")


def test_c17_copy_source_url_encoded(lakefs, s3, repo):
    put(s3, repo, "main/a b+c", b"odd")
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/copy",
                        headers={"x-amz-copy-source": f"/{repo}/main/a%20b%2Bc"})
    assert r.status == 200, r
    assert get_bytes(s3, repo, "main/copy") == b"odd"
    s3.copy_object(Bucket=repo, Key="main/copy2", CopySource={"Bucket": repo, "Key": "main/a b+c"})
    assert get_bytes(s3, repo, "main/copy2") == b"odd"


# ----------------------------------------------------- 18. DeleteObjects
def test_c18_delete_objects_reports_all_three(s3, repo):
    put(s3, repo, "main/d1", b"1")
    put(s3, repo, "main/d2", b"2")
    put(s3, repo, "main/keep", b"k")
    r = s3.delete_objects(Bucket=repo, Delete={"Objects": [
        {"Key": "main/d1"}, {"Key": "main/d2"}, {"Key": "main/missing"}]})
    assert sorted(d["Key"] for d in r.get("Deleted", [])) == \
        ["main/d1", "main/d2", "main/missing"]
    assert r.get("Errors", []) == []
    assert list_keys(s3, repo, "main/")[0] == ["main/keep"]


def test_c18_delete_objects_quiet_lists_only_errors(s3, repo):
    put(s3, repo, "main/d1", b"1")
    put(s3, repo, "main/d2", b"2")
    r = s3.delete_objects(Bucket=repo, Delete={"Quiet": True, "Objects": [
        {"Key": "main/d1"}, {"Key": "main/d2"}, {"Key": "main/missing"}]})
    assert r.get("Deleted", []) == []
    assert r.get("Errors", []) == []
    assert list_keys(s3, repo, "main/")[0] == []


def test_delete_objects_limit_1000(lakefs, s3, repo):
    objs = "".join(f"<Object><Key>main/k{i}</Key></Object>" for i in range(1001))
    body = f"<Delete>{objs}</Delete>".encode()
    r = rawhttp.request(lakefs, "POST", f"/{repo}", query={"delete": None}, body=body,
                        headers={"Content-MD5": rawhttp.md5_b64(body)})
    assert r.status == 400 and r.error_code == "MalformedXML", r


def test_delete_objects_under_commit_changes_nothing(lakefs, s3, repo):
    put(s3, repo, "main/a", b"a")
    cid = lakefs.commit(repo, "main")
    r = s3.delete_objects(Bucket=repo, Delete={"Objects": [{"Key": f"{cid}/a"}]})
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert get_bytes(s3, repo, f"{cid}/a") == b"a"
    assert get_bytes(s3, repo, "main/a") == b"a"


# ----------------------------------------------- unsupported subresources
def test_versioning_returns_empty_configuration(s3, repo):
    r = s3.get_bucket_versioning(Bucket=repo)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "Status" not in r


def test_unsupported_subresource_is_405_or_501(lakefs, s3, repo):
    put(s3, repo, "main/t", b"x")
    for path, sub in [(f"/{repo}/main/t", "acl"), (f"/{repo}/main/t", "torrent"),
                      (f"/{repo}", "acl"), (f"/{repo}", "policy"), (f"/{repo}", "lifecycle")]:
        r = rawhttp.request(lakefs, "GET", path, query={sub: None})
        assert r.status in (405, 501), (sub, r)
        assert r.error_code in ("ERRLakeFSNotSupported", "NotImplemented"), (sub, r)


def test_object_tagging_get_is_empty_tagset(lakefs, s3, repo):
    """lakeFS answers GET ?tagging with an empty TagSet (getobject.go)."""
    put(s3, repo, "main/t", b"x")
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/t", query={"tagging": None})
    assert r.status == 200 and rawhttp.findall(r.xml(), "Tag") == [], r


def test_delete_bucket_unsupported(lakefs, repo):
    r = rawhttp.request(lakefs, "DELETE", f"/{repo}")
    assert r.status in (405, 501), r
    s, _ = lakefs.api("GET", f"/repositories/{repo}")
    assert s == 200


def test_metadata_too_large(lakefs, repo):
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/big-meta", body=b"x",
                        headers={"x-amz-meta-big": "v" * 3000})
    assert r.status == 400 and r.error_code == "MetadataTooLarge", r


def test_s3_redirection_user_agent_gets_307(lakefs, s3, repo):
    put(s3, repo, "main/redir", b"data")
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/redir",
                        headers={"User-Agent": "test s3RedirectionSupport"})
    assert r.status == 307, r
    assert r.header("location")


def test_large_object_sha256(s3, repo):
    data = rand_bytes(5 * 1024 * 1024 + 7)
    put(s3, repo, "main/large", data)
    got = get_bytes(s3, repo, "main/large")
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
