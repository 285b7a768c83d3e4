"""HTTP/1.1 server: connections, request bodies, responses, routing, and
where faults, latency and statistics are applied.

One thread per connection (ThreadingHTTPServer, daemon threads), keep-alive,
TCP_NODELAY, a Content-Length on every response. Request bodies are read
lazily: "Expect: 100-continue" is answered only when a handler starts
reading, and a response sent without reading the body closes the
connection unless the unread rest is small enough to drain (as Go's
net/http does). Object bodies go out with socket.sendfile straight from the
blob file.

Routing: /_sim/... and /_health are the simulator's own endpoints (no
auth); /api/v1/... without an AWS signature is the REST API; everything else
is the S3 gateway, where latency, fault injection and request counting
happen (knobs.py). The storage endpoint (storage.py) is a second Server
with its own App (StorageApp) on its own port: presigned URLs only, with
latency, faults and counters of its own.
"""
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import struct
import sys
import termios
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote

from . import sigv4
from .xmlio import http_date

log = logging.getLogger("lakefs_sim.httpd")

DRAIN_LIMIT = 256 << 10
_REASONS = BaseHTTPRequestHandler.responses


class ClientGone(Exception):
    """The client closed the connection (or sent a short body)."""


class ResetConnection(Exception):
    """Abort the connection with a TCP reset, sending nothing."""


class Response:
    """What to send: status, headers, and either `body` bytes or a file
    range (`file_path`, `offset`, `count`). `head` suppresses the body but
    keeps Content-Length. `truncate` closes the connection half way through
    the body; `cut` resets it half way through the answer (knobs.py)."""
    __slots__ = ("status", "headers", "body", "file_path", "offset", "count", "head", "truncate",
                 "cut")

    def __init__(self, status, headers=None, body=b"", file_path=None, offset=0, count=0,
                 head=False):
        self.status = status
        self.headers = headers if headers is not None else []
        self.body = body
        self.file_path = file_path
        self.offset = offset
        self.count = count
        self.head = head
        self.truncate = False
        self.cut = False


# ----------------------------------------------------------------------
# request bodies
# ----------------------------------------------------------------------
class _BodyBase:
    def read_all(self):
        chunks = []
        while True:
            data = self.read(1 << 20)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


class RawBody(_BodyBase):
    """The body as framed by HTTP (Content-Length or chunked)."""

    def __init__(self, handler, length, chunked, expect_continue):
        self._h = handler
        self._rfile = handler.rfile
        self.left = length                  # None when chunked
        self.chunked = chunked
        self._chunk_left = 0
        self.eof = (not chunked) and length == 0
        self.pending_continue = expect_continue and not self.eof
        # An empty body with "Expect: 100-continue" still gets its "100
        # Continue" (as S3 sends it; Go's server, hence lakeFS, does not):
        # botocore otherwise parses the next response on that connection
        # against a stale status line and stalls 60 s (botocore#3755).
        self.empty_continue = expect_continue and self.eof
        self.bytes_read = 0

    def _continue(self):
        if self.pending_continue:
            self.pending_continue = False
            self._h.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _fill_chunk(self):
        line = self._rfile.readline(4096)
        if not line.endswith(b"\n"):
            raise ClientGone()
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ClientGone() from None
        if size == 0:
            while True:                      # trailers up to the blank line
                t = self._rfile.readline(4096)
                if not t or t in (b"\r\n", b"\n"):
                    break
            self.eof = True
        self._chunk_left = size

    def read(self, n):
        if self.eof or n <= 0:
            return b""
        self._continue()
        if not self.chunked:
            k = min(n, self.left)
            data = self._rfile.read(k)
            if len(data) < k:
                raise ClientGone()
            self.left -= k
            self.bytes_read += k
            if self.left == 0:
                self.eof = True
            return data
        if self._chunk_left == 0:
            self._fill_chunk()
            if self.eof:
                return b""
        k = min(n, self._chunk_left)
        data = self._rfile.read(k)
        if len(data) < k:
            raise ClientGone()
        self._chunk_left -= k
        self.bytes_read += k
        if self._chunk_left == 0:
            self._rfile.readline(16)        # CRLF after the chunk data
        return data

    def readline(self, limit):
        if self.eof:
            return b""
        self._continue()
        if not self.chunked:
            line = self._rfile.readline(min(limit, self.left))
            self.left -= len(line)
            self.bytes_read += len(line)
            if self.left == 0:
                self.eof = True
            return line
        out = bytearray()
        while len(out) < limit and not out.endswith(b"\n"):
            c = self.read(1)
            if not c:
                break
            out += c
        return bytes(out)

    def drain(self):
        while self.read(1 << 20):
            pass


