#!/usr/bin/python3
"""Write benchmark of lakefuse against the local lakeFS gateway simulator.

Starts its own simulator (tests/conftest.py's Sim: port 0, temporary data
directory), mounts lakefs://REPO with build/lakefuse (--foreground,
credentials in the environment, a fresh mount per measurement) and
measures:

  (a) sequential write of a 1 GiB file through the mount (1 MiB writes;
      the time includes close(), which returns once the object is on the
      branch) versus a boto3 multipart upload of the same bytes to the same
      gateway (TransferConfig: 8 MiB parts, 8 threads); MB/s of both and
      the ratio (target >= 0.7), and how long close() itself took;
  (b) creating 1000 files of 4 KiB with cp: one `cp -r` (one file after
      the other, what a user types) and 10 `cp` processes of 100 files
      each; files per second and gateway requests per file;
  (c) both with 20 ms added to every gateway request (the simulator's
      runtime POST /_sim/faults switch).

(a) and (b) run over the gateway (--presign off) and over presigned URLs of
the simulator's storage endpoint (--presign on), and report the bytes that
crossed the lakeFS server (gateway and REST API) against those that
crossed the storage. --modes picks them; --quick skips (c).

Every object written is checked (size, and the multipart ETag computed
from the bytes, which also pins the part boundaries). Prints a markdown
table for docs/benchmarks.md. A benchmark, not a test: it asserts nothing
about timings and exits non-zero only if something broke. Mounts are
unmounted and processes stopped by PID at the end, also on error, SIGTERM
or Ctrl-C.

Run: /usr/bin/python3 bench/write_bench.py [--runs 3] [--mib 1024]
     [--files 1000] [--latency-ms 20] [--modes gateway,presign] [--quick]
     [--lakefuse-arg=--part-size=16 ...]
"""
import argparse
import hashlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "tests"))
from conftest import Sim, new_repo_name  # noqa: E402  (tests/conftest.py)
from lf_helpers import BINARY, MiB, BigStream  # noqa: E402
from read_bench import Cleanup, LakefuseMount, log, median  # noqa: E402

MB = 1e6
RATIO_TARGET = 0.7
MODES = {"gateway": ["--presign", "off"], "presign": ["--presign", "on"]}
PART = 8 * MiB              # boto3's part size, and lakefuse's default
SMALL = 4096


# ------------------------------------------------------------------ data
def expected_etag(stream, part=PART):
    """The ETag lakeFS stores for a multipart upload of the stream in
    `part`-byte parts: MD5 of the part MD5s (lakeFS drops the "-N")."""
    md5s = []
    for i in range(0, stream.size, part):
        md5s.append(hashlib.md5(stream.read_at(i, min(part, stream.size - i))).digest())
    return hashlib.md5(b"".join(md5s)).hexdigest()


def check_object(s3, repo, key, size, etag):
    head = s3.head_object(Bucket=repo, Key=key)
    if head["ContentLength"] != size:
        raise RuntimeError(f"{key}: {head['ContentLength']} bytes, expected {size}")
    got = head["ETag"].strip('"').split("-")[0]
    if etag and got != etag:
        raise RuntimeError(f"{key}: ETag {got}, expected {etag} (other bytes or parts)")


class StreamReader:
    """A read()-only file object over a BigStream for upload_fileobj."""

    def __init__(self, stream):
        self.stream, self.pos = stream, 0

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.stream.size - self.pos
        out = self.stream.read_at(self.pos, n)
        self.pos += len(out)
        return out


# -------------------------------------------------------------- measures
def write_through_mount(path, stream):
    """MB/s of open + 1 MiB writes + close, and the seconds close took."""
    t0 = time.perf_counter()
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        for piece in stream.pieces():
            for off in range(0, len(piece), MiB):
                os.write(fd, piece[off:off + MiB])
    finally:
        t1 = time.perf_counter()
        os.close(fd)        # returns once the object is on the branch
    t2 = time.perf_counter()
    return stream.size / (t2 - t0) / MB, t2 - t1


def boto_upload(s3, repo, key, stream, threads):
    from boto3.s3.transfer import TransferConfig
    cfg = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART,
                         max_concurrency=threads, use_threads=True)
    t0 = time.perf_counter()
    s3.upload_fileobj(StreamReader(stream), repo, key, Config=cfg)
    return stream.size / (time.perf_counter() - t0) / MB


def server_and_storage_bytes(sim):
    st = sim.stats()
    return (st["bytes_in"] + st["bytes_out"],
            st["storage"]["bytes_in"] + st["storage"]["bytes_out"])


