"""Request authentication for the S3 gateway, after pkg/gateway/sig.

Authenticators are tried in lakeFS's order: SigV4 (Authorization header,
then presigned query), then SigV2 ("AWS key:signature"). When none applies
the answer is 400 MissingFields. An unknown access key is 403 AccessDenied.

SigV4 verification order is lakeFS's: dates are checked while building the
string to sign, then the signature (403 SignatureDoesNotMatch), then clock
skew (15 minutes either way; presigned requests too) and presigned expiry,
then the payload mode:
  UNSIGNED-PAYLOAD (or no header)       body not checked
  STREAMING-AWS4-HMAC-SHA256-PAYLOAD    aws-chunked body, every chunk
                                        signature verified while reading
  anything else                         hex-decoded and compared with the
                                        SHA-256 of the body at its end
So STREAMING-UNSIGNED-PAYLOAD-TRAILER fails to hex-decode and is refused with
403 AccessDenied, as lakeFS releases before trailer support did (current
lakeFS accepts it; our spec asks for the older behaviour).

Canonicalisation: the decoded path re-encoded once (unreserved characters
and "/" kept, no dot-segment removal); query parameters sorted by name, the
first value of each, encoded with the unreserved set and %20 for space;
signed header values trimmed with inner whitespace runs collapsed.
"""
import base64
import binascii
import calendar
import email.utils
import hashlib
import hmac
import re
import time
from urllib.parse import quote

from .s3errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW = 15 * 60
MAX_EXPIRES = 7 * 24 * 3600

_V4_HEADER = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<ak>.{3,20})/(?P<date>\d{8})/(?P<region>[\w\-]+)/"
    r"(?P<service>[\w\-]+)/aws4_request,\s*SignedHeaders=(?P<sh>[\w\-;.#!$%&'*+^`|~]+),"
    r"\s*Signature=(?P<sig>[abcdef0123456789]{64})", re.ASCII)
_V4_CRED = re.compile(
    r"(?P<ak>.{3,20})/(?P<date>\d{8})/(?P<region>[\w\-]+)/(?P<service>[\w\-]+)/aws4_request",
    re.ASCII)
_V2_HEADER = re.compile(r"AWS (?P<ak>.{3,20}):(?P<sig>[A-Za-z0-9+/=]+)")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_INT = re.compile(r"[+-]?\d+")
_PLAIN_PATH = re.compile(r"[a-zA-Z0-9\-_.~/]+")
_WS_RUN = re.compile(r"\s+")
_V2_RESOURCES = sorted([
    "accelerate", "acl", "copy-source", "cors", "defaultObjectAcl", "location", "logging",
    "partNumber", "policy", "requestPayment", "torrent", "versioning", "versionId", "versions",
    "website", "uploads", "uploadId", "response-content-type", "response-content-language",
    "response-expires", "response-cache-control", "response-content-disposition",
    "response-content-encoding", "delete", "lifecycle", "tagging", "restore", "storageClass",
    "notification", "replication", "analytics", "metrics", "inventory", "select", "select-type"])


class _NotThisMethod(Exception):
    """The request is not signed with the authenticator being tried."""


class Payload:
    """How the request body must be checked.
    mode: "unsigned", "sha256" (expected digest in `sha256`) or "streaming"
    (`chunk_key`, `scope`, `amz_date`, `seed` for chunk signatures;
    `decoded_length` from x-amz-decoded-content-length)."""

    def __init__(self, mode, **kw):
        self.mode = mode
        self.sha256 = kw.get("sha256")
        self.chunk_key = kw.get("chunk_key")
        self.scope = kw.get("scope")
        self.amz_date = kw.get("amz_date")
        self.seed = kw.get("seed")
        self.decoded_length = kw.get("decoded_length")


UNSIGNED_PAYLOAD = Payload("unsigned")


def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()


