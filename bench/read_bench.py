#!/usr/bin/python3
"""Read benchmark of lakefuse against the local lakeFS gateway simulator.

Starts its own simulator (tests/conftest.py's Sim: port 0, temporary data
directory), uploads the data set, mounts lakefs://REPO with build/lakefuse
(--foreground, credentials in the environment) and measures:

  (a) sequential read of a 1 GiB object through the mount (`dd bs=1M` to
      /dev/null), four ways: the default (which reads objects over half
      the cache with direct I/O), --page-cache, --async-read and --direct-io
      (objects over half the cache are spliced from the gateway's socket to
      the kernel where 4 MiB pipes can be had: as root the benchmark raises
      fs.pipe-max-size for its run if needed, and says which way it read).
      Each run mounts afresh and reads the object right away (first read
      after mount: what a new mount pays once is in it), then a second
      1 GiB object on the same mount (a running mount). Against curl
      GETting the same object from the same gateway with a presigned URL:
      MB/s, the ratio (target >= 0.8) and the CPU-seconds each way costs
      per GiB (lakefuse + dd + gateway, curl + gateway), since the two
      CPUs of the benchmark machine are shared by all of them;
  (b) `ls -l` of a directory of 10,000 files on a fresh mount: time, and
      the gateway's ListObjectsV2 / HeadObject / GetObject counts
      (target: ceil(N/1000) lists, no HEAD);
  (c) peak RSS of the lakefuse process (VmRSS sampled every 20 ms, and
      VmHWM) while 8 `dd` readers each read a different 1 GiB object
      (512 MiB objects when the disk is tight; printed), and their
      aggregate MB/s, with the cache budget printed;
  (d) the same three with 20 ms added to every gateway request (the
      simulator's runtime POST /_sim/faults switch);
  (e) the ceiling: the same dd through build/fuse_ceiling, a FUSE server
      that answers every read from memory with lakefuse's session
      settings (no network, no cache), synchronous, --async-read and
      --direct-io (how lakefuse reads big objects by default): what the
      kernel's FUSE read path alone carries on this machine.

(a) runs each way over the gateway (--presign off) and over presigned
URLs of the simulator's storage endpoint (--presign on: "presign" and
"presign-direct-io"), and for the presigned ones also reports the bytes
that crossed the lakeFS server (gateway and REST API) against those that
crossed the storage. --modes picks the ways; --quick runs (a) without
added latency only.

Prints a markdown table for docs/benchmarks.md. A benchmark, not a test:
it asserts nothing about timings and exits non-zero only if something
broke. Every mount is unmounted (fusermount3 -u, -u -z if busy) and every
process stopped by PID at the end, also on error, SIGTERM or Ctrl-C.

Run: /usr/bin/python3 bench/read_bench.py [--runs 3] [--latency-ms 20]
     [--parallel-mib 1024] [--files 10000] [--drop-caches]
     [--modes default,presign] [--quick] [--lakefuse-arg=--cache-size=512 ...]
"""
import argparse
import math
import os
import pathlib
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "tests"))
from conftest import Sim, new_repo_name  # noqa: E402  (tests/conftest.py)
from lf_helpers import (BINARY, MiB, BigStream, PipeLimit, Signer, bulk_put,  # noqa: E402
                        is_mounted, readahead_kb, splice_pipes_available, vm_status)

CEILING = pathlib.Path(BINARY).parent / "fuse_ceiling"
GiB = 1 << 30
MB = 1e6
RATIO_TARGET = 0.8
# (a)'s ways of mounting, over the gateway: the default (big objects with
# direct I/O), every file through the page cache, and the two options that
# trade a property for speed (docs/configuration.md); then the presigned
# data path (docs/configuration.md, --presign)
OFF, ON = ["--presign", "off"], ["--presign", "on"]
MODES = {"default": OFF, "page-cache": OFF + ["--page-cache"],
         "async-read": OFF + ["--async-read"], "direct-io": OFF + ["--direct-io"],
         "presign": ON, "presign-direct-io": ON + ["--direct-io"]}


def log(msg):
    print(msg, flush=True)


# ------------------------------------------------------------- processes
class Cleanup:
    """Everything to undo, undone in reverse order exactly once."""

    def __init__(self):
        self.actions = []

    def push(self, fn, what):
        self.actions.append((fn, what))
        return fn

    def remove(self, fn):
        self.actions = [(f, w) for f, w in self.actions if f != fn]

    def run(self):
        while self.actions:
            fn, what = self.actions.pop()
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - keep cleaning
                log(f"cleanup of {what} failed: {e!r}")