def small_files(sim, src, dst, files, parallel):
    """files/s and gateway requests per file of copying src's files into
    dst (which must not exist): one `cp -r`, or `parallel` cp processes."""
    sim.reset_stats()
    t0 = time.perf_counter()
    if parallel <= 1:
        procs = [subprocess.Popen(["cp", "-r", str(src), str(dst)])]
    else:
        os.mkdir(dst)
        names = sorted(os.listdir(src))
        step = -(-len(names) // parallel)
        procs = [subprocess.Popen(["cp", "-t", str(dst)] + [str(src / x)
                                                             for x in names[i:i + step]])
                 for i in range(0, len(names), step)]
    for p in procs:
        if p.wait(timeout=3600) != 0:
            raise RuntimeError(f"cp exited {p.returncode}")
    dt = time.perf_counter() - t0
    reqs = sum(sim.stats()["requests"].values())
    got = len(os.listdir(dst))
    if got != files:
        raise RuntimeError(f"{got} files listed in {dst}, expected {files}")
    return files / dt, reqs / files


def check_small(s3, repo, prefix, files):
    n, token = 0, None
    while True:
        kw = dict(Bucket=repo, Prefix=prefix)
        if token:
            kw["ContinuationToken"] = token
        r = s3.list_objects_v2(**kw)
        for c in r.get("Contents", []):
            if c["Key"].endswith("/"):
                continue
            if c["Size"] != SMALL:
                raise RuntimeError(f"{c['Key']}: {c['Size']} bytes, expected {SMALL}")
            n += 1
        if not r.get("IsTruncated"):
            break
        token = r["NextContinuationToken"]
    if n != files:
        raise RuntimeError(f"{n} objects under {prefix}, expected {files}")


def part_size_overridden(extra):
    return any(a.startswith("--part-size") for a in extra)


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=1024, help="size of the sequential file")
    ap.add_argument("--files", type=int, default=1000, help="small files to create")
    ap.add_argument("--runs", type=int, default=3, help="runs of the sequential write")
    ap.add_argument("--threads", type=int, default=8, help="boto3 upload threads")
    ap.add_argument("--latency-ms", type=int, default=20)
    ap.add_argument("--lakefuse-arg", action="append", default=[],
                    help="extra argument for lakefuse mount (repeat; use --lakefuse-arg=--x=y)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="comma-separated data paths: " + ", ".join(MODES))
    ap.add_argument("--quick", action="store_true", help="no run with added latency")
    args = ap.parse_args()
    modes = {m: MODES[m] for m in args.modes.split(",") if m in MODES}
    if not modes or len(modes) != len(args.modes.split(",")):
        sys.exit(f"--modes: pick from {', '.join(MODES)}")

    if subprocess.run([str(BINARY), "mount", "--help"], capture_output=True).returncode != 0:
        sys.exit(f"{BINARY} does not support `mount` yet")
    if not shutil.which("fusermount3"):
        sys.exit("fusermount3 is required")

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="lakefuse-writebench-"))
    cleanup = Cleanup()
    if not args.keep:
        cleanup.push(lambda: shutil.rmtree(workdir, ignore_errors=True), f"remove {workdir}")

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    try:
        # Every writer starts alike: the last one's gigabyte is deleted (its
        # body with it) and flushed to disk before the next one begins.
        sim = Sim(workdir / "data", extra_args=["--drop-deleted-blobs"])
        sim.start()
        cleanup.push(sim.stop, f"simulator pid {sim.pid}")
        log(f"simulator pid {sim.pid} at {sim.endpoint}; work dir {workdir}")
        repo = new_repo_name("wbench")
        sim.create_repo(repo)
        s3 = sim.s3(max_pool_connections=max(10, args.threads + 2))
        uri = f"lakefs://{repo}"
        extra = args.lakefuse_arg

        src = workdir / "small"
        src.mkdir()
        for i in range(args.files):
            (src / f"f{i:05d}.dat").write_bytes(hashlib.sha256(b"%d" % i).digest() * (SMALL // 32))
        stream = BigStream(4242, args.mib * MiB)
        etag = expected_etag(stream)
        mount_etag = None if part_size_overridden(extra) else etag

        results = {}
        latencies = [("0 ms", 0)] + ([] if args.quick else
                                     [(f"{args.latency_ms} ms", args.latency_ms)])
        for label, lat in latencies:
            sim.set_faults(0.0, lat, storage={"latency_ms": lat})
            log(f"-- added gateway and storage latency {label}")
            r = {"boto": []}
            for dp in modes:
                r.update({f"{dp}_mount": [], f"{dp}_close": [], f"{dp}_server": [],
                          f"{dp}_storage": []})
            for i in range(args.runs):
                line = []
                for dp, dp_args in modes.items():
                    m = LakefuseMount(sim, uri, workdir, f"w{lat}-{dp}-{i}", extra + dp_args,
                                      cleanup)
                    sim.reset_stats()
                    key = f"big{lat}-{dp}-{i}.bin"
                    os.sync()
                    mbps, close_s = write_through_mount(m.path / "main" / key, stream)
                    server, storage = server_and_storage_bytes(sim)
                    m.unmount()
                    check_object(s3, repo, f"main/{key}", stream.size, mount_etag)
                    s3.delete_object(Bucket=repo, Key=f"main/{key}")
                    r[f"{dp}_mount"].append(mbps)
                    r[f"{dp}_close"].append(close_s)
                    r[f"{dp}_server"].append(server)
                    r[f"{dp}_storage"].append(storage)
                    line.append(f"lakefuse {dp} {mbps:6.0f} MB/s (close {close_s:.1f} s; "
                                f"server {server:,} B, storage {storage:,} B)")
                os.sync()
                bmbps = boto_upload(s3, repo, f"main/boto{lat}-{i}.bin", stream, args.threads)
                check_object(s3, repo, f"main/boto{lat}-{i}.bin", stream.size, etag)
                s3.delete_object(Bucket=repo, Key=f"main/boto{lat}-{i}.bin")
                r["boto"].append(bmbps)
                log(f"  [{label}] run {i + 1}: " + "; ".join(line) +
                    f"; boto3 {bmbps:6.0f} MB/s")
            for dp, dp_args in modes.items():
                for mode, par in (("seq", 1), ("par", 10)):
                    m = LakefuseMount(sim, uri, workdir, f"s{lat}-{dp}-{mode}",
                                      extra + dp_args, cleanup)
                    dst = m.path / "main" / f"small{lat}-{dp}-{mode}"
                    fps, rpf = small_files(sim, src, dst, args.files, par)
                    m.unmount()
                    check_small(s3, repo, f"main/small{lat}-{dp}-{mode}/", args.files)
                    r[f"{dp}_{mode}_fps"], r[f"{dp}_{mode}_rpf"] = fps, rpf
                    log(f"  [{label}] {dp}: {args.files} small files, "
                        f"{'one cp -r' if par == 1 else f'{par} cp processes'}: "
                        f"{fps:.0f} files/s, {rpf:.1f} gateway requests per file")
            results[label] = r
        sim.set_faults(0.0, 0)

        labels = list(results)

        def row(name, fn):
            print(f"| {name} | " + " | ".join(fn(results[lbl]) for lbl in labels) + " |")

        def ratio(r, dp):
            x = median(r[f"{dp}_mount"]) / median(r["boto"])
            return f"{x:.2f} {'OK' if x >= RATIO_TARGET else 'BELOW'}"

        print()
        print(f"lakefuse write benchmark: {os.cpu_count()} CPUs, simulator on loopback, "
              f"median of {args.runs} runs, fresh mount per measurement"
              f"{'; lakefuse args ' + ' '.join(extra) if extra else ''}")
        print()
        print("| measure | " + " | ".join(f"gateway latency {lbl}" for lbl in labels) + " |")
        print("|---|" + "---|" * len(labels))
        for dp in modes:
            row(f"(a) {dp}: sequential write of {args.mib} MiB through lakefuse, close "
                f"included, MB/s", lambda r, d=dp: f"{median(r[d + '_mount']):.0f}")
            row(f"(a) {dp}: of which close(), s",
                lambda r, d=dp: f"{median(r[d + '_close']):.1f}")
            row(f"(a) {dp}: ratio lakefuse / boto3 (target >= {RATIO_TARGET})",
                lambda r, d=dp: ratio(r, d))
            row(f"(a) {dp}: bytes through the lakeFS server (gateway + API) / through the "
                f"storage", lambda r, d=dp: f"{median(r[d + '_server']):,.0f} / "
                                            f"{median(r[d + '_storage']):,.0f}")
        row(f"(a) boto3 multipart upload of the same bytes to the gateway (8 MiB parts, "
            f"{args.threads} threads), MB/s", lambda r: f"{median(r['boto']):.0f}")
        for dp in modes:
            row(f"(b) {dp}: {args.files} files of 4 KiB, one `cp -r` / 10 `cp` processes, "
                f"files/s", lambda r, d=dp: f"{r[d + '_seq_fps']:.0f} / {r[d + '_par_fps']:.0f}")
            row(f"(b) {dp}: gateway requests per file (one cp / 10 cp)",
                lambda r, d=dp: f"{r[d + '_seq_rpf']:.1f} / {r[d + '_par_rpf']:.1f}")
        print()
        for lbl in labels:
            r = results[lbl]
            print(f"runs at {lbl}: " + "; ".join(
                f"lakefuse {dp} " + ", ".join(f"{x:.0f}" for x in r[f"{dp}_mount"]) + " MB/s"
                for dp in modes) + "; boto3 " + ", ".join(f"{x:.0f}" for x in r["boto"]) +
                " MB/s")
        return 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        cleanup.run()


if __name__ == "__main__":
    sys.exit(main())
