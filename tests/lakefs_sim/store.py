"""Durable state: repositories, branches, commits, tags, object entries and
in-flight multipart uploads, held in memory and persisted under --data-dir.

Layout of the data directory:
  state.json          snapshot of all metadata; names the journal that follows it
  journal-<N>.jsonl   metadata mutations made after that snapshot, one JSON
                      object per line, replayed at start (a torn last line is
                      ignored)
  blobs/xx/<addr>     object bodies, immutable once written
  mpu/<upload-id>/    parts of in-flight multipart uploads, one file per part
                      named <part:05d>.<md5 hex>
  tmp/                files being written

Durability: a mutation is acknowledged only after everything it depends on
is written. Object bodies are written to tmp/ and renamed into blobs/ (and
not fsynced, as lakeFS's local block adapter does not: see FileWriter; with
sync_bodies they are fsynced and so is their directory); then the metadata
record is appended to the journal and the journal fsynced (group commit: one fsync covers every record
written before it, so an acknowledged record implies all earlier ones are
durable). Mutations are applied to memory and written to the journal under
one lock, so the journal order is the order in which readers saw them. At
start the snapshot is loaded, the journal replayed through the same code that
applied the records live, a new snapshot written and the journal restarted;
blobs and part directories that nothing references are then removed. The
journal is also compacted at run time when it grows large.

Model (as in lakeFS's graveler): a branch points at a commit and carries
staged changes (uncommitted puts and deletes). A commit stores only its
changes relative to its first parent; full trees (path -> Entry dict plus a
sorted key list, for bisecting listings) are materialised on demand and kept
in a small LRU. Each branch keeps its own materialised view (committed +
staged) and sorted key list, updated in place on every write, so listings
and reads of a branch never merge on the fly.
"""
import bisect
import collections
import fcntl
import hashlib
import json
import logging
import os
import queue
import shutil
import threading
import time
import uuid

log = logging.getLogger("lakefs_sim.store")

FIRST_COMMIT_MESSAGE = "Repository created"
COMMITTER = "admin"
_TREE_CACHE = 24                     # materialised commit trees kept in memory
_COMPACT_BYTES = 256 << 20           # journal size that triggers compaction
_COPY_CHUNK = 8 << 20


