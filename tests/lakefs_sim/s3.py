"""The S3 gateway: lakeFS's pkg/gateway/operations, operation by operation.

Addressing is path style: /<repository>/<ref>/<path>. The repository is the
bucket; the first key segment is a ref (branch, tag, commit ID, with
modifiers); the rest is the object path. Request handling follows lakeFS's
middleware order: route by method and path shape, authenticate, look up the
repository (404 NoSuchBucket), then run the operation.

Where lakeFS's behaviour is surprising it is kept, because lakefuse must work
against the real server; the notable cases:
  - writes (PUT, copy destination, UploadPart, CreateMultipartUpload) need
    an existing branch: a ref that is a valid branch name but not a branch
    gives 404 NoSuchBucket, a ref that is not a valid branch name (main~1,
    v1.0) gives 500 InternalError (lakeFS's BranchExists validation error);
  - DELETE of a missing key, or under a tag or commit ID (valid branch
    names that are not branches), is 204 and changes nothing;
  - a ref with invalid modifiers on GET/HEAD (main@~1) is 500, not 404;
  - ListObjectsV2 with an unknown ref is 400 BadRequest, V1 answers empty;
  - encoding-type is ignored (keys are never URL-encoded in answers);
  - max-keys above 1000 is honoured up to 10000 for object listings;
  - If-Match on PUT and complete is 501 NotImplemented (open-source lakeFS);
    If-None-Match must be "*";
  - Content-MD5 is not verified;
  - a body failing its x-amz-content-sha256 check is 500 InternalError;
  - a multipart object's stored ETag is the part-ETag digest without the
    "-N" suffix (only the complete answer carries "-N"); part-list errors
    (order, size, unknown part) are 500 InternalError as lakeFS reports any
    block-store failure, with the S3 reason in the message; so is an
    unknown upload ID (404 NoSuchKey on abort);
  - CopyObject with REPLACE replaces user metadata only; the content type
    always comes from the source.
"""
import email.header
import hashlib
import os
import re
import time
from urllib.parse import unquote_plus

from . import refs, sigv4, xmlio
from . import store as st
from .httpd import Response
from .s3errors import S3Error, error_document, new_request_id

LIST_MAX_ENTRIES = 10000        # catalog.ListEntriesLimitMax
LIST_MAX_BRANCHES = 1000        # catalog.ListBranchesLimitMax
DEFAULT_MAX_KEYS = 1000
MAX_DELETE_OBJECTS = 1000
MIN_PART_SIZE = 5 << 20
MAX_PART_NUMBER = 10000
MAX_METADATA = 2048
DEFAULT_CONTENT_TYPE = "application/octet-stream"
BODY_CHUNK = 1 << 20

_PATH_WITH_REF = re.compile(r"/?(?P<ref>[^/]+)/(?P<path>.*)", re.S)
_PATH_REF_ONLY = re.compile(r"/?(?P<ref>[^/]+)", re.S)
_INT32 = re.compile(r"[+-]?\d+")
_META_KEY_OK = re.compile(r"[A-Za-z0-9\-_.#!$%&'*+^`|~]+")

_OBJ_UNSUPPORTED_GET = ("torrent", "acl", "retention", "legal-hold", "lambdaArn")
_BUCKET_UNSUPPORTED_GET = (
    "inventory", "metrics", "publicAccessBlock", "ownershipControls", "intelligent-tiering",
    "analytics", "policy", "lifecycle", "encryption", "object-lock", "replication",
    "notification", "events", "acl", "cors", "website", "accelerate", "requestPayment",
    "logging", "tagging", "versions", "policyStatus")
_BUCKET_UNSUPPORTED_PUT = (
    "cors", "metrics", "website", "logging", "accelerate", "requestPayment", "acl",
    "publicAccessBlock", "ownershipControls", "intelligent-tiering", "analytics", "lifecycle",
    "replication", "encryption", "policy", "object-lock", "tagging", "versioning")


class ResolvedPath:
    __slots__ = ("ref", "path", "with_path")

    def __init__(self, ref="", path="", with_path=False):
        self.ref = ref
        self.path = path
        self.with_path = with_path


def resolve_path(s):
    """lakeFS's path.ResolvePath for listing prefixes, markers and keys of
    DeleteObjects: "<ref>/<path>" or "<ref>". Raises ValueError."""
    if not s:
        return ResolvedPath()
    m = _PATH_WITH_REF.match(s)
    if m:
        return ResolvedPath(m["ref"], m["path"], True)
    m = _PATH_REF_ONLY.fullmatch(s)
    if m:
        return ResolvedPath(m["ref"], "", False)
    raise ValueError("encoded path is malformed")


