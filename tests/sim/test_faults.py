"""Fault injection (/_sim/faults): every S3 request fails in one of four
ways at fail_rate 1.0, the REST API and /_sim/ never do, latency_ms delays
S3 requests, and a request failed before the work never applies a
mutation; faults after the work (an answer lost, a connection reset mid
answer) apply it and hide the answer; rules aim one fault at one step; a
seed replays the random draw. Faults are always switched off again."""
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
    # Switched off, it is off (how fast an answer then comes depends on
    # the machine's load, so that is not what is checked).
    faults(0.0, 0)
    assert lakefs.faults()["latency_ms"] == 0
    assert rawhttp.request(lakefs, "HEAD", f"/{repo}/main/f").status == 200


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


# ------------------------------------------------- faults after the work
def rule(operation, kind, **kw):
    return dict(operation=operation, kind=kind, **kw)


def test_lost_answer_of_a_put_the_object_is_stored(lakefs, repo, faults):
    """"lost": the PUT is applied and durable, the client sees a reset
    connection and no answer at all."""
    data = rand_bytes(100_000)
    lakefs.set_faults(rules=[rule("PutObject", "lost")])
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/lost", body=data, timeout=20)
    assert r.kind == "reset", r
    assert lakefs.faults()["rules"] == []            # spent
    assert lakefs.stats()["faults_by_kind"].get("lost", 0) >= 1
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/lost")
    assert r.kind == "ok" and r.status == 200 and r.body == data
    # one request only: the next PUT is answered
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/lost", body=b"v2")
    assert r.kind == "ok" and r.status == 200


def test_reset_mid_body_of_a_get_after_part_of_it(lakefs, repo, faults):
    data = rand_bytes(3 << 20)
    assert rawhttp.request(lakefs, "PUT", f"/{repo}/main/g", body=data).status == 200
    lakefs.set_faults(rules=[rule("GetObject", "reset_mid_body")])
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/g", timeout=20)
    assert r.kind == "truncated" and r.status == 200, r
    assert int(r.header("content-length")) == len(data)
    assert len(r.body) < len(data) and data.startswith(r.body)
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/g")
    assert r.kind == "ok" and r.body == data


def test_reset_mid_answer_of_a_delete_the_key_is_gone(lakefs, repo, faults):
    """An answer without a body is cut inside its headers: no status
    reaches the client, the DELETE was applied."""
    assert rawhttp.request(lakefs, "PUT", f"/{repo}/main/d", body=b"d").status == 200
    lakefs.set_faults(rules=[rule("DeleteObject", "reset_mid_body")])
    r = rawhttp.request(lakefs, "DELETE", f"/{repo}/main/d", timeout=20)
    assert r.kind == "reset", r
    assert rawhttp.request(lakefs, "HEAD", f"/{repo}/main/d").status == 404
    # a resend of the DELETE succeeds: deleting is idempotent
    r = rawhttp.request(lakefs, "DELETE", f"/{repo}/main/d")
    assert r.kind == "ok" and r.status == 204


def test_lost_answer_of_a_copy_the_copy_is_made(lakefs, s3, repo, faults):
    """A rename is a copy then a delete: the copy's answer lost, the copy
    exists, and sending it again is harmless."""
    data = rand_bytes(70_000)
    s3.put_object(Bucket=repo, Key="main/src", Body=data)
    lakefs.set_faults(rules=[rule("CopyObject", "lost")])
    hdrs = {"x-amz-copy-source": f"/{repo}/main/src"}
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/dst", headers=hdrs, timeout=20)
    assert r.kind == "reset", r
    assert rawhttp.request(lakefs, "GET", f"/{repo}/main/dst").body == data
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/dst", headers=hdrs)
    assert r.kind == "ok" and r.status == 200
    assert rawhttp.request(lakefs, "GET", f"/{repo}/main/dst").body == data


def test_lost_answer_of_complete_multipart_upload(lakefs, s3, repo, faults):
    """The object is assembled and stored; the upload is gone, so sending
    the Complete again fails (as lakeFS answers an unknown upload ID: 500
    InternalError): a client must find out by HEAD, not by resending."""
    parts = [rand_bytes(5 << 20), rand_bytes(1234)]
    uid = s3.create_multipart_upload(Bucket=repo, Key="main/mp")["UploadId"]
    done = []
    for i, p in enumerate(parts, 1):
        e = s3.upload_part(Bucket=repo, Key="main/mp", UploadId=uid, PartNumber=i, Body=p)
        done.append((i, e["ETag"]))
    xml = ("<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in done) +
        "</CompleteMultipartUpload>").encode()
    lakefs.set_faults(rules=[rule("CompleteMultipartUpload", "lost")])
    r = rawhttp.request(lakefs, "POST", f"/{repo}/main/mp", query={"uploadId": uid}, body=xml,
                        timeout=30)
    assert r.kind == "reset", r
    got = rawhttp.request(lakefs, "GET", f"/{repo}/main/mp")
    assert got.status == 200 and got.body == b"".join(parts)
    again = rawhttp.request(lakefs, "POST", f"/{repo}/main/mp", query={"uploadId": uid},
                            body=xml)
    assert (again.kind, again.status, again.error_code) == ("ok", 500, "InternalError"), again
    assert rawhttp.request(lakefs, "GET", f"/{repo}/main/mp").body == b"".join(parts)