def signing_key(secret, date, region, service):
    k = _hmac(("AWS4" + secret).encode("utf-8"), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def encode_path(path):
    """lakeFS's EncodePath: unreserved characters and "/" kept, the rest
    percent-encoded as UTF-8 with upper-case hex."""
    if _PLAIN_PATH.fullmatch(path):
        return path
    return quote(path.encode("utf-8", "surrogateescape"), safe="/-_.~")


def _query_escape(s):
    return quote(s.encode("utf-8", "surrogateescape"), safe="-_.~")


def go_hex_error(s):
    """The error Go's hex.DecodeString reports for s, or None if it decodes."""
    hexdigits = "0123456789abcdefABCDEF"
    for i in range(0, len(s) - len(s) % 2):
        if s[i] not in hexdigits:
            return "encoding/hex: invalid byte: U+%04X %r" % (ord(s[i]), s[i])
    if len(s) % 2:
        if s[-1] not in hexdigits:
            return "encoding/hex: invalid byte: U+%04X %r" % (ord(s[-1]), s[-1])
        return "encoding/hex: odd length hex string"
    return None


def _parse_amz_time(s):
    if not _AMZ_DATE.fullmatch(s):
        return None
    try:
        return calendar.timegm(time.strptime(s, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return None


def _check_skew(now, t):
    if now - t < -MAX_SKEW:
        raise S3Error("RequestNotReadyYet")
    if now - t > MAX_SKEW:
        raise S3Error("RequestTimeTooSkewed")


class _V4:
    def __init__(self, ak, date, region, service, signed, signature, presigned, expires=0):
        self.access_key = ak
        self.date = date
        self.region = region
        self.service = service
        self.signed_string = signed
        self.signed = sorted(signed.split(";"))
        self.signature = signature
        self.presigned = presigned
        self.expires = expires

    @classmethod
    def parse(cls, req):
        value = req.header("Authorization")
        if value:
            m = _V4_HEADER.search(value)
            if not m:
                raise _NotThisMethod()
            return cls(m["ak"], m["date"], m["region"], m["service"], m["sh"], m["sig"], False)
        q = req.query
        if "X-Amz-Algorithm" not in q:
            raise _NotThisMethod()
        if q["X-Amz-Algorithm"][0].upper() != ALGORITHM:
            raise S3Error("InvalidQuerySignatureAlgo")
        for p in ("X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date", "X-Amz-SignedHeaders",
                  "X-Amz-Expires"):
            if p not in q:
                raise S3Error("MissingFields")
        cred = q["X-Amz-Credential"][0]
        if not cred:
            raise S3Error("MissingCredTag")
        m = _V4_CRED.search(cred)
        if not m:
            raise S3Error("CredMalformed")
        exp = q["X-Amz-Expires"][0]
        if not _INT.fullmatch(exp):
            raise S3Error("MalformedExpires")
        expires = int(exp)
        if expires < 0:
            raise S3Error("NegativeExpires")
        if expires > MAX_EXPIRES:
            raise S3Error("MaximumExpires")
        return cls(m["ak"], m["date"], m["region"], m["service"],
                   q["X-Amz-SignedHeaders"][0], q["X-Amz-Signature"][0], True, expires)

    def _amz_date(self, req):
        d = req.query_first("X-Amz-Date") or req.header("x-amz-date") or req.header("date")
        if not d:
            raise S3Error("MissingDateHeader")
        t = _parse_amz_time(d)
        if t is None:
            raise S3Error("MalformedDate")
        try:
            time.strptime(self.date, "%Y%m%d")
        except ValueError:
            raise S3Error("MalformedCredentialDate") from None
        if d[:8] != self.date:
            raise S3Error("InvalidCredentialDate")
        return d, t

    def _payload_hash(self, req):
        return req.header("x-amz-content-sha256") or UNSIGNED

    def canonical_request(self, req):
        q = req.query
        names = sorted(k for k in q if k != "X-Amz-Signature")
        cq = "&".join("%s=%s" % (_query_escape(k), _query_escape(q[k][0])) for k in names)
        lines = []
        for h in self.signed:
            if h.lower() == "host":
                v = req.header("Host") or ""
            else:
                v = req.header(h) or ""
            lines.append("%s:%s\n" % (h, _WS_RUN.sub(lambda m: m.group(0)[0], v.strip())))
        return "\n".join([req.method, encode_path(req.path), cq, "".join(lines),
                          self.signed_string, self._payload_hash(req)])

    def verify(self, req, secret, now):
        creq = self.canonical_request(req)
        amz_date, t = self._amz_date(req)
        scope = "%s/%s/%s/aws4_request" % (self.date, self.region, self.service)
        sts = "\n".join([ALGORITHM, amz_date, scope,
                         hashlib.sha256(creq.encode("utf-8", "surrogateescape")).hexdigest()])
        key = signing_key(secret, self.date, self.region, self.service)
        expected = hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), self.signature.encode("utf-8", "replace")):
            raise S3Error("SignatureDoesNotMatch")
        _check_skew(now, t)
        if self.presigned and now > t + self.expires:
            raise S3Error("ExpiredPresignRequest")
        ph = self._payload_hash(req)
        if ph.upper() == STREAMING:
            decoded = req.header("x-amz-decoded-content-length")
            length = None
            if decoded is not None:
                if decoded == "":
                    raise S3Error("MissingContentLength")
                if not _INT.fullmatch(decoded):
                    raise S3Error("AccessDenied", 'strconv.ParseInt: parsing "%s": invalid syntax'
                                  % decoded)
                length = int(decoded)
            return Payload("streaming", chunk_key=key, scope=scope, amz_date=amz_date,
                           seed=self.signature, decoded_length=length)
        if ph.upper() == UNSIGNED:
            return UNSIGNED_PAYLOAD
        err = go_hex_error(ph)
        if err:
            raise S3Error("AccessDenied", err)
        return Payload("sha256", sha256=bytes.fromhex(ph))


class _V2:
    def __init__(self, ak, signature):
        self.access_key = ak
        self.signature = signature

    @classmethod
    def parse(cls, req):
        value = req.header("Authorization")
        if not value:
            raise _NotThisMethod()
        m = _V2_HEADER.search(value)
        if not m:
            raise _NotThisMethod()
        try:
            sig = base64.b64decode(m["sig"], validate=True)
        except (binascii.Error, ValueError):
            raise _NotThisMethod() from None
        return cls(m["ak"], sig)

    def verify(self, req, secret, now):
        d = req.header("x-amz-date") or req.header("date")
        if not d:
            raise S3Error("MissingFields")
        t = _parse_amz_time(d)
        if t is None:
            try:
                t = email.utils.parsedate_to_datetime(d).timestamp()
            except (TypeError, ValueError):
                raise S3Error("MalformedDate") from None
        _check_skew(now, t)
        sts = [req.method.upper()]
        for h in ("content-md5", "content-type", "date"):
            vals = req.header_all(h)
            sts.append(",".join(v.strip() for v in vals) if vals else "")
        amz = sorted({k.lower() for k in req.header_names() if k.lower().startswith("x-amz-")})
        custom = "".join("%s:%s\n" % (k, ",".join(v.strip() for v in req.header_all(k)))
                         for k in amz)
        lower_q = {k.lower(): v for k, v in req.query.items()}
        found = []
        for r in _V2_RESOURCES:
            if r in lower_q:
                v = ",".join(lower_q[r])
                found.append(r + "=" + v if "".join(lower_q[r]) else r)
        resource = req.raw_path + ("?" + "&".join(found) if found else "")
        string = "\n".join(sts) + "\n" + custom + resource
        digest = hmac.new(secret.encode("utf-8"), string.encode("utf-8", "surrogateescape"),
                          hashlib.sha1).digest()
        if not hmac.compare_digest(digest, self.signature):
            raise S3Error("SignatureDoesNotMatch")
        return UNSIGNED_PAYLOAD


def authenticate(req, secrets, now=None):
    """Checks the request's signature. `secrets` maps access key IDs to
    secret keys. Returns a Payload saying how to verify the body; raises
    S3Error when the request must be refused."""
    now = time.time() if now is None else now
    for method in (_V4, _V2):
        try:
            auth = method.parse(req)
        except _NotThisMethod:
            continue
        secret = secrets.get(auth.access_key)
        if secret is None:
            raise S3Error("AccessDenied")
        return auth.verify(req, secret, now)
    raise S3Error("MissingFields")


class PayloadError(Exception):
    """The body failed its check (hash or chunk signature mismatch, bad framing)."""


class ChunkedPayloadReader:
    """Decodes an aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD),
    verifying each chunk's signature against the previous one, starting from
    the request signature. `raw` offers read(n) and readline(limit)."""

    def __init__(self, raw, payload):
        self._raw = raw
        self._key = payload.chunk_key
        self._prefix = "AWS4-HMAC-SHA256-PAYLOAD\n%s\n%s\n" % (payload.amz_date, payload.scope)
        self._prev = payload.seed
        self._left = 0           # unread bytes of the current chunk
        self._hash = None
        self._sig = None
        self._done = False

    def _check(self):
        sts = "%s%s\n%s\n%s" % (self._prefix, self._prev, EMPTY_SHA256, self._hash.hexdigest())
        expected = hmac.new(self._key, sts.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self._sig):
            raise PayloadError("chunk signature mismatch")
        self._prev = expected

    def _crlf(self):
        if self._raw.read(2) != b"\r\n":
            raise PayloadError("malformed chunked encoding")

    def _header(self):
        line = self._raw.readline(4096)
        if not line.endswith(b"\n"):
            raise PayloadError("truncated chunk header")
        line = line.rstrip(b"\r\n")
        size, sep, sig = line.partition(b";chunk-signature=")
        try:
            self._left = int(size, 16)
        except ValueError:
            raise PayloadError("invalid chunk size") from None
        if not sep:
            raise PayloadError("missing chunk signature")
        self._sig = sig.decode("ascii", "replace")
        self._hash = hashlib.sha256()
        if self._left == 0:
            self._check()
            # optional trailing CRLF after the final chunk
            self._raw.read(2)
            self._done = True

    def read(self, n):
        out = []
        got = 0
        while got < n and not self._done:
            if self._left == 0 and self._hash is None:
                self._header()
                continue
            if self._left == 0:
                self._crlf()
                self._check()
                self._hash = None
                continue
            data = self._raw.read(min(self._left, n - got))
            if not data:
                raise PayloadError("unexpected end of body")
            self._hash.update(data)
            self._left -= len(data)
            out.append(data)
            got += len(data)
        return b"".join(out)