class StoreError(Exception):
    """Base of the errors below; the message is meant for the client."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


class InvalidValue(StoreError):
    pass


class PreconditionFailed(StoreError):
    pass


class NoChanges(StoreError):
    pass


class Forbidden(StoreError):
    pass


class Entry:
    """One object version: where its bytes are and what lakeFS reports about it."""
    __slots__ = ("addr", "size", "etag", "mtime", "ctype", "meta")

    def __init__(self, addr, size, etag, mtime, ctype, meta=None):
        self.addr = addr          # blob name under blobs/
        self.size = size
        self.etag = etag          # hex checksum, unquoted
        self.mtime = mtime        # float seconds, millisecond precision
        self.ctype = ctype
        self.meta = meta or None  # {"X-Amz-Meta-name": value} or None

    def to_json(self):
        return [self.addr, self.size, self.etag, self.mtime, self.ctype, self.meta]

    @classmethod
    def from_json(cls, v):
        return cls(v[0], v[1], v[2], v[3], v[4], v[5])


class Commit:
    __slots__ = ("id", "parents", "committer", "message", "created", "metadata",
                 "meta_range_id", "generation", "changes", "_tree", "_keys")

    def __init__(self, cid, parents, committer, message, created, metadata,
                 meta_range_id, generation, changes):
        self.id = cid
        self.parents = parents
        self.committer = committer
        self.message = message
        self.created = created              # int seconds
        self.metadata = metadata or {}
        self.meta_range_id = meta_range_id
        self.generation = generation
        self.changes = changes              # path -> Entry|None, vs parents[0]
        self._tree = None
        self._keys = None

    @property
    def base(self):
        return self.parents[0] if self.parents else None


class Branch:
    __slots__ = ("name", "commit_id", "view", "keys", "staged")

    def __init__(self, name, commit_id, view, keys, staged=None):
        self.name = name
        self.commit_id = commit_id
        self.view = view            # path -> Entry, committed + staged
        self.keys = keys            # sorted list of view's paths
        self.staged = staged or {}  # path -> Entry|None (None: deleted)


class Repo:
    __slots__ = ("name", "created", "default_branch", "namespace", "branches",
                 "tags", "commits", "commit_ids")

    def __init__(self, name, created, default_branch, namespace):
        self.name = name
        self.created = created
        self.default_branch = default_branch
        self.namespace = namespace
        self.branches = {}
        self.tags = {}
        self.commits = {}
        self.commit_ids = []        # sorted, for commit-ID prefix lookups


class Upload:
    __slots__ = ("id", "repo", "path", "meta", "ctype", "created", "parts", "addr")

    def __init__(self, uid, repo, path, meta, ctype, created, addr=None):
        self.addr = addr            # a presigned upload's blob address (storage.py)
        self.id = uid
        self.repo = repo
        self.path = path
        self.meta = meta
        self.ctype = ctype
        self.created = created
        self.parts = {}             # part number -> (md5 hex, size, file name)


class View:
    """A readable tree: `tree` maps paths to entries, `keys` is sorted. Views
    of commits are immutable; a branch view changes in place, so read it
    while holding the store lock."""
    __slots__ = ("tree", "keys")

    def __init__(self, tree, keys):
        self.tree = tree
        self.keys = keys


def upper_bound(prefix):
    """The smallest string greater than every string starting with prefix."""
    p = prefix
    while p and ord(p[-1]) == 0x10FFFF:
        p = p[:-1]
    if not p:
        return None
    return p[:-1] + chr(ord(p[-1]) + 1)


def list_page(view, prefix, after, delimiter, limit):
    """lakeFS's entry listing (catalog.ListEntries): keys under prefix,
    strictly after `after`, grouped into common prefixes at `delimiter`.
    Returns ([(path, Entry or None for a common prefix)], has_more). After a
    common prefix the whole sub-tree is skipped with one bisect."""
    keys = view.keys
    tree = view.tree
    start = max(prefix, after)
    i = bisect.bisect_left(keys, start)
    n = len(keys)
    out = []
    plen = len(prefix)
    while i < n:
        k = keys[i]
        if not k.startswith(prefix):
            break
        if delimiter:
            j = k.find(delimiter, plen)
            if j >= 0:
                cp = k[:j + len(delimiter)]
                if cp != after:
                    out.append((cp, None))
                    if len(out) > limit:
                        break
                ub = upper_bound(cp)
                if ub is None:
                    break
                i = bisect.bisect_left(keys, ub, i + 1)
                continue
        if k != after:
            out.append((k, tree[k]))
            if len(out) > limit:
                break
        i += 1
    if len(out) > limit:
        return out[:limit], True
    return out, False


def commits_with_prefix(repo, prefix):
    """Up to two commit IDs of repo starting with prefix (two means ambiguous)."""
    ids = repo.commit_ids
    i = bisect.bisect_left(ids, prefix)
    out = []
    while i < len(ids) and ids[i].startswith(prefix) and len(out) < 2:
        out.append(ids[i])
        i += 1
    return out


def tree_hash(keys, tree):
    """Content address of a tree (our meta_range_id)."""
    h = hashlib.sha256()
    buf = []
    for k in keys:
        e = tree[k]
        buf.append(f"{k}\0{e.addr}\0{e.etag}\0{e.size}\n")
        if len(buf) >= 4096:
            h.update("".join(buf).encode("utf-8", "surrogateescape"))
            buf.clear()
    h.update("".join(buf).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def commit_hash(parents, committer, message, created, metadata, meta_range_id):
    doc = json.dumps({"parents": parents, "committer": committer, "message": message,
                      "creation_date": created, "metadata": metadata,
                      "meta_range_id": meta_range_id}, sort_keys=True)
    return hashlib.sha256(doc.encode("utf-8", "surrogateescape")).hexdigest()


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_range(src_fd, dst_fd, offset, length):
    """Kernel-side copy of length bytes from src_fd at offset to dst_fd's end."""
    done = 0
    while done < length:
        n = min(_COPY_CHUNK, length - done)
        try:
            got = os.copy_file_range(src_fd, dst_fd, n, offset + done)
        except OSError:
            got = 0
        if got <= 0:
            os.lseek(src_fd, offset + done, os.SEEK_SET)
            data = os.read(src_fd, n)
            if not data:
                raise IOError("source file shorter than expected")
            os.write(dst_fd, data)
            got = len(data)
        done += got
    return done