class CheckedBody(_BodyBase):
    """Verifies the SHA-256 announced in x-amz-content-sha256 at the end."""

    def __init__(self, inner, expected):
        self._inner = inner
        self._expected = expected
        self._hash = hashlib.sha256()
        self._checked = False

    def read(self, n):
        data = self._inner.read(n)
        if data:
            self._hash.update(data)
        elif not self._checked:
            self._checked = True
            if self._hash.digest() != self._expected:
                raise sigv4.PayloadError("x-amz-content-sha256 does not match the body")
        return data


class ChunkedSignedBody(sigv4.ChunkedPayloadReader, _BodyBase):
    pass


# ----------------------------------------------------------------------
# requests
# ----------------------------------------------------------------------
class Request:
    """What handlers see of a request."""

    def __init__(self, handler):
        self.method = handler.command
        target = handler.path
        if not target.isascii():         # raw (unencoded) UTF-8 in the URL
            target = target.encode("latin-1", "replace").decode("utf-8", "surrogateescape")
        raw_path, _, raw_query = target.partition("?")
        self.raw_path = raw_path
        self.path = unquote(raw_path, errors="surrogateescape")
        self.raw_query = raw_query
        q = {}
        for k, v in parse_qsl(raw_query, keep_blank_values=True, errors="surrogateescape"):
            q.setdefault(k, []).append(v)
        self.query = q
        self._headers = handler.headers
        self.scheme = handler.server.scheme
        self.client = handler.client_address
        length = 0
        chunked = "chunked" in (self.header("Transfer-Encoding") or "").lower()
        if not chunked:
            cl = self.header("Content-Length")
            if cl:
                try:
                    length = int(cl)
                except ValueError:
                    length = -1
                if length < 0:
                    raise ValueError("bad Content-Length")
        expect = (self.header("Expect") or "").lower() == "100-continue"
        self.raw_body = RawBody(handler, length, chunked, expect)
        self.body = self.raw_body

    @staticmethod
    def _raw(value):
        """http.server decodes header bytes as latin-1; recover the bytes
        the client sent (as Go sees them) and decode them as UTF-8."""
        if value is None or value.isascii():
            return value
        return value.encode("latin-1", "replace").decode("utf-8", "surrogateescape")

    def header(self, name):
        return self._raw(self._headers.get(name))

    def header_all(self, name):
        return [self._raw(v) for v in self._headers.get_all(name) or []]

    def header_names(self):
        return self._headers.keys()

    def query_first(self, name):
        v = self.query.get(name)
        return v[0] if v else ""

    def set_payload(self, payload):
        """Installs the body check the signature asked for."""
        if payload.mode == "sha256":
            self.body = CheckedBody(self.raw_body, payload.sha256)
        elif payload.mode == "streaming":
            self.body = ChunkedSignedBody(self.raw_body, payload)

    def is_aws_signed(self):
        """lakeFS's sig.IsAWSSignedRequest."""
        if self.header("X-Amz-Signature"):
            return True
        auth = self.header("Authorization") or ""
        if auth.startswith("AWS4") or auth.startswith("AWS "):
            return True
        return bool(self.query_first("AWSAccessKeyId") or self.query_first("X-Amz-Credential"))


def json_response(status, doc):
    body = json.dumps(doc).encode("utf-8") if doc is not None else b""
    headers = [("Content-Type", "application/json")] if doc is not None else []
    return Response(status, headers, body)


