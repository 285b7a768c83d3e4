"""Helpers for the lakefuse integration tests and bench/read_bench.py.

Kept out of conftest.py so that test modules and the benchmark can import
them by a unique module name. Nothing here touches a mount's files except
`is_mounted` (which reads /proc/self/mountinfo, never the mount itself, so a
hung daemon cannot block it).
"""
import concurrent.futures
import datetime
import hashlib
import hmac
import http.client
import fcntl
import os
import pathlib
import random
import re
import socket
import subprocess
import threading
import time
import urllib.parse

MiB = 1 << 20
UNSIGNED = "UNSIGNED-PAYLOAD"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("LAKEFUSE_BIN") or os.path.join(ROOT, "build", "lakefuse")


# ----------------------------------------------------------------- mounts
def _unescape_mountinfo(s):
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _mountinfo_at(path):
    """(fstype, "maj:min") of the mounts exactly at path, innermost last."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            # fields: id parent maj:min root mountpoint opts [optional...] - fstype source superopts
            try:
                sep = fields.index("-")
            except ValueError:
                continue
            if _unescape_mountinfo(fields[4]) == path:
                found.append((fields[sep + 1], fields[2]))
    return found


def mounts_at(path):
    """Filesystem types mounted exactly at path, innermost last."""
    return [fstype for fstype, _ in _mountinfo_at(path)]


def readahead_kb(path, set_kb=None):
    """read_ahead_kb of the backing device of the mount at path, after
    setting it to set_kb if given and allowed; None when unknown."""
    found = _mountinfo_at(path)
    if not found:
        return None
    knob = f"/sys/class/bdi/{found[-1][1]}/read_ahead_kb"
    try:
        if set_kb is not None:
            with open(knob, "w") as f:
                f.write(f"{set_kb}\n")
    except OSError:
        pass
    try:
        with open(knob) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def is_mounted(path):
    return any(t.startswith("fuse") for t in mounts_at(path))


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def find_daemon_pids(binary, mountpoint):
    """PIDs of processes running `binary` with `mountpoint` as an argument
    (used to find a daemon that forked into the background)."""
    binary = os.path.realpath(binary)
    mountpoint = str(mountpoint)
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{d}/exe")
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if exe.removesuffix(" (deleted)") != binary:
            continue
        if mountpoint.encode() in argv:
            pids.append(int(d))
    return pids


def vm_status(pid):
    """{"VmRSS": kB, "VmHWM": kB, ...} of a process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k.startswith("Vm"):
                out[k] = int(v.split()[0])
    return out


