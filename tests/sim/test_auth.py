"""Authentication: checklist lines 20-21 plus SigV2, region, clock skew and
the REST API's basic auth."""
import base64
import hashlib
import json
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError

import rawhttp
from sim_helpers import error_of, get_bytes, list_keys, put


def client_with(lakefs, access_key, secret_key):
    """A boto3 client with the seed docs' settings and other credentials."""
    client = boto3.client("s3", endpoint_url=lakefs.endpoint,
                          aws_access_key_id=access_key,
                          aws_secret_access_key=secret_key,
                          region_name="us-east-1",
                          config=lakefs.s3().meta.config)
    # as tests/conftest.py does: no "Expect: 100-continue" (botocore bug)
    client.meta.events.register("before-send.s3", _drop_expect)
    return client


def _drop_expect(request, **_):
    request.headers.pop("Expect", None)  # must return None: a value would be the response


def api_as(lakefs, user, password, method, path, body=None):
    """REST call with explicit basic-auth credentials -> (status, json)."""
    data = json.dumps(body).encode() if body is not None else None
    tok = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(lakefs.endpoint + "/api/v1" + path, data=data,
                                 method=method,
                                 headers={"Authorization": "Basic " + tok,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw


# ------------------------------------------------------------ 20. auth
def test_c20_wrong_secret_signature_does_not_match(lakefs, repo):
    bad = client_with(lakefs, lakefs.access_key, "not-the-secret")
    for call in (lambda: bad.list_buckets(),
                 lambda: bad.list_objects_v2(Bucket=repo, Prefix="main/"),
                 lambda: bad.put_object(Bucket=repo, Key="main/x", Body=b"x"),
                 lambda: bad.get_object(Bucket=repo, Key="main/x")):
        with pytest.raises(ClientError) as ei:
            call()
        assert error_of(ei) == (403, "SignatureDoesNotMatch")
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/x", secret_key="wrong")
    assert r.status == 403 and r.error_code == "SignatureDoesNotMatch"
    assert list_keys(lakefs.s3(), repo, "main/")[0] == []


def test_c20_unknown_access_key_403(lakefs, repo):
    bad = client_with(lakefs, "AKIAUNKNOWNKEY000000", lakefs.secret_key)
    with pytest.raises(ClientError) as ei:
        bad.list_buckets()
    status, code = error_of(ei)
    assert status == 403 and code in ("InvalidAccessKeyId", "AccessDenied")
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/x", body=b"x",
                        access_key="AKIAUNKNOWNKEY000000")
    assert r.status == 403 and r.error_code in ("InvalidAccessKeyId", "AccessDenied")


def test_unsigned_request_refused(lakefs, repo):
    """No Authorization at all: lakeFS answers 400 MissingFields (its
    authenticator chain finds no signature); S3 would say 403."""
    r = rawhttp.request(lakefs, "GET", f"/{repo}", sign=False)
    assert r.status in (400, 403), r
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/anon", body=b"x", sign=False)
    assert r.status in (400, 403), r
    assert list_keys(lakefs.s3(), repo, "main/")[0] == []


def test_c20_presigned_get_works(lakefs, s3, repo):
    put(s3, repo, "main/p q.txt", b"presigned body")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": repo, "Key": "main/p q.txt"},
                                    ExpiresIn=300)
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200 and r.read() == b"presigned body"
    url2 = rawhttp.presign(lakefs.endpoint, "GET", f"/{repo}/main/p q.txt",
                           lakefs.access_key, lakefs.secret_key, expires=300)
    r = rawhttp.send_url("GET", url2)
    assert r.status == 200 and r.body == b"presigned body"
    # tampering with the signed URL breaks it
    r = rawhttp.send_url("GET", url2.replace("p%20q.txt", "other.txt"))
    assert r.status == 403
    r = rawhttp.send_url("GET", url2.replace("X-Amz-Expires=300", "X-Amz-Expires=301"))
    assert r.status == 403


def test_c20_presigned_url_expires(lakefs, s3, repo):
    put(s3, repo, "main/e", b"soon gone")
    url = rawhttp.presign(lakefs.endpoint, "GET", f"/{repo}/main/e",
                          lakefs.access_key, lakefs.secret_key, expires=1)
    time.sleep(2.2)
    r = rawhttp.send_url("GET", url)
    assert r.status == 403, r
    assert r.error_code in ("AccessDenied", "ExpiredToken", "RequestExpired")
    assert r.body != b"soon gone"


def test_presigned_expiry_over_7_days_refused(lakefs, s3, repo):
    put(s3, repo, "main/e", b"x")
    url = rawhttp.presign(lakefs.endpoint, "GET", f"/{repo}/main/e",
                          lakefs.access_key, lakefs.secret_key, expires=7 * 86400 + 1)
    r = rawhttp.send_url("GET", url)
    assert r.status in (400, 403), r