# ----------------------------------------------------------------------
# the application: routing, knobs, statistics
# ----------------------------------------------------------------------
class App:
    def __init__(self, gateway, api, knobs, verbose=False):
        self.gateway = gateway
        self.api = api
        self.knobs = knobs
        self.verbose = verbose

    def handle(self, req):
        """Returns (Response, kind): kind "s3", "api" or "sim" says whose
        counters the request's bytes go to."""
        path = req.path
        if path.startswith("/_sim/") or path in ("/_sim", "/_health"):
            return self.sim(req), "sim"
        if (path == "/api/v1" or path.startswith("/api/v1/")) and not req.is_aws_signed():
            return self.rest(req), "api"
        return self.s3(req), "s3"

    def internal_error(self, req, kind):
        if kind == "s3":
            return self.gateway.error_response(req, "InternalError")
        return json_response(500, {"message": "internal error"})

    def s3(self, req):
        operation = self.gateway.classify(req)
        self.knobs.count_request(operation)
        delay = self.knobs.delay()
        if delay:
            time.sleep(delay)
        fault = self.knobs.draw_fault(operation, req.raw_path)
        if fault == "reset":
            raise ResetConnection()
        if fault == "error500":
            return self.gateway.error_response(req, "InternalError")
        if fault == "slowdown":
            return self.gateway.error_response(req, "SlowDown")
        resp = self.gateway.handle(req)
        # From here on the work is done (and durable): the answer is lost.
        if fault == "lost":
            raise ResetConnection()
        if fault == "reset_mid_body":
            resp.cut = True
        if fault == "truncate":
            if resp.file_path is not None and resp.count > 0:
                resp.truncate = True
            else:
                return self.gateway.error_response(req, "InternalError")
        return resp

    def rest(self, req):
        fault = self.knobs.api_fault(req.raw_path)
        if fault == "reset":
            raise ResetConnection()
        if fault in ("error500", "slowdown"):
            return json_response(500 if fault == "error500" else 503,
                                 {"message": "injected fault: %s" % fault})
        resp = self.api.handle(req)
        if fault == "lost":      # done, then the answer is lost
            raise ResetConnection()
        if fault == "reset_mid_body":
            resp.cut = True
        return resp

    def sim(self, req):
        path, m = req.path.rstrip("/"), req.method
        if path in ("/_health", "/_sim/health"):
            return Response(200, [("Content-Type", "text/plain")], b"alive!")
        if path.startswith("/_sim/blobs/") and m in ("GET", "HEAD"):
            addr = path[len("/_sim/blobs/"):]
            if re.fullmatch(r"[0-9a-f]{32}", addr):
                blob = self.gateway.store.blob_path(addr)
                try:
                    size = os.path.getsize(blob)
                except OSError:
                    size = None
                if size is not None:
                    return Response(200, [("Content-Type", "application/octet-stream")],
                                    file_path=blob, offset=0, count=size)
            return json_response(404, {"message": "no such blob"})
        if path == "/_sim/stats" and m == "GET":
            return json_response(200, self.knobs.stats())
        if path == "/_sim/storage" and m == "GET":
            sto = self.api.storage
            return json_response(200, {
                "endpoint": sto.base if sto else None,
                "presign": bool(sto and sto.enabled),
                "multipart": bool(sto and sto.multipart),
                "expiry": sto.expiry if sto else None})
        if path == "/_sim/stats/reset" and m == "POST":
            self.knobs.reset_stats()
            return json_response(200, self.knobs.stats())
        if path == "/_sim/faults":
            if m == "GET":
                return json_response(200, self.knobs.settings())
            if m == "POST":
                try:
                    doc = json.loads(req.body.read_all() or b"{}")
                    kw = {k: doc[k] for k in ("kinds",) if k in doc}
                    return json_response(200, self.knobs.configure(
                        doc.get("fail_rate"), doc.get("latency_ms"), doc.get("seed"),
                        rules=doc.get("rules"), latency_jitter_ms=doc.get("latency_jitter_ms"),
                        clock_skew_s=doc.get("clock_skew_s"), storage=doc.get("storage"),
                        **kw))
                except (ValueError, TypeError, AttributeError) as e:
                    return json_response(400, {"message": str(e)})
        if path == "/_sim/credentials":
            return self.credentials(req)
        return json_response(404, {"message": "no such simulator endpoint"})

    def credentials(self, req):
        """GET: the access key IDs in force (never a secret). POST
        {"access_key_id": AK, "secret_access_key": SK}: AK's secret becomes
        SK (a new key if AK was unknown); SK null revokes AK. Requests
        already being checked keep the secret they were checked with."""
        secrets = self.gateway.secrets      # the one dict the REST API shares
        if req.method == "GET":
            return json_response(200, {"access_key_ids": sorted(secrets)})
        if req.method != "POST":
            return json_response(405, {"message": "GET or POST"})
        try:
            doc = json.loads(req.body.read_all() or b"{}")
            ak, sk = doc["access_key_id"], doc.get("secret_access_key")
            if not isinstance(ak, str) or not 3 <= len(ak) <= 20 or ":" in ak:
                raise ValueError("access_key_id: 3 to 20 characters, no ':'")
            if sk is not None and (not isinstance(sk, str) or not sk):
                raise ValueError("secret_access_key: a non-empty string, or null to revoke")
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            return json_response(400, {"message": str(e)})
        if sk is None:
            secrets.pop(ak, None)
            log.info("credentials: %s revoked", ak)
        else:
            secrets[ak] = sk
            log.info("credentials: %s has a new secret", ak)
        return json_response(200, {"access_key_ids": sorted(secrets)})


