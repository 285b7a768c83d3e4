"""The object store behind the simulated lakeFS, as presigned URLs reach it.

lakeFS hands out presigned URLs of its underlying store (S3, GCS, Azure)
from StatObject, getPhysicalAddress and the presigned multipart calls
(api.py); the data then moves between the client and the store without
passing through lakeFS. This module is that store: its own listener on
127.0.0.1 (server.py starts it beside the gateway), serving object bodies
by address out of the same blobs/ directory the gateway uses.

URLs look like S3's presigned ones,

    http://127.0.0.1:PORT/<namespace>/data/<addr>?X-Amz-Algorithm=...
        &X-Amz-Date=YYYYMMDDTHHMMSSZ&X-Amz-Expires=N[&partNumber=&uploadId=]
        &X-Amz-Signature=<hex>

where the signature is an HMAC-SHA256, under a key this process draws at
start, of the method, the path and every other query parameter (the date
and lifetime included): a URL is good for one method on one address (one
part of one upload) until date + lifetime, and a restart invalidates
every URL handed out before it, as a rotated key would. Refusals are S3's:
403 AccessDenied "Request has expired", 403 SignatureDoesNotMatch.

Operations: GET and HEAD of an object (Range as S3: 206 with
Content-Range, 416 past the end), PUT of an object (Content-MD5 checked
when sent: 400 BadDigest; ETag = quoted MD5 of the body), PUT of a part of
a multipart upload (uploadId and partNumber in the signed query). Nothing
else: listings and deletes are lakeFS's business, not a presigned URL's.
"""
import base64
import binascii
import calendar
import hashlib
import hmac
import os
import re
import threading
import time
from urllib.parse import quote

from . import store as st
from .httpd import Response
from .s3 import etag_header, parse_range
from .s3errors import S3Error, error_document, new_request_id
from .xmlio import http_date

ALGORITHM = "SIM-HMAC-SHA256"
_ADDR = re.compile(r"[0-9a-f]{32}")
BODY_CHUNK = 1 << 20


def _amz_date(t):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))


def _parse_amz_date(s):
    try:
        return calendar.timegm(time.strptime(s, "%Y%m%dT%H%M%SZ"))
    except (ValueError, OverflowError):
        return None


