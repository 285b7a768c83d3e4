"""Test knobs: injected faults, added latency and request statistics.

Faults and latency apply to S3 gateway requests and, with settings of
their own, to the storage endpoint (storage.py: what presigned URLs point
at); never to /_sim/, and to /api/ only through rules naming "API". Two
sources of faults, rules first:

- rules: "the next `count` requests of `operation` (whose path contains
  `path_contains`, if given), after letting `skip` of them through, get
  `kind`". Deterministic, for tests that need one fault at one step (the
  lost answer of one CompleteMultipartUpload). Spent rules disappear.
- the random draw: each S3 request draws once from a generator seeded with
  `seed`, in arrival order, whether it faults (`fail_rate`) and which of
  `kinds` it gets; a run with the same seed and the same request sequence
  injects the same faults. The seed is always known: when none is given
  one is chosen, logged at start and reported by GET /_sim/faults.

Kinds. Before any work is done, so the request never mutates state:
  error500   500 InternalError document
  slowdown   503 SlowDown document
  reset      the connection is closed with SO_LINGER 0 (RST), no response
  truncate   GetObject only: full headers and Content-Length, part of the
             body, then the connection is closed (FIN)
After the work (a write is applied and durable), as a network loses an
answer the server did send:
  lost            the connection is reset (RST) with no response at all
  reset_mid_body  the status line, the headers and part of the body go
                  out, then RST; an answer without a body is cut inside
                  its headers
The random draw uses only the before-work kinds unless told otherwise
(`kinds`), so a client that retries "any failure" is never wrong there.
Rules only, never the random draw:
  stall  the request waits `stall_ms` (default 1000) before it is served,
         then is served normally: a test holds one request in flight
         (an upload) while it makes another happen (a rename); the
         stall is counted (faults_by_kind) as it begins, so the test
         knows when the request is held.

Latency: every S3 request waits `latency_ms`, plus a uniform draw from
0..`latency_jitter_ms` (its own generator, so jitter never shifts which
requests the fault draw picks).

Clock: `clock_skew_s` moves the gateway's clock (signature checks and the
Date header of every answer) that many seconds from the machine's, as a
server whose clock drifted: more than 15 minutes either way and SigV4
requests are refused as lakeFS refuses them (sigv4.py).

The storage endpoint has its own fail_rate, latency_ms and kinds (the
"storage" object of /_sim/faults; the command line's --fail-rate and
--latency-ms set both) and its own random generator, seeded from the same
seed, so turning storage faults on never shifts the gateway's draw. Rules
name storage requests by their Storage* operations.
"""
import logging
import random
import threading
import time

BEFORE_KINDS = ("error500", "slowdown", "reset")
GET_ONLY_KINDS = ("truncate",)
AFTER_KINDS = ("lost", "reset_mid_body")
RULE_ONLY_KINDS = ("stall",)
ALL_KINDS = BEFORE_KINDS + GET_ONLY_KINDS + AFTER_KINDS + RULE_ONLY_KINDS
DEFAULT_KINDS = BEFORE_KINDS + GET_ONLY_KINDS

# What s3.classify names (a rule for any other name could never fire).
OPERATIONS = (
    "AbortMultipartUpload", "CompleteMultipartUpload", "CopyObject", "CreateBucket",
    "CreateMultipartUpload", "DeleteBucket", "DeleteObject", "DeleteObjects",
    "GetBucketLocation", "GetBucketVersioning", "GetObject", "GetObjectTagging", "HeadBucket",
    "HeadObject", "ListBuckets", "ListMultipartUploads", "ListObjects", "ListObjectsV2",
    "ListParts", "PostObject", "PutObject", "PutObjectTagging", "UploadPart", "UploadPartCopy",
    "Unknown",
    # The storage endpoint (storage.py), apart from the gateway's names.
    "StorageGetObject", "StorageHeadObject", "StoragePutObject", "StorageUploadPart",
    "StorageUnknown",
    # REST API requests (/api/v1/...): rules naming "API" exactly, never
    # "*" and never the random draw, which stay the gateway's.
    "API")