class StorageApp:
    """The storage endpoint's application: every request is a presigned
    one (storage.py), delayed and faulted by the storage knobs."""

    def __init__(self, storage, knobs, verbose=False):
        self.storage = storage
        self.knobs = knobs
        self.verbose = verbose

    def handle(self, req):
        st = self.storage
        operation = st.classify(req)
        self.knobs.count_storage_request(operation)
        latency = self.knobs.storage_latency()
        if latency:
            time.sleep(latency / 1000.0)
        fault = self.knobs.draw_storage_fault(operation, req.raw_path)
        if fault == "reset":
            raise ResetConnection()
        if fault in ("error500", "slowdown"):
            return st.error(req, "InternalError" if fault == "error500" else "SlowDown"), \
                "storage"
        resp = st.handle(req)
        if fault == "lost":
            raise ResetConnection()
        if fault == "reset_mid_body":
            resp.cut = True
        if fault == "truncate":
            if resp.file_path is not None and resp.count > 0:
                resp.truncate = True
            else:
                return st.error(req, "InternalError"), "storage"
        return resp, "storage"

    def internal_error(self, req, kind):
        return self.storage.error(req, "InternalError")


# ----------------------------------------------------------------------
# connection handling
# ----------------------------------------------------------------------
_date_cache = [0, ""]