class Storage:
    def __init__(self, store, expiry=900, enabled=True, multipart=True):
        self.store = store
        self.expiry = int(expiry)
        self.enabled = enabled          # False: --no-presign
        self.multipart = multipart and enabled
        self.base = None                # "http://127.0.0.1:PORT" once bound
        self._key = os.urandom(32)
        self._etags = {}                # addr -> ETag of bodies this endpoint stored
        self._lock = threading.Lock()

    # ------------------------------------------------------------------
    # signing
    # ------------------------------------------------------------------
    def _signature(self, method, path, params):
        canon = "&".join("%s=%s" % (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
                         for k, v in sorted(params) if k != "X-Amz-Signature")
        msg = "\n".join((method, path, canon)).encode("utf-8", "surrogateescape")
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    @staticmethod
    def url_path(namespace, addr):
        ns = namespace.split("://", 1)[-1].strip("/") or "ns"
        return "/%s/data/%s" % (quote(ns, safe="/-_.~"), addr)

    def presign(self, method, namespace, addr, extra=()):
        """(url, expiry epoch) for method on the blob addr; extra query
        parameters (partNumber, uploadId) are signed too."""
        now = int(time.time())
        path = self.url_path(namespace, addr)
        params = [("X-Amz-Algorithm", ALGORITHM), ("X-Amz-Date", _amz_date(now)),
                  ("X-Amz-Expires", str(self.expiry)), ("X-Amz-SignedHeaders", "host")]
        params += [(k, str(v)) for k, v in extra]
        params.append(("X-Amz-Signature", self._signature(method, path, params)))
        query = "&".join("%s=%s" % (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
                         for k, v in params)
        return "%s%s?%s" % (self.base, path, query), now + self.expiry

    # ------------------------------------------------------------------
    # requests
    # ------------------------------------------------------------------
    @staticmethod
    def classify(req):
        if req.method == "GET":
            return "StorageGetObject"
        if req.method == "HEAD":
            return "StorageHeadObject"
        if req.method == "PUT":
            return "StorageUploadPart" if "uploadId" in req.query else "StoragePutObject"
        return "StorageUnknown"

    def error(self, req, name, detail=None):
        err = S3Error(name, detail)
        body = error_document(err, new_request_id(), resource=req.path)
        return Response(err.status, [("Content-Type", "application/xml")], body,
                        head=req.method == "HEAD")

    def _check(self, req):
        """The blob address the URL grants, or an error Response."""
        params = [(k, v) for k, vs in req.query.items() for v in vs]
        given = req.query_first("X-Amz-Signature")
        date = _parse_amz_date(req.query_first("X-Amz-Date"))
        try:
            lifetime = int(req.query_first("X-Amz-Expires"))
        except ValueError:
            lifetime = None
        if not given or date is None or lifetime is None or any(
                len(v) > 1 for v in req.query.values()):
            return None, self.error(req, "AccessDenied",
                                    "presigned URL without its signature, date or lifetime")
        want = self._signature(req.method, req.raw_path, params)
        if not hmac.compare_digest(want, given):
            return None, self.error(req, "SignatureDoesNotMatch")
        if time.time() >= date + lifetime:
            return None, self.error(req, "ExpiredPresignRequest")
        addr = req.path.rsplit("/", 1)[-1]
        if not _ADDR.fullmatch(addr):
            return None, self.error(req, "NoSuchKey")
        return addr, None

    def handle(self, req):
        addr, err = self._check(req)
        if err is not None:
            return err
        try:
            if req.method in ("GET", "HEAD"):
                return self.get(req, addr)
            if req.method == "PUT":
                if "uploadId" in req.query:
                    return self.put_part(req, addr)
                return self.put(req, addr)
        except S3Error as e:
            return self.error(req, e.name)
        return self.error(req, "MethodNotAllowed")

    def get(self, req, addr):
        path = self.store.blob_path(addr)
        try:
            size = os.path.getsize(path)
            mtime = os.path.getmtime(path)
        except OSError:
            return self.error(req, "NoSuchKey")
        h = [("Content-Type", "application/octet-stream"), ("Accept-Ranges", "bytes"),
             ("Last-Modified", http_date(mtime))]
        with self._lock:
            etag = self._etags.get(addr)
        if etag:
            h.append(("ETag", etag_header(etag)))
        status, offset, count = 200, 0, size
        spec = req.header("Range")
        if spec:
            try:
                start, end = parse_range(spec, size)
            except ValueError as e:
                if str(e) == "unsatisfiable":
                    return self.error(req, "InvalidRange")
            else:
                status, offset, count = 206, start, end - start + 1
                h.append(("Content-Range", "bytes %d-%d/%d" % (start, end, size)))
        if req.method == "HEAD":
            h.append(("Content-Length", str(count)))
            return Response(status, h, b"", head=True)
        return Response(status, h, file_path=path, offset=offset, count=count)

    @staticmethod
    def _content_md5(req):
        v = req.header("Content-MD5")
        if v is None:
            return None
        try:
            raw = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 16:
            raise S3Error("BadDigest")
        return raw.hex()

    def _receive(self, req, writer):
        while True:
            data = req.body.read(BODY_CHUNK)
            if not data:
                break
            writer.write(data)

    def put(self, req, addr):
        want = self._content_md5(req)
        w = st.FileWriter(self.store, self.store.blob_path(addr))
        try:
            self._receive(req, w)
            md5 = w.md5_hex()
            if want is not None and want != md5:
                w.abort()
                return self.error(req, "BadDigest")
            w.finish()
        except BaseException:
            w.abort()
            raise
        with self._lock:
            self._etags[addr] = md5
        return Response(200, [("ETag", etag_header(md5))], b"")

    def put_part(self, req, addr):
        uid = req.query_first("uploadId")
        try:
            number = int(req.query_first("partNumber"))
        except ValueError:
            return self.error(req, "InvalidPartNumberMarker")
        if not 1 <= number <= 10000:
            return self.error(req, "InvalidPartNumberMarker")
        want = self._content_md5(req)
        try:
            up = self.store.get_upload(uid)
        except st.NotFound:
            return self.error(req, "NoSuchUpload")
        if getattr(up, "addr", None) not in (None, addr):
            return self.error(req, "NoSuchUpload")
        w = self.store.new_part(uid)
        try:
            self._receive(req, w)
            if want is not None and want != w.md5_hex():
                w.abort()
                return self.error(req, "BadDigest")
            md5 = self.store.finish_part(uid, number, w)
        except st.NotFound:
            return self.error(req, "NoSuchUpload")
        except BaseException:
            w.abort()
            raise
        return Response(200, [("ETag", etag_header(md5))], b"")

    def remember_etag(self, addr, etag):
        """The ETag S3 would report for a body assembled from parts."""
        with self._lock:
            self._etags[addr] = etag
