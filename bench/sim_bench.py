#!/usr/bin/python3
"""Benchmark of the local lakeFS gateway simulator (tests/lakefs_sim).

Starts its own simulator (port 0, temporary data directory), creates a
repository, uploads N small keys (default 100,000) into one flat directory
of branch main, then measures and prints:

  * upload rate of those small PUTs (keys/s, for information);
  * ListObjectsV2 throughput over all keys, 1000 per page, no delimiter;
  * ListObjectsV2 throughput of a delimiter ("/") listing of the flat
    directory (same keys, 1000 per page);
  * GET throughput of one large object (default 1 GiB) with
    `curl -o /dev/null -w '%{speed_download}'` on a presigned URL.

Targets printed next to the figures: listing >= 20,000 keys/s, GET >= 1 GB/s.
This is a benchmark, not a test: it never fails on a timing; it exits
non-zero only if something broke. The server is stopped by PID and the
temporary directory removed at the end, also on error or Ctrl-C.

Run: /usr/bin/python3 bench/sim_bench.py [--keys N] [--get-mib M]
"""
import argparse
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from conftest import Sim  # noqa: E402  (tests/conftest.py: the shared fixture's class)
from lf_helpers import Signer  # noqa: E402

LIST_TARGET = 20_000      # keys/s
GET_TARGET = 1.0          # GB/s (10^9 bytes)
UNSIGNED = "UNSIGNED-PAYLOAD"


# --------------------------------------------------------------- signing
# Signer: the integration helpers' minimal SigV4 signer (UNSIGNED-PAYLOAD).


def canonical_query(params):
    return "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                    for k, v in sorted(params.items()))


class Client:
    """One keep-alive HTTP connection with signing; reconnects if the
    server closes it."""

    def __init__(self, sim, signer):
        self.host = f"127.0.0.1:{sim.port}"
        self.port = sim.port
        self.signer = signer
        self.conn = None

    def request(self, method, path, params=None, body=None, headers=None):
        path = urllib.parse.quote(path, safe="/-_.~")
        q = canonical_query(params or {})
        hdrs = self.signer.headers(method, self.host, path, q)
        hdrs.update(headers or {})
        if isinstance(body, (bytes, bytearray)):
            hdrs["Content-Length"] = str(len(body))
        # an iterable body: the caller sets Content-Length
        target = path + ("?" + q if q else "")
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            try:
                self.conn.request(method, target, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt == 2 or not isinstance(body, (bytes, bytearray, type(None))):
                    raise
        raise RuntimeError("unreachable")

    def close(self):
        if self.conn:
            self.conn.close()


# ------------------------------------------------------------- phases
def upload_keys(sim, signer, repo, n, threads):
    counter = iter(range(n))
    lock = threading.Lock()
    errors = []

    def work():
        c = Client(sim, signer)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None or errors:
                    return
                st, body = c.request("PUT", f"/{repo}/main/flat/k{i:06d}", body=b"%06d" % i)
                if st != 200:
                    errors.append((i, st, body[:200]))
        except Exception as e:  # noqa: BLE001
            errors.append(("exception", repr(e)))
        finally:
            c.close()

    t0 = time.perf_counter()
    ts = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"upload failed: {errors[:3]}")
    return dt