def parse_range(spec, length):
    """httputil.ParseRange: returns (start, end) inclusive; raises
    ValueError("bad") for a malformed spec (ignored by callers) or
    ValueError("unsatisfiable")."""
    if not spec.startswith("bytes="):
        raise ValueError("bad")
    spec = spec[6:]
    if "," in spec or "-" not in spec:
        raise ValueError("bad")
    a, b = spec.split("-", 1)
    a, b = a.strip(), b.strip()
    if not a and not b:
        raise ValueError("bad")
    if not a:
        if not _INT32.fullmatch(b):
            raise ValueError("bad")
        n = int(b)
        if n == 0:
            raise ValueError("unsatisfiable")
        if n < 0:
            raise ValueError("bad")
        return (0 if n > length else length - n), length - 1
    if not _INT32.fullmatch(a):
        raise ValueError("bad")
    start = int(a)
    if start < 0:
        raise ValueError("bad")
    if not b:
        if start > length - 1:
            raise ValueError("unsatisfiable")
        return start, length - 1
    if not _INT32.fullmatch(b):
        raise ValueError("bad")
    end = int(b)
    if end < 0 or start > end:
        raise ValueError("bad")
    if start > length - 1:
        raise ValueError("unsatisfiable")
    return start, min(end, length - 1)


def canonical_header_key(k):
    """Go's textproto.CanonicalMIMEHeaderKey."""
    if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+", k):
        return k
    return "-".join(w[:1].upper() + w[1:].lower() for w in k.split("-"))


def q_encode(v):
    """Go's mime.QEncoding.Encode("utf-8", v)."""
    if all(" " <= c <= "~" or c == "\t" for c in v):
        return v
    out = []
    for b in v.encode("utf-8", "surrogateescape"):
        c = chr(b)
        if c == " ":
            out.append("_")
        elif "!" <= c <= "~" and c not in "=?_":
            out.append(c)
        else:
            out.append("=%02X" % b)
    return "=?utf-8?q?" + "".join(out) + "?="


def etag_header(etag):
    return etag if etag.startswith('"') else '"' + etag + '"'


class _Route:
    """The parsed target of a request."""
    __slots__ = ("repo", "ref", "path", "shape")

    def __init__(self, req_path):
        p = req_path[1:] if req_path.startswith("/") else req_path
        parts = p.split("/", 2)
        self.repo = parts[0]
        self.ref = parts[1] if len(parts) > 1 else ""
        self.path = parts[2] if len(parts) > 2 else ""
        if not self.repo:
            self.shape = "root"
        elif self.ref and self.path:
            self.shape = "object"
        elif not self.ref and not self.path:
            self.shape = "bucket"
        else:
            self.shape = "none"


def classify(req):
    """The S3 operation name of a request (for statistics)."""
    route = _Route(req.path)
    q = req.query
    m = req.method
    if route.shape == "root":
        return "ListBuckets" if m == "GET" else "Unknown"
    if route.shape == "bucket":
        if m == "GET":
            if "location" in q:
                return "GetBucketLocation"
            if "uploads" in q:
                return "ListMultipartUploads"
            if "versioning" in q:
                return "GetBucketVersioning"
            return "ListObjectsV2" if req.query_first("list-type") == "2" else "ListObjects"
        return {"HEAD": "HeadBucket", "PUT": "CreateBucket", "POST": "DeleteObjects",
                "DELETE": "DeleteBucket"}.get(m, "Unknown")
    if route.shape == "object":
        copy = req.header("x-amz-copy-source")
        if m == "GET":
            if "uploadId" in q:
                return "ListParts"
            if "tagging" in q:
                return "GetObjectTagging"
            return "GetObject"
        if m == "HEAD":
            return "HeadObject"
        if m == "PUT":
            if "uploadId" in q:
                return "UploadPartCopy" if copy else "UploadPart"
            if copy:
                return "CopyObject"
            if "tagging" in q:
                return "PutObjectTagging"
            return "PutObject"
        if m == "DELETE":
            return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
        if m == "POST":
            if "uploads" in q:
                return "CreateMultipartUpload"
            if "uploadId" in q:
                return "CompleteMultipartUpload"
            return "PostObject"
    return "Unknown"


class _Op:
    """Per-request context: route, request ID and error rendering."""

    def __init__(self, gw, req):
        self.gw = gw
        self.req = req
        self.route = _Route(req.path)
        self.request_id = new_request_id()
        self.head = req.method == "HEAD"
        self.repo_known = False

    def error(self, err):
        r = self.route
        if not self.repo_known:
            doc = error_document(err, self.request_id, region=self.gw.region)
        elif r.shape == "object":
            doc = error_document(err, self.request_id, bucket=r.repo, key=r.path,
                                 resource="%s@%s" % (r.ref, r.repo), region=self.gw.region)
        else:
            doc = error_document(err, self.request_id, bucket=r.repo, resource=r.repo,
                                 region=self.gw.region)
        return self.xml_bytes(doc, err.status)

    def headers(self, extra=()):
        h = [("X-Amz-Request-Id", self.request_id)]
        h.extend(extra)
        return h

    def xml_bytes(self, doc, status=200):
        return Response(status, self.headers([("Content-Type", self.gw.xml_type(self.req))]),
                        doc, head=self.head)

    def xml(self, body, status=200):
        return self.xml_bytes(xmlio.document(body), status)

    def empty(self, status, extra=()):
        return Response(status, self.headers(extra), b"", head=self.head)