def test_presigned_put_works(lakefs, s3, repo):
    url = rawhttp.presign(lakefs.endpoint, "PUT", f"/{repo}/main/via-url",
                          lakefs.access_key, lakefs.secret_key, expires=300)
    r = rawhttp.send_url("PUT", url, body=b"uploaded")
    assert r.status == 200, r
    assert get_bytes(s3, repo, "main/via-url") == b"uploaded"


def test_sigv2_accepted(lakefs, s3, repo):
    put(s3, repo, "main/v2", b"old scheme")
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/v2", sigv2=True)
    assert r.status == 200 and r.body == b"old scheme", r
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/v2", sigv2=True, secret_key="bad")
    assert r.status == 403


def test_region_in_scope_not_checked(lakefs, s3, repo):
    put(s3, repo, "main/r", b"any region")
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/r", region="eu-west-3")
    assert r.status == 200 and r.body == b"any region", r


def test_clock_skew_rejected(lakefs, s3, repo):
    put(s3, repo, "main/t", b"x")
    assert rawhttp.request(lakefs, "GET", f"/{repo}/main/t", clock_offset=-120).status == 200
    for off in (-3600, 3600):
        r = rawhttp.request(lakefs, "GET", f"/{repo}/main/t", clock_offset=off)
        assert r.status == 403, (off, r)


# ------------------------------------------------------- 21. payload hash
def test_c21_unsigned_payload_accepted(lakefs, s3, repo):
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/u", body=b"unsigned body",
                        payload_hash=rawhttp.UNSIGNED)
    assert r.status == 200, r
    assert get_bytes(s3, repo, "main/u") == b"unsigned body"


def test_c21_real_payload_hash_accepted(lakefs, s3, repo):
    body = b"hashed body"
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/h", body=body,
                        payload_hash=hashlib.sha256(body).hexdigest())
    assert r.status == 200, r
    assert get_bytes(s3, repo, "main/h") == body


def test_c21_wrong_payload_hash_rejected(lakefs, s3, repo):
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/w", body=b"the body",
                        payload_hash=hashlib.sha256(b"another body").hexdigest())
    # "rejected": S3 says 400 XAmzContentSHA256Mismatch; lakeFS notices the
    # mismatch while storing the body and reports 500 InternalError
    assert (r.status, r.error_code) in [
        (400, "XAmzContentSHA256Mismatch"), (400, "BadDigest"),
        (403, "SignatureDoesNotMatch"), (403, "AccessDenied"), (500, "InternalError")], r
    with pytest.raises(ClientError):
        s3.head_object(Bucket=repo, Key="main/w")
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/w", body=b"the body",
                        payload_hash="not-a-hash")
    assert r.status in (400, 403, 500), r
    with pytest.raises(ClientError):
        s3.head_object(Bucket=repo, Key="main/w")


def _aws_chunked(data):
    return (b"%x\r\n" % len(data) + data + b"\r\n0\r\n"
            + b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n")


def test_c21_streaming_unsigned_trailer_rejected(lakefs, s3, repo):
    data = b"trailer mode body"
    body = _aws_chunked(data)
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/trailer", body=body,
                        payload_hash=rawhttp.TRAILER,
                        headers={"Content-Encoding": "aws-chunked",
                                 "x-amz-decoded-content-length": str(len(data)),
                                 "x-amz-trailer": "x-amz-checksum-crc32"})
    assert r.status == 403, r
    assert r.error_code == "AccessDenied", r
    assert "encoding/hex: invalid byte" in r.error_message, r
    with pytest.raises(ClientError):
        s3.head_object(Bucket=repo, Key="main/trailer")
    assert list_keys(s3, repo, "main/")[0] == []


# ------------------------------------------------------------ REST auth
def test_rest_api_wrong_password_401(lakefs, repo):
    status, body = api_as(lakefs, lakefs.access_key, "wrong-password",
                          "GET", "/repositories")
    assert status == 401
    assert isinstance(body, dict) and "message" in body
    status, _ = api_as(lakefs, "AKIAUNKNOWNKEY000000", lakefs.secret_key,
                       "GET", f"/repositories/{repo}")
    assert status == 401
    status, _ = lakefs.api("GET", "/repositories", auth=False)
    assert status == 401
    status, _ = api_as(lakefs, lakefs.access_key, "wrong-password", "POST",
                       "/repositories", {"name": "should-not-exist",
                                         "storage_namespace": "local://x",
                                         "default_branch": "main"})
    assert status == 401
    assert lakefs.api("GET", "/repositories/should-not-exist")[0] == 404
    assert api_as(lakefs, lakefs.access_key, lakefs.secret_key,
                  "GET", f"/repositories/{repo}")[0] == 200


def test_rest_api_healthcheck_needs_no_auth(lakefs):
    assert lakefs.api("GET", "/healthcheck", auth=False)[0] == 204