TOKEN_RE = re.compile(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>")


def list_all(sim, signer, repo, prefix, delimiter=None):
    """Pages through ListObjectsV2 (1000 per page); returns (keys, prefixes,
    pages, seconds)."""
    import html
    c = Client(sim, signer)
    keys = prefixes = pages = 0
    token = None
    t0 = time.perf_counter()
    try:
        while True:
            params = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
            if delimiter:
                params["delimiter"] = delimiter
            if token is not None:
                params["continuation-token"] = token
            st, body = c.request("GET", f"/{repo}", params)
            if st != 200:
                raise RuntimeError(f"list failed: {st} {body[:300]!r}")
            pages += 1
            keys += body.count(b"<Contents>")
            prefixes += body.count(b"<CommonPrefixes>")
            if b"<IsTruncated>true</IsTruncated>" not in body:
                break
            m = TOKEN_RE.search(body)
            if not m:
                raise RuntimeError("truncated page without NextContinuationToken")
            token = html.unescape(m.group(1).decode())
    finally:
        c.close()
    return keys, prefixes, pages, time.perf_counter() - t0


def upload_big(sim, signer, repo, size):
    block = os.urandom(1 << 20)

    def body():
        left = size
        while left > 0:
            n = min(left, len(block))
            yield block[:n]
            left -= n

    c = Client(sim, signer)
    try:
        t0 = time.perf_counter()
        st, resp = c.request("PUT", f"/{repo}/main/big.bin", body=body(),
                             headers={"Content-Length": str(size)})
        dt = time.perf_counter() - t0
    finally:
        c.close()
    if st != 200:
        raise RuntimeError(f"big PUT failed: {st} {resp[:300]!r}")
    return dt


def presigned_get(sim, repo, key):
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    url = f"{sim.endpoint}/{repo}/" + urllib.parse.quote(key, safe="/-_.~")
    req = AWSRequest(method="GET", url=url, headers={})
    S3SigV4QueryAuth(Credentials(sim.access_key, sim.secret_key), "s3", "us-east-1",
                     expires=3600).add_auth(req)
    return req.url


def curl_speed(url, size):
    out = subprocess.run(["curl", "-sS", "--fail", "-o", "/dev/null",
                          "-w", "%{speed_download} %{size_download} %{http_code}", url],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"curl failed ({out.returncode}): {out.stderr.strip()}")
    speed, got, code = out.stdout.split()
    if int(got) != size or code != "200":
        raise RuntimeError(f"curl got {got} bytes, HTTP {code}; wanted {size}")
    return float(speed)


def verdict(value, target):
    return "OK  " if value >= target else "MISS"


# ----------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--get-mib", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--get-runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (debugging)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="lakefuse-simbench-")
    sim = Sim(os.path.join(tmp, "data"))
    # SIGTERM -> the same cleanup as Ctrl-C
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        sim.start()
        print(f"simulator pid {sim.pid} at {sim.endpoint}, data in {tmp}", flush=True)
        repo = "bench-" + uuid.uuid4().hex[:8]
        sim.create_repo(repo)
        signer = Signer(sim.access_key, sim.secret_key)

        n = args.keys
        dt = upload_keys(sim, signer, repo, n, args.threads)
        print(f"upload   {n:>9,} small PUTs in {dt:7.2f} s  = {n / dt:>10,.0f} keys/s"
              f"  ({args.threads} threads)", flush=True)

        keys, _, pages, dt = list_all(sim, signer, repo, "main/")
        if keys != n:
            raise RuntimeError(f"flat listing returned {keys} keys, wanted {n}")
        rate_flat = keys / dt
        print(f"list V2  {keys:>9,} keys, {pages} pages, no delimiter: {dt:7.2f} s = "
              f"{rate_flat:>10,.0f} keys/s  target >= {LIST_TARGET:,}  "
              f"{verdict(rate_flat, LIST_TARGET)}", flush=True)

        keys, prefixes, pages, dt = list_all(sim, signer, repo, "main/flat/", "/")
        if keys != n or prefixes:
            raise RuntimeError(f"delimiter listing returned {keys} keys/{prefixes} prefixes")
        rate_dir = keys / dt
        print(f"list V2  {keys:>9,} keys, {pages} pages, delimiter '/': {dt:6.2f} s = "
              f"{rate_dir:>10,.0f} keys/s  target >= {LIST_TARGET:,}  "
              f"{verdict(rate_dir, LIST_TARGET)}", flush=True)

        size = args.get_mib << 20
        dt = upload_big(sim, signer, repo, size)
        print(f"put      {size / 2**30:.2f} GiB single PUT in {dt:.2f} s = "
              f"{size / dt / 1e9:.2f} GB/s (information)", flush=True)
        url = presigned_get(sim, repo, "main/big.bin")
        speeds = [curl_speed(url, size) / 1e9 for _ in range(args.get_runs)]
        best, med = max(speeds), sorted(speeds)[len(speeds) // 2]
        print(f"get      {size / 2**30:.2f} GiB via curl (presigned), {len(speeds)} runs: "
              f"best {best:.2f} GB/s, median {med:.2f} GB/s  target >= {GET_TARGET} GB/s  "
              f"{verdict(med, GET_TARGET)}", flush=True)
        print("runs: " + ", ".join(f"{s:.2f}" for s in speeds) + " GB/s")
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - report, clean up, fail
        print(f"benchmark failed: {e}", file=sys.stderr)
        try:
            with open(sim.log_path, "rb") as f:
                tail = f.read()[-3000:].decode(errors="replace")
            print(f"--- tail of the server log {sim.log_path}:\n{tail}", file=sys.stderr)
        except OSError:
            pass
        return 1
    finally:
        sim.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