# ------------------------------------------------------------------ data
def det_bytes(seed, n):
    """n deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(n)


class BigStream:
    """A deterministic stream of `size` bytes produced in `chunk`-byte
    pieces from one random base block: piece i is a window of the base at an
    offset depending on i, stamped with i, so pieces differ and a misplaced
    piece is detected. Memory: about 2 * chunk."""

    def __init__(self, seed, size, chunk=8 * MiB):
        self.size, self.chunk = size, chunk
        self.base = det_bytes(seed, chunk + 65536)

    def piece(self, i):
        start = i * self.chunk
        n = min(self.chunk, self.size - start)
        off = (i * 4099) % 65536
        head = b"%016d" % i
        return (head + self.base[off + len(head):off + n])[:n]

    def pieces(self):
        for i in range((self.size + self.chunk - 1) // self.chunk):
            yield self.piece(i)

    def read_at(self, offset, length):
        out = bytearray()
        while length > 0 and offset < self.size:
            i, within = divmod(offset, self.chunk)
            p = self.piece(i)[within:within + length]
            out += p
            offset += len(p)
            length -= len(p)
        return bytes(out)

    def sha256(self):
        h = hashlib.sha256()
        for p in self.pieces():
            h.update(p)
        return h.hexdigest()


def sha256_file(path, bufsize=MiB):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(bufsize)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


# --------------------------------------------------------------- uploads
def upload_stream_multipart(s3, bucket, key, pieces, part_size=16 * MiB):
    """Multipart upload of an iterable of byte pieces, part_size bytes per
    part (the last may be smaller); holds one part in memory. Returns the
    sha256 of everything uploaded."""
    h = hashlib.sha256()
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)
    uid = up["UploadId"]
    parts, buf, number = [], bytearray(), 1
    try:
        def flush():
            nonlocal buf, number
            r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=number,
                               Body=bytes(buf))
            parts.append({"PartNumber": number, "ETag": r["ETag"]})
            number += 1
            buf = bytearray()

        for p in pieces:
            h.update(p)
            buf += p
            while len(buf) >= part_size:
                rest = buf[part_size:]
                buf = buf[:part_size]
                flush()
                buf = rest
        if buf or not parts:
            flush()
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid,
                                     MultipartUpload={"Parts": parts})
    except BaseException:
        try:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)
        except Exception:  # noqa: BLE001
            pass
        raise
    return h.hexdigest()


class Signer:
    """Minimal SigV4 header signer (UNSIGNED-PAYLOAD), cheap enough to sign
    100k small PUTs without dominating the run."""

    def __init__(self, access_key, secret_key, region="us-east-1"):
        self.ak, self.sk, self.region = access_key, secret_key, region
        self._day, self._key = None, None

    def _signing_key(self, day):
        if day != self._day:
            k = hmac.new(("AWS4" + self.sk).encode(), day.encode(), hashlib.sha256).digest()
            for part in (self.region, "s3", "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            self._day, self._key = day, k
        return self._key

    def headers(self, method, host, path, query=""):
        amz_date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        canonical = "\n".join([
            method, path, query,
            f"host:{host}\nx-amz-content-sha256:{UNSIGNED}\nx-amz-date:{amz_date}\n",
            "host;x-amz-content-sha256;x-amz-date", UNSIGNED])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        sig = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        return {"x-amz-date": amz_date, "x-amz-content-sha256": UNSIGNED,
                "Authorization": (f"AWS4-HMAC-SHA256 Credential={self.ak}/{scope}, "
                                  f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                                  f"Signature={sig}")}


class RawClient:
    """One keep-alive connection to the gateway; reconnects when closed."""

    def __init__(self, port, signer):
        self.port, self.signer = port, signer
        self.host = f"127.0.0.1:{port}"
        self.conn = None

    def request(self, method, path, body=b""):
        qpath = urllib.parse.quote(path, safe="/-_.~")
        hdrs = self.signer.headers(method, self.host, qpath)
        hdrs["Content-Length"] = str(len(body))
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                self.conn.request(method, qpath, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
                if (resp.getheader("connection") or "").lower() == "close":
                    self.close()
                return resp.status, data
            except (http.client.HTTPException, ConnectionError, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def bulk_put(sim, repo, items, threads=12):
    """PUTs many small objects fast: items is a list of (key, bytes) with
    keys relative to the bucket (e.g. "main/dir/f1"). Raises on any
    failure."""
    signer = Signer(sim.access_key, sim.secret_key)
    lock = threading.Lock()
    it = iter(items)
    errors = []

    def work():
        c = RawClient(sim.port, signer)
        try:
            while not errors:
                with lock:
                    nxt = next(it, None)
                if nxt is None:
                    return
                key, body = nxt
                status, data = c.request("PUT", f"/{repo}/{key}", body)
                if status != 200:
                    errors.append((key, status, data[:300]))
        except Exception as e:  # noqa: BLE001
            errors.append(("exception", repr(e)))
        finally:
            c.close()

    ts = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise RuntimeError(f"bulk upload failed: {errors[:3]}")


def put_many_boto(s3, repo, items, threads=8):
    """PUTs (key, bytes) pairs through boto3 with a thread pool (boto3
    clients are thread safe)."""
    def one(kv):
        s3.put_object(Bucket=repo, Key=kv[0], Body=kv[1])

    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        for _ in ex.map(one, items):
            pass


# ---------------------------------------------------------------- misc
def closed_port():
    """A loopback TCP port nothing listens on (bound, then released)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(pred, timeout, interval=0.05, what="condition", absent_is_false=False):
    """Polls pred() until it returns a truthy value or timeout passes;
    returns the value or raises TimeoutError. With absent_is_false, a
    predicate that meets a missing file (FileNotFoundError: a name another
    mount made, which this one may remember as absent until its TTL) is
    not true yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = pred()
        except FileNotFoundError:
            if not absent_is_false:
                raise
            v = None
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def run(args, timeout=120, check=True, **kw):
    """subprocess.run with captured text output and a timeout."""
    r = subprocess.run(args, capture_output=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{args!r} exited {r.returncode}\nstdout: {r.stdout[-2000:]!r}\n"
                             f"stderr: {r.stderr[-2000:]!r}")
    return r


# LAKEFUSE_TEST_PRESIGN=auto|on runs the suites over presigned URLs of the
# simulator's storage endpoint (conftest.py): object bytes then cross the
# storage, which /_sim/stats counts apart from the gateway.
PRESIGNED = os.environ.get("LAKEFUSE_TEST_PRESIGN", "off") in ("auto", "on")


def data_gets(st):
    """GETs of object bytes in a /_sim/stats answer, wherever they went."""
    return (st["requests"].get("GetObject", 0) +
            st.get("storage", {}).get("by_operation", {}).get("StorageGetObject", 0))


def data_bytes_out(st):
    """Bytes the simulator sent: the gateway's and the storage's."""
    return st["bytes_out"] + st.get("storage", {}).get("bytes_out", 0)


def faults_injected(st):
    """Faults the simulator injected: the gateway's and the storage's."""
    return st.get("faults", 0) + st.get("storage", {}).get("faults", 0)


def set_data_faults(sim, **kw):
    """sim.set_faults(**kw), and the same fail_rate, latency_ms and kinds
    on the storage endpoint when the suite runs over presigned URLs: the
    faults then meet the object bytes wherever they go."""
    if PRESIGNED:
        kw["storage"] = {k: kw[k] for k in ("fail_rate", "latency_ms", "kinds") if k in kw}
    sim.set_faults(**kw)


CLOSED_RE = re.compile(r"closed (\S+) after \d+ reads of (\d+) bytes \(\d+ KiB each\), "
                       r"(\d+) bytes spliced, (\d+) GETs")


def closed_line(m, name):
    """(bytes read, bytes spliced, GETs) from the daemon's debug line when
    the file `name` was closed (m: a Mount of tests/integration)."""
    def find():
        return [mo for mo in CLOSED_RE.finditer(m.log()) if mo.group(1) == name]
    assert wait_until(lambda: find(), timeout=10), m.log()[-2000:]
    mo = find()[-1]
    return int(mo.group(2)), int(mo.group(3)), int(mo.group(4))


PIPE_MAX_SIZE = pathlib.Path("/proc/sys/fs/pipe-max-size")
SPLICE_PIPE = 4 * MiB   # what lakefuse's spliced reads need (src/fs_int.h PIPE_ROOM)


def splice_pipes_available():
    """Whether this process can make a pipe as large as lakefuse's spliced
    reads need: CAP_SYS_RESOURCE, or fs.pipe-max-size raised."""
    r, w = os.pipe()
    try:
        return fcntl.fcntl(r, 1031, SPLICE_PIPE) >= SPLICE_PIPE   # F_SETPIPE_SZ
    except OSError:
        return False
    finally:
        os.close(r)
        os.close(w)


class PipeLimit:
    """Raises fs.pipe-max-size to what spliced reads need, as root, for as
    long as it is held; puts the old value back on release. Containers often
    drop CAP_SYS_RESOURCE even for root, and then only this sysctl lets a
    process make pipes over 1 MiB.

    Test sessions may overlap (several checkouts on one machine): each
    holds a shared lock on LOCK for its life, the first one records the
    original value in it, and only the last one out (the one that can take
    the lock alone) restores it. One session's end never takes the pipes
    away from another still running."""

    LOCK = pathlib.Path("/tmp/lakefuse-tests-pipe-max-size")

    def __init__(self):
        self.fd = None

    def raise_(self):
        if os.geteuid() != 0:
            return self
        try:
            self.fd = os.open(self.LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            # Shared for the whole session: it waits only for a session
            # that is restoring right now (exclusive, for a moment).
            fcntl.flock(self.fd, fcntl.LOCK_SH)
            cur = int(PIPE_MAX_SIZE.read_text())
            if cur < SPLICE_PIPE:
                if not os.pread(self.fd, 32, 0).strip():
                    os.pwrite(self.fd, str(cur).encode(), 0)
                PIPE_MAX_SIZE.write_text(str(SPLICE_PIPE))
        except (OSError, ValueError):
            pass
        return self

    def restore(self):
        if self.fd is None:
            return
        try:
            # Alone: nobody else runs, put the original back.
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            old = os.pread(self.fd, 32, 0).decode().strip()
            if old:
                PIPE_MAX_SIZE.write_text(old)
                os.ftruncate(self.fd, 0)
        except (OSError, ValueError):
            pass  # another session still runs: the last one restores
        finally:
            os.close(self.fd)
            self.fd = None


def list_keys(s3, repo, prefix):
    """Every key under prefix on the gateway, in key order (all pages)."""
    out, token = [], None
    while True:
        kw = dict(Bucket=repo, Prefix=prefix)
        if token:
            kw["ContinuationToken"] = token
        r = s3.list_objects_v2(**kw)
        out += [c["Key"] for c in r.get("Contents", [])]
        if not r.get("IsTruncated"):
            return sorted(out)
        token = r["NextContinuationToken"]


def get(s3, repo, key):
    """An object's bytes, read through boto3."""
    return s3.get_object(Bucket=repo, Key=key)["Body"].read()


def errno_of(fn):
    """The errno fn() failed with, or 0."""
    try:
        fn()
    except OSError as e:
        return e.errno
    return 0


# ---------------------------------------------------------------- package
def build_deb(outdir, binary=BINARY):
    """packaging/build-deb.sh on the build that holds binary, as it is
    (LAKEFUSE_PREBUILT: no second build). Returns (CompletedProcess, the
    .deb's path or None)."""
    build = os.path.dirname(os.path.realpath(binary))
    r = subprocess.run([os.path.join(ROOT, "packaging", "build-deb.sh"), str(outdir)],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "LAKEFUSE_PREBUILT": build})
    lines = r.stdout.strip().splitlines()
    deb = lines[-1] if r.returncode == 0 and lines else None
    return r, deb


def file_tree(root):
    """{relative name: bytes} of every file under root (a mount's view)."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def gateway_files(s3, repo, prefix="main/"):
    """{name under prefix: bytes} of every object there but directory
    markers (the gateway's view of the same tree)."""
    return {k[len(prefix):]: get(s3, repo, k) for k in list_keys(s3, repo, prefix)
            if not k.endswith("/")}
