"""The lakeFS REST API subset under /api/v1 (shapes from api/swagger.yml,
status codes from pkg/api/controller.go's error mapping).

HTTP basic auth with the gateway's access key ID and secret; failures are
401 {"message": ...}. Lists use lakeFS's pagination object
{has_more, next_offset, results, max_per_page}: `amount` defaults to 100
and is capped at 1000, `after` is exclusive, `next_offset` is the last
returned id/path when there is more.

Endpoints: healthcheck, user, config/version, repositories (list, create,
get, delete), branches (list, create, get, delete, diff of uncommitted
changes, commit), refs (log, diff, merge, objects ls/stat/get), commits
(get), tags (list, create, get, delete).
"""
import base64
import hmac
import json
import time
from urllib.parse import unquote

from . import refs
from . import store as st
from .httpd import Response, json_response

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
    try:
        n = int(v)
    except (TypeError, ValueError):
        return DEFAULT_PER_PAGE
    if n > MAX_PER_PAGE:
        return MAX_PER_PAGE
    if n <= 0:
        return DEFAULT_PER_PAGE
    return n


def _bool(v):
    return str(v).lower() in ("1", "true", "t", "yes")


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


def commit_json(c):
    return {"id": c.id, "parents": list(c.parents), "committer": c.committer,
            "message": c.message, "creation_date": c.created, "meta_range_id": c.meta_range_id,
            "metadata": dict(c.metadata), "generation": c.generation, "version": 1}


def repo_json(r):
    return {"id": r.name, "creation_date": r.created, "default_branch": r.default_branch,
            "storage_namespace": r.namespace, "read_only": False}