log = logging.getLogger("lakefs_sim.knobs")


def _check_kinds(kinds):
    kinds = tuple(kinds)
    drawable = tuple(k for k in ALL_KINDS if k not in RULE_ONLY_KINDS)
    if not kinds or any(k not in drawable for k in kinds):
        raise ValueError("kinds must be a non-empty list of %s" % ", ".join(drawable))
    if all(k in GET_ONLY_KINDS for k in kinds):
        raise ValueError("kinds needs one that applies to every operation")
    return kinds


class Rule:
    __slots__ = ("operation", "kind", "count", "skip", "path_contains", "stall_ms")

    def __init__(self, doc):
        if not isinstance(doc, dict):
            raise ValueError("a rule is an object")
        unknown = set(doc) - {"operation", "kind", "count", "skip", "path_contains", "stall_ms"}
        if unknown:
            raise ValueError("unknown rule fields: %s" % ", ".join(sorted(unknown)))
        self.operation = str(doc.get("operation") or "")
        self.kind = doc.get("kind")
        self.count = int(doc.get("count", 1))
        self.skip = int(doc.get("skip", 0))
        self.path_contains = doc.get("path_contains")
        self.stall_ms = int(doc.get("stall_ms", 1000))
        if self.operation != "*" and self.operation not in OPERATIONS:
            raise ValueError("a rule's operation is * or one of %s" % ", ".join(OPERATIONS))
        if self.kind not in ALL_KINDS:
            raise ValueError("a rule's kind is one of %s" % ", ".join(ALL_KINDS))
        if self.kind in GET_ONLY_KINDS and self.operation not in ("GetObject",
                                                                   "StorageGetObject"):
            raise ValueError("truncate applies to GetObject and StorageGetObject only")
        if self.count < 1 or self.skip < 0:
            raise ValueError("count must be >= 1 and skip >= 0")
        if "stall_ms" in doc and self.kind != "stall":
            raise ValueError("stall_ms belongs to a stall rule")
        if not 0 <= self.stall_ms <= 60000:
            raise ValueError("stall_ms must be within [0, 60000]")

    def matches(self, operation, path):
        if self.operation not in ("*", operation):
            return False
        return self.path_contains is None or self.path_contains in path

    def doc(self):
        d = {"operation": self.operation, "kind": self.kind, "count": self.count,
             "skip": self.skip}
        if self.path_contains is not None:
            d["path_contains"] = self.path_contains
        if self.kind == "stall":
            d["stall_ms"] = self.stall_ms
        return d


_UNSET = object()
STORAGE_PREFIX = "Storage"


