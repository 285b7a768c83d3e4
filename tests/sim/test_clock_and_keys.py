"""The gateway's clock and keys as a running test may change them: a key's
secret replaced or revoked at runtime (/_sim/credentials), the gateway's
clock moved (clock_skew_s: signature checks and the Date header follow
it, refused as lakeFS refuses: RequestTimeTooSkewed for a request dated
too far in the gateway's past, AccessDenied "not valid yet" for one too
far in its future), and latency jitter. Each test puts the key and the
clock back (the `repo` fixture does too)."""
import email.utils
import time

import pytest

import rawhttp

OTHER_AK = "AKIAROTATEDEXAMPLE"


@pytest.fixture
def knobs(lakefs):
    try:
        yield lakefs
    finally:
        lakefs.set_faults(0.0, 0)
        lakefs.restore_secret()
        lakefs.set_secret(OTHER_AK, None)


def date_of(r):
    return email.utils.parsedate_to_datetime(r.header("date")).timestamp()


def test_secret_replaced_old_signature_refused_new_accepted(lakefs, repo, knobs):
    assert rawhttp.request(lakefs, "PUT", f"/{repo}/main/a", body=b"x").status == 200
    knobs.set_secret(lakefs.access_key, "a-brand-new-secret")
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/a")
    assert (r.status, r.error_code) == (403, "SignatureDoesNotMatch")
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/a", secret_key="a-brand-new-secret")
    assert (r.status, r.body) == (200, b"x")
    # The REST API shares the keys.
    status, _ = lakefs._http("GET", "/api/v1/repositories")
    assert status == 401
    knobs.restore_secret()
    assert rawhttp.request(lakefs, "GET", f"/{repo}/main/a").status == 200
    assert lakefs.api("GET", "/repositories")[0] == 200


def test_key_added_then_revoked(lakefs, repo, knobs):
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/", access_key=OTHER_AK, secret_key="s1")
    assert (r.status, r.error_code) == (403, "AccessDenied")
    listed = knobs.set_secret(OTHER_AK, "s1")["access_key_ids"]
    assert OTHER_AK in listed and lakefs.access_key in listed
    assert "s1" not in repr(listed)
    assert rawhttp.request(lakefs, "PUT", f"/{repo}/main/b", body=b"y",
                           access_key=OTHER_AK, secret_key="s1").status == 200
    knobs.set_secret(OTHER_AK, None)
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/b", access_key=OTHER_AK, secret_key="s1")
    assert (r.status, r.error_code) == (403, "AccessDenied")


def test_credentials_endpoint_refuses_bad_documents(lakefs, knobs):
    for doc in ({}, {"access_key_id": "x"}, {"access_key_id": "AK:colon", "secret_access_key": "s"},
                {"access_key_id": lakefs.access_key, "secret_access_key": ""},
                {"access_key_id": lakefs.access_key, "secret_access_key": 5}):
        status, body = lakefs._http("POST", "/_sim/credentials", doc, auth=False)
        assert status == 400, (doc, body)
    # Nothing changed.
    assert lakefs.api("GET", "/repositories")[0] == 200


@pytest.mark.parametrize("skew,code,message", [
    (3600, "RequestTimeTooSkewed", "too large"),   # the gateway is an hour ahead of us
    (-3600, "AccessDenied", "not valid yet"),      # an hour behind: our requests are early
])
def test_clock_skew_refused_as_lakefs_does_and_date_says_its_time(lakefs, repo, knobs, skew,
                                                                   code, message):
    assert rawhttp.request(lakefs, "PUT", f"/{repo}/main/c", body=b"z").status == 200
    knobs.set_faults(clock_skew_s=skew)
    assert knobs.faults()["clock_skew_s"] == skew
    before = time.time()
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/c")
    assert (r.status, r.error_code) == (403, code)
    assert message in r.error_message
    # The answer's Date is the gateway's clock (whole seconds).
    assert abs(date_of(r) - (before + skew)) < 5
    # Signed with the gateway's time, the same request passes.
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/c", clock_offset=skew)
    assert (r.status, r.body) == (200, b"z")


def test_small_skew_is_tolerated(lakefs, repo, knobs):
    knobs.set_faults(clock_skew_s=600)   # within lakeFS's 15 minutes
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/d", body=b"w")
    assert r.status == 200
    assert abs(date_of(r) - (time.time() + 600)) < 5


def test_set_faults_resets_skew_and_jitter(lakefs, knobs):
    got = knobs.set_faults(latency_jitter_ms=30, clock_skew_s=-5)
    assert (got["latency_jitter_ms"], got["clock_skew_s"]) == (30, -5)
    got = knobs.set_faults()
    assert (got["latency_jitter_ms"], got["clock_skew_s"]) == (0, 0)
    for bad in ({"latency_jitter_ms": -1}, {"clock_skew_s": 1e12}, {"clock_skew_s": "x"}):
        status, _ = lakefs._http("POST", "/_sim/faults", bad, auth=False)
        assert status == 400, bad


def test_latency_jitter_spreads_delays_within_bounds(lakefs, repo, knobs):
    assert rawhttp.request(lakefs, "PUT", f"/{repo}/main/e", body=b"v").status == 200
    knobs.set_faults(latency_ms=20, latency_jitter_ms=200)
    took = []
    for _ in range(12):
        t0 = time.monotonic()
        assert rawhttp.request(lakefs, "GET", f"/{repo}/main/e").status == 200
        took.append(time.monotonic() - t0)
    # Every request waited at least the fixed part; the draws differ.
    assert min(took) >= 0.02
    assert max(took) - min(took) > 0.01, took
