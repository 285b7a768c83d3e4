#!/usr/bin/python3
"""Where a sequential write's time goes: lakefuse, s3fs and boto3 on the
local gateway, side by side.

Starts its own gateway (tests/lakefs_sim), writes one local file of
--mib MiB to REPO/main with each writer in turn (alternating, --runs
rounds) and reports for each write:

  wall      seconds from open to the end of close (boto3: upload_file)
  write     seconds the writes took (open to the last write's return)
  close     seconds close took (the upload's tail and the complete)
  fs cpu    CPU-seconds (user + system) of the file system's daemon
  gw cpu    CPU-seconds of the gateway process
  app cpu   CPU-seconds of the writing process (this script: reading the
            local file and writing it into the mount, or boto3 itself)
  busy      the machine's busy CPU-seconds over the same time (all
            processes, from /proc/stat): what the others cost too

and checks the gateway's copy (SHA-256 of a GET) after each one. The
writes go 1 MiB at a time, as `dd bs=1M` does. A benchmark, not a test.

Run: /usr/bin/python3 bench/write_profile.py [--runs 3] [--mib 1024]
     [--latency-ms 0] [--writers default,s3fs,boto3] [--sync-bodies]
     [--lakefuse-arg=...]
"""
import argparse
import hashlib
import os
import pathlib
import resource
import shutil
import signal
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import PeerMount, LfMount, sha256_of_object  # noqa: E402
from read_bench import MB, MiB, Cleanup, cpu_seconds, log, median  # noqa: E402
from conftest import Sim, new_repo_name  # noqa: E402
from lf_helpers import BigStream  # noqa: E402

WRITERS = ["default", "s3fs", "boto3"]


def machine_busy():
    """Busy CPU-seconds of the whole machine since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def copy_into(src, dst):
    """(seconds of the writes, seconds of close) copying src to dst."""
    buf = bytearray(MiB)
    view = memoryview(buf)
    t0 = time.perf_counter()
    fin = os.open(src, os.O_RDONLY)
    fd = os.open(dst, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        while True:
            n = os.readv(fin, [buf])
            if n == 0:
                break
            off = 0
            while off < n:
                off += os.write(fd, view[off:n])
    finally:
        os.close(fin)
        t1 = time.perf_counter()
        os.close(fd)
    return t1 - t0, time.perf_counter() - t1


def one(writer, sim, repo, workdir, cleanup, args, src, want, i):
    key = f"written/{writer}-{i}.bin"
    m = None
    if writer == "boto3":
        s3 = sim.s3()
    elif writer == "s3fs":
        m = PeerMount("s3fs", sim, repo, workdir, f"w-{writer}{i}", cleanup)
    else:
        m = LfMount(sim, f"lakefs://{repo}", workdir, f"w-{writer}{i}",
                    args.lakefuse_arg + ([] if writer == "default" else [f"--{writer}"]),
                    cleanup)
    try:
        if m:
            m.data("written").mkdir(exist_ok=True)
        fs0 = cpu_seconds(m.pid) if m else 0.0
        gw0, app0, busy0 = cpu_seconds(sim.pid), self_cpu(), machine_busy()
        t0 = time.perf_counter()
        if m:
            w, c = copy_into(src, m.data(key))
        else:
            s3.upload_file(str(src), repo, f"main/{key}")
            w, c = time.perf_counter() - t0, 0.0
        wall = time.perf_counter() - t0
        fs1 = cpu_seconds(m.pid) if m else 0.0
        gw1, app1, busy1 = cpu_seconds(sim.pid), self_cpu(), machine_busy()
    finally:
        if m:
            m.unmount()
    ok = sha256_of_object(sim, repo, f"main/{key}") == want
    r = {"wall": wall, "write": w, "close": c, "fs": fs1 - fs0, "gw": gw1 - gw0,
         "app": app1 - app0, "busy": busy1 - busy0, "ok": ok,
         "mbps": args.mib * MiB / wall / MB}
    log(f"  {writer:8s} run {i + 1}: {r['mbps']:4.0f} MB/s  wall {wall:5.2f} s (write {w:5.2f}, "
        f"close {c:4.2f})  cpu: fs {r['fs']:4.2f}  gw {r['gw']:4.2f}  app {r['app']:4.2f}  "
        f"machine {r['busy']:5.2f}  {'ok' if ok else 'WRONG BYTES'}")
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--latency-ms", type=int, default=0)
    ap.add_argument("--writers", default=",".join(WRITERS),
                    help="default, s3fs, boto3, or a lakefuse flag without its dashes "
                         "(direct-io, page-cache)")
    ap.add_argument("--lakefuse-arg", action="append", default=[])
    ap.add_argument("--sync-bodies", action="store_true",
                    help="the gateway fsyncs every body and part (lakeFS does not)")
    args = ap.parse_args()
    writers = [w for w in args.writers.split(",") if w]
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="lakefuse-wprof-"))
    cleanup = Cleanup()
    cleanup.push(lambda: shutil.rmtree(workdir, ignore_errors=True), f"remove {workdir}")

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    failed = 0
    try:
        sim = Sim(workdir / "data", extra_args=["--sync-bodies"] if args.sync_bodies else [])
        sim.start()
        cleanup.push(sim.stop, f"gateway pid {sim.pid}")
        repo = new_repo_name("wprof")
        sim.create_repo(repo)
        src = workdir / "src.bin"
        h = hashlib.sha256()
        with open(src, "wb") as f:
            for piece in BigStream(777, args.mib * MiB).pieces():
                f.write(piece)
                h.update(piece)
        want = h.hexdigest()
        sim.set_faults(0.0, args.latency_ms)
        log(f"gateway pid {sim.pid}, latency {args.latency_ms} ms, {args.mib} MiB"
            + (", bodies fsynced" if args.sync_bodies else ""))
        res = {w: [] for w in writers}
        for i in range(args.runs):
            for w in writers:
                r = one(w, sim, repo, workdir, cleanup, args, src, want, i)
                failed += not r["ok"]
                res[w].append(r)
        print(f"\n{args.mib} MiB at {args.latency_ms} ms, medians of {args.runs}:")
        print("| writer | MB/s | wall s | write s | close s | fs CPU-s | gateway CPU-s | "
              "writer CPU-s | machine busy CPU-s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for w in writers:
            rs = res[w]
            print(f"| {w} | " + " | ".join(
                f"{median([r[k] for r in rs]):.{0 if k == 'mbps' else 2}f}"
                for k in ("mbps", "wall", "write", "close", "fs", "gw", "app", "busy")) + " |")
        return 1 if failed else 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        cleanup.run()


if __name__ == "__main__":
    sys.exit(main())