class API:
    def __init__(self, store, secrets):
        self.store = store
        self.secrets = secrets
        self.started = int(time.time())
        R = self._route
        self.routes = [
            R("GET", "healthcheck", self.healthcheck, auth=False),
            R("GET", "user", self.user),
            R("GET", "config/version", self.version),
            R("GET", "repositories", self.list_repos),
            R("POST", "repositories", self.create_repo),
            R("GET", "repositories/*", self.get_repo),
            R("DELETE", "repositories/*", self.delete_repo),
            R("GET", "repositories/*/branches", self.list_branches),
            R("POST", "repositories/*/branches", self.create_branch),
            R("GET", "repositories/*/branches/*", self.get_branch),
            R("DELETE", "repositories/*/branches/*", self.delete_branch),
            R("POST", "repositories/*/branches/*/commits", self.commit),
            R("GET", "repositories/*/branches/*/diff", self.diff_branch),
            R("DELETE", "repositories/*/branches/*/objects", self.delete_object),
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

    def _resolve_commit(self, repo, ref):
        """Ref -> commit ID for operations on committed content."""
        if not refs.valid_ref(ref):
            raise APIError(400, "ref: invalid value")
        r = refs.resolve(repo, ref)
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
        doc = self._body(req)
        name, source = doc.get("name"), doc.get("source")
        if not isinstance(name, str) or not refs.valid_branch(name):
            raise APIError(400, "name: invalid branch ID: branch id must consist of letters, "
                                "digits, underscores and dashes, and cannot start with a dash")
        if not isinstance(source, str) or not source:
            raise APIError(400, "source: required value")
        with self.store.lock:
            repo = self.store.repo(repo_name)
            r = refs.resolve(repo, source) if refs.valid_ref(source) else None
            if r is None:
                raise APIError(400, "ref: invalid value")
            if r.kind == "branch" and source.endswith("$"):
                raise APIError(400, "dereference commit with staging")
            cid = r.commit_id
        self.store.create_branch(repo_name, name, cid)
        return Response(201, [("Content-Type", "text/html")], cid.encode())

    def get_branch(self, req, repo_name, name):
        with self.store.lock:
            br = self.store.branch(self.store.repo(repo_name), name)
            return json_response(200, {"id": br.name, "commit_id": br.commit_id})

    def delete_branch(self, req, repo_name, name):
        self.store.delete_branch(repo_name, name)
        return Response(204, [], b"")

    def commit(self, req, repo_name, branch):
        doc = self._body(req)
        message = doc.get("message")
        if not isinstance(message, str):
            raise APIError(400, "message: required value")
        metadata = doc.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise APIError(400, "metadata: invalid value")
        c = self.store.commit(repo_name, branch, message, {str(k): str(v) for k, v in
                                                           metadata.items()},
                              allow_empty=bool(doc.get("allow_empty")), date=doc.get("date"))
        return json_response(201, commit_json(c))

    @staticmethod
    def _diff_item(kind, path, entry):
        return {"type": kind, "path": path, "path_type": "object", "size_bytes": entry.size}

    def diff_branch(self, req, repo_name, branch):
        g = req.query_first
        prefix = g("prefix")
        with self.store.lock:
            repo = self.store.repo(repo_name)
            br = self.store.branch(repo, branch)
            changes = self.store.staged_changes(repo, br)
            items = []
            for p in sorted(changes):
                if not p.startswith(prefix):
                    continue
                new, old = changes[p]
                if new is None:
                    items.append(self._diff_item("removed", p, old))
                elif old is None:
                    items.append(self._diff_item("added", p, new))
                else:
                    items.append(self._diff_item("changed", p, new))
        page, pag = paginate(items, lambda d: d["path"], g("after"), _amount(g("amount") or None))
        return json_response(200, {"pagination": pag, "results": page})

    def delete_object(self, req, repo_name, branch):
        path = req.query_first("path")
        if not path:
            raise APIError(400, "path: required value")
        self.store.delete(repo_name, branch, [path])
        return Response(204, [], b"")

    # -- refs ------------------------------------------------------------------
    def log(self, req, repo_name, ref):
        g = req.query_first
        first_parent = _bool(g("first_parent"))
        amount = _amount(g("amount") or None)
        after = g("after")
        with self.store.lock:
            repo = self.store.repo(repo_name)
            start = self._resolve_commit(repo, ref)
            order = self._log_order(repo, start, first_parent)
            page = []
            more = False
            skipping = bool(after)
            for c in order:
                if skipping:
                    if c.id == after:
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
        d = {"path": path, "path_type": "object",
             "physical_address": "%s/data/%s" % (repo.namespace.rstrip("/"), e.addr),
             "checksum": e.etag, "size_bytes": e.size, "mtime": int(e.mtime),
             "content_type": e.ctype}
        if with_meta:
            d["metadata"] = dict(e.meta or {})
        return d

    def list_objects(self, req, repo_name, ref):
        g = req.query_first
        amount = _amount(g("amount") or None)
        with_meta = g("user_metadata").lower() != "false"
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
        path = req.query_first("path")
        repo, e = self._entry(repo_name, ref, path)
        return json_response(200, self._stats(repo, path, e))

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
        doc = self._body(req)
        tag, ref = doc.get("id"), doc.get("ref")
        if not isinstance(tag, str) or not refs.valid_tag(tag):
            raise APIError(400, "tag: invalid tag ID")
        if not isinstance(ref, str) or not ref:
            raise APIError(400, "ref: required value")
        with self.store.lock:
            cid = self._resolve_commit(self.store.repo(repo_name), ref)
        if doc.get("force"):
            try:
                self.store.delete_tag(repo_name, tag)
            except st.NotFound:
                pass
        self.store.create_tag(repo_name, tag, cid)
        return json_response(201, {"id": tag, "commit_id": cid})

    def get_tag(self, req, repo_name, tag):
        with self.store.lock:
            cid = self.store.repo(repo_name).tags.get(tag)
        if cid is None:
            raise APIError(404, "tag not found")
        return json_response(200, {"id": tag, "commit_id": cid})

    def delete_tag(self, req, repo_name, tag):
        self.store.delete_tag(repo_name, tag)
        return Response(204, [], b"")