class Gateway:
    def __init__(self, store, secrets, region="us-east-1", clock=None):
        self.store = store
        self.secrets = secrets
        self.region = region
        self.clock = clock         # the gateway's time (knobs.now); None: the machine's

    @staticmethod
    def xml_type(req):
        accept = req.header_all("Accept")
        if not accept:
            return "application/xml"
        values = [v.strip() for a in accept for v in re.split(r",\s*", a)]
        for t in ("application/xml", "text/xml"):
            if t in values:
                return t
        return "text/xml; charset=utf-8"

    classify = staticmethod(classify)

    def error_response(self, req, name):
        """A bare error answer (used for injected faults)."""
        return _Op(self, req).error(S3Error(name))

    # ------------------------------------------------------------------
    def handle(self, req):
        op = _Op(self, req)
        try:
            return self._handle(op)
        except S3Error as e:
            return op.error(e)

    def _handle(self, op):
        req, route = op.req, op.route
        payload = sigv4.authenticate(req, self.secrets,
                                     self.clock() if self.clock else None)
        req.set_payload(payload)
        if route.repo:
            with self.store.lock:
                exists = route.repo in self.store.repos
            if not exists:
                if req.raw_path.startswith("/api/v1"):
                    raise S3Error("NoSuchBucketPossibleAPIEndpoint")
                if route.shape == "bucket" and req.method == "PUT":
                    raise S3Error("NotImplemented")
                raise S3Error("NoSuchBucket")
            op.repo_known = True
        m = req.method
        if route.shape == "root":
            if m == "GET":
                return self.list_buckets(op)
            return op.empty(404)
        if route.shape == "bucket":
            if m in ("GET",):
                return self.bucket_get(op)
            if m == "HEAD":
                self.unsupported(op, ("acl",))
                return op.empty(200)
            if m == "PUT":
                self.unsupported(op, _BUCKET_UNSUPPORTED_PUT)
                raise S3Error("BucketAlreadyExists")
            if m == "POST":
                return self.delete_objects(op)
            if m == "DELETE":
                op.repo_known = False   # lakeFS answers from a bare operation here
                raise S3Error("ERRLakeFSNotSupported")
            return op.empty(404)
        if route.shape == "object":
            if m == "GET":
                return self.get_object(op)
            if m == "HEAD":
                return self.head_object(op)
            if m == "PUT":
                return self.put(op)
            if m == "DELETE":
                return self.delete_object(op)
            if m == "POST":
                return self.post_object(op)
        return op.empty(404)

    @staticmethod
    def unsupported(op, names):
        if any(n in op.req.query for n in names):
            raise S3Error("ERRLakeFSNotSupported")

    # ------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------
    def _lookup(self, repo_name, ref, path):
        """(Entry, Resolved) or raises refs.RefNotFound / InvalidRef /
        st.NotFound (missing key). Takes the lock itself."""
        with self.store.lock:
            repo = self.store.repo(repo_name)
            resolved = refs.resolve(repo, ref)
            entry = refs.view(self.store, repo, resolved).tree.get(path)
        if entry is None:
            raise st.NotFound("not found")
        return entry, resolved

    def _require_branch(self, op):
        """lakeFS's BranchExists check before writes."""
        ref = op.route.ref
        if not refs.valid_branch(ref):
            raise S3Error("InternalError", "invalid branch ID")
        with self.store.lock:
            repo = self.store.repos.get(op.route.repo)
            if repo is None or ref not in repo.branches:
                raise S3Error("NoSuchBucket")

    @staticmethod
    def _metadata(req):
        """x-amz-meta-* headers as lakeFS stores them (amzMetaAsMetadata)."""
        meta = {}
        total = 0
        failed = False
        seen = set()
        for name in req.header_names():
            low = name.lower()
            if not low.startswith("x-amz-meta-") or low in seen:
                continue
            seen.add(low)
            key = name[len("x-amz-meta-"):]
            raw = req.header(name)
            try:
                value = str(email.header.make_header(email.header.decode_header(raw)))
            except (ValueError, LookupError, UnicodeError):
                failed = True
                continue
            total += len(key.encode("utf-8", "surrogateescape")) + len(
                value.encode("utf-8", "surrogateescape"))
            if total > MAX_METADATA:
                raise S3Error("MetadataTooLarge")
            key = key.lower()
            if _META_KEY_OK.fullmatch(key):
                meta["X-Amz-Meta-" + key] = value
        if failed:
            raise S3Error("InvalidHeaderValue")
        return meta

    @staticmethod
    def _meta_headers(entry):
        out = []
        missing = 0
        for k, v in (entry.meta or {}).items():
            if not k.startswith("X-Amz-Meta-"):
                continue
            if _META_KEY_OK.fullmatch(k[11:]):
                out.append((canonical_header_key(k), q_encode(v)))
            else:
                missing += 1
        if missing:
            out.append(("X-Amz-Missing-Meta", str(missing)))
        return out

    def _conditions(self, op):
        """If-Match / If-None-Match as apiutil.BuildConditionFromParams:
        returns True when If-None-Match: * applies."""
        inm = op.req.header("If-None-Match") or None
        im = op.req.header("If-Match") or None
        if im is not None or (inm is not None and inm != "*"):
            raise S3Error("NotImplemented")
        return inm == "*"

    def _read_body_to_blob(self, req):
        w = self.store.new_blob()
        try:
            while True:
                data = req.body.read(BODY_CHUNK)
                if not data:
                    break
                w.write(data)
            w.finish()
        except sigv4.PayloadError as e:
            w.abort()
            raise S3Error("InternalError", str(e)) from None
        except BaseException:
            w.abort()
            raise
        return w

    @staticmethod
    def _copy_source(req):
        """Parses x-amz-copy-source as lakeFS does (QueryUnescape, then
        repo/ref/path)."""
        decoded = unquote_plus(req.header("x-amz-copy-source"), errors="surrogateescape")
        parts = decoded.lstrip("/").split("/", 2)
        if len(parts) != 3:
            raise S3Error("InvalidCopySource")
        return parts

    # ------------------------------------------------------------------
    # buckets
    # ------------------------------------------------------------------
    def list_buckets(self, op):
        self.unsupported(op, ("events",))
        prefix = op.req.query_first("prefix")
        with self.store.lock:
            repos = sorted((r.name, r.created) for r in self.store.repos.values()
                           if r.name.startswith(prefix))
        body = ["<ListAllMyBucketsResult><Buckets>"]
        for name, created in repos:
            body.append("<Bucket><CreationDate>%s</CreationDate><Name>%s</Name></Bucket>"
                        % (xmlio.iso_ms(created), xmlio.esc(name)))
        body.append("</Buckets><Owner><DisplayName></DisplayName><ID></ID></Owner>"
                    "</ListAllMyBucketsResult>")
        return op.xml("".join(body))

    def bucket_get(self, op):
        self.unsupported(op, _BUCKET_UNSUPPORTED_GET)
        q = op.req.query
        if "location" in q:
            loc = self.region if self.region not in ("", "us-east-1") else ""
            return op.xml('<LocationConstraint xmlns="%s">%s</LocationConstraint>'
                          % (xmlio.S3_NS, xmlio.esc(loc)))
        if "uploads" in q:
            return self.list_multipart_uploads(op)
        if "versioning" in q:
            return op.xml('<VersioningConfiguration xmlns="%s"/>' % xmlio.S3_NS)
        list_type = op.req.query_first("list-type")
        if list_type in ("", "1"):
            return self.list_objects(op, v2=False)
        if list_type == "2":
            return self.list_objects(op, v2=True)
        raise S3Error("BadRequest")

    def list_multipart_uploads(self, op):
        g = op.req.query_first
        if g("prefix") or g("delimiter") or g("encoding-type"):
            raise S3Error("NotImplemented")
        with self.store.lock:
            ups = sorted((u.path, u.id) for u in self.store.uploads.values()
                         if u.repo == op.route.repo)
        body = ["<ListMultipartUploadsResult>", xmlio.elem("Bucket", op.route.repo)]
        for path, uid in ups[:1000]:
            body.append("<Upload>%s%s</Upload>" % (xmlio.elem("Key", path),
                                                   xmlio.elem("UploadId", uid)))
        if len(ups) > 1000:
            body.append("<IsTruncated>true</IsTruncated>")
        body.append("<MaxUploads>1000</MaxUploads></ListMultipartUploadsResult>")
        return op.xml("".join(body))

    # ------------------------------------------------------------------
    # listing
    # ------------------------------------------------------------------
    @staticmethod
    def _max_keys(value):
        if value and re.fullmatch(r"[+-]?\d+", value):
            return int(value)
        return DEFAULT_MAX_KEYS

    def _list_branches(self, repo_name, prefix, after, limit):
        if limit < 0 or limit > LIST_MAX_BRANCHES:
            limit = LIST_MAX_BRANCHES
        with self.store.lock:
            names = sorted(self.store.repo(repo_name).branches)
        out = []
        for name in names:
            if name < max(prefix, after) or name == after:
                continue
            if not name.startswith(prefix):
                if name > prefix:
                    break
                continue
            out.append(name)
            if len(out) > limit:
                break
        return out[:limit], len(out) > limit

    def _list_entries(self, repo_name, ref, prefix, after, delimiter, limit):
        if limit < 0 or limit > LIST_MAX_ENTRIES:
            limit = LIST_MAX_ENTRIES
        if not refs.valid_ref(ref):
            raise refs.InvalidRef("ref: invalid value")
        with self.store.lock:
            repo = self.store.repo(repo_name)
            view = refs.resolve_view(self.store, repo, ref)
            return st.list_page(view, prefix, after, delimiter, limit)

    def list_objects(self, op, v2):
        g = op.req.query_first
        repo_name = op.route.repo
        delimiter = g("delimiter")
        prefix_param = g("prefix")
        max_keys = self._max_keys(g("max-keys"))
        token = g("continuation-token") if v2 else ""
        marker = g("marker") if not v2 else ""
        from_str = (token or g("start-after")) if v2 else marker
        try:
            prefix = resolve_path(prefix_param)
        except ValueError:
            raise S3Error("BadRequest") from None

        head = ["<ListBucketResult>", xmlio.elem("Name", repo_name)]
        if not prefix.with_path:
            branches, more = self._list_branches(repo_name, prefix.ref, from_str, max_keys)
            dirs = "".join("<CommonPrefixes><Prefix>%s/</Prefix></CommonPrefixes>" % xmlio.esc(b)
                           for b in branches)
            last = branches[-1] if branches else ""
            head.append(xmlio.elem("IsTruncated", xmlio.boolstr(more)))
            head.append(xmlio.elem("Prefix", prefix_param))
            if delimiter:
                head.append(xmlio.elem("Delimiter", delimiter))
            head.append(xmlio.elem("KeyCount", len(branches) if v2 else 0))
            head.append(xmlio.elem("MaxKeys", max_keys))
            head.append(dirs)
            if v2:
                if more:
                    head.append(xmlio.elem("NextContinuationToken", last))
                if token:
                    head.append(xmlio.elem("ContinuationToken", token))
            else:
                head.append(xmlio.elem("Marker", marker))
                if more and delimiter:
                    head.append(xmlio.elem("NextMarker", last))
            head.append("</ListBucketResult>")
            return op.xml("".join(head))

        ref = prefix.ref
        after = ""
        if from_str:
            try:
                f = resolve_path(from_str)
            except ValueError:
                raise S3Error("BadRequest") from None
            if f.ref.lower() != ref.lower():
                raise S3Error("BadRequest")
            after = f.path
        try:
            items, more = self._list_entries(repo_name, ref, prefix.path, after, delimiter,
                                             max_keys)
        except st.NotFound:
            if v2:
                raise S3Error("BadRequest") from None
            items, more = [], False
        except st.InvalidValue:
            raise S3Error("BadRequest") from None

        esc = xmlio.esc
        iso = xmlio.iso_ms
        ref_prefix = esc(ref) + "/"
        dirs = []
        files = []
        for path, e in items:
            if e is None:
                dirs.append("<CommonPrefixes><Prefix>%s%s</Prefix></CommonPrefixes>"
                            % (ref_prefix, esc(path)))
            else:
                files.append("<Contents><Key>%s%s</Key><LastModified>%s</LastModified>"
                             "<ETag>&#34;%s&#34;</ETag><Size>%d</Size>"
                             "<StorageClass>STANDARD</StorageClass></Contents>"
                             % (ref_prefix, esc(path), iso(e.mtime), esc(e.etag), e.size))
        last = items[-1][0] if items else ""
        head.append(xmlio.elem("IsTruncated", xmlio.boolstr(more)))
        head.append(xmlio.elem("Prefix", prefix_param))
        if delimiter:
            head.append(xmlio.elem("Delimiter", delimiter))
        head.append(xmlio.elem("KeyCount", len(items)))
        head.append(xmlio.elem("MaxKeys", max_keys))
        head.extend(dirs)
        if v2:
            if more:
                head.append(xmlio.elem("NextContinuationToken", ref + "/" + last))
            if token:
                head.append(xmlio.elem("ContinuationToken", token))
        else:
            head.append(xmlio.elem("Marker", marker))
            if more and delimiter:
                head.append(xmlio.elem("NextMarker", ref + "/" + last))
        head.extend(files)
        head.append("</ListBucketResult>")
        return op.xml("".join(head))

    # ------------------------------------------------------------------
    # reading objects
    # ------------------------------------------------------------------
    def _entry_or_error(self, op):
        r = op.route
        try:
            entry, _ = self._lookup(r.repo, r.ref, r.path)
        except refs.InvalidRef as e:
            raise S3Error("InternalError", str(e)) from None
        except st.NotFound:
            raise S3Error("NoSuchKey") from None
        return entry

    def _object_headers(self, op, entry):
        h = op.headers([("Last-Modified", xmlio.http_date(entry.mtime)),
                        ("ETag", etag_header(entry.etag)),
                        ("Content-Type", entry.ctype),
                        ("Accept-Ranges", "bytes")])
        return h

    def get_object(self, op):
        req = op.req
        self.unsupported(op, _OBJ_UNSUPPORTED_GET)
        q = req.query
        if "versioning" in q:
            return op.xml("<VersioningConfiguration></VersioningConfiguration>")
        if "tagging" in q:
            return op.xml('<Tagging xmlns="%s"><TagSet></TagSet></Tagging>' % xmlio.S3_NS)
        if "uploadId" in q:
            return self.list_parts(op)
        entry = self._entry_or_error(op)
        status = 200
        offset, count = 0, entry.size
        h = self._object_headers(op, entry)
        spec = req.header("Range")
        if spec:
            try:
                start, end = parse_range(spec, entry.size)
            except ValueError as e:
                if str(e) == "unsatisfiable":
                    raise S3Error("InvalidRange") from None
            else:
                status = 206
                offset, count = start, end - start + 1
                h.append(("Content-Range", "bytes %d-%d/%d" % (start, end, entry.size)))
        if "s3RedirectionSupport" in (req.header("User-Agent") or ""):
            # lakeFS answers with a presigned URL of the underlying store; ours
            # is the simulator's unauthenticated blob endpoint.
            location = "%s://%s/_sim/blobs/%s" % (req.scheme, req.header("Host") or "",
                                                  entry.addr)
            return op.empty(307, [("Location", location)])
        h.extend([("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "SAMEORIGIN"),
                  ("Content-Security-Policy", "default-src 'none'")])
        h.extend(self._meta_headers(entry))
        return Response(status, h, file_path=self.store.blob_path(entry.addr),
                        offset=offset, count=max(count, 0))

    def head_object(self, op):
        entry = self._entry_or_error(op)
        h = self._object_headers(op, entry)
        h.extend(self._meta_headers(entry))
        spec = op.req.header("Range")
        if spec:
            try:
                start, end = parse_range(spec, entry.size)
            except ValueError as e:
                if str(e) == "unsatisfiable":
                    return Response(416, op.headers(), b"", head=True)
            else:
                h.append(("Content-Length", str(end - start + 1)))
                h.append(("Content-Range", "bytes %d-%d/%d" % (start, end, entry.size)))
                return Response(206, h, b"", head=True)
        h.append(("Content-Length", str(entry.size)))
        return Response(200, h, b"", head=True)

    # ------------------------------------------------------------------
    # writing objects
    # ------------------------------------------------------------------
    def put(self, op):
        req = op.req
        copy = req.header("x-amz-copy-source")
        if copy:
            self._copy_source(req)          # RequiredPermissions parses it first
        self.unsupported(op, ("torrent", "acl"))
        self._require_branch(op)
        if "uploadId" in req.query:
            return self.upload_part(op)
        if copy:
            return self.copy_object(op)
        if "tagging" in req.query:
            raise S3Error("ERRLakeFSNotSupported")
        return self.put_object(op)

    def put_object(self, op):
        req, r = op.req, op.route
        if_none_match = self._conditions(op)
        if if_none_match:
            with self.store.lock:
                repo = self.store.repos.get(r.repo)
                br = repo.branches.get(r.ref) if repo else None
                if br is not None and r.path in br.view:
                    raise S3Error("PreconditionFailed")
        w = self._read_body_to_blob(req)
        try:
            meta = self._metadata(req)
            entry = st.Entry(w.addr, w.size, w.md5_hex(), round(time.time(), 3),
                             req.header("Content-Type") or DEFAULT_CONTENT_TYPE, meta)
            self.store.put(r.repo, r.ref, r.path, entry, if_none_match)
        except st.PreconditionFailed:
            raise S3Error("PreconditionFailed") from None
        except st.NotFound as e:
            raise S3Error("InternalError", str(e)) from None
        return op.empty(200, [("ETag", etag_header(entry.etag))])

    def copy_object(self, op):
        req, r = op.req, op.route
        src_repo, src_ref, src_path = self._copy_source(req)
        meta = self._metadata(req)
        replace = req.header("x-amz-metadata-directive") == "REPLACE"
        try:
            src, _ = self._lookup(src_repo, src_ref, src_path)
        except refs.InvalidRef as e:
            raise S3Error("InvalidCopyDest", str(e)) from None
        except st.NotFound:
            raise S3Error("NoSuchKey") from None
        addr, size = self.store.copy_blob(src.addr)
        entry = st.Entry(addr, size, src.etag, round(time.time(), 3), src.ctype,
                         meta if replace else (dict(src.meta) if src.meta else None))
        try:
            self.store.put(r.repo, r.ref, r.path, entry)
        except st.NotFound as e:
            raise S3Error("InvalidCopyDest", str(e)) from None
        return op.xml("<CopyObjectResult>%s%s</CopyObjectResult>"
                      % (xmlio.elem("LastModified", xmlio.iso_ms(entry.mtime)),
                         xmlio.elem("ETag", etag_header(entry.etag))))

    def delete_object(self, op):
        r = op.route
        self.unsupported(op, ("tagging", "acl", "torrent"))
        if "uploadId" in op.req.query:
            return self.abort_upload(op)
        if not refs.valid_branch(r.ref):
            raise S3Error("InternalError", "invalid branch ID")
        try:
            self.store.delete(r.repo, r.ref, [r.path])
        except st.NotFound:
            pass                            # lakeFS: not found is success
        return op.empty(204)

    def delete_objects(self, op):
        req = op.req
        if "delete" not in req.query:
            raise S3Error("ERRLakeFSNotSupported")
        try:
            data = req.body.read_all()
            root = xmlio.parse(data)
            quiet_text = xmlio.child_text(root, "Quiet")
            quiet = xmlio.parse_bool(quiet_text.strip()) if quiet_text is not None else False
        except (sigv4.PayloadError, xmlio.XMLError) as e:
            raise S3Error("BadRequest", str(e)) from None
        keys = [xmlio.child_text(o, "Key", "") for o in root.findall("Object")]
        if not keys or len(keys) > MAX_DELETE_OBJECTS:
            raise S3Error("MalformedXML")
        errors = []
        deleted = []
        for key in keys:
            try:
                rp = resolve_path(key)
            except ValueError as e:
                errors.append((key, "ErrDeletingKey", "error deleting object: %s" % e))
                continue
            if not rp.ref or not refs.valid_branch(rp.ref):
                errors.append((key, "ErrDeletingKey",
                               "error deleting object: argument branch: invalid value"))
                continue
            if rp.path:
                try:
                    self.store.delete(op.route.repo, rp.ref, [rp.path])
                except st.NotFound:
                    pass
            if not quiet:
                deleted.append(key)
        body = ['<DeleteResult xmlns="%s">' % xmlio.S3_NS]
        body.extend("<Deleted>%s</Deleted>" % xmlio.elem("Key", k) for k in deleted)
        body.extend("<Error>%s%s%s</Error>" % (xmlio.elem("Code", c), xmlio.elem("Key", k),
                                              xmlio.elem("Message", m)) for k, c, m in errors)
        body.append("</DeleteResult>")
        return op.xml("".join(body))

    # ------------------------------------------------------------------
    # multipart uploads
    # ------------------------------------------------------------------
    def post_object(self, op):
        self.unsupported(op, ("select", "restore"))
        q = op.req.query
        if "uploads" in q:
            return self.create_upload(op)
        if "uploadId" in q:
            return self.complete_upload(op)
        return op.empty(405)

    def create_upload(self, op):
        req, r = op.req, op.route
        self._require_branch(op)
        meta = self._metadata(req)
        uid = self.store.create_upload(r.repo, r.path, meta,
                                       req.header("Content-Type") or DEFAULT_CONTENT_TYPE)
        return op.xml("<InitiateMultipartUploadResult>%s%s%s</InitiateMultipartUploadResult>"
                      % (xmlio.elem("Bucket", r.repo), xmlio.elem("Key", r.ref + "/" + r.path),
                         xmlio.elem("UploadId", uid)))

    def _upload(self, uid):
        try:
            return self.store.get_upload(uid)
        except st.NotFound:
            raise S3Error("InternalError", "multipart upload %r not found" % uid) from None

    def upload_part(self, op):
        req = op.req
        uid = req.query_first("uploadId")
        num = req.query_first("partNumber")
        if not _INT32.fullmatch(num) or not -2 ** 31 <= int(num) < 2 ** 31:
            raise S3Error("InvalidPartNumberMarker")
        number = int(num)
        self._upload(uid)
        if not 1 <= number <= MAX_PART_NUMBER:
            raise S3Error("InternalError",
                          "InvalidArgument: Part number must be an integer between 1 and 10000")
        if req.header("x-amz-copy-source"):
            return self.upload_part_copy(op, uid, number)
        w = self.store.new_part(uid)
        try:
            while True:
                data = req.body.read(BODY_CHUNK)
                if not data:
                    break
                w.write(data)
            md5 = self.store.finish_part(uid, number, w)
        except sigv4.PayloadError as e:
            w.abort()
            raise S3Error("InternalError", str(e)) from None
        except st.NotFound:
            raise S3Error("InternalError", "multipart upload %r not found" % uid) from None
        except BaseException:
            w.abort()
            raise
        return op.empty(200, [("ETag", etag_header(md5))])

    def upload_part_copy(self, op, uid, number):
        src_repo, src_ref, src_path = self._copy_source(op.req)
        try:
            src, _ = self._lookup(src_repo, src_ref, src_path)
        except (st.NotFound, st.InvalidValue):
            raise S3Error("InvalidCopySource") from None
        offset, length = 0, src.size
        spec = op.req.header("x-amz-copy-source-range")
        if spec:
            try:
                start, end = parse_range(spec, src.size)
                offset, length = start, end - start + 1
            except ValueError:
                pass                        # lakeFS silently copies the whole object
        w = self.store.new_part(uid)
        try:
            with open(self.store.blob_path(src.addr), "rb") as f:
                f.seek(offset)
                left = length
                while left > 0:
                    data = f.read(min(BODY_CHUNK, left))
                    if not data:
                        raise IOError("source object shorter than its entry")
                    w.write(data)
                    left -= len(data)
            md5 = self.store.finish_part(uid, number, w)
        except st.NotFound:
            raise S3Error("InternalError", "multipart upload %r not found" % uid) from None
        except BaseException:
            w.abort()
            raise
        return op.xml("<CopyObjectResult>%s%s</CopyObjectResult>"
                      % (xmlio.elem("LastModified", xmlio.iso_ms(time.time())),
                         xmlio.elem("ETag", etag_header(md5))))

    def list_parts(self, op):
        uid = op.req.query_first("uploadId")
        up = self._upload(uid)
        with self.store.lock:
            parts = sorted(up.parts.items())
        body = ["<ListPartsResult>", xmlio.elem("Bucket", op.route.repo),
                "<IsTruncated>false</IsTruncated>",
                xmlio.elem("Key", op.route.ref + "/" + op.route.path),
                "<MaxParts>0</MaxParts><NextPartNumberMarker>0</NextPartNumberMarker>"]
        for num, (md5, size, name) in parts:
            mtime = time.time()
            try:
                mtime = os.stat(self.store.part_path(uid, name)).st_mtime
            except OSError:
                pass
            body.append("<Part>%s%s%s%s</Part>" % (
                xmlio.elem("PartNumber", num), xmlio.elem("ETag", etag_header(md5)),
                xmlio.elem("LastModified", xmlio.iso_ms(mtime)), xmlio.elem("Size", size)))
        body.append("</ListPartsResult>")
        return op.xml("".join(body))

    def complete_upload(self, op):
        req, r = op.req, op.route
        uid = req.query_first("uploadId")
        up = self._upload(uid)
        if (req.header("If-None-Match") or None) == "*":
            with self.store.lock:
                repo = self.store.repos.get(r.repo)
                br = repo.branches.get(r.ref) if repo else None
                if br is not None and r.path in br.view:
                    raise S3Error("PreconditionFailed")
        if_none_match = self._conditions(op)
        try:
            root = xmlio.parse(req.body.read_all())
        except (sigv4.PayloadError, xmlio.XMLError) as e:
            raise S3Error("InternalError", str(e)) from None
        listed = []
        for p in root.findall("Part"):
            num = (xmlio.child_text(p, "PartNumber", "") or "").strip()
            etag = (xmlio.child_text(p, "ETag", "") or "").strip().strip('"')
            if not _INT32.fullmatch(num):
                raise S3Error("InternalError", "MalformedXML: invalid PartNumber")
            listed.append((int(num), etag))
        with self.store.lock:
            have = dict(up.parts)
        parts = self._validate_parts(listed, have)
        if not refs.valid_branch(r.ref):
            raise S3Error("InternalError", "invalid branch ID")
        with self.store.lock:
            repo = self.store.repos.get(r.repo)
            if repo is None or r.ref not in repo.branches:
                raise S3Error("InternalError", "branch not found")
        digest = hashlib.md5(b"".join(bytes.fromhex(md5) for md5, _s, _n in parts)).hexdigest()
        etag = "%s-%d" % (digest, len(parts))
        addr, size = self.store.assemble_upload(up, parts)
        entry = st.Entry(addr, size, digest, round(time.time(), 3), up.ctype, up.meta)
        try:
            self.store.complete_upload(uid, r.repo, r.ref, r.path, entry, if_none_match)
        except st.PreconditionFailed:
            raise S3Error("PreconditionFailed") from None
        except st.NotFound as e:
            raise S3Error("InternalError", str(e)) from None
        location = "%s://%s/%s/%s/%s" % (req.scheme, req.header("Host") or "", r.repo, r.ref,
                                         r.path)
        return op.xml("<CompleteMultipartUploadResult>%s%s%s%s</CompleteMultipartUploadResult>"
                      % (xmlio.elem("Location", location), xmlio.elem("Bucket", r.repo),
                         xmlio.elem("Key", r.ref + "/" + r.path),
                         xmlio.elem("ETag", etag_header(etag))))

    @staticmethod
    def _validate_parts(listed, have):
        """S3's rules for the part list of a complete request; lakeFS relays
        the block store's refusal as 500 InternalError."""
        def fail(name, why=None):
            err = S3Error(name)
            raise S3Error("InternalError", "%s: %s" % (err.code, why or err.message))
        if not listed:
            fail("MalformedXML", "the part list is empty")
        prev = 0
        parts = []
        for num, etag in listed:
            if num <= prev:
                fail("InvalidPartOrder")
            prev = num
            got = have.get(num)
            if got is None or got[0] != etag.lower():
                fail("InvalidPart")
            parts.append(got)
        for md5, size, _name in parts[:-1]:
            if size < MIN_PART_SIZE:
                fail("EntityTooSmall")
        return parts

    def abort_upload(self, op):
        uid = op.req.query_first("uploadId")
        try:
            up = self.store.get_upload(uid)
        except st.NotFound:
            raise S3Error("NoSuchKey") from None
        if up.path != op.route.path:
            raise S3Error("NoSuchKey")
        try:
            self.store.abort_upload(uid)
        except st.NotFound:
            raise S3Error("NoSuchKey") from None
        return op.empty(204)
