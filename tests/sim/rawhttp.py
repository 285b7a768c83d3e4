"""Raw, hand-signed S3 requests for the conformance suite.

boto3 hides exactly the things these tests must control: the payload hash
header, streaming/trailer modes, Content-MD5, conditional headers, presigned
URL expiry, and what really came back on the wire (a reset connection or a
truncated body). This module signs with botocore's own SigV4 code and sends
with http.client, one connection per request, and reports transport
failures as values instead of exceptions.
"""
import contextlib
import hashlib
import http.client
import socket
import types
import urllib.parse
import xml.etree.ElementTree as ET

import botocore.auth
from botocore.auth import HmacV1Auth, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = "us-east-1"
UNSIGNED = "UNSIGNED-PAYLOAD"
TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


def quote_path(path):
    """Percent-encodes a /repo/ref/key path the way S3 clients do (every
    byte except unreserved characters and "/")."""
    return urllib.parse.quote(path, safe="/-_.~")


def build_query(query):
    """Canonical query string: sorted, RFC 3986 encoded, "k=" for flags."""
    if not query:
        return ""
    if isinstance(query, dict):
        query = list(query.items())
    parts = []
    for k, v in sorted(query, key=lambda kv: (str(kv[0]), str(kv[1] or ""))):
        k = urllib.parse.quote(str(k), safe="-_.~")
        v = "" if v is None else urllib.parse.quote(str(v), safe="-_.~")
        parts.append(f"{k}={v}")
    return "&".join(parts)


class _FixedPayloadAuth(S3SigV4Auth):
    """S3 SigV4 with a caller-chosen x-amz-content-sha256 value."""

    def __init__(self, credentials, payload_hash, region=REGION):
        super().__init__(credentials, "s3", region)
        self._payload_hash = payload_hash

    def payload(self, request):
        return self._payload_hash


class Response:
    """What came back. `kind` is "ok" (a complete HTTP answer), "reset"
    (connection closed or reset before a status line), or "truncated"
    (status and headers arrived but fewer body bytes than announced)."""

    def __init__(self, kind, status=None, headers=None, body=b"", exc=None):
        self.kind = kind
        self.status = status
        self.headers = headers or {}
        self.body = body
        self.exc = exc

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    @property
    def error_code(self):
        return error_fields(self.body).get("Code")

    @property
    def error_message(self):
        return error_fields(self.body).get("Message", "")

    def xml(self):
        return ET.fromstring(self.body)

    def __repr__(self):
        return (f"<Response {self.kind} {self.status} "
                f"{self.body[:300]!r} {self.exc!r}>")


def error_fields(body):
    """Fields of an S3 <Error> document (empty dict if not one)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return {}
    out = {}
    for child in root:
        out[strip_ns(child.tag)] = child.text or ""
    return out


def strip_ns(tag):
    return tag.rsplit("}", 1)[-1]


def findall(root, name):
    """Children named `name` anywhere below root, namespace-agnostic."""
    return [e for e in root.iter() if strip_ns(e.tag) == name]


def findtext(root, name, default=None):
    for e in root:
        if strip_ns(e.tag) == name:
            return e.text or ""
    return default


@contextlib.contextmanager
def _clock(offset_seconds):
    """Makes botocore's signers believe the time is now + offset."""
    if not offset_seconds:
        yield
        return
    real = botocore.auth.datetime

    class _Shifted(real.datetime):
        @classmethod
        def utcnow(cls):
            return real.datetime.utcnow() + real.timedelta(seconds=offset_seconds)

    botocore.auth.datetime = types.SimpleNamespace(datetime=_Shifted,
                                                   timedelta=real.timedelta)
    try:
        yield
    finally:
        botocore.auth.datetime = real


def sign_headers(method, url, access_key, secret_key, headers=None, body=b"",
                 payload_hash=None, region=REGION, clock_offset=0, sigv2=False):
    """Returns the headers (Authorization, X-Amz-Date, x-amz-content-sha256
    and the given ones) for a SigV4 header-signed request. payload_hash
    None means the real SHA-256 of body. sigv2 signs with the old HMAC-SHA1
    scheme instead."""
    creds = Credentials(access_key, secret_key)
    req = AWSRequest(method=method, url=url, data=body,
                     headers=dict(headers or {}))
    if sigv2:
        HmacV1Auth(creds).add_auth(req)
        return dict(req.headers.items())
    if payload_hash is None:
        payload_hash = hashlib.sha256(body or b"").hexdigest()
    with _clock(clock_offset):
        _FixedPayloadAuth(creds, payload_hash, region).add_auth(req)
    return dict(req.headers.items())


def presign(endpoint, method, path, access_key, secret_key, expires=3600,
            query=None):
    """A presigned URL (SigV4 query auth) for path (unencoded)."""
    url = endpoint + quote_path(path)
    q = build_query(query)
    if q:
        url += "?" + q
    req = AWSRequest(method=method, url=url, headers={})
    S3SigV4QueryAuth(Credentials(access_key, secret_key), "s3", REGION,
                     expires=expires).add_auth(req)
    return req.url


def send_url(method, url, headers=None, body=b"", timeout=60):
    """Sends one request to an absolute URL on a fresh connection."""
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                      timeout=timeout)
    try:
        try:
            conn.putrequest(method, target, skip_accept_encoding=True,
                            skip_host=False)
            hdrs = dict(headers or {})
            if body is not None and not any(k.lower() == "content-length"
                                            for k in hdrs):
                hdrs["Content-Length"] = str(len(body))
            for k, v in hdrs.items():
                conn.putheader(k, v)
            conn.endheaders()
            if body:
                conn.send(body)
            resp = conn.getresponse()
        except (ConnectionError, http.client.RemoteDisconnected,
                http.client.BadStatusLine, socket.timeout, OSError) as e:
            return Response("reset", exc=e)
        headers = {k.lower(): v for k, v in resp.getheaders()}
        try:
            data = resp.read()
        except http.client.IncompleteRead as e:
            return Response("truncated", resp.status, headers, e.partial, e)
        except (ConnectionError, OSError) as e:
            return Response("truncated", resp.status, headers, b"", e)
        announced = headers.get("content-length")
        if (method != "HEAD" and announced is not None
                and int(announced) != len(data)):
            return Response("truncated", resp.status, headers, data)
        return Response("ok", resp.status, headers, data)
    finally:
        conn.close()


def request(sim, method, path, query=None, headers=None, body=b"",
            payload_hash=None, access_key=None, secret_key=None, sign=True,
            timeout=60, **sign_kw):
    """Signs (unless sign=False) and sends method path?query to sim.
    path is unencoded ("/repo/main/a b.txt"); query a dict or pair list;
    sign_kw go to sign_headers (region, clock_offset, sigv2)."""
    url = sim.endpoint + quote_path(path)
    q = build_query(query)
    if q:
        url += "?" + q
    hdrs = dict(headers or {})
    if sign:
        hdrs = sign_headers(method, url, access_key or sim.access_key,
                            secret_key or sim.secret_key, hdrs, body,
                            payload_hash, **sign_kw)
    return send_url(method, url, hdrs, body, timeout=timeout)


def md5_b64(data):
    import base64
    return base64.b64encode(hashlib.md5(data).digest()).decode()