class FileWriter:
    """Writes a new file under tmp/, computing its MD5 as it goes; `finish`
    renames it to its final place. Past a few MiB the MD5 moves to a helper
    thread so hashing overlaps the writes (both release the GIL).

    Bodies are not fsynced unless the store was opened with sync_bodies,
    as lakeFS's local block adapter (pkg/block/local/adapter.go) does not
    sync them: its Put, UploadPart and CompleteMultiPartUpload (which
    copies the parts into one file) are os.Create + io.Copy + Close. They
    survive a kill of the server, as the kernel keeps them, not a power
    loss. Metadata stays fsynced (the journal), as lakeFS's KV store does."""
    _PIPELINE_AFTER = 4 << 20

    def __init__(self, store, final_path):
        self.final_path = final_path
        self.sync = store.sync_bodies
        self.tmp_path = os.path.join(store.dir, "tmp", uuid.uuid4().hex)
        self.fd = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.md5 = hashlib.md5()
        self.size = 0
        self._queue = None
        self._hasher = None

    def _hash_loop(self):
        while True:
            data = self._queue.get()
            if data is None:
                return
            self.md5.update(data)

    def write(self, data):
        if self._queue is not None:
            self._queue.put(data)
        elif self.size >= self._PIPELINE_AFTER:
            self._queue = queue.Queue(16)
            self._hasher = threading.Thread(target=self._hash_loop, daemon=True)
            self._hasher.start()
            self._queue.put(data)
        else:
            self.md5.update(data)
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.size += len(data)

    def md5_hex(self):
        self._stop_hasher()
        return self.md5.hexdigest()

    def _stop_hasher(self):
        if self._hasher is not None:
            self._queue.put(None)
            self._hasher.join()
            self._hasher = None
            self._queue = None

    def finish(self):
        self._stop_hasher()
        if self.sync:
            os.fsync(self.fd)
        os.close(self.fd)
        self.fd = None
        os.replace(self.tmp_path, self.final_path)
        if self.sync:
            _fsync_dir(os.path.dirname(self.final_path))

    def abort(self):
        self._stop_hasher()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        try:
            os.unlink(self.tmp_path)
        except FileNotFoundError:
            pass