def _http_date_now(skew=0.0):
    now = int(time.time() + skew)
    if _date_cache[0] != now:
        _date_cache[:] = [now, http_date(now)]
    return _date_cache[1]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lakefs-sim"
    timeout = 600

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def handle_expect_100(self):
        return True         # "100 Continue" is sent when the body is first read

    def log_message(self, fmt, *args):
        if self.server.app.verbose:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _dispatch(self):
        self.server.request_started()
        try:
            self._dispatch_one()
        finally:
            self.server.request_finished()

    def _dispatch_one(self):
        app = self.server.app
        try:
            req = Request(self)
        except ValueError:
            self.close_connection = True
            self._write(None, Response(400, [], b"bad request\n"), False)
            return
        kind = "s3"
        try:
            resp, kind = app.handle(req)
        except ResetConnection:
            self._reset()
            return
        except (ClientGone, ConnectionError, TimeoutError, socket.timeout):
            self.close_connection = True
            return
        except Exception:
            log.error("unhandled error on %s %s\n%s", req.method, req.raw_path,
                      traceback.format_exc())
            if isinstance(app, App) and req.path.startswith("/api/"):
                kind = "api"
            resp = app.internal_error(req, kind)
        if req.method == "HEAD":
            resp.head = True
        try:
            self._finish_body(req)
            sent = self._write(req, resp, kind)
        except (ConnectionError, TimeoutError, socket.timeout, ClientGone):
            self.close_connection = True
            sent = 0
        if kind != "sim":
            app.knobs.add_bytes(req.raw_body.bytes_read, sent, kind)
        if app.verbose:
            self.log_request(resp.status)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    def _finish_body(self, req):
        """Deals with a body the handler did not read."""
        body = req.raw_body
        if body.eof:
            return
        if body.pending_continue:
            self.close_connection = True     # the client is still waiting to send it
        elif not body.chunked and body.left <= DRAIN_LIMIT:
            body.drain()
        else:
            self.close_connection = True

    def _write(self, req, resp, kind):
        """Sends the response; returns the number of body bytes sent."""
        f = None
        count = 0
        if resp.file_path is not None:
            try:
                f = open(resp.file_path, "rb")
            except OSError as e:
                log.error("cannot open blob %s: %s", resp.file_path, e)
                resp = (self.server.app.internal_error(req, kind)
                        if kind in ("s3", "storage") else
                        json_response(500, {"message": "missing data"}))
            else:
                count = resp.count
        if f is None:
            count = len(resp.body)
        headers = resp.headers
        names = {k.lower() for k, _ in headers}
        lines = ["HTTP/1.1 %d %s\r\n" % (resp.status, _REASONS.get(resp.status, ("",))[0])]
        lines.extend("%s: %s\r\n" % (k, v) for k, v in headers)
        if "content-length" not in names:
            lines.append("Content-Length: %d\r\n" % count)
        lines.append("Date: %s\r\n" % _http_date_now(self.server.app.knobs.clock_skew_s))
        if self.close_connection or resp.truncate:
            lines.append("Connection: close\r\n")
            self.close_connection = True
        lines.append("\r\n")
        head = "".join(lines).encode("utf-8", "surrogateescape")
        if req is not None and req.raw_body.empty_continue:
            head = b"HTTP/1.1 100 Continue\r\n\r\n" + head
        try:
            if resp.cut:
                no_body = resp.head or req is not None and req.method == "HEAD" or count == 0
                return self._write_cut(head, None if no_body else f, resp, count)
            if resp.head or req is not None and req.method == "HEAD":
                self.wfile.write(head)
                return 0
            if f is None:
                if len(resp.body) < 65536:
                    self.wfile.write(head + resp.body)
                else:
                    self.wfile.write(head)
                    self.wfile.write(resp.body)
                return count
            self.wfile.write(head)
            if resp.truncate:
                part = count // 2
                if part:
                    self.connection.sendfile(f, resp.offset, part)
                self._close_abruptly()
                return part
            if count:
                self.connection.sendfile(f, resp.offset, count)
            return count
        finally:
            if f is not None:
                f.close()

    def _write_cut(self, head, f, resp, count):
        """Half the answer, then RST: half the body after the head, or half
        the head when there is no body. Returns the body bytes sent."""
        part = 0
        if f is None and count == 0 or resp.head:
            self.wfile.write(head[:len(head) // 2])
        else:
            part = max(1, count // 2)
            self.wfile.write(head)
            if f is not None:
                self.connection.sendfile(f, resp.offset, part)
            else:
                self.wfile.write(resp.body[:part])
        self._reset_when_sent()
        return part

    def _reset_when_sent(self, bound=2.0):
        """RST discards what is still queued to send: wait (bounded) until
        the peer has taken what was written, so "part of the answer" is
        what it sees before the reset."""
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            try:
                buf = fcntl.ioctl(self.connection.fileno(), termios.TIOCOUTQ, b"\0" * 4)
            except (OSError, ValueError):
                break
            if struct.unpack("i", buf)[0] == 0:
                break
            time.sleep(0.002)
        self._reset()

    def _close_abruptly(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _reset(self):
        """Closes the connection with a TCP RST (SO_LINGER 0)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address, app, ssl_context=None, family=socket.AF_INET):
        self.address_family = family
        self.app = app
        self.ssl_context = ssl_context
        self.scheme = "https" if ssl_context else "http"
        self._active_lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        super().__init__(address, Handler)

    _active = 0

    def request_started(self):
        with self._active_lock:
            self._active += 1
            self._idle.clear()

    def request_finished(self):
        with self._active_lock:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    def wait_idle(self, timeout):
        """Waits (bounded) for requests in progress to finish."""
        return self._idle.wait(timeout)

    def get_request(self):
        sock, addr = super().get_request()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False)
        return sock, addr

    def process_request_thread(self, request, client_address):
        if self.ssl_context is not None:
            try:
                request.settimeout(30)
                request.do_handshake()
            except (OSError, ValueError):
                self.shutdown_request(request)
                return
        super().process_request_thread(request, client_address)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            return
        log.error("error on connection from %s\n%s", client_address, traceback.format_exc())