class Knobs:
    def __init__(self, fail_rate=0.0, latency_ms=0, seed=None):
        self._lock = threading.Lock()
        self.fail_rate = float(fail_rate)
        self.latency_ms = int(latency_ms)
        self.latency_jitter_ms = 0
        self.clock_skew_s = 0.0
        self._jitter_rng = random.Random()
        self.kinds = DEFAULT_KINDS
        self.storage_fail_rate = float(fail_rate)
        self.storage_latency_ms = int(latency_ms)
        self.storage_kinds = DEFAULT_KINDS
        self.rules = []
        self._reseed(seed if seed is not None else random.SystemRandom().randrange(1, 2 ** 31))
        log.info("fault seed %d", self.seed)
        self.reset_stats()

    def _reseed(self, seed):
        self.seed = int(seed)
        self._rng = random.Random(self.seed)
        self._storage_rng = random.Random("storage-%d" % self.seed)

    # -- faults and latency ----------------------------------------------
    def settings(self):
        with self._lock:
            return {"fail_rate": self.fail_rate, "latency_ms": self.latency_ms,
                    "latency_jitter_ms": self.latency_jitter_ms,
                    "clock_skew_s": self.clock_skew_s,
                    "seed": self.seed, "kinds": list(self.kinds),
                    "rules": [r.doc() for r in self.rules],
                    "storage": {"fail_rate": self.storage_fail_rate,
                                "latency_ms": self.storage_latency_ms,
                                "kinds": list(self.storage_kinds)}}

    @staticmethod
    def _rate(v):
        rate = float(v)
        if not 0.0 <= rate <= 1.0:
            raise ValueError("fail_rate must be within [0, 1]")
        return rate

    @staticmethod
    def _ms(v):
        ms = int(v)
        if ms < 0:
            raise ValueError("latency_ms must not be negative")
        return ms

    def configure(self, fail_rate=None, latency_ms=None, seed=None, kinds=_UNSET,
                  rules=None, latency_jitter_ms=None, clock_skew_s=None, storage=None):
        """Changes what is given. kinds=None restores the default kinds;
        rules replace the rules in force (an empty list clears them); a
        seed restarts the random draws from that seed; storage, a dict of
        fail_rate, latency_ms and kinds, sets the storage endpoint's."""
        new_rules = [Rule(r) for r in rules] if rules is not None else None
        new_kinds = _UNSET if kinds is _UNSET else (
            DEFAULT_KINDS if kinds is None else _check_kinds(kinds))
        sto = {}
        if storage is not None:
            if not isinstance(storage, dict) or set(storage) - {"fail_rate", "latency_ms",
                                                                "kinds"}:
                raise ValueError("storage is an object of fail_rate, latency_ms and kinds")
            if storage.get("fail_rate") is not None:
                sto["fail_rate"] = self._rate(storage["fail_rate"])
            if storage.get("latency_ms") is not None:
                sto["latency_ms"] = self._ms(storage["latency_ms"])
            if "kinds" in storage:
                sto["kinds"] = (DEFAULT_KINDS if storage["kinds"] is None
                                else _check_kinds(storage["kinds"]))
        rate = self._rate(fail_rate) if fail_rate is not None else None
        ms = self._ms(latency_ms) if latency_ms is not None else None
        with self._lock:
            if rate is not None:
                self.fail_rate = rate
            if ms is not None:
                self.latency_ms = ms
            if latency_jitter_ms is not None:
                ms = int(latency_jitter_ms)
                if ms < 0:
                    raise ValueError("latency_jitter_ms must not be negative")
                self.latency_jitter_ms = ms
            if clock_skew_s is not None:
                skew = float(clock_skew_s)
                if abs(skew) > 10 * 365 * 86400:
                    raise ValueError("clock_skew_s must be within ten years")
                self.clock_skew_s = skew
            if seed is not None:
                self._reseed(seed)
            if new_kinds is not _UNSET:
                self.kinds = new_kinds
            if new_rules is not None:
                self.rules = new_rules
            self.storage_fail_rate = sto.get("fail_rate", self.storage_fail_rate)
            self.storage_latency_ms = sto.get("latency_ms", self.storage_latency_ms)
            self.storage_kinds = sto.get("kinds", self.storage_kinds)
        return self.settings()

    def delay(self):
        """Seconds this S3 request waits before it is served."""
        with self._lock:
            ms = self.latency_ms
            if self.latency_jitter_ms:
                ms += self._jitter_rng.uniform(0, self.latency_jitter_ms)
        return ms / 1000.0

    def now(self):
        """The gateway's clock: the machine's, moved by clock_skew_s."""
        return time.time() + self.clock_skew_s

    def _from_rules(self, operation, path):
        for i, r in enumerate(self.rules):
            if not r.matches(operation, path):
                continue
            # "*" means any gateway operation: storage requests are named.
            if r.operation == "*" and operation.startswith(STORAGE_PREFIX):
                continue
            if r.skip > 0:
                r.skip -= 1
                return None
            r.count -= 1
            if r.count == 0:
                del self.rules[i]
            return r
        return None

    def _count_fault(self, kind):
        self._faults += 1
        self._by_kind[kind] = self._by_kind.get(kind, 0) + 1

    def draw_fault(self, operation, path=""):
        """None, or the fault kind to inject into this S3 request. A stall
        happens here, and the request is then served as if no rule had
        matched."""
        stall = 0.0
        with self._lock:
            rule = self._from_rules(operation, path)
            kind = rule.kind if rule else None
            if kind == "stall":
                stall = rule.stall_ms / 1000.0
            if kind is None and self.fail_rate > 0.0 and self._rng.random() < self.fail_rate:
                kinds = [k for k in self.kinds
                         if k not in GET_ONLY_KINDS or operation == "GetObject"]
                kind = self._rng.choice(kinds)
            if kind is not None:
                self._count_fault(kind)
        if kind is not None:
            log.info("fault %s on %s %s", kind, operation, path)
        if kind == "stall":
            time.sleep(stall)
            return None
        return kind

    def storage_latency(self):
        return self.storage_latency_ms

    def draw_storage_fault(self, operation, path=""):
        """None, or the fault kind to inject into this storage request
        (path without its query: a presigned URL's signature is a secret
        even here)."""
        stall = 0.0
        with self._lock:
            rule = self._from_rules(operation, path)
            kind = rule.kind if rule else None
            if kind == "stall":
                stall = rule.stall_ms / 1000.0
            if (kind is None and self.storage_fail_rate > 0.0
                    and self._storage_rng.random() < self.storage_fail_rate):
                kinds = [k for k in self.storage_kinds
                         if k not in GET_ONLY_KINDS or operation == "StorageGetObject"]
                kind = self._storage_rng.choice(kinds)
            if kind is not None:
                self._count_fault(kind)
                self._storage_faults += 1
        if kind is not None:
            log.info("fault %s on %s %s", kind, operation, path)
        if kind == "stall":
            time.sleep(stall)
            return None
        return kind

    def api_fault(self, path):
        """None, or the fault kind a rule for "API" gives this REST request."""
        with self._lock:
            kind = None
            stall = 0.0
            for i, r in enumerate(self.rules):
                if r.operation != "API" or not r.matches("API", path):
                    continue
                if r.skip > 0:
                    r.skip -= 1
                    break
                kind = r.kind
                stall = r.stall_ms / 1000.0
                r.count -= 1
                if r.count == 0:
                    del self.rules[i]
                break
            if kind is not None:
                self._count_fault(kind)
        if kind is not None:
            log.info("fault %s on API %s", kind, path)
        if kind == "stall":
            time.sleep(stall)
            return None
        return kind

    # -- statistics --------------------------------------------------------
    def reset_stats(self):
        with self._lock:
            self._requests = {}
            self._bytes_in = 0
            self._bytes_out = 0
            self._faults = 0
            self._by_kind = {}
            self._api = {"requests": 0, "bytes_in": 0, "bytes_out": 0}
            self._storage = {"requests": 0, "bytes_in": 0, "bytes_out": 0}
            self._storage_ops = {}
            self._storage_faults = 0

    def count_request(self, operation):
        with self._lock:
            self._requests[operation] = self._requests.get(operation, 0) + 1

    def count_storage_request(self, operation):
        with self._lock:
            self._storage["requests"] += 1
            self._storage_ops[operation] = self._storage_ops.get(operation, 0) + 1

    def add_bytes(self, bytes_in=0, bytes_out=0, kind="s3"):
        """Counts a request's bytes: "s3" (the gateway) and "api" in the
        top-level totals, "storage" apart from them."""
        with self._lock:
            if kind == "storage":
                self._storage["bytes_in"] += bytes_in
                self._storage["bytes_out"] += bytes_out
                return
            self._bytes_in += bytes_in
            self._bytes_out += bytes_out
            if kind == "api":
                self._api["requests"] += 1
                self._api["bytes_in"] += bytes_in
                self._api["bytes_out"] += bytes_out

    def stats(self):
        """requests: per gateway operation; bytes_in/bytes_out: the gateway
        and the REST API together (what the lakeFS server carries); "api":
        the REST API's share; "storage": the storage endpoint's traffic,
        counted apart."""
        with self._lock:
            storage = dict(self._storage)
            storage["by_operation"] = dict(self._storage_ops)
            storage["faults"] = self._storage_faults
            return {"requests": dict(self._requests), "bytes_in": self._bytes_in,
                    "bytes_out": self._bytes_out, "faults": self._faults,
                    "faults_by_kind": dict(self._by_kind), "api": dict(self._api),
                    "storage": storage}
