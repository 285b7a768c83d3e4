"""The lakeFS REST API subset under /api/v1 (shapes from api/swagger.yml,
status codes from pkg/api/controller.go's error mapping, behaviour from
pkg/catalog and pkg/graveler; handlers say where their less obvious
behaviour comes from).

HTTP basic auth with the gateway's access key ID and secret; failures are
401 {"message": ...}. Errors are {"message": ...} with lakeFS's wording where
a client might look at it (validation errors read "argument <name>: ...",
as validator.Validate wraps them). Lists use lakeFS's pagination object
{has_more, next_offset, results, max_per_page}: `amount` defaults to 100,
0 and -1 mean the default, and values outside -1..1000 are 400 (swagger's
bounds, enforced by lakeFS's request validator, not capped); `after` is
exclusive, `next_offset` is the last returned id/path when there is more.

Endpoints: healthcheck, user, config (the storage configuration's presign
capabilities: /config and the older /config/storage), config/version,
repositories (list, create, get, delete), branches (list, create, get,
delete, reset, diff of uncommitted changes, commit), refs (log, diff,
merge, objects ls/stat/get; stat with presign=true), commits (get), tags
(list, create, get, delete), and the direct-to-storage write path:
staging/backing (an address to upload to, presigned with presign=true; then
the link of what was uploaded to a path) and presigned multipart uploads
(staging/pmpu: create, a presigned URL per part, complete, abort). The
presigned URLs point at the storage endpoint (storage.py).

Staging addresses are signed as lakeFS's Catalog.GetAddressWithSignature
signs them ("<namespace>/data/<addr>,<HMAC of repository, branch, path and
address>"), under a key derived from the data directory so a restart keeps
them valid; a link or a multipart call checks that signature
(VerifyLinkAddress) and answers 400 when it does not hold. As in lakeFS,
a link trusts the checksum and size the client reports.
"""
import base64
import bisect
import hashlib
import hmac
import json
import re
import time
import uuid
from urllib.parse import unquote

from . import refs
from . import store as st
from .httpd import Response, json_response
from .s3 import Gateway
from .s3errors import S3Error

DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000
_NAMESPACE_PREFIXES = ("s3://", "gs://", "http://", "https://", "mem://", "local://",
                       "transient://")


class APIError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _amount(v):
    """The `amount` query parameter. swagger.yml's PaginationAmount is an
    integer from -1 to 1000, and lakeFS's request validator (pkg/api/serve.go)
    answers 400 for anything else before a controller runs; the controller's
    paginationAmount then turns 0 and -1 into the default of 100."""
    if v is None or v == "":
        return DEFAULT_PER_PAGE
    try:
        n = int(v, 10)
    except ValueError:
        raise APIError(400, 'parameter "amount" in query has an error: value %s: an invalid '
                            'integer: invalid syntax' % v) from None
    if n > MAX_PER_PAGE:
        raise APIError(400, 'parameter "amount" in query has an error: number must be at '
                            'most %d' % MAX_PER_PAGE)
    if n < -1:
        raise APIError(400, 'parameter "amount" in query has an error: number must be at '
                            'least -1')
    if n <= 0:
        return DEFAULT_PER_PAGE
    return n


def _validate(arg, ok, what):
    """lakeFS's validator.Validate message: "argument <arg>: <what>: ..."."""
    if not ok:
        raise APIError(400, "argument %s: %s: invalid value: validation error" % (arg, what))


def _branch_id(name):
    if not name:
        raise APIError(400, "argument branch: required value: validation error")
    _validate("branch", refs.valid_branch(name), "branch id")


def _bool(v):
    return str(v).lower() in ("1", "true", "t", "yes")


def _bool_param(name, v, default):
    """A boolean query parameter as the request validator reads it."""
    if v == "":
        return default
    # strconv.ParseBool's spellings
    if v in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if v in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise APIError(400, 'parameter "%s" in query has an error: value %s: an invalid boolean: '
                        'invalid syntax' % (name, v))


def paginate(items, key, after, amount):
    """items sorted by key(item); returns (page, pagination dict)."""
    page = []
    more = False
    for it in items:
        if after and key(it) <= after:
            continue
        if len(page) == amount:
            more = True
            break
        page.append(it)
    return page, _pagination(more, page, key)


def _pagination(more, page, key):
    return {"has_more": more, "next_offset": key(page[-1]) if more and page else "",
            "results": len(page), "max_per_page": MAX_PER_PAGE}


def uuid_hex():
    return uuid.uuid4().hex


def commit_json(c):
    return {"id": c.id, "parents": list(c.parents), "committer": c.committer,
            "message": c.message, "creation_date": c.created, "meta_range_id": c.meta_range_id,
            "metadata": dict(c.metadata), "generation": c.generation, "version": 1}


def repo_json(r):
    return {"id": r.name, "creation_date": r.created, "default_branch": r.default_branch,
            "storage_namespace": r.namespace, "read_only": False}


