"""/_sim/stats: request counts per S3 operation match exactly what a test
sent; bytes in/out are plausible; /api/ and /_sim/ requests are not S3
operations."""
import rawhttp
from sim_helpers import rand_bytes


def s3_total(stats):
    return sum(stats["requests"].values())


def test_stats_count_exactly_the_requests_made(lakefs, repo):
    data = rand_bytes(10_000)
    assert rawhttp.request(lakefs, "PUT", f"/{repo}/main/s", body=data).status == 200
    lakefs.reset_stats()
    st = lakefs.stats()
    assert st["requests"] == {} or s3_total(st) == 0
    assert st["bytes_in"] == 0 and st["bytes_out"] == 0
    n_head, n_get = 7, 5
    for _ in range(n_head):
        assert rawhttp.request(lakefs, "HEAD", f"/{repo}/main/s").status == 200
    for _ in range(n_get):
        assert rawhttp.request(lakefs, "GET", f"/{repo}/main/s").body == data
    r = rawhttp.request(lakefs, "GET", f"/{repo}", query={"list-type": "2", "prefix": "main/"})
    assert r.status == 200
    # REST and /_sim/ calls are not S3 operations
    lakefs.api("GET", f"/repositories/{repo}", expect=200)
    st = lakefs.stats()
    req = st["requests"]
    assert req.get("HeadObject") == n_head, req
    assert req.get("GetObject") == n_get, req
    assert req.get("ListObjectsV2", 0) + req.get("ListObjects", 0) == 1, req
    assert s3_total(st) == n_head + n_get + 1, req
    assert st["bytes_out"] >= n_get * len(data)
    assert st["bytes_out"] < n_get * len(data) + 200_000
    assert st["bytes_in"] < 100_000


def test_stats_bytes_in_counts_uploads(lakefs, repo):
    lakefs.reset_stats()
    data = rand_bytes(300_000)
    for i in range(3):
        assert rawhttp.request(lakefs, "PUT", f"/{repo}/main/u{i}", body=data).status == 200
    st = lakefs.stats()
    assert st["requests"].get("PutObject") == 3, st
    assert 3 * len(data) <= st["bytes_in"] < 3 * len(data) + 100_000
    assert st["bytes_out"] < 100_000


def test_stats_reset_and_boto3_calls(lakefs, repo):
    s3 = lakefs.s3()
    s3.put_object(Bucket=repo, Key="main/x", Body=b"x")
    lakefs.reset_stats()
    s3.list_objects_v2(Bucket=repo, Prefix="main/", Delimiter="/")
    s3.list_objects(Bucket=repo, Prefix="main/")
    s3.head_object(Bucket=repo, Key="main/x")
    s3.delete_object(Bucket=repo, Key="main/x")
    s3.list_buckets()
    st = lakefs.stats()
    req = st["requests"]
    assert s3_total(st) == 5, req
    assert req.get("HeadObject") == 1 and req.get("DeleteObject") == 1, req
    assert req.get("ListObjectsV2", 0) + req.get("ListObjects", 0) == 2, req
    lakefs.reset_stats()
    assert s3_total(lakefs.stats()) == 0


def test_stats_count_faulted_requests(lakefs, repo):
    assert rawhttp.request(lakefs, "PUT", f"/{repo}/main/f", body=b"f").status == 200
    lakefs.reset_stats()
    try:
        lakefs.set_faults(1.0, 0)
        for _ in range(10):
            rawhttp.request(lakefs, "HEAD", f"/{repo}/main/f", timeout=20)
    finally:
        lakefs.set_faults(0.0, 0)
    st = lakefs.stats()
    assert st.get("faults") == 10, st