class LakefuseMount:
    def __init__(self, sim, uri, workdir, name, extra_args, cleanup):
        self.sim, self.cleanup = sim, cleanup
        self.path = pathlib.Path(workdir) / f"mnt-{name}"
        self.path.mkdir(parents=True, exist_ok=True)
        self.log_path = pathlib.Path(workdir) / f"lakefuse-{name}.log"
        cache = pathlib.Path(workdir) / f"cache-{name}"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "LAKECTL_"))}
        env["AWS_ACCESS_KEY_ID"] = sim.access_key
        env["AWS_SECRET_ACCESS_KEY"] = sim.secret_key
        self.cmd = [str(BINARY), "mount", "--foreground", "--endpoint", sim.endpoint,
                    "--cache-dir", str(cache), "--log-file", str(self.log_path),
                    "--log-level", "info"] + list(extra_args) + [uri, str(self.path)]
        self.stderr = open(pathlib.Path(workdir) / f"lakefuse-{name}.stderr", "wb")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.stderr,
                                     stderr=self.stderr, env=env)
        self.pid = self.proc.pid
        self._undo = cleanup.push(self.unmount, f"mount {self.path} (pid {self.pid})")
        deadline = time.monotonic() + 30
        while not (is_mounted(self.path) and os.path.ismount(self.path)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"lakefuse exited with {self.proc.returncode}: "
                                   f"{' '.join(self.cmd)}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mount not live within 30 s; see {self.log_path}")
            time.sleep(0.05)

    def unmount(self):
        self.cleanup.remove(self._undo)
        for _ in range(5):
            if not is_mounted(self.path):
                break
            r = subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True,
                               timeout=30)
            if r.returncode != 0 and is_mounted(self.path):
                subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True,
                               timeout=30)
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            log(f"lakefuse pid {self.pid} did not exit after unmount; killing it")
            self.proc.kill()
            rc = self.proc.wait(timeout=10)
        self.stderr.close()
        if rc != 0:
            log(f"warning: lakefuse pid {self.pid} exited with status {rc}; see {self.log_path}")
        return rc


# ------------------------------------------------------------------ data
def put_stream(sim, bucket, key, stream):
    """One PUT of a BigStream with UNSIGNED-PAYLOAD (fast, constant memory)."""
    import http.client
    signer = Signer(sim.access_key, sim.secret_key)
    path = urllib.parse.quote(f"/{bucket}/{key}", safe="/-_.~")
    hdrs = signer.headers("PUT", f"127.0.0.1:{sim.port}", path)
    hdrs["Content-Length"] = str(stream.size)
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=600)
    try:
        conn.request("PUT", path, body=stream.pieces(), headers=hdrs)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"PUT {key}: {resp.status} {body[:300]!r}")
    finally:
        conn.close()


def presigned_url(sim, bucket, key):
    return sim.s3().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                           ExpiresIn=3600)


# -------------------------------------------------------------- measures
def drop_caches():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return True
    except OSError:
        return False


def cpu_seconds(pid):
    """utime + stime of a live process, all threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_child(cmd):
    """Runs cmd; (seconds, CPU-seconds, stdout, stderr). Raises on failure."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=1200)
    dt = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}: {err[-300:]}")
    return dt, ru, out, err


def dd_read(path, size, busy_pids=()):
    """MB/s of `dd bs=1M` reading path to /dev/null, and CPU-seconds per GiB
    of dd plus busy_pids (the daemon, the gateway)."""
    before = [cpu_seconds(p) for p in busy_pids]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    dt, ru1, _, err = timed_child(["dd", f"if={path}", "of=/dev/null", "bs=1M"])
    mo = re.search(r"^(\d+) bytes", err, re.M)
    if not mo or int(mo.group(1)) != size:
        raise RuntimeError(f"dd read {mo.group(1) if mo else '?'} bytes of {path}, "
                           f"expected {size}")
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    cpu += sum(cpu_seconds(p) - b for p, b in zip(busy_pids, before))
    return size / dt / MB, cpu * GiB / size