_STAGING_ADDR = re.compile(r"data/([0-9a-f]{32}),([0-9a-f]{64})")


class API:
    def __init__(self, store, secrets, storage=None):
        self.store = store
        self.secrets = secrets
        self.storage = storage      # storage.Storage, or None: no presigning at all
        self._link_key = hashlib.sha256(b"lakefs-sim link addresses\0" +
                                        store.dir.encode("utf-8", "surrogateescape")).digest()
        self.started = int(time.time())
        R = self._route
        self.routes = [
            R("GET", "healthcheck", self.healthcheck, auth=False),
            R("GET", "user", self.user),
            R("GET", "config/version", self.version),
            R("GET", "config", self.config),
            R("GET", "config/storage", self.storage_config),
            R("GET", "repositories", self.list_repos),
            R("POST", "repositories", self.create_repo),
            R("GET", "repositories/*", self.get_repo),
            R("DELETE", "repositories/*", self.delete_repo),
            R("GET", "repositories/*/branches", self.list_branches),
            R("POST", "repositories/*/branches", self.create_branch),
            R("GET", "repositories/*/branches/*", self.get_branch),
            R("PUT", "repositories/*/branches/*", self.reset_branch),
            R("DELETE", "repositories/*/branches/*", self.delete_branch),
            R("POST", "repositories/*/branches/*/commits", self.commit),
            R("GET", "repositories/*/branches/*/diff", self.diff_branch),
            R("DELETE", "repositories/*/branches/*/objects", self.delete_object),
            R("GET", "repositories/*/branches/*/staging/backing", self.get_physical_address),
            R("PUT", "repositories/*/branches/*/staging/backing", self.link_physical_address),
            R("POST", "repositories/*/branches/*/staging/pmpu", self.create_pmpu),
            R("PUT", "repositories/*/branches/*/staging/pmpu/*", self.complete_pmpu),
            R("DELETE", "repositories/*/branches/*/staging/pmpu/*", self.abort_pmpu),
            R("PUT", "repositories/*/branches/*/staging/pmpu/*/parts/*", self.pmpu_part_url),
            R("GET", "repositories/*/refs/*/commits", self.log),
            R("GET", "repositories/*/refs/*/diff/*", self.diff_refs),
            R("POST", "repositories/*/refs/*/merge/*", self.merge),
            R("GET", "repositories/*/refs/*/objects/ls", self.list_objects),
            R("GET", "repositories/*/refs/*/objects/stat", self.stat_object),
            R("GET", "repositories/*/refs/*/objects", self.get_object),
            R("HEAD", "repositories/*/refs/*/objects", self.get_object),
            R("GET", "repositories/*/commits/*", self.get_commit),
            R("GET", "repositories/*/tags", self.list_tags),
            R("POST", "repositories/*/tags", self.create_tag),
            R("GET", "repositories/*/tags/*", self.get_tag),
            R("DELETE", "repositories/*/tags/*", self.delete_tag),
        ]

    @staticmethod
    def _route(method, pattern, fn, auth=True):
        return method, pattern.split("/"), fn, auth

    # ------------------------------------------------------------------
    def handle(self, req):
        segs = [unquote(s, errors="surrogateescape") for s in req.raw_path.split("/")[3:]]
        if segs and segs[-1] == "":
            segs.pop()
        path_matched = False
        for method, pattern, fn, auth in self.routes:
            if len(pattern) != len(segs):
                continue
            args = []
            for p, s in zip(pattern, segs):
                if p == "*":
                    if not s:
                        break
                    args.append(s)
                elif p != s:
                    break
            else:
                path_matched = True
                if method != req.method:
                    continue
                try:
                    if auth:
                        self._authenticate(req)
                    return fn(req, *args)
                except APIError as e:
                    return json_response(e.status, {"message": e.message})
                except st.StoreError as e:
                    return json_response(self._status(e), {"message": str(e)})
        if path_matched:
            return json_response(405, {"message": "method not allowed"})
        return json_response(404, {"message": "path not found"})

    @staticmethod
    def _status(e):
        if isinstance(e, st.NotFound):
            return 404
        if isinstance(e, st.Conflict):
            return 409
        if isinstance(e, st.Forbidden):
            return 403
        if isinstance(e, st.PreconditionFailed):
            return 412
        return 400                      # InvalidValue, NoChanges

    def _authenticate(self, req):
        auth = req.header("Authorization") or ""
        if auth[:6].lower() == "basic ":
            try:
                ak, _, sk = base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
            except (ValueError, UnicodeError):
                ak, sk = "", None
            expected = self.secrets.get(ak)
            if expected is not None and sk is not None and hmac.compare_digest(
                    expected.encode(), sk.encode()):
                return
        raise APIError(401, "error authenticating request")

    @staticmethod
    def _body(req):
        raw = req.body.read_all()
        if not raw:
            return {}
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise APIError(400, "invalid JSON body: %s" % e) from None
        if not isinstance(doc, dict):
            raise APIError(400, "JSON body must be an object")
        return doc

    def _resolve_commit(self, repo, ref, what="ref"):
        """Ref -> commit ID for operations on committed content, as
        Catalog.dereferenceCommitID: an explicit staging ref (branch$) is
        not a commit (400)."""
        if not refs.valid_ref(ref):
            raise APIError(400, "argument ref: ref: invalid value: validation error")
        try:
            r = refs.resolve(repo, ref)
        except st.StoreError as e:
            raise APIError(self._status(e), "%s: %s" % (what, e)) from None
        if r.explicit_staging:
            raise APIError(400, "%s: ref: invalid value: validation error: should point to a "
                                "commit" % what)
        return r.commit_id

    # ------------------------------------------------------------------
    def healthcheck(self, req):
        return Response(204, [], b"")

    def user(self, req):
        return json_response(200, {"user": {"id": "admin", "creation_date": self.started,
                                            "friendly_name": "admin"}})

    def version(self, req):
        return json_response(200, {"version": "1.0.0-lakefs-sim", "upgrade_recommended": False})

    # -- repositories -------------------------------------------------------
    def list_repos(self, req):
        g = req.query_first
        prefix = g("prefix")
        with self.store.lock:
            repos = sorted((r for r in self.store.repos.values() if r.name.startswith(prefix)),
                           key=lambda r: r.name)
            page, pag = paginate(repos, lambda r: r.name, g("after"), _amount(g("amount") or None))
            results = [repo_json(r) for r in page]
        return json_response(200, {"pagination": pag, "results": results})

    def create_repo(self, req):
        doc = self._body(req)
        name = doc.get("name")
        ns = doc.get("storage_namespace")
        branch = doc.get("default_branch") or "main"
        if not isinstance(name, str) or not refs.valid_repo(name):
            raise APIError(400, "repository: invalid value: name must match "
                                "^[a-z0-9][a-z0-9-]{2,62}$")
        if not isinstance(ns, str) or not ns.startswith(_NAMESPACE_PREFIXES):
            raise APIError(400, "storage_namespace: invalid value")
        if not isinstance(branch, str) or not refs.valid_branch(branch):
            raise APIError(400, "default_branch: invalid branch ID")
        repo = self.store.create_repo(name, branch, ns)
        with self.store.lock:
            return json_response(201, repo_json(repo))

    def get_repo(self, req, name):
        with self.store.lock:
            return json_response(200, repo_json(self.store.repo(name)))

    def delete_repo(self, req, name):
        self.store.delete_repo(name)
        return Response(204, [], b"")

    # -- branches --------------------------------------------------------------
    def list_branches(self, req, repo_name):
        g = req.query_first
        prefix = g("prefix")
        with self.store.lock:
            repo = self.store.repo(repo_name)
            items = sorted((b.name, b.commit_id) for b in repo.branches.values()
                           if b.name.startswith(prefix))
        page, pag = paginate(items, lambda b: b[0], g("after"), _amount(g("amount") or None))
        return json_response(200, {"pagination": pag,
                                   "results": [{"id": n, "commit_id": c} for n, c in page]})

    def create_branch(self, req, repo_name):
        """Catalog.CreateBranch then Graveler.CreateBranch, in their order:
        validation (400), repository (404), a commit or tag of that name
        (409 "... conflict found"), the source (404), an existing branch
        (409 "branch already exists: not unique"). A source with the $
        modifier fails with ErrCreateBranchNoCommit, which the controller's
        error mapping does not know: 500. The answer is the commit ID as a
        bare body (the controller writes it with io.WriteString, so Go sniffs
        text/plain)."""
        doc = self._body(req)
        name, source = doc.get("name"), doc.get("source")
        if not isinstance(name, str) or not isinstance(source, str):
            raise APIError(400, "request body has an error: doesn't match schema: "
                                "property \"name\" and \"source\" are required strings")
        if not name:
            raise APIError(400, "argument branch: required value: validation error")
        if not refs.valid_branch(name):
            raise APIError(400, "argument branch: branch id: invalid value: validation error: "
                                "branch id must consist of letters, digits, underscores and "
                                "dashes, and cannot start with a dash")
        if not source:
            raise APIError(400, "argument ref: required value: validation error")
        _validate("ref", refs.valid_ref(source), "ref")
        with self.store.lock:
            repo = self.store.repo(repo_name)
            if name in repo.commits:
                raise APIError(409, "commit ID %s: conflict found" % name)
            if name in repo.tags:
                raise APIError(409, "tag ID %s: conflict found" % name)
            try:
                r = refs.resolve(repo, source)
            except st.StoreError as e:
                raise APIError(self._status(e), "source reference '%s': %s" % (source, e)) from None
            if r.explicit_staging:
                raise APIError(500, "source reference '%s': can't create a branch without "
                                    "commit" % source)
            if name in repo.branches:
                raise APIError(409, "branch already exists: not unique")
            cid = r.commit_id
        self.store.create_branch(repo_name, name, cid)
        return Response(201, [("Content-Type", "text/plain; charset=utf-8")], cid.encode())

    def get_branch(self, req, repo_name, name):
        _branch_id(name)
        with self.store.lock:
            br = self.store.branch(self.store.repo(repo_name), name)
            return json_response(200, {"id": br.name, "commit_id": br.commit_id})

    def delete_branch(self, req, repo_name, name):
        _branch_id(name)
        self.store.delete_branch(repo_name, name)
        return Response(204, [], b"")

    def commit(self, req, repo_name, branch):
        """Graveler.Commit. Nothing staged, or staged writes that cancel out,
        is CommittedManager.Commit's ErrNoChanges wrapped as "commit: %w":
        400 {"message": "commit: no changes"} (the branch's staging token is
        always sealed first, so the unwrapped "no changes" of
        sealedTokensIterator cannot happen here). A tag or commit ID in the
        branch slot is "branch not found" (404) when it is a valid branch ID,
        else the branch ID validation error (400). Departure: lakeFS runs the
        prepare-commit hook on the ref before looking the branch up, so for a
        ref that resolves to nothing its 404 message is the hook's."""
        doc = self._body(req)
        message = doc.get("message")
        if not isinstance(message, str):
            raise APIError(400, 'request body has an error: doesn\'t match schema: property '
                                '"message" is missing')
        metadata = doc.get("metadata")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str)
                                                     for v in metadata.values()):
            raise APIError(400, 'request body has an error: doesn\'t match schema: property '
                                '"metadata" must be an object of strings')
        date = doc.get("date")
        if date is not None and (not isinstance(date, int) or isinstance(date, bool)):
            raise APIError(400, 'request body has an error: doesn\'t match schema: property '
                                '"date" must be an integer')
        _branch_id(branch)
        c = self.store.commit(repo_name, branch, message, metadata,
                              allow_empty=doc.get("allow_empty") is True, date=date)
        return json_response(201, commit_json(c))

    def reset_branch(self, req, repo_name, branch):
        """ResetBranch (controller.go) with body ResetCreation {type, path,
        force}: "object" is Catalog.ResetEntry (the path is validated: 400
        "missing path" when empty), "common_prefix" is ResetEntries (the path
        is not validated: none or "" resets everything) and "reset" is
        ResetBranch; any other type is 400 (swagger's enum, checked by the
        request validator). 204 with no body. Graveler.ResetKey on a path
        with no uncommitted change is "nothing to do": 204 as well. An
        unknown repository or branch is 404."""
        doc = self._body(req)
        kind = doc.get("type")
        path = doc.get("path")
        if kind not in ("object", "common_prefix", "reset"):
            raise APIError(400, 'request body has an error: doesn\'t match schema: property '
                                '"type": value is not one of the allowed values '
                                '["object","common_prefix","reset"]')
        if path is not None and not isinstance(path, str):
            raise APIError(400, 'request body has an error: doesn\'t match schema: property '
                                '"path" must be a string')
        _branch_id(branch)
        if kind == "object" and not path:
            raise APIError(400, "argument path: missing path: required value: validation error")
        if kind == "reset":
            path = ""
        self.store.reset(repo_name, branch, path or "", exact=(kind == "object"))
        return Response(204, [], b"")

    @staticmethod
    def _diff_item(kind, path, entry):
        return {"type": kind, "path": path, "path_type": "object", "size_bytes": entry.size}

    def diff_branch(self, req, repo_name, branch):
        """DiffBranch: Catalog.DiffUncommitted and its listDiffHelper. The
        entries come from the staging area, so a removal is a tombstone with
        no entry behind it: size_bytes 0. With a delimiter, paths below the
        next delimiter fold into one {"type": "prefix_changed", "path_type":
        "common_prefix"} entry without size_bytes, after which the scan jumps
        past that prefix. `after` is exclusive; with a delimiter GetStartPos
        starts at UpperBoundForPrefix(after), so paths that merely extend
        `after` (after "a" skips "ab") are skipped too, as in lakeFS."""
        g = req.query_first
        prefix, after, delimiter = g("prefix"), g("after"), g("delimiter")
        amount = _amount(g("amount") or None)
        _branch_id(branch)
        with self.store.lock:
            repo = self.store.repo(repo_name)
            br = self.store.branch(repo, branch)
            changes = self.store.staged_changes(repo, br)
        paths = sorted(changes)
        if not after or after < prefix:
            start = prefix
        elif not delimiter:
            start = after
        else:
            start = st.upper_bound(after)
        i = bisect.bisect_left(paths, start) if start is not None else len(paths)
        items = []
        while i < len(paths) and len(items) <= amount:
            p = paths[i]
            if p == after:
                i += 1
                continue
            if not p.startswith(prefix):
                break
            j = p.find(delimiter, len(prefix)) if delimiter else -1
            if j >= 0:
                cp = p[:j + len(delimiter)]
                items.append({"type": "prefix_changed", "path": cp,
                              "path_type": "common_prefix"})
                ub = st.upper_bound(cp)
                i = bisect.bisect_left(paths, ub, i + 1) if ub is not None else len(paths)
                continue
            new, old = changes[p]
            if new is None:
                items.append({"type": "removed", "path": p, "path_type": "object",
                              "size_bytes": 0})
            else:
                items.append(self._diff_item("added" if old is None else "changed", p, new))
            i += 1
        more = len(items) > amount
        page = items[:amount]
        return json_response(200, {"pagination": _pagination(more, page, lambda d: d["path"]),
                                   "results": page})

    def delete_object(self, req, repo_name, branch):
        path = req.query_first("path")
        if not path:
            raise APIError(400, "path: required value")
        self.store.delete(repo_name, branch, [path])
        return Response(204, [], b"")

    # -- refs ------------------------------------------------------------------
    def log(self, req, repo_name, ref):
        """LogCommits: Catalog.ListCommits without path filters. The ref and
        `after` are both dereferenced to commits (any ref form; 404 when
        unknown, 400 for an explicit staging ref such as main$); the log
        then skips up to and including `after`'s commit, so an `after` that
        is not in this log leaves nothing. Departure: lakeFS orders by
        creation time (nanoseconds, ties by larger commit ID); commits here
        carry whole seconds, so generation orders first, then the date,
        which agrees with lakeFS whenever dates grow along parent links."""
        g = req.query_first
        first_parent = _bool(g("first_parent"))
        amount = _amount(g("amount") or None)
        after = g("after")
        with self.store.lock:
            repo = self.store.repo(repo_name)
            start = self._resolve_commit(repo, ref, "ref")
            after_id = self._resolve_commit(repo, after, "from ref") if after else None
            order = self._log_order(repo, start, first_parent)
            page = []
            more = False
            skipping = after_id is not None
            for c in order:
                if skipping:
                    if c.id == after_id:
                        skipping = False
                    continue
                if len(page) == amount:
                    more = True
                    break
                page.append(commit_json(c))
        return json_response(200, {"pagination": _pagination(more, page, lambda c: c["id"]),
                                   "results": page})

    @staticmethod
    def _log_order(repo, start, first_parent):
        """Commits reachable from start, newest first (generation, then date)."""
        import heapq
        seen = {start}
        heap = []

        def push(cid):
            c = repo.commits[cid]
            heapq.heappush(heap, (-c.generation, -c.created, c.id))

        push(start)
        while heap:
            _, _, cid = heapq.heappop(heap)
            c = repo.commits[cid]
            yield c
            parents = c.parents[:1] if first_parent else c.parents
            for p in parents:
                if p not in seen and p in repo.commits:
                    seen.add(p)
                    push(p)

    def get_commit(self, req, repo_name, ref):
        with self.store.lock:
            repo = self.store.repo(repo_name)
            return json_response(200, commit_json(repo.commits[self._resolve_commit(repo, ref)]))

    def diff_refs(self, req, repo_name, left, right):
        g = req.query_first
        prefix = g("prefix")
        with self.store.lock:
            repo = self.store.repo(repo_name)
            lid = self._resolve_commit(repo, left)
            rid = self._resolve_commit(repo, right)
            left_tree = self.store.commit_view(repo, repo.commits[lid]).tree
            if g("type") != "two_dot":
                # three-dot (lakeFS's default): what merging right into left
                # would change, i.e. right's changes since the merge base that
                # left does not already have.
                base = self.store.merge_base(repo, lid, rid)
                lt = self.store.commit_view(repo, repo.commits[base]).tree if base else {}
            else:
                lt = left_tree
            rt = self.store.commit_view(repo, repo.commits[rid]).tree
            items = []
            for p in sorted(set(lt) | set(rt)):
                if not p.startswith(prefix):
                    continue
                a, b = lt.get(p), rt.get(p)
                if a is b or left_tree.get(p) is b and lt is not left_tree:
                    continue
                if a is None:
                    items.append(self._diff_item("added", p, b))
                elif b is None:
                    items.append(self._diff_item("removed", p, a))
                else:
                    items.append(self._diff_item("changed", p, b))
        page, pag = paginate(items, lambda d: d["path"], g("after"), _amount(g("amount") or None))
        return json_response(200, {"pagination": pag, "results": page})

    def merge(self, req, repo_name, source, dest):
        doc = self._body(req)
        with self.store.lock:
            repo = self.store.repo(repo_name)
            src = self._resolve_commit(repo, source)
        message = doc.get("message") or "Merge '%s' into '%s'" % (source, dest)
        try:
            c = self.store.merge(repo_name, src, dest, message, doc.get("metadata"),
                                 doc.get("strategy"), bool(doc.get("allow_empty")))
        except st.Conflict:
            return json_response(409, {"reference": ""})
        return json_response(200, {"reference": c.id})

    # -- objects ---------------------------------------------------------------
    def _stats(self, repo, path, e, with_meta=True):
        """ObjectStats. metadata holds user metadata as the S3 gateway stored
        it (amzMetaAsMetadata: "X-Amz-Meta-" + the lower-cased name). Listings
        (ListObjects) leave it out when the object has none or user_metadata
        is false; StatObject always sends it, {} in those cases."""
        d = {"path": path, "path_type": "object",
             "physical_address": "%s/data/%s" % (repo.namespace.rstrip("/"), e.addr),
             "checksum": e.etag, "size_bytes": e.size, "mtime": int(e.mtime),
             "content_type": e.ctype}
        if with_meta and e.meta:
            d["metadata"] = dict(e.meta)
        return d

    def list_objects(self, req, repo_name, ref):
        g = req.query_first
        amount = _amount(g("amount") or None)
        with_meta = _bool_param("user_metadata", g("user_metadata"), True)
        with self.store.lock:
            repo = self.store.repo(repo_name)
            if not refs.valid_ref(ref):
                raise APIError(400, "ref: invalid value")
            view = refs.resolve_view(self.store, repo, ref)
            items, more = st.list_page(view, g("prefix"), g("after"), g("delimiter"), amount)
            results = [{"path": p, "path_type": "common_prefix"} if e is None
                       else self._stats(repo, p, e, with_meta) for p, e in items]
        return json_response(200, {"pagination": _pagination(more, results, lambda r: r["path"]),
                                   "results": results})

    def _entry(self, repo_name, ref, path):
        if not path:
            raise APIError(400, "path: required value")
        with self.store.lock:
            repo = self.store.repo(repo_name)
            if not refs.valid_ref(ref):
                raise APIError(400, "ref: invalid value")
            e = refs.resolve_view(self.store, repo, ref).tree.get(path)
            if e is None:
                raise APIError(404, "not found")
            return repo, e

    def stat_object(self, req, repo_name, ref):
        """StatObject; with presign=true physical_address is a presigned
        GET URL of the object's body and physical_address_expiry says
        until when (a store that cannot presign: 400, lakeFS's answer to
        block.ErrOperationNotSupported)."""
        path = req.query_first("path")
        with_meta = _bool_param("user_metadata", req.query_first("user_metadata"), True)
        presign = _bool_param("presign", req.query_first("presign"), False)
        repo, e = self._entry(repo_name, ref, path)
        d = self._stats(repo, path, e, with_meta)
        d.setdefault("metadata", {})
        if presign:
            self._require_presign()
            d["physical_address"], d["physical_address_expiry"] = self.storage.presign(
                "GET", repo.namespace, e.addr)
        return json_response(200, d)

    # -- storage configuration -------------------------------------------------
    def _storage_config(self):
        """StorageConfig as lakeFS's getStorageConfig fills it."""
        on = self.storage is not None and self.storage.enabled
        return {"blockstore_type": "s3" if on else "local",
                "blockstore_namespace_example": "s3://example-bucket/" if on else
                "local://example-bucket/",
                "blockstore_namespace_ValidityRegex": "^(s3|local)://",
                "default_namespace_prefix": "",
                "pre_sign_support": on, "pre_sign_support_ui": on,
                "import_support": False, "import_validity_regex": "^(s3|local)://",
                "pre_sign_multipart_upload": bool(on and self.storage.multipart)}

    def config(self, req):
        return json_response(200, {
            "version_config": {"version": "1.0.0-lakefs-sim", "upgrade_recommended": False},
            "storage_config": self._storage_config(), "storage_config_list": [],
            "ui_config": {}, "capabilities_config": {}})

    def storage_config(self, req):
        return json_response(200, self._storage_config())

    def _require_presign(self, status=400):
        if self.storage is None or not self.storage.enabled:
            raise APIError(status, "presigned URLs are not supported by this block adapter: "
                                   "operation not supported")

    # -- staging: direct uploads to the storage --------------------------------
    def _link_signature(self, repo_name, branch, path, addr):
        """getAddressJSON's fields, signed (Catalog.signAddress)."""
        doc = json.dumps({"repository": repo_name, "branch": branch, "path": path,
                          "physical_address": "data/" + addr}, sort_keys=True)
        return hmac.new(self._link_key, doc.encode("utf-8", "surrogateescape"),
                        hashlib.sha256).hexdigest()

    def _new_address(self, repo, branch, path):
        """(blob address, signed physical address) for a new upload."""
        addr = uuid_hex()
        sig = self._link_signature(repo.name, branch, path, addr)
        return addr, "%s/data/%s,%s" % (repo.namespace.rstrip("/"), addr, sig)

    def _verify_address(self, repo, branch, path, physical_address):
        """The blob address of a physical address this server handed out
        for this branch and path (VerifyLinkAddress), else 400."""
        if not isinstance(physical_address, str) or not physical_address:
            raise APIError(400, "physical_address is required")
        prefix = repo.namespace.rstrip("/") + "/"
        m = _STAGING_ADDR.fullmatch(physical_address[len(prefix):]) \
            if physical_address.startswith(prefix) else None
        if m is None:
            raise APIError(400, "physical address must be relative to the storage namespace: "
                                "invalid address")
        want = self._link_signature(repo.name, branch, path, m.group(1))
        if not hmac.compare_digest(want, m.group(2)):
            raise APIError(400, "invalid address signature: invalid address")
        return m.group(1)

    def _staging_repo(self, repo_name, branch, path, need_branch=True):
        if not path:
            raise APIError(400, "path is required")
        with self.store.lock:
            repo = self.store.repo(repo_name)
            if need_branch:
                _branch_id(branch)
                self.store.branch(repo, branch)
            return repo

    def get_physical_address(self, req, repo_name, branch):
        """getPhysicalAddress: lakeFS checks the repository only (a branch
        that does not exist fails at the link)."""
        path = req.query_first("path")
        presign = _bool_param("presign", req.query_first("presign"), False)
        repo = self._staging_repo(repo_name, branch, path, need_branch=False)
        addr, physical = self._new_address(repo, branch, path)
        d = {"physical_address": physical}
        if presign:
            self._require_presign(500)
            d["presigned_url"], d["presigned_url_expiry"] = self.storage.presign(
                "PUT", repo.namespace, addr)
        return json_response(200, d)

    @staticmethod
    def _user_metadata(doc, field):
        meta = doc.get(field)
        if meta is None:
            return None
        if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in meta.items()):
            raise APIError(400, "%s: must be an object of strings" % field)
        return dict(meta) or None

    def _create_entry(self, req, repo, branch, path, entry, upload=None):
        if_none_match = req.header("If-None-Match")
        if req.header("If-Match") is not None:
            raise APIError(501, "If-Match is not supported")
        if if_none_match is not None and if_none_match != "*":
            raise APIError(400, "If-None-Match only supports '*'")
        try:
            if upload is None:
                self.store.put(repo.name, branch, path, entry, if_none_match == "*")
            else:
                self.store.complete_upload(upload, repo.name, branch, path, entry,
                                           if_none_match == "*")
        except st.PreconditionFailed:
            raise APIError(412, "Precondition failed") from None
        d = self._stats(repo, path, entry)
        d.setdefault("metadata", {})
        return json_response(200, d)

    def link_physical_address(self, req, repo_name, branch):
        """linkPhysicalAddress: the object at path becomes what was uploaded
        to the staging address, with the checksum, size and metadata the
        client reports (lakeFS does not look at the body)."""
        path = req.query_first("path")
        doc = self._body(req)
        repo = self._staging_repo(repo_name, branch, path)
        staging = doc.get("staging")
        if not isinstance(staging, dict):
            raise APIError(400, "staging: required value")
        addr = self._verify_address(repo, branch, path, staging.get("physical_address"))
        checksum = doc.get("checksum")
        checksum = checksum.strip().strip('"').strip() if isinstance(checksum, str) else ""
        if not checksum:
            raise APIError(400, "checksum is required")
        size = doc.get("size_bytes")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise APIError(400, "size_bytes: required value")
        mtime = doc.get("mtime")
        ctype = doc.get("content_type")
        entry = st.Entry(addr, size, checksum,
                         float(mtime) if isinstance(mtime, int) else round(time.time(), 3),
                         ctype if isinstance(ctype, str) and ctype else
                         "application/octet-stream",
                         self._user_metadata(doc, "user_metadata"))
        return self._create_entry(req, repo, branch, path, entry)

    # -- presigned multipart uploads ------------------------------------------
    def _require_pmpu(self):
        if self.storage is None or not self.storage.multipart:
            raise APIError(501, "presign multipart upload API is not supported")

    def create_pmpu(self, req, repo_name, branch):
        """createPresignMultipartUpload: an upload ID, the signed address
        of the object to be, and `parts` presigned part URLs (1..parts)."""
        self._require_pmpu()
        path = req.query_first("path")
        repo = self._staging_repo(repo_name, branch, path)
        raw = req.query_first("parts")
        try:
            parts = int(raw) if raw else 0
        except ValueError:
            raise APIError(400, 'parameter "parts" in query has an error: invalid integer') \
                from None
        if not 0 <= parts <= 10000:
            raise APIError(400, "parts can be between 0 and 10000")
        addr, physical = self._new_address(repo, branch, path)
        uid = self.store.create_upload(repo.name, path, None, None, addr=addr)
        d = {"upload_id": uid, "physical_address": physical}
        if parts:
            d["presigned_urls"] = [self.storage.presign(
                "PUT", repo.namespace, addr, [("partNumber", n), ("uploadId", uid)])[0]
                for n in range(1, parts + 1)]
        return json_response(201, d)

    def _pmpu(self, req, repo_name, branch, uid, doc):
        self._require_pmpu()
        path = req.query_first("path")
        repo = self._staging_repo(repo_name, branch, path)
        addr = self._verify_address(repo, branch, path, doc.get("physical_address"))
        try:
            up = self.store.get_upload(uid)
        except st.NotFound:
            raise APIError(404, "upload not found: not found") from None
        if up.addr != addr:
            raise APIError(404, "upload not found: not found")
        return repo, addr, up

    def pmpu_part_url(self, req, repo_name, branch, uid, number):
        """uploadPart: a presigned URL for one part (lakeFS >= 1.55)."""
        doc = self._body(req)
        repo, addr, _ = self._pmpu(req, repo_name, branch, uid, doc)
        try:
            n = int(number)
        except ValueError:
            n = 0
        if not 1 <= n <= 10000:
            raise APIError(400, "partNumber: number must be between 1 and 10000")
        url, _ = self.storage.presign("PUT", repo.namespace, addr,
                                      [("partNumber", n), ("uploadId", uid)])
        return json_response(200, {"presigned_url": url})

    def complete_pmpu(self, req, repo_name, branch, uid):
        """completePresignMultipartUpload: assembles the listed parts (S3's
        rules; a refusal is relayed as lakeFS relays block-store errors)
        and links the object; its checksum is the multipart ETag, "-N"
        included, as the block store reports it."""
        doc = self._body(req)
        repo, addr, up = self._pmpu(req, repo_name, branch, uid, doc)
        listed = doc.get("parts")
        if not isinstance(listed, list) or not listed:
            raise APIError(400, "parts are required")
        try:
            wanted = [(int(p["part_number"]), str(p["etag"]).strip().strip('"'))
                      for p in listed]
        except (KeyError, TypeError, ValueError):
            raise APIError(400, "parts: each needs part_number and etag") from None
        with self.store.lock:
            have = dict(up.parts)
        try:
            parts = Gateway._validate_parts(wanted, have)
        except S3Error as e:
            raise APIError(500, str(e)) from None
        digest = hashlib.md5(b"".join(bytes.fromhex(m) for m, _s, _n in parts)).hexdigest()
        etag = "%s-%d" % (digest, len(parts))
        _, size = self.store.assemble_upload(up, parts, addr)
        self.storage.remember_etag(addr, etag)
        ctype = doc.get("content_type")
        entry = st.Entry(addr, size, etag, round(time.time(), 3),
                         ctype if isinstance(ctype, str) and ctype else
                         "application/octet-stream",
                         self._user_metadata(doc, "user_metadata"))
        return self._create_entry(req, repo, branch, up.path, entry, upload=uid)

    def abort_pmpu(self, req, repo_name, branch, uid):
        doc = self._body(req)
        self._pmpu(req, repo_name, branch, uid, doc)
        self.store.abort_upload(uid)
        return Response(204, [], b"")

    def get_object(self, req, repo_name, ref):
        path = req.query_first("path")
        _, e = self._entry(repo_name, ref, path)
        return Response(200, [("Content-Type", e.ctype), ("ETag", '"%s"' % e.etag)],
                        file_path=self.store.blob_path(e.addr), offset=0, count=e.size)

    # -- tags --------------------------------------------------------------------
    def list_tags(self, req, repo_name):
        g = req.query_first
        prefix = g("prefix")
        with self.store.lock:
            repo = self.store.repo(repo_name)
            items = sorted((n, c) for n, c in repo.tags.items() if n.startswith(prefix))
        page, pag = paginate(items, lambda t: t[0], g("after"), _amount(g("amount") or None))
        return json_response(200, {"pagination": pag,
                                   "results": [{"id": n, "commit_id": c} for n, c in page]})

    def create_tag(self, req, repo_name):
        """Catalog.CreateTag: a branch or commit of the same name is a 409
        conflict, checked before the ref is resolved."""
        doc = self._body(req)
        tag, ref = doc.get("id"), doc.get("ref")
        if not isinstance(tag, str) or not refs.valid_tag(tag):
            raise APIError(400, "argument tagID: tag id: invalid value: validation error")
        if not isinstance(ref, str) or not ref:
            raise APIError(400, "ref: required value")
        with self.store.lock:
            repo = self.store.repo(repo_name)
            if tag in repo.branches:
                raise APIError(409, "branch name %s: conflict found" % tag)
            if tag in repo.commits:
                raise APIError(409, "commit ID %s: conflict found" % tag)
            cid = self._resolve_commit(repo, ref)
        if doc.get("force"):
            try:
                self.store.delete_tag(repo_name, tag)
            except st.NotFound:
                pass
        self.store.create_tag(repo_name, tag, cid)
        return json_response(201, {"id": tag, "commit_id": cid})

    def get_tag(self, req, repo_name, tag):
        if not refs.valid_tag(tag):
            raise APIError(400, "argument tagID: tag id: invalid value: validation error")
        with self.store.lock:
            cid = self.store.repo(repo_name).tags.get(tag)
        if cid is None:
            raise APIError(404, "tag not found")
        return json_response(200, {"id": tag, "commit_id": cid})

    def delete_tag(self, req, repo_name, tag):
        self.store.delete_tag(repo_name, tag)
        return Response(204, [], b"")
