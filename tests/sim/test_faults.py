"""Fault injection (/_sim/faults): every S3 request fails in one of four
ways at fail_rate 1.0, the REST API and /_sim/ never do, latency_ms delays
S3 requests, and a failed request never applies a mutation. Faults are
always switched off again in a finally."""
import collections
import time

import pytest

import rawhttp
from sim_helpers import list_keys, rand_bytes

KINDS = ("500 InternalError", "503 SlowDown", "reset", "truncated")


def classify(r):
    if r.kind == "reset":
        return "reset"
    if r.kind == "truncated":
        return "truncated"
    if r.status == 500 and r.error_code == "InternalError":
        return "500 InternalError"
    if r.status == 503 and r.error_code == "SlowDown":
        return "503 SlowDown"
    return f"unexpected {r.kind} {r.status} {r.error_code}"


@pytest.fixture
def faults(lakefs):
    """Sets faults through this callable; always resets them afterwards."""
    try:
        yield lakefs.set_faults
    finally:
        lakefs.set_faults(0.0, 0)


def test_fail_rate_1_every_s3_request_fails_each_kind_seen(lakefs, repo, faults):
    data = rand_bytes(256 * 1024)
    assert rawhttp.request(lakefs, "PUT", f"/{repo}/main/f", body=data).status == 200
    faults(1.0, 0)
    kinds = collections.Counter()
    for _ in range(200):
        r = rawhttp.request(lakefs, "GET", f"/{repo}/main/f", timeout=20)
        kinds[classify(r)] += 1
        if r.kind == "truncated":
            assert len(r.body) < len(data)
            assert data.startswith(r.body)
    faults(0.0, 0)
    unexpected = {k: v for k, v in kinds.items() if k not in KINDS}
    assert unexpected == {}, kinds
    assert set(kinds) == set(KINDS), kinds
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/f")
    assert r.kind == "ok" and r.status == 200 and r.body == data


def test_fail_rate_1_all_s3_operations_fail(lakefs, repo, faults):
    assert rawhttp.request(lakefs, "PUT", f"/{repo}/main/f", body=b"x").status == 200
    faults(1.0, 0)
    calls = [("GET", "/", None), ("GET", f"/{repo}", {"list-type": "2", "prefix": "main/"}),
             ("HEAD", f"/{repo}/main/f", None), ("HEAD", f"/{repo}", None),
             ("PUT", f"/{repo}/main/g", None), ("DELETE", f"/{repo}/main/f", None)]
    for _ in range(5):
        for method, path, query in calls:
            r = rawhttp.request(lakefs, method, path, query=query,
                                body=b"y" if method == "PUT" else b"", timeout=20)
            assert r.kind != "ok" or r.status >= 500, (method, path, r)


def test_faults_never_affect_api_or_sim_endpoints(lakefs, repo, faults):
    faults(1.0, 0)
    for i in range(30):
        lakefs.api("GET", f"/repositories/{repo}", expect=200)
        lakefs.api("GET", "/healthcheck", expect=204)
        assert isinstance(lakefs.stats(), dict)
    lakefs.create_branch(repo, "during-faults")
    lakefs.api("GET", f"/repositories/{repo}/branches/during-faults", expect=200)
    faults(1.0, 0)  # /_sim/faults itself still answers


def test_latency_ms_delays_s3_requests(lakefs, repo, faults):
    assert rawhttp.request(lakefs, "PUT", f"/{repo}/main/f", body=b"x").status == 200
    faults(0.0, 300)
    for method in ("HEAD", "GET"):
        t0 = time.monotonic()
        r = rawhttp.request(lakefs, method, f"/{repo}/main/f")
        dt = time.monotonic() - t0
        assert r.status == 200
        assert dt >= 0.3, (method, dt)
    faults(0.0, 0)
    t0 = time.monotonic()
    rawhttp.request(lakefs, "HEAD", f"/{repo}/main/f")
    assert time.monotonic() - t0 < 0.3


def test_failed_puts_never_apply_partially(lakefs, s3, repo, faults):
    bodies = {f"main/p{i:02d}": rand_bytes(100_000 + i) for i in range(40)}
    faults(1.0, 0)
    for k, v in bodies.items():
        rawhttp.request(lakefs, "PUT", f"/{repo}/{k}", body=v, timeout=20)
    faults(0.0, 0)
    for k, v in bodies.items():
        r = rawhttp.request(lakefs, "GET", f"/{repo}/{k}")
        assert r.kind == "ok"
        assert r.status == 404 or (r.status == 200 and r.body == v), (k, r.status, len(r.body))
    keys, _ = list_keys(s3, repo, "main/")
    for k in keys:
        assert rawhttp.request(lakefs, "GET", f"/{repo}/{k}").body == bodies[k]


def test_failed_deletes_and_copies_never_apply_partially(lakefs, s3, repo, faults):
    data = rand_bytes(50_000)
    for i in range(20):
        s3.put_object(Bucket=repo, Key=f"main/d{i:02d}", Body=data)
    faults(1.0, 0)
    for i in range(20):
        rawhttp.request(lakefs, "DELETE", f"/{repo}/main/d{i:02d}", timeout=20)
        rawhttp.request(lakefs, "PUT", f"/{repo}/main/c{i:02d}", timeout=20,
                        headers={"x-amz-copy-source": f"/{repo}/main/d{i:02d}"})
    faults(0.0, 0)
    for i in range(20):
        for k in (f"main/d{i:02d}", f"main/c{i:02d}"):
            r = rawhttp.request(lakefs, "GET", f"/{repo}/{k}")
            assert r.status == 404 or (r.status == 200 and r.body == data), (k, r)


def test_partial_fail_rate_with_retries(lakefs, repo, faults):
    """At fail_rate 0.3 a retrying client still gets every PUT and LIST
    through, and the data is right afterwards."""
    faults(0.3, 0)
    ok = 0
    for i in range(30):
        for _attempt in range(30):
            r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/r{i:02d}", body=b"v%d" % i,
                                timeout=20)
            if r.kind == "ok" and r.status == 200:
                ok += 1
                break
    faults(0.0, 0)
    assert ok == 30
    keys, _ = list_keys(lakefs.s3(), repo, "main/")
    assert keys == [f"main/r{i:02d}" for i in range(30)]
