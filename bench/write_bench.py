#!/usr/bin/python3
"""Write benchmark of lakefuse against the local lakeFS gateway simulator.

Starts its own simulator (port 0, temporary data directory) and measures:

  (a) sequential write of a 1 GiB file through the mount (1 MiB writes,
      the time includes close(), which returns once the object is stored)
      versus a boto3 multipart upload of the same bytes to the same gateway
      (8 MiB parts, 8 threads); MB/s of both and the ratio (target >= 0.7);
  (b) creating 1000 files of 4 KiB with cp (one process per 100 files),
      files per second;
  (c) both again with 20 ms added to every gateway request.

Prints a markdown table for docs/benchmarks.md. A benchmark, not a test:
it asserts nothing about timings. Mounts are unmounted and processes
stopped by PID at the end, also on error or Ctrl-C.

Run: /usr/bin/python3 bench/write_bench.py [--runs 3] [--mib 1024] [--files 1000]
"""
import argparse
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "tests"))
from conftest import Sim, boto_config, new_repo_name  # noqa: E402
from lf_helpers import MiB, BigStream  # noqa: E402
from read_bench import Cleanup, LakefuseMount, log, median  # noqa: E402

MB = 1e6
RATIO_TARGET = 0.7


def write_through_mount(path, stream):
    t0 = time.perf_counter()
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        for piece in stream.pieces():
            for off in range(0, len(piece), MiB):
                os.write(fd, piece[off:off + MiB])
    finally:
        os.close(fd)  # the upload's result arrives here
    return stream.size / (time.perf_counter() - t0) / MB


class StreamReader:
    """A file-like view of a BigStream for boto3's upload_fileobj."""

    def __init__(self, stream):
        self.it, self.buf = stream.pieces(), b""

    def read(self, n=-1):
        while n < 0 or len(self.buf) < n:
            try:
                self.buf += next(self.it)
            except StopIteration:
                break
        if n < 0:
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out


def boto_upload(sim, repo, key, stream):
    import boto3.s3.transfer as tr
    cfg = tr.TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB,
                            max_concurrency=8, use_threads=True)
    s3 = sim.s3()
    t0 = time.perf_counter()
    s3.upload_fileobj(StreamReader(stream), repo, key, Config=cfg)
    return stream.size / (time.perf_counter() - t0) / MB


def small_files(src_dir, dst_dir, n):
    t0 = time.perf_counter()
    names = sorted(os.listdir(src_dir))
    procs = []
    for i in range(0, n, 100):
        procs.append(subprocess.Popen(["cp", "-t", str(dst_dir)] +
                                      [str(src_dir / x) for x in names[i:i + 100]]))
    for p in procs:
        if p.wait(timeout=1800) != 0:
            raise RuntimeError("cp failed")
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--latency-ms", type=int, default=20)
    ap.add_argument("--lakefuse-arg", action="append", default=[])
    args = ap.parse_args()

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="lakefuse-writebench-"))
    cleanup = Cleanup()
    cleanup.push(lambda: shutil.rmtree(workdir, ignore_errors=True), f"remove {workdir}")
    try:
        sim = Sim(workdir / "data")
        sim.start()
        cleanup.push(sim.stop, f"simulator pid {sim.pid}")
        repo = new_repo_name("wbench")
        sim.create_repo(repo)
        src = workdir / "small"
        src.mkdir()
        for i in range(args.files):
            (src / f"f{i:04d}.dat").write_bytes(hashlib.sha256(b"%d" % i).digest() * 128)
        stream = BigStream(4242, args.mib * MiB)
        results = {}
        for label, lat in (("0 ms", 0), (f"{args.latency_ms} ms", args.latency_ms)):
            sim.set_faults(0.0, lat)
            r = {"mount": [], "boto": []}
            for i in range(args.runs):
                m = LakefuseMount(sim, f"lakefs://{repo}", workdir, f"w{lat}-{i}",
                                  args.lakefuse_arg, cleanup)
                r["mount"].append(write_through_mount(m.path / "main" / f"big{i}.bin", stream))
                m.unmount()
                r["boto"].append(boto_upload(sim, repo, f"main/boto{i}.bin", stream))
                log(f"  [{label}] run {i + 1}: lakefuse {r['mount'][-1]:6.0f} MB/s   "
                    f"boto3 {r['boto'][-1]:6.0f} MB/s")
            m = LakefuseMount(sim, f"lakefs://{repo}", workdir, f"s{lat}", args.lakefuse_arg,
                              cleanup)
            dst = m.path / "main" / f"small{lat}"
            os.mkdir(dst)
            r["files_per_s"] = small_files(src, dst, args.files)
            got = len(os.listdir(dst))
            m.unmount()
            if got != args.files:
                raise RuntimeError(f"{got} small files listed, expected {args.files}")
            log(f"  [{label}] {args.files} small files: {r['files_per_s']:.0f} files/s")
            results[label] = r
        sim.set_faults(0.0, 0)

        labels = list(results)
        print()
        print(f"lakefuse write benchmark: {os.cpu_count()} CPUs, simulator on loopback, "
              f"median of {args.runs} runs, fresh mount per run")
        print()
        print("| measure | " + " | ".join(f"gateway latency {lbl}" for lbl in labels) + " |")
        print("|---|" + "---|" * len(labels))

        def row(name, fn):
            print(f"| {name} | " + " | ".join(fn(results[lbl]) for lbl in labels) + " |")
        row(f"(a) sequential write of {args.mib} MiB through lakefuse (close included), MB/s",
            lambda r: f"{median(r['mount']):.0f}")
        row("(a) boto3 multipart upload of the same bytes (8 MiB x 8 threads), MB/s",
            lambda r: f"{median(r['boto']):.0f}")
        row(f"(a) ratio lakefuse / boto3 (target >= {RATIO_TARGET})",
            lambda r: (lambda x: f"{x:.2f} {'OK' if x >= RATIO_TARGET else 'BELOW'}")(
                median(r['mount']) / median(r['boto'])))
        row(f"(b) {args.files} files of 4 KiB with cp (10 processes), files/s",
            lambda r: f"{r['files_per_s']:.0f}")
        return 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        cleanup.run()


if __name__ == "__main__":
    sys.exit(main())