def test_rules_count_skip_and_path(lakefs, repo, faults):
    """skip lets that many matching requests through; count is how many
    then fault; path_contains narrows the match; other operations pass."""
    lakefs.set_faults(rules=[rule("PutObject", "error500", skip=2, count=2,
                                  path_contains="/main/hit")])
    seen = []
    for i in range(6):
        assert rawhttp.request(lakefs, "HEAD", f"/{repo}/main/hit{i}").status == 404
        assert rawhttp.request(lakefs, "PUT", f"/{repo}/main/miss{i}", body=b"m").status == 200
        seen.append(rawhttp.request(lakefs, "PUT", f"/{repo}/main/hit{i}", body=b"h").status)
    assert seen == [200, 200, 500, 500, 200, 200]
    assert lakefs.faults()["rules"] == []


def test_a_stall_rule_holds_one_request_then_serves_it(lakefs, repo, faults):
    """The held request is counted as it begins, waits stall_ms, and is
    then served whole; the next one is not held."""
    lakefs.set_faults(rules=[{"operation": "PutObject", "kind": "stall",
                              "path_contains": "/main/held", "stall_ms": 600}])
    lakefs.reset_stats()
    t0 = time.monotonic()
    assert rawhttp.request(lakefs, "PUT", f"/{repo}/main/held", body=b"h").status == 200
    assert time.monotonic() - t0 >= 0.6
    assert lakefs.stats()["faults_by_kind"] == {"stall": 1}
    assert rawhttp.request(lakefs, "GET", f"/{repo}/main/held").body == b"h"
    assert rawhttp.request(lakefs, "PUT", f"/{repo}/main/held", body=b"2").status == 200
    assert lakefs.stats()["faults_by_kind"] == {"stall": 1}
    assert lakefs.faults()["rules"] == []


def test_bad_fault_settings_are_refused(lakefs, faults):
    for doc in ({"kinds": ["nope"]}, {"kinds": []}, {"kinds": ["truncate"]},
                {"rules": [{"operation": "PutObjekt", "kind": "lost"}]},
                {"rules": [{"operation": "PutObject", "kind": "truncate"}]},
                {"rules": [{"operation": "PutObject", "kind": "lost", "count": 0}]},
                {"rules": [{"operation": "PutObject", "kind": "lost", "typo": 1}]},
                {"kinds": ["stall"]},
                {"rules": [{"operation": "PutObject", "kind": "lost", "stall_ms": 5}]},
                {"rules": [{"operation": "PutObject", "kind": "stall", "stall_ms": -1}]}):
        status, _ = lakefs._http("POST", "/_sim/faults", doc, auth=False)
        assert status == 400, doc
    assert lakefs.faults()["rules"] == []


def fault_sequence(lakefs, repo, n=60):
    out = []
    for i in range(n):
        r = rawhttp.request(lakefs, "HEAD", f"/{repo}/main/x{i % 7}", timeout=20)
        out.append(classify(r))
    return out


def test_seed_replays_the_same_faults(lakefs, repo, faults):
    """The same seed and the same requests give the same faults; the seed
    in force is reported."""
    lakefs.set_faults(0.5, seed=4242)
    assert lakefs.faults()["seed"] == 4242
    first = fault_sequence(lakefs, repo)
    lakefs.set_faults(0.5, seed=4242)
    assert fault_sequence(lakefs, repo) == first
    lakefs.set_faults(0.5, seed=4243)
    assert fault_sequence(lakefs, repo) != first
    assert 5 < sum(k != "unexpected ok 404 None" for k in first) < 55, first


def test_after_work_kinds_in_the_random_draw(lakefs, repo, faults):
    """kinds chooses what the draw injects: at fail_rate 1 with only the
    after-work kinds, every PUT is applied and no answer arrives whole."""
    lakefs.set_faults(1.0, kinds=["lost", "reset_mid_body"], seed=1)
    bodies = {f"main/a{i:02d}": rand_bytes(1000 + i) for i in range(30)}
    for k, v in bodies.items():
        r = rawhttp.request(lakefs, "PUT", f"/{repo}/{k}", body=v, timeout=20)
        assert r.kind == "reset", (k, r)
    by_kind = lakefs.stats()["faults_by_kind"]
    assert by_kind.get("lost", 0) > 0 and by_kind.get("reset_mid_body", 0) > 0, by_kind
    lakefs.set_faults()
    for k, v in bodies.items():
        assert rawhttp.request(lakefs, "GET", f"/{repo}/{k}").body == v, k