class Store:
    def __init__(self, data_dir, sync_bodies=False, drop_deleted_blobs=False):
        self.dir = os.path.abspath(data_dir)
        self.sync_bodies = sync_bodies
        self.drop_deleted_blobs = drop_deleted_blobs
        self.lock = threading.RLock()
        self.repos = {}
        self.uploads = {}
        self._lru = collections.OrderedDict()
        self._jfd = None
        self._jgen = 0
        self._jbytes = 0
        self._written = 0           # records written to the journal
        self._synced = 0            # records known durable
        self._sync_lock = threading.Lock()
        self._replaying = False

    # ------------------------------------------------------------------
    # start-up: load, replay, compact, collect garbage
    # ------------------------------------------------------------------
    def open(self):
        self._lock_fd = os.open(os.path.join(self.dir, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError("data directory %s is in use by another simulator" % self.dir)
        for sub in ("blobs", "mpu", "tmp"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        for i in range(256):
            os.makedirs(os.path.join(self.dir, "blobs", "%02x" % i), exist_ok=True)
        shutil.rmtree(os.path.join(self.dir, "tmp"))
        os.makedirs(os.path.join(self.dir, "tmp"))
        t0 = time.time()
        gen = self._load_snapshot()
        replayed = self._replay(gen)
        for up in self.uploads.values():
            self._scan_parts(up)
        self._jgen = gen
        self._write_snapshot()
        self._collect_garbage()
        log.info("state loaded: %d repositories, %d journal records replayed in %.2fs",
                 len(self.repos), replayed, time.time() - t0)

    def close(self):
        with self.lock:
            if self._jfd is not None:
                os.fsync(self._jfd)
                os.close(self._jfd)
                self._jfd = None

    def _journal_path(self, gen):
        return os.path.join(self.dir, "journal-%d.jsonl" % gen)

    def _load_snapshot(self):
        path = os.path.join(self.dir, "state.json")
        if not os.path.exists(path):
            return 0
        with open(path, "r", encoding="utf-8", errors="surrogateescape") as f:
            doc = json.load(f)
        for r in doc["repos"]:
            repo = Repo(r["name"], r["created"], r["default_branch"], r["namespace"])
            self.repos[repo.name] = repo
            for c in r["commits"]:      # parents before children
                changes = {p: (Entry.from_json(e) if e is not None else None)
                           for p, e in c["changes"].items()}
                self._add_commit(repo, Commit(c["id"], c["parents"], c["committer"],
                                              c["message"], c["created"], c["metadata"],
                                              c["meta_range_id"], c["generation"], changes))
            for b in r["branches"]:
                br = self._branch_from_commit(repo, b["name"], b["commit"])
                for p, e in b["staged"].items():
                    if e is None:
                        self._unset(br, p)
                    else:
                        self._set(br, p, Entry.from_json(e))
                repo.branches[br.name] = br
            repo.tags.update(r["tags"])
        for u in doc.get("uploads", []):
            up = Upload(u["id"], u["repo"], u["path"], u["meta"], u["ctype"], u["created"],
                        u.get("addr"))
            self.uploads[up.id] = up
        return doc["journal"]

    def _replay(self, gen):
        path = self._journal_path(gen)
        if not os.path.exists(path):
            return 0
        with open(path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        count = 0
        self._replaying = True
        try:
            for i, line in enumerate(lines):
                if not line:
                    continue
                try:
                    rec = json.loads(line.decode("utf-8", "surrogateescape"))
                except ValueError:
                    if i == len(lines) - 1:
                        log.warning("ignoring torn last journal line (%d bytes)", len(line))
                        break
                    raise
                self._apply(rec)
                count += 1
        finally:
            self._replaying = False
        return count

    def _snapshot_doc(self):
        repos = []
        for repo in self.repos.values():
            commits = sorted(repo.commits.values(), key=lambda c: (c.generation, c.id))
            repos.append({
                "name": repo.name, "created": repo.created,
                "default_branch": repo.default_branch, "namespace": repo.namespace,
                "commits": [{
                    "id": c.id, "parents": c.parents, "committer": c.committer,
                    "message": c.message, "created": c.created, "metadata": c.metadata,
                    "meta_range_id": c.meta_range_id, "generation": c.generation,
                    "changes": {p: (e.to_json() if e is not None else None)
                                for p, e in c.changes.items()}} for c in commits],
                "branches": [{
                    "name": b.name, "commit": b.commit_id,
                    "staged": {p: (e.to_json() if e is not None else None)
                               for p, e in b.staged.items()}} for b in repo.branches.values()],
                "tags": repo.tags,
            })
        uploads = [{"id": u.id, "repo": u.repo, "path": u.path, "meta": u.meta,
                    "ctype": u.ctype, "created": u.created, "addr": u.addr}
                   for u in self.uploads.values()]
        return {"version": 1, "journal": self._jgen + 1, "repos": repos, "uploads": uploads}

    def _write_snapshot(self):
        """Writes state.json naming journal N+1, then switches to that journal.
        A crash after the rename leaves journal N unreferenced (and deleted at
        the next start), so no record is replayed twice."""
        doc = self._snapshot_doc()
        tmp = os.path.join(self.dir, "tmp", "state.json")
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.dir, "state.json"))
        _fsync_dir(self.dir)
        old = self._jgen
        self._jgen = doc["journal"]
        if self._jfd is not None:
            os.close(self._jfd)
        self._jfd = os.open(self._journal_path(self._jgen),
                            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o644)
        _fsync_dir(self.dir)
        self._jbytes = 0
        for name in os.listdir(self.dir):
            if name.startswith("journal-") and name != "journal-%d.jsonl" % self._jgen:
                try:
                    if int(name[8:-6]) <= old:
                        os.unlink(os.path.join(self.dir, name))
                except ValueError:
                    pass

    def _live_addrs(self):
        """Every body address a commit or a branch's staging refers to."""
        live = set()
        for repo in self.repos.values():
            for c in repo.commits.values():
                live.update(e.addr for e in c.changes.values() if e is not None)
            for b in repo.branches.values():
                live.update(e.addr for e in b.staged.values() if e is not None)
        return live

    def _collect_garbage(self):
        live = self._live_addrs()
        removed = 0
        blobs = os.path.join(self.dir, "blobs")
        for sub in os.listdir(blobs):
            for ent in os.scandir(os.path.join(blobs, sub)):
                if ent.name not in live:
                    os.unlink(ent.path)
                    removed += 1
        mpu = os.path.join(self.dir, "mpu")
        for name in os.listdir(mpu):
            if name not in self.uploads:
                shutil.rmtree(os.path.join(mpu, name), ignore_errors=True)
        if removed:
            log.info("removed %d unreferenced blobs", removed)

    # ------------------------------------------------------------------
    # journal
    # ------------------------------------------------------------------
    def _log(self, rec):
        """Appends a record (caller holds the lock, and has applied it)."""
        line = (json.dumps(rec, separators=(",", ":"), ensure_ascii=False) + "\n").encode(
            "utf-8", "surrogateescape")
        view = memoryview(line)
        while view:
            n = os.write(self._jfd, view)
            view = view[n:]
        self._jbytes += len(line)
        self._written += 1
        seq = self._written
        if self._jbytes > _COMPACT_BYTES:
            with self._sync_lock:       # no fsync may run on the fd being closed
                os.fsync(self._jfd)
                self._synced = self._written
                self._write_snapshot()
        return seq

    def _sync(self, seq):
        """Returns once record `seq` is durable; one fsync serves all waiters."""
        if self._synced >= seq:
            return
        with self._sync_lock:
            if self._synced >= seq:
                return
            target = self._written
            os.fsync(self._jfd)
            self._synced = max(self._synced, target)

    def _commit_record(self, rec):
        """Applies rec to memory and appends it to the journal (lock held)."""
        self._apply(rec)
        return self._log(rec)

    # ------------------------------------------------------------------
    # trees
    # ------------------------------------------------------------------
    def _add_commit(self, repo, commit):
        repo.commits[commit.id] = commit
        bisect.insort(repo.commit_ids, commit.id)

    def _touch(self, commit):
        key = id(commit)
        self._lru[key] = commit
        self._lru.move_to_end(key)
        while len(self._lru) > _TREE_CACHE:
            _, old = self._lru.popitem(last=False)
            old._tree = None
            old._keys = None

    def commit_view(self, repo, commit):
        """The full tree of a commit (materialised on demand)."""
        if commit._tree is None:
            chain = []
            c = commit
            while c._tree is None and c.base is not None:
                chain.append(c)
                c = repo.commits[c.base]
            if c._tree is None:
                tree = {p: e for p, e in c.changes.items() if e is not None}
            else:
                tree = dict(c._tree)
            for x in reversed(chain):
                for p, e in x.changes.items():
                    if e is None:
                        tree.pop(p, None)
                    else:
                        tree[p] = e
            commit._tree = tree
            commit._keys = sorted(tree)
        tree, keys = commit._tree, commit._keys
        self._touch(commit)
        return View(tree, keys)

    def _branch_from_commit(self, repo, name, commit_id):
        v = self.commit_view(repo, repo.commits[commit_id])
        return Branch(name, commit_id, dict(v.tree), list(v.keys))

    @staticmethod
    def _set(branch, path, entry):
        if path not in branch.view:
            bisect.insort(branch.keys, path)
        branch.view[path] = entry
        branch.staged[path] = entry

    @staticmethod
    def _unset(branch, path):
        if path not in branch.view:
            return False
        del branch.view[path]
        i = bisect.bisect_left(branch.keys, path)
        del branch.keys[i]
        branch.staged[path] = None
        return True

    def staged_changes(self, repo, branch):
        """Effective uncommitted changes: path -> (new Entry|None, old Entry|None)."""
        base = self.commit_view(repo, repo.commits[branch.commit_id]).tree
        out = {}
        for p, e in branch.staged.items():
            old = base.get(p)
            if e is None and old is None:
                continue
            if e is old:
                continue
            out[p] = (e, old)
        return out

    # ------------------------------------------------------------------
    # record application (shared by live mutations and journal replay)
    # ------------------------------------------------------------------
    def _apply(self, rec):
        op = rec["op"]
        if op == "put":
            repo = self.repos[rec["repo"]]
            self._set(repo.branches[rec["branch"]], rec["path"], Entry.from_json(rec["e"]))
            if "upload" in rec:
                self.uploads.pop(rec["upload"], None)
        elif op == "del":
            br = self.repos[rec["repo"]].branches[rec["branch"]]
            for p in rec["paths"]:
                self._unset(br, p)
        elif op == "commit":
            self._apply_commit(rec)
        elif op == "reset":
            self._apply_reset(rec)
        elif op == "repo":
            repo = Repo(rec["name"], rec["created"], rec["branch"], rec["ns"])
            c = rec["commit"]
            commit = Commit(c["id"], [], c["committer"], c["message"], c["created"], {},
                            c["meta_range_id"], 1, {})
            self._add_commit(repo, commit)
            repo.branches[rec["branch"]] = self._branch_from_commit(repo, rec["branch"], commit.id)
            self.repos[repo.name] = repo
        elif op == "repo_del":
            del self.repos[rec["name"]]
            for uid in [u.id for u in self.uploads.values() if u.repo == rec["name"]]:
                del self.uploads[uid]
        elif op == "branch":
            repo = self.repos[rec["repo"]]
            repo.branches[rec["name"]] = self._branch_from_commit(repo, rec["name"], rec["commit"])
        elif op == "branch_del":
            del self.repos[rec["repo"]].branches[rec["name"]]
        elif op == "tag":
            self.repos[rec["repo"]].tags[rec["name"]] = rec["commit"]
        elif op == "tag_del":
            del self.repos[rec["repo"]].tags[rec["name"]]
        elif op == "mpu":
            up = Upload(rec["id"], rec["repo"], rec["path"], rec["meta"], rec["ctype"],
                        rec["created"], rec.get("addr"))
            self.uploads[up.id] = up
        elif op == "mpu_del":
            self.uploads.pop(rec["id"], None)
        else:
            raise ValueError("unknown journal record %r" % op)

    def _apply_commit(self, rec):
        repo = self.repos[rec["repo"]]
        br = repo.branches[rec["branch"]]
        parents = rec["parents"]
        if "changes" in rec:            # merge: explicit changes vs first parent
            changes = {p: (Entry.from_json(e) if e is not None else None)
                       for p, e in rec["changes"].items()}
            base = self.commit_view(repo, repo.commits[parents[0]])
            tree = dict(base.tree)
            for p, e in changes.items():
                if e is None:
                    tree.pop(p, None)
                else:
                    tree[p] = e
            keys = sorted(tree)
        else:
            changes = {p: new for p, (new, _old) in self.staged_changes(repo, br).items()}
            tree = dict(br.view)
            keys = list(br.keys)
        cid = rec["id"]
        if cid not in repo.commits:
            gen = 1 + max((repo.commits[p].generation for p in parents), default=0)
            commit = Commit(cid, parents, rec["committer"], rec["message"], rec["created"],
                            rec["metadata"], rec["meta_range_id"], gen, changes)
            commit._tree = tree
            commit._keys = keys
            self._touch(commit)
            self._add_commit(repo, commit)
        br.commit_id = cid
        br.staged = {}
        if "changes" in rec:
            br.view = dict(tree)
            br.keys = list(keys)

    def _apply_reset(self, rec):
        """Drops the staged state of the listed paths: each reads as in the
        branch's commit again (restored, or gone if the commit lacks it)."""
        repo = self.repos[rec["repo"]]
        br = repo.branches[rec["branch"]]
        committed = self.commit_view(repo, repo.commits[br.commit_id]).tree
        for p in rec["paths"]:
            e = committed.get(p)
            if e is None:
                self._unset(br, p)
            else:
                self._set(br, p, e)
            br.staged.pop(p, None)

    # ------------------------------------------------------------------
    # lookups (callers hold self.lock)
    # ------------------------------------------------------------------
    def repo(self, name):
        repo = self.repos.get(name)
        if repo is None:
            raise NotFound("repository not found")
        return repo

    def branch(self, repo, name):
        br = repo.branches.get(name)
        if br is None:
            raise NotFound("branch not found")
        return br

    # ------------------------------------------------------------------
    # mutations: each returns after the change is durable
    # ------------------------------------------------------------------
    def create_repo(self, name, default_branch, namespace):
        with self.lock:
            if name in self.repos:
                raise Conflict("error creating repository: not unique")
            created = int(time.time())
            mr = tree_hash([], {})
            cid = commit_hash([], COMMITTER, FIRST_COMMIT_MESSAGE, created, {}, mr)
            rec = {"op": "repo", "name": name, "branch": default_branch, "ns": namespace,
                   "created": created,
                   "commit": {"id": cid, "committer": COMMITTER, "message": FIRST_COMMIT_MESSAGE,
                              "created": created, "meta_range_id": mr}}
            seq = self._commit_record(rec)
            repo = self.repos[name]
        self._sync(seq)
        return repo

    def delete_repo(self, name):
        with self.lock:
            self.repo(name)
            seq = self._commit_record({"op": "repo_del", "name": name})
        self._sync(seq)

    def create_branch(self, repo_name, name, commit_id):
        with self.lock:
            repo = self.repo(repo_name)
            if name in repo.branches:
                raise Conflict("branch already exists")
            if name in repo.tags:
                raise Conflict("tag ID %s: conflict found" % name)
            if name in repo.commits:
                raise Conflict("branch name collides with a commit ID")
            seq = self._commit_record({"op": "branch", "repo": repo_name, "name": name,
                                       "commit": commit_id})
        self._sync(seq)

    def delete_branch(self, repo_name, name):
        with self.lock:
            repo = self.repo(repo_name)
            self.branch(repo, name)
            if name == repo.default_branch:
                raise Forbidden("cannot delete repository default branch")
            seq = self._commit_record({"op": "branch_del", "repo": repo_name, "name": name})
        self._sync(seq)

    def create_tag(self, repo_name, name, commit_id):
        with self.lock:
            repo = self.repo(repo_name)
            if name in repo.tags:
                raise Conflict("tag already exists")
            seq = self._commit_record({"op": "tag", "repo": repo_name, "name": name,
                                       "commit": commit_id})
        self._sync(seq)

    def delete_tag(self, repo_name, name):
        with self.lock:
            repo = self.repo(repo_name)
            if name not in repo.tags:
                raise NotFound("tag not found")
            seq = self._commit_record({"op": "tag_del", "repo": repo_name, "name": name})
        self._sync(seq)

    def put(self, repo_name, branch_name, path, entry, if_none_match=False, upload=None):
        """Sets path on a branch. With if_none_match the path must not exist
        (checked atomically with the write)."""
        with self.lock:
            repo = self.repo(repo_name)
            br = self.branch(repo, branch_name)
            if if_none_match and path in br.view:
                raise PreconditionFailed("object exists")
            rec = {"op": "put", "repo": repo_name, "branch": branch_name, "path": path,
                   "e": entry.to_json()}
            if upload is not None:
                rec["upload"] = upload
            seq = self._commit_record(rec)
        self._sync(seq)

    def delete(self, repo_name, branch_name, paths):
        """Deletes paths from a branch; returns the set of paths that existed."""
        with self.lock:
            repo = self.repo(repo_name)
            br = self.branch(repo, branch_name)
            present = [p for p in dict.fromkeys(paths) if p in br.view]
            if not present:
                return set()
            staged = [br.staged[p].addr for p in present if br.staged.get(p) is not None]
            seq = self._commit_record({"op": "del", "repo": repo_name, "branch": branch_name,
                                       "paths": present})
            if self.drop_deleted_blobs:
                self._drop_unreferenced(staged)
        self._sync(seq)
        return set(present)

    def _drop_unreferenced(self, addrs):
        """--drop-deleted-blobs (benchmarks only): the bodies of deleted
        uncommitted objects that nothing else refers to go at once, so a
        long benchmark's disk and page cache stay flat. lakeFS keeps them
        until its garbage collection (and so does this store by default,
        until its next start). Caller holds the lock."""
        if not addrs:
            return
        live = self._live_addrs()
        for addr in set(addrs) - live:
            try:
                os.unlink(self.blob_path(addr))
            except FileNotFoundError:
                pass

    def reset(self, repo_name, branch_name, path, exact=False):
        """Discards uncommitted changes of a branch: to `path` alone when
        exact, else to every path starting with `path` ("" for all). Paths
        without an uncommitted change are left alone (graveler's ResetKey
        and ResetPrefix walk the staging area only)."""
        with self.lock:
            repo = self.repo(repo_name)
            br = self.branch(repo, branch_name)
            if exact:
                paths = [path] if path in br.staged else []
            else:
                paths = sorted(p for p in br.staged if p.startswith(path))
            if not paths:
                return
            seq = self._commit_record({"op": "reset", "repo": repo_name, "branch": branch_name,
                                       "paths": paths})
        self._sync(seq)

    def commit(self, repo_name, branch_name, message, metadata=None, allow_empty=False,
               date=None):
        with self.lock:
            repo = self.repo(repo_name)
            br = self.branch(repo, branch_name)
            if not allow_empty and not self.staged_changes(repo, br):
                raise NoChanges("commit: no changes")
            created = int(date if date is not None else time.time())
            mr = tree_hash(br.keys, br.view)
            parents = [br.commit_id]
            metadata = dict(metadata or {})
            cid = commit_hash(parents, COMMITTER, message, created, metadata, mr)
            rec = {"op": "commit", "repo": repo_name, "branch": branch_name, "id": cid,
                   "parents": parents, "committer": COMMITTER, "message": message,
                   "created": created, "metadata": metadata, "meta_range_id": mr}
            seq = self._commit_record(rec)
            commit = repo.commits[cid]
        self._sync(seq)
        return commit

    def merge(self, repo_name, source_commit_id, dest_branch, message, metadata=None,
              strategy=None, allow_empty=False):
        """Three-way merge of a commit into a clean branch; returns the new
        commit. Conflicts raise Conflict unless strategy picks a side."""
        with self.lock:
            repo = self.repo(repo_name)
            br = self.branch(repo, dest_branch)
            if self.staged_changes(repo, br):
                raise InvalidValue("uncommitted changes (dirty branch)")
            dest_id = br.commit_id
            base_id = self.merge_base(repo, source_commit_id, dest_id)
            src = self.commit_view(repo, repo.commits[source_commit_id]).tree
            dst = self.commit_view(repo, repo.commits[dest_id]).tree
            base = self.commit_view(repo, repo.commits[base_id]).tree if base_id else {}
            changes = {}
            for p in set(src) | set(base):
                s, b, d = src.get(p), base.get(p), dst.get(p)
                if s is b:
                    continue                    # source did not touch p
                if d is b or d is s:
                    if d is not s:
                        changes[p] = s
                    continue
                if strategy == "source-wins":
                    changes[p] = s
                elif strategy == "dest-wins":
                    continue
                else:
                    raise Conflict("conflict found")
            if not changes and not allow_empty:
                raise NoChanges("no changes")
            created = int(time.time())
            tree = dict(dst)
            for p, e in changes.items():
                if e is None:
                    tree.pop(p, None)
                else:
                    tree[p] = e
            keys = sorted(tree)
            mr = tree_hash(keys, tree)
            parents = [dest_id, source_commit_id]
            metadata = dict(metadata or {})
            cid = commit_hash(parents, COMMITTER, message, created, metadata, mr)
            rec = {"op": "commit", "repo": repo_name, "branch": dest_branch, "id": cid,
                   "parents": parents, "committer": COMMITTER, "message": message,
                   "created": created, "metadata": metadata, "meta_range_id": mr,
                   "changes": {p: (e.to_json() if e is not None else None)
                               for p, e in changes.items()}}
            seq = self._commit_record(rec)
            commit = repo.commits[cid]
        self._sync(seq)
        return commit

    def merge_base(self, repo, a, b):
        """Nearest common ancestor (by generation) of two commits, or None."""
        def ancestors(cid):
            seen = set()
            stack = [cid]
            while stack:
                c = stack.pop()
                if c in seen:
                    continue
                seen.add(c)
                stack.extend(repo.commits[c].parents)
            return seen
        common = ancestors(a) & ancestors(b)
        if not common:
            return None
        return max(common, key=lambda c: (repo.commits[c].generation, repo.commits[c].created))

    # ------------------------------------------------------------------
    # object bodies
    # ------------------------------------------------------------------
    def blob_path(self, addr):
        return os.path.join(self.dir, "blobs", addr[:2], addr)

    def new_blob(self, addr=None):
        """A FileWriter for a new object body (at addr, or a new address);
        its address is writer.addr."""
        addr = addr or uuid.uuid4().hex
        w = FileWriter(self, self.blob_path(addr))
        w.addr = addr
        return w

    def copy_blob(self, src_addr, offset=0, length=None):
        """Copies (a range of) a blob into a new blob; returns (addr, size)."""
        w = self.new_blob()
        try:
            with open(self.blob_path(src_addr), "rb") as src:
                if length is None:
                    length = os.fstat(src.fileno()).st_size - offset
                _copy_range(src.fileno(), w.fd, offset, length)
            w.size = length
            w.finish()
        except BaseException:
            w.abort()
            raise
        return w.addr, length

    # ------------------------------------------------------------------
    # multipart uploads
    # ------------------------------------------------------------------
    def _upload_dir(self, uid):
        return os.path.join(self.dir, "mpu", uid)

    def _scan_parts(self, up):
        d = self._upload_dir(up.id)
        if not os.path.isdir(d):
            return
        best = {}
        for ent in os.scandir(d):
            try:
                num, md5 = ent.name.split(".", 1)
                num = int(num)
            except ValueError:
                continue
            st = ent.stat()
            if num not in best or st.st_mtime_ns > best[num][0]:
                best[num] = (st.st_mtime_ns, md5, st.st_size, ent.name)
        for num, (_t, md5, size, name) in best.items():
            up.parts[num] = (md5, size, name)

    def create_upload(self, repo_name, path, meta, ctype, addr=None):
        """A new multipart upload; addr, for a presigned one, is the blob
        its parts will be assembled into."""
        uid = uuid.uuid4().hex
        d = self._upload_dir(uid)
        os.mkdir(d)
        _fsync_dir(os.path.dirname(d))
        with self.lock:
            self.repo(repo_name)
            rec = {"op": "mpu", "id": uid, "repo": repo_name, "path": path, "meta": meta,
                   "ctype": ctype, "created": time.time()}
            if addr is not None:
                rec["addr"] = addr
            seq = self._commit_record(rec)
        self._sync(seq)
        return uid

    def get_upload(self, uid):
        with self.lock:
            up = self.uploads.get(uid)
            if up is None:
                raise NotFound("multipart upload not found")
            return up

    def new_part(self, uid):
        """A FileWriter for a part; call finish_part(uid, number, writer) after."""
        return FileWriter(self, os.path.join(self._upload_dir(uid), "pending"))

    def finish_part(self, uid, number, writer):
        md5 = writer.md5_hex()
        name = "%05d.%s" % (number, md5)
        writer.final_path = os.path.join(self._upload_dir(uid), name)
        with self.lock:
            up = self.uploads.get(uid)
            if up is None:
                writer.abort()
                raise NotFound("multipart upload not found")
        writer.finish()
        with self.lock:
            old = up.parts.get(number)
            up.parts[number] = (md5, writer.size, name)
        if old is not None and old[2] != name:
            try:
                os.unlink(os.path.join(self._upload_dir(uid), old[2]))
            except FileNotFoundError:
                pass
        return md5

    def part_path(self, uid, name):
        return os.path.join(self._upload_dir(uid), name)

    def assemble_upload(self, up, parts, addr=None):
        """Concatenates the given (md5, size, name) parts into a new blob
        (at addr when given)."""
        w = self.new_blob(addr)
        try:
            total = 0
            for _md5, size, name in parts:
                with open(self.part_path(up.id, name), "rb") as src:
                    _copy_range(src.fileno(), w.fd, 0, size)
                total += size
            w.size = total
            w.finish()
        except BaseException:
            w.abort()
            raise
        return w.addr, total

    def complete_upload(self, uid, repo_name, branch_name, path, entry, if_none_match=False):
        self.put(repo_name, branch_name, path, entry, if_none_match, upload=uid)
        shutil.rmtree(self._upload_dir(uid), ignore_errors=True)

    def abort_upload(self, uid):
        with self.lock:
            if uid not in self.uploads:
                raise NotFound("multipart upload not found")
            seq = self._commit_record({"op": "mpu_del", "id": uid})
        self._sync(seq)
        shutil.rmtree(self._upload_dir(uid), ignore_errors=True)