def curl_read(url, size, busy_pids=()):
    before = [cpu_seconds(p) for p in busy_pids]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    _, ru1, out, _ = timed_child(["curl", "-s", "-S", "-f", "-o", "/dev/null", "-w",
                                  "%{speed_download} %{size_download}", url])
    speed, got = out.split()
    if int(float(got)) != size:
        raise RuntimeError(f"curl read {got} bytes, expected {size}")
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    cpu += sum(cpu_seconds(p) - b for p, b in zip(busy_pids, before))
    return float(speed) / MB, cpu * GiB / size


class RssSampler(threading.Thread):
    def __init__(self, pid, interval=0.02):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                self.peak_kb = max(self.peak_kb, vm_status(self.pid).get("VmRSS", 0))
            except (OSError, ValueError):
                return
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.join(5)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def phase(sim, repo, args, workdir, cleanup, label, seq_key, next_key, par_keys, par_size,
          seq_size):
    res = {}
    extra = args.lakefuse_arg
    uri = f"lakefs://{repo}"

    # (a) sequential reads vs curl. Each mount reads the object first
    # ("first": includes what a new mount pays once, such as faulting in
    # its cache memory) and then a second object of the same size ("next":
    # a mount already running). The modes and curl alternate, so that a
    # slow spell of the machine does not land on one of them only.
    url = presigned_url(sim, repo, f"main/{seq_key}")
    curl_read(url, seq_size)                # warm the gateway's side once
    for k in (seq_key, next_key):           # and its page cache
        curl_read(presigned_url(sim, repo, f"main/{k}"), seq_size)
    runs = {f"{m}_{w}": [] for m in MODES for w in ("first", "next")}
    runs["curl"] = []
    cpu = {k: [] for k in runs}
    traffic = {m: [] for m in MODES}
    for i in range(args.runs):
        for mode, more in MODES.items():
            if args.drop_caches:
                drop_caches()
            m = LakefuseMount(sim, uri, workdir, f"{label}-{mode}{i}", extra + more, cleanup)
            sim.reset_stats()
            for which, key in (("first", seq_key), ("next", next_key)):
                mbps, c = dd_read(m.path / "main" / key, seq_size, (m.pid, sim.pid))
                runs[f"{mode}_{which}"].append(mbps)
                cpu[f"{mode}_{which}"].append(c)
            st = sim.stats()
            traffic[mode].append((st["bytes_in"] + st["bytes_out"],
                                  st["storage"]["bytes_in"] + st["storage"]["bytes_out"]))
            m.unmount()
        if args.drop_caches:
            drop_caches()
        mbps, c = curl_read(url, seq_size, (sim.pid,))
        runs["curl"].append(mbps)
        cpu["curl"].append(c)
        log(f"  [{label}] run {i + 1}: " +
            ", ".join(f"{m} {runs[m + '_first'][-1]:.0f}/{runs[m + '_next'][-1]:.0f}"
                      for m in MODES) + f" MB/s (first/next); curl {mbps:.0f} MB/s")
    for k in runs:
        res[k] = median(runs[k])
        res[f"{k}_cpu"] = median(cpu[k])
        res[f"{k}_runs"] = runs[k]
        res[f"{k}_ratio"] = res[k] / median(runs["curl"])
    for mode, t in traffic.items():     # bytes of one run (two objects read)
        res[f"{mode}_server"] = median([x[0] for x in t])
        res[f"{mode}_storage"] = median([x[1] for x in t])
    if args.quick:
        return res

    # (b) ls -l of the big directory on a fresh mount
    m = LakefuseMount(sim, uri, workdir, f"{label}-ls", extra + OFF, cleanup)
    d = m.path / "main" / "list"
    os.stat(d)
    sim.reset_stats()
    t0 = time.perf_counter()
    r = subprocess.run(["ls", "-l", "--color=never", str(d)], capture_output=True,
                       env=dict(os.environ, LC_ALL="C"), timeout=600)
    dt = time.perf_counter() - t0
    reqs = sim.stats()["requests"]
    entries = len(r.stdout.splitlines()) - 1
    if r.returncode != 0 or entries != args.files:
        raise RuntimeError(f"ls -l: status {r.returncode}, {entries} entries: {r.stderr[:300]!r}")
    t0 = time.perf_counter()
    subprocess.run(["ls", "-l", "--color=never", str(d)], capture_output=True, timeout=600)
    dt_warm = time.perf_counter() - t0
    m.unmount()
    res["ls_s"], res["ls_warm_s"] = dt, dt_warm
    res["ls_list"] = reqs.get("ListObjectsV2", 0)
    res["ls_head"] = reqs.get("HeadObject", 0)
    res["ls_get"] = reqs.get("GetObject", 0)
    log(f"  [{label}] ls -l {args.files}: {dt:.2f} s cold, {dt_warm:.2f} s again; "
        f"requests {reqs}")

    # (c) 8 parallel readers, peak RSS
    if args.drop_caches:
        drop_caches()
    m = LakefuseMount(sim, uri, workdir, f"{label}-par", extra + OFF, cleanup)
    sampler = RssSampler(m.pid)
    sampler.start()
    procs = []
    t0 = time.perf_counter()
    try:
        for k in par_keys:
            p = subprocess.Popen(["dd", f"if={m.path / 'main' / k}", "of=/dev/null", "bs=1M"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(p)
            cleanup.push(p.kill, f"dd pid {p.pid}")
        for p in procs:
            _, err = p.communicate(timeout=1800)
            if p.returncode != 0:
                raise RuntimeError(f"dd failed: {err[-300:]!r}")
    finally:
        for p in procs:
            cleanup.remove(p.kill)
            if p.poll() is None:
                p.kill()
                p.wait()
    dt = time.perf_counter() - t0
    sampler.stop()
    hwm = vm_status(m.pid).get("VmHWM", 0)
    m.unmount()
    res["par_mbps"] = len(par_keys) * par_size / dt / MB
    res["par_peak_rss_mib"] = sampler.peak_kb / 1024
    res["par_hwm_mib"] = hwm / 1024
    log(f"  [{label}] {len(par_keys)} parallel readers: {res['par_mbps']:.0f} MB/s aggregate, "
        f"peak VmRSS {res['par_peak_rss_mib']:.0f} MiB, VmHWM {res['par_hwm_mib']:.0f} MiB")
    return res


CEILING_MODES = {"sync": [], "async": ["--async-read"], "direct": ["--direct-io"]}


class CeilingMount:
    """build/fuse_ceiling mounted in one of CEILING_MODES, until unmount()."""

    def __init__(self, workdir, cleanup, size_mib, mode, name):
        self.cleanup = cleanup
        self.path = pathlib.Path(workdir) / f"ceiling-{name}"
        self.path.mkdir()
        self.proc = subprocess.Popen([str(CEILING), "--size-mib", str(size_mib)] +
                                     CEILING_MODES[mode] + [str(self.path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._undo = cleanup.push(self.unmount, f"fuse_ceiling pid {self.proc.pid}")
        deadline = time.monotonic() + 10
        while not is_mounted(self.path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("fuse_ceiling did not mount: "
                                   f"{self.proc.stderr.read()[-300:]!r}")
            time.sleep(0.02)
        readahead_kb(self.path, 4096)     # as lakefuse sets its own

    def data(self):
        return self.path / "data"

    def unmount(self):
        self.cleanup.remove(self._undo)
        if is_mounted(self.path):
            subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True,
                           timeout=30)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()


def fuse_ceiling(workdir, cleanup, size_mib, runs):
    """Median MB/s of dd through build/fuse_ceiling in each of CEILING_MODES."""
    if not CEILING.exists():
        log(f"no {CEILING}: ceiling not measured")
        return None
    out = {}
    for mode in CEILING_MODES:
        speeds = []
        for i in range(runs):
            m = CeilingMount(workdir, cleanup, size_mib, mode, f"{mode}{i}")
            try:
                speeds.append(dd_read(m.data(), size_mib * MiB)[0])
            finally:
                m.unmount()
        out[mode] = median(speeds)
        log(f"  FUSE ceiling ({mode}): " + ", ".join(f"{x:.0f}" for x in speeds) + " MB/s")
    return out


def cache_budget(extra_args):
    """The --cache-size in effect, as the user passed it or --help shows it."""
    for i, a in enumerate(extra_args):
        if a.startswith("--cache-size"):
            v = a.split("=", 1)[1] if "=" in a else (extra_args[i + 1] if i + 1 < len(extra_args)
                                                    else "?")
            return f"--cache-size {v} MiB (set)"
    try:
        h = subprocess.run([str(BINARY), "mount", "--help"], capture_output=True, text=True,
                           timeout=10).stdout
    except OSError:
        return "unknown"
    mo = re.search(r"--cache-size\s+\S+\s+(.*)", h)
    if not mo:
        return "unknown (no --cache-size in --help)"
    d = re.search(r"default: ([^\]]+)", mo.group(1))
    return f"--cache-size {d.group(1)} MiB (default)" if d else mo.group(1).strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seq-mib", type=int, default=1024, help="size of the sequential object")
    ap.add_argument("--parallel", type=int, default=8, help="parallel readers")
    ap.add_argument("--parallel-mib", type=int, default=1024,
                    help="size of each parallel object (falls back to 512 if the disk is tight)")
    ap.add_argument("--files", type=int, default=10_000, help="files in the ls -l directory")
    ap.add_argument("--runs", type=int, default=5, help="runs of each sequential read")
    ap.add_argument("--latency-ms", type=int, default=20)
    ap.add_argument("--drop-caches", action="store_true",
                    help="echo 1 > /proc/sys/vm/drop_caches before each read (cold gateway)")
    ap.add_argument("--lakefuse-arg", action="append", default=[],
                    help="extra argument for lakefuse mount (repeat; use --lakefuse-arg=--x=y)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="comma-separated ways of (a): " + ", ".join(MODES))
    ap.add_argument("--quick", action="store_true",
                    help="(a) only, without added latency (no ceiling, ls, parallel readers)")
    args = ap.parse_args()
    unknown = [m for m in args.modes.split(",") if m not in MODES]
    if unknown:
        sys.exit(f"unknown modes {unknown}: pick from {', '.join(MODES)}")
    for m in list(MODES):
        if m not in args.modes.split(","):
            del MODES[m]

    if subprocess.run([str(BINARY), "mount", "--help"], capture_output=True).returncode != 0:
        sys.exit(f"{BINARY} does not support `mount` yet")
    for tool in ("fusermount3", "curl", "dd"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is required")

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="lakefuse-readbench-"))
    cleanup = Cleanup()
    if not args.keep:
        cleanup.push(lambda: shutil.rmtree(workdir, ignore_errors=True), f"remove {workdir}")

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    try:
        pipes = PipeLimit().raise_()
        cleanup.push(pipes.restore, "fs.pipe-max-size")
        spliced = splice_pipes_available() and not any("--no-splice" in a
                                                         for a in args.lakefuse_arg)
        log(f"spliced reads: {'yes' if spliced else 'no (copied through memory)'}")
        sim = Sim(workdir / "data")
        sim.start()
        cleanup.push(sim.stop, f"simulator pid {sim.pid}")
        log(f"simulator pid {sim.pid} at {sim.endpoint}; work dir {workdir}")
        repo = new_repo_name("bench")
        sim.create_repo(repo)

        seq_size = args.seq_mib * MiB
        par_size = args.parallel_mib * MiB
        free = shutil.disk_usage(workdir).free
        need = (args.parallel * par_size + seq_size) * 1.3
        if free < need and par_size > 512 * MiB:
            par_size = 512 * MiB
            log(f"disk is tight ({free / GiB:.1f} GiB free): parallel objects of 512 MiB")
        # the sequential object is also the first parallel one when sizes match
        par_keys = [f"par/p{i}.bin" for i in range(args.parallel)]
        seq_key = par_keys[0] if par_size == seq_size else "seq/seq.bin"

        # (a)'s second object, on the same mount
        next_key = par_keys[1] if seq_key in par_keys and len(par_keys) > 1 else "seq/next.bin"
        t0 = time.perf_counter()
        if seq_key not in par_keys:
            put_stream(sim, repo, f"main/{seq_key}", BigStream(1000, seq_size))
        if next_key not in par_keys:
            put_stream(sim, repo, f"main/{next_key}", BigStream(1001, seq_size))
        for i, k in enumerate(par_keys if not args.quick else
                              [k for k in par_keys if k in (seq_key, next_key)]):
            put_stream(sim, repo, f"main/{k}", BigStream(2000 + i, par_size))
        log(f"uploaded {len(par_keys)} x {par_size // MiB} MiB"
            f"{'' if seq_key in par_keys else f' + {seq_size // MiB} MiB'} in "
            f"{time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        if not args.quick:
            bulk_put(sim, repo, [(f"main/list/f{i:05d}.dat", b"x" * (i % 100))
                                 for i in range(args.files)], threads=12)
            log(f"uploaded {args.files} small files in {time.perf_counter() - t0:.0f} s")

        budget = cache_budget(args.lakefuse_arg)
        ceiling = None
        if not args.quick:
            log("-- FUSE ceiling: a server answering reads from memory")
            ceiling = fuse_ceiling(workdir, cleanup, args.seq_mib, args.runs)
        results = {}
        latencies = [("0 ms", 0)] + ([] if args.quick else
                                     [(f"{args.latency_ms} ms", args.latency_ms)])
        for label, lat in latencies:
            sim.set_faults(0.0, lat, storage={"latency_ms": lat})
            log(f"-- added gateway and storage latency {label}")
            results[label] = phase(sim, repo, args, workdir, cleanup, label.replace(" ", ""),
                                   seq_key, next_key, par_keys, par_size, seq_size)
        sim.set_faults(0.0, 0)

        labels = list(results)
        want_lists = math.ceil(args.files / 1000)

        def row(name, fn):
            return f"| {name} | " + " | ".join(fn(results[lbl]) for lbl in labels) + " |"

        print()
        print(f"lakefuse read benchmark: {os.cpu_count()} CPUs, simulator on loopback, "
              f"median of {args.runs} runs, {'cold' if args.drop_caches else 'warm'} gateway "
              f"page cache, fresh mount per run; cache budget {budget}; spliced reads "
              f"{'on (not with --async-read)' if spliced else 'off'}"
              f"{'; lakefuse args ' + ' '.join(args.lakefuse_arg) if args.lakefuse_arg else ''}")
        print()
        print("| measure | " + " | ".join(f"gateway latency {lbl}" for lbl in labels) + " |")
        print("|---|" + "---|" * len(labels))
        for mode in MODES:
            for which, what in (("first", "first read after mount"),
                                ("next", "next object, same mount")):
                print(row(f"(a) {mode}: {seq_size // MiB} MiB, {what}, MB/s (ratio to curl; "
                          f"CPU-s per GiB with dd and gateway)",
                          lambda r, k=f"{mode}_{which}":
                          f"{r[k]:.0f} ({r[k + '_ratio']:.2f}{' OK' if r[k + '_ratio'] >= RATIO_TARGET else ''}; "
                          f"{r[k + '_cpu']:.2f})"))
        print(row(f"(a) curl GET of the same object (presigned), MB/s (CPU-s per GiB with "
                  f"gateway); ratio target >= {RATIO_TARGET}",
                  lambda r: f"{r['curl']:.0f} ({r['curl_cpu']:.2f})"))
        for mode in MODES:
            print(row(f"(a) {mode}: bytes through the lakeFS server (gateway + API) / through "
                      f"the storage, reading 2 x {seq_size // MiB} MiB",
                      lambda r, mo=mode: f"{r[mo + '_server']:,.0f} / "
                                         f"{r[mo + '_storage']:,.0f}"))
        if args.quick:
            return 0
        print(row(f"(b) `ls -l` of {args.files} files, cold mount / again, s",
                  lambda r: f"{r['ls_s']:.2f} / {r['ls_warm_s']:.2f}"))
        print(row(f"(b) ListObjectsV2 / HeadObject / GetObject (target {want_lists} / 0 / 0)",
                  lambda r: f"{r['ls_list']} / {r['ls_head']} / {r['ls_get']}"))
        print(row(f"(c) {args.parallel} parallel readers x {par_size // MiB} MiB, aggregate MB/s",
                  lambda r: f"{r['par_mbps']:.0f}"))
        print(row(f"(c) lakefuse peak RSS (sampled VmRSS / VmHWM), MiB; budget {budget}",
                  lambda r: f"{r['par_peak_rss_mib']:.0f} / {r['par_hwm_mib']:.0f}"))
        if ceiling:
            print(f"| (e) FUSE ceiling: dd through a server answering from memory, "
                  f"sync / --async-read / --direct-io, MB/s | {ceiling['sync']:.0f} / "
                  f"{ceiling['async']:.0f} / {ceiling['direct']:.0f} | (no gateway) |")
        print()
        for lbl in labels:
            r = results[lbl]
            print(f"runs at {lbl}, MB/s: " + "; ".join(
                f"{k} " + ", ".join(f"{x:.0f}" for x in r[k + "_runs"])
                for k in [f"{m}_{w}" for m in MODES for w in ("first", "next")] + ["curl"]))
        return 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        cleanup.run()


if __name__ == "__main__":
    sys.exit(main())
