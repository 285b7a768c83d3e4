#!/usr/bin/python3
"""Soak of two lakefuse mounts of one branch against a faulty gateway.

Starts its own simulator (tests/conftest.py's Sim: port 0, temporary data
directory), seeds large and small files, mounts lakefs://REPO/main twice
(two daemons, --branch-ttl 1, a cache smaller than the data so reads keep
reaching the gateway), turns on 5 % faults (the simulator's default kinds:
500, SlowDown, resets, truncated GET bodies) with latency jitter, and runs
a mixed workload for a bounded time (20 minutes by default):

  readers      large files (sequential and random ranges) and small ones,
               on both mounts, checked against the seeded bytes;
  writers      files of 1 KiB..2 MiB (now and then 20 MiB, a multipart
               upload), created, overwritten and removed again, each
               writer in a directory of its own, on both mounts; names
               are reused (400 a writer), so the name space stops growing
               after warm-up and so should the daemons;
  cross reads  one mount reads what the other's writers closed, checked
               against every version ever written there;
  renames      a file and a directory of five files renamed (onto names
               used before: a file replaces its target, a directory's
               old copy is removed first), on both;
  listings     directories of both mounts, all the time;
  commits      `lakefuse commit` on one mount every 60 s.

RSS, open descriptors and threads of both daemons are sampled every 10 s.
At the end the faults go off, `lakefuse flush` uploads whatever a failed
close left staged, and every file is checked against the gateway:

  wrong bytes      a read that returned bytes that are not the file's (any
                   version of it): must be 0;
  lost writes      a file whose close() returned 0 that is not on the
                   gateway with that content or a later version written
                   to it: must be 0 (names whose rename or unlink failed,
                   so that their state is not known, are counted apart);
  growth           RSS, descriptors and threads: the largest value of the
                   last third of the run against the largest of the
                   middle third (after warm-up).

Prints a markdown summary for docs/reliability.md and exits non-zero when
a wrong byte or a lost write was found, or a daemon died. A soak, not a
test (not in CI): run it by hand. Mounts are unmounted and processes
stopped by PID at the end, also on error, SIGTERM or Ctrl-C.

Run: /usr/bin/python3 bench/soak.py [--minutes 20] [--fail-rate 0.05]
     [--latency-ms 2] [--jitter-ms 30] [--json FILE]
"""
import argparse
import hashlib
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "tests"))
from conftest import Sim, new_repo_name  # noqa: E402  (tests/conftest.py)
from lf_helpers import BINARY, MiB, BigStream, vm_status  # noqa: E402
from read_bench import Cleanup, LakefuseMount, log, put_stream  # noqa: E402

LARGE = [(f"seed/large{i}", 64 * MiB) for i in range(4)]
SMALL = [(f"seed/small/{i // 50}/s{i}", 4096 + (i * 7919) % 100000) for i in range(200)]
SAMPLE_EVERY = 10.0
COMMIT_EVERY = 60.0
NAMES = 400       # names per writer, reused
RENAMES = 60      # names per renamer, reused


def small_bytes(key, size):
    return hashlib.sha256(key.encode()).digest() * (size // 32) + b"x" * (size % 32)


def digest(b):
    return hashlib.sha256(b).hexdigest()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.n = {}
        self.wrong = []          # (what, detail)

    def add(self, k, v=1):
        with self.lock:
            self.n[k] = self.n.get(k, 0) + v

    def wrong_bytes(self, what, detail):
        with self.lock:
            self.wrong.append((what, detail))
        log(f"WRONG BYTES: {what}: {detail}")


class Model:
    """What each key should hold: every version written to it, whether
    its close() returned 0, and whether a failed rename or unlink left its
    state unknown."""

    def __init__(self):
        self.lock = threading.Lock()
        self.versions = {}      # key -> [(sha, acked)]
        self.gone = set()       # removed (unlink or rename source returned 0)
        self.unknown = set()

    def wrote(self, key, sha, acked):
        with self.lock:
            self.versions.setdefault(key, []).append((sha, acked))
            self.gone.discard(key)

    def removed(self, key):
        with self.lock:
            self.gone.add(key)

    def moved(self, src, dst):
        with self.lock:
            self.versions[dst] = list(self.versions.get(src, []))
            self.gone.add(src)
            self.gone.discard(dst)

    def unsure(self, *keys):
        with self.lock:
            self.unknown.update(keys)

    def any_version(self, key, sha):
        with self.lock:
            return any(s == sha for s, _ in self.versions.get(key, []))


class Workload:
    def __init__(self, args, mounts, repo, stats, model, stop):
        self.args, self.mounts, self.repo = args, mounts, repo
        self.stats, self.model, self.stop = stats, model, stop
        self.large = {k: BigStream(i + 1, size) for i, (k, size) in enumerate(LARGE)}
        self.closed = [[], []]   # per mount: keys whose close returned 0
        self.closed_lock = threading.Lock()

    # -- readers ------------------------------------------------------------
    def read_large(self, mi, seed):
        rnd = random.Random(seed)
        m = self.mounts[mi]
        while not self.stop.is_set():
            key = rnd.choice(list(self.large))
            stream = self.large[key]
            try:
                with open(m.path / key, "rb", buffering=0) as f:
                    if rnd.random() < 0.3:
                        off, n = 0, stream.size
                        h = hashlib.sha256()
                        while True:
                            b = f.read(4 * MiB)
                            if not b:
                                break
                            h.update(b)
                            n -= len(b)
                        if n != 0 or h.hexdigest() != stream.sha256_cached:
                            self.stats.wrong_bytes(f"{mi}:{key}", "sequential read differs")
                        self.stats.add("large sequential reads")
                    else:
                        for _ in range(20):
                            off = rnd.randrange(stream.size)
                            want = rnd.choice([4096, 65536, 1 << 20])
                            f.seek(off)
                            got = f.read(want)
                            if got != stream.read_at(off, want):
                                self.stats.wrong_bytes(f"{mi}:{key}", f"range {off}+{want}")
                        self.stats.add("large random reads", 20)
            except OSError as e:
                self.stats.add(f"read errors ({e.strerror})")

    def read_small(self, mi, seed):
        rnd = random.Random(seed)
        m = self.mounts[mi]
        while not self.stop.is_set():
            key, size = rnd.choice(SMALL)
            try:
                got = (m.path / key).read_bytes()
                if got != small_bytes(key, size):
                    self.stats.wrong_bytes(f"{mi}:{key}", f"{len(got)} bytes")
                self.stats.add("small reads")
            except OSError as e:
                self.stats.add(f"read errors ({e.strerror})")

    def read_cross(self, mi, seed):
        """Reads files the other mount's writers closed."""
        rnd = random.Random(seed)
        m = self.mounts[mi]
        while not self.stop.is_set():
            with self.closed_lock:
                pool = self.closed[1 - mi][-200:]
            if not pool:
                time.sleep(0.5)
                continue
            key = rnd.choice(pool)
            try:
                got = (m.path / key).read_bytes()
            except OSError as e:
                # ENOENT: not seen yet (the branch TTL), or removed since.
                self.stats.add(f"cross read errors ({e.strerror})")
                time.sleep(0.1)
                continue
            if not self.model.any_version(key, digest(got)):
                # Written again meanwhile, under a version not recorded yet?
                time.sleep(0.2)
                if not self.model.any_version(key, digest(got)):
                    self.stats.wrong_bytes(f"{mi}:{key}", f"cross read of {len(got)} bytes")
            self.stats.add("cross reads")

    # -- writers ------------------------------------------------------------
    def write_file(self, mi, key, data):
        path = self.mounts[mi].path / key
        sha = digest(data)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as e:
            self.stats.add(f"open errors ({e.strerror})")
            return False
        ok = written = False
        try:
            for off in range(0, len(data), 1 << 20):
                os.write(fd, data[off:off + (1 << 20)])
            ok = written = True
        except OSError as e:
            self.stats.add(f"write errors ({e.strerror})")
        try:
            os.close(fd)
        except OSError as e:
            self.stats.add(f"close errors ({e.strerror})")
            ok = False
        if written:
            # A failed close leaves the content staged: a later version on
            # the gateway once the final flush stores it.
            self.model.wrote(key, sha, ok)
        else:
            self.model.unsure(key)      # part of it may be stored
        if ok:
            self.stats.add("files closed")
            self.stats.add("bytes written", len(data))
            with self.closed_lock:
                self.closed[mi].append(key)
        return ok

    def makedirs(self, mi, d):
        try:
            os.makedirs(self.mounts[mi].path / d, exist_ok=True)
            return True
        except OSError as e:
            self.stats.add(f"mkdir errors ({e.strerror})")
            return False

    def writer(self, mi, wi, seed):
        rnd = random.Random(seed)
        mine = []
        n = 0
        while not self.stop.is_set():
            n += 1
            r = rnd.random()
            if r < 0.15 and mine:                       # overwrite one of ours
                key = rnd.choice(mine)
            elif r < 0.22 and mine:                     # remove one of ours
                key = mine.pop(rnd.randrange(len(mine)))
                try:
                    os.unlink(self.mounts[mi].path / key)
                    self.model.removed(key)
                    self.stats.add("unlinks")
                except OSError as e:
                    self.stats.add(f"unlink errors ({e.strerror})")
                    self.model.unsure(key)
                continue
            else:
                key = f"m{mi}/w{wi}/d{n % 10}/f{n % NAMES}"
                if not self.makedirs(mi, os.path.dirname(key)):
                    continue
            size = 20 * MiB if rnd.random() < 0.01 else rnd.choice(
                [1024, 10000, 100000, 700000, 2 * MiB])
            data = rnd.randbytes(size)
            if self.write_file(mi, key, data) and key not in mine:
                mine.append(key)

    def renamer(self, mi, seed):
        rnd = random.Random(seed)
        m = self.mounts[mi]
        n = 0
        while not self.stop.is_set():
            n += 1
            k = n % RENAMES
            base = f"m{mi}/ren"
            if not self.makedirs(mi, base):
                continue
            if rnd.random() < 0.7:
                src, dst = f"{base}/x{k}", f"{base}/y{k}"
                if not self.write_file(mi, src, rnd.randbytes(rnd.choice([500, 50000]))):
                    continue
                try:
                    os.rename(m.path / src, m.path / dst)
                    self.model.moved(src, dst)
                    self.stats.add("file renames")
                    with self.closed_lock:
                        self.closed[mi].append(dst)
                except OSError as e:
                    self.stats.add(f"rename errors ({e.strerror})")
                    self.model.unsure(src, dst)
            else:
                d = f"{base}/dir{k}"
                if not self.remove_tree(mi, d) or not self.remove_tree(mi, f"{d}.moved"):
                    continue
                try:
                    os.makedirs(m.path / d)
                except OSError as e:
                    self.stats.add(f"mkdir errors ({e.strerror})")
                    continue
                names = [f"{d}/g{i}" for i in range(5)]
                if not all([self.write_file(mi, k, rnd.randbytes(3000)) for k in names]):
                    continue
                try:
                    os.rename(m.path / d, m.path / f"{d}.moved")
                    for k in names:
                        self.model.moved(k, k.replace(d, f"{d}.moved", 1))
                    self.stats.add("directory renames")
                except OSError as e:
                    self.stats.add(f"directory rename errors ({e.strerror})")
                    self.model.unsure(*names, *[k.replace(d, f"{d}.moved", 1) for k in names])
            time.sleep(0.2)

    def remove_tree(self, mi, d):
        """Removes directory d of the renamer (its files, then itself), if
        it is there; whether it is gone."""
        m = self.mounts[mi]
        try:
            names = os.listdir(m.path / d)
        except FileNotFoundError:
            return True
        except OSError as e:
            self.stats.add(f"listing errors ({e.strerror})")
            return False
        for name in names:
            key = f"{d}/{name}"
            try:
                os.unlink(m.path / key)
                self.model.removed(key)
            except OSError as e:
                self.stats.add(f"unlink errors ({e.strerror})")
                self.model.unsure(key)
                return False
        try:
            os.rmdir(m.path / d)
        except OSError as e:
            self.stats.add(f"rmdir errors ({e.strerror})")
            return False
        return True

    def lister(self, mi, seed):
        rnd = random.Random(seed)
        m = self.mounts[mi]
        while not self.stop.is_set():
            d = rnd.choice(["", "seed", "seed/small/1", f"m{1 - mi}", f"m{mi}/ren",
                            f"m{rnd.randrange(2)}/w{rnd.randrange(2)}/d{rnd.randrange(10)}"])
            try:
                with os.scandir(m.path / d) as it:
                    for e in it:
                        e.stat(follow_symlinks=False)
                self.stats.add("listings")
            except OSError as e:
                self.stats.add(f"listing errors ({e.strerror})")
            time.sleep(0.05)

    def committer(self):
        n = 0
        while not self.stop.wait(COMMIT_EVERY):
            n += 1
            r = subprocess.run([str(BINARY), "commit", str(self.mounts[0].path), "-m",
                                f"soak {n}"], capture_output=True, text=True, timeout=600)
            self.stats.add("commits" if r.returncode == 0 else "commit failures")
            if r.returncode != 0:
                log(f"commit {n} failed: {r.stderr.strip()[-300:]}")


def sample(pid):
    st = vm_status(pid)
    with open(f"/proc/{pid}/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    return {"rss_kb": st["VmRSS"], "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": threads}


def growth(samples, key):
    """(max of the middle third, max of the last third) of a series."""
    n = len(samples)
    mid = [s[key] for s in samples[n // 3:2 * n // 3]] or [0]
    last = [s[key] for s in samples[2 * n // 3:]] or [0]
    return max(mid), max(last)


def verify(sim, repo, model, stats):
    s3 = sim.s3()
    lost, checked, unknown, later = [], 0, 0, 0
    for key, versions in sorted(model.versions.items()):
        if key in model.unknown:
            unknown += 1
            continue
        acked = [i for i, (_, ok) in enumerate(versions) if ok]
        if key in model.gone:
            try:
                s3.head_object(Bucket=repo, Key=f"main/{key}")
                lost.append((key, "removed, yet on the gateway"))
            except s3.exceptions.ClientError:
                pass
            continue
        if not acked:
            continue
        checked += 1
        allowed = {sha for sha, _ in versions[acked[-1]:]}
        try:
            got = digest(s3.get_object(Bucket=repo, Key=f"main/{key}")["Body"].read())
        except s3.exceptions.ClientError as e:
            lost.append((key, f"missing: {e}"))
            continue
        if got not in allowed:
            lost.append((key, "not the last acknowledged version nor a later one"))
        elif got != versions[acked[-1]][0]:
            later += 1
    stats.n["files checked on the gateway"] = checked
    stats.n["names of unknown state (a failed rename/unlink)"] = unknown
    stats.n["files holding a version written after the last acknowledged one"] = later
    return lost


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=20)
    ap.add_argument("--fail-rate", type=float, default=0.05)
    ap.add_argument("--latency-ms", type=int, default=2)
    ap.add_argument("--jitter-ms", type=int, default=30)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--lakefuse-arg", action="append", default=[])
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2 ** 31)
    cleanup = Cleanup()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    work = tempfile.mkdtemp(prefix="lakefuse-soak-")
    cleanup.push(lambda: subprocess.run(["rm", "-rf", work]), f"rm -rf {work}")
    stats, model, stop = Stats(), Model(), threading.Event()
    failed = False
    try:
        sim = Sim(pathlib.Path(work) / "sim", extra_args=["--seed", str(seed)]).start()
        cleanup.push(sim.stop, f"simulator pid {sim.pid}")
        repo = new_repo_name("soak")
        sim.create_repo(repo)
        log(f"seed {seed}; seeding {len(LARGE)} large and {len(SMALL)} small files")
        for i, (key, size) in enumerate(LARGE):
            put_stream(sim, repo, f"main/{key}", BigStream(i + 1, size))
        s3 = sim.s3()
        for key, size in SMALL:
            s3.put_object(Bucket=repo, Key=f"main/{key}", Body=small_bytes(key, size))
        sim.commit(repo, "main", "seed")
        extra = ["--branch-ttl", "1", "--cache-size", "64"] + args.lakefuse_arg
        mounts = [LakefuseMount(sim, f"lakefs://{repo}/main", work, f"m{i}", extra, cleanup)
                  for i in range(2)]
        w = Workload(args, mounts, repo, stats, model, stop)
        for k, stream in w.large.items():
            stream.sha256_cached = stream.sha256()
        sim.set_faults(args.fail_rate, args.latency_ms, latency_jitter_ms=args.jitter_ms,
                       seed=seed)
        log(f"faults on: {sim.faults()}")
        threads = []
        for mi in range(2):
            for j in range(2):
                threads.append(threading.Thread(target=w.writer, args=(mi, j, seed + 10 * mi + j)))
            threads += [threading.Thread(target=w.read_large, args=(mi, seed + 100 + mi)),
                        threading.Thread(target=w.read_small, args=(mi, seed + 200 + mi)),
                        threading.Thread(target=w.read_cross, args=(mi, seed + 300 + mi)),
                        threading.Thread(target=w.renamer, args=(mi, seed + 400 + mi)),
                        threading.Thread(target=w.lister, args=(mi, seed + 500 + mi))]
        threads.append(threading.Thread(target=w.committer))
        for t in threads:
            t.daemon = True
            t.start()
        samples = [[], []]
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        while time.monotonic() < end:
            for i, m in enumerate(mounts):
                if m.proc.poll() is not None:
                    raise RuntimeError(f"daemon {i} (pid {m.pid}) died: {m.proc.returncode}")
                s = sample(m.pid)
                s["t"] = round(time.monotonic() - t0)
                samples[i].append(s)
            last = samples[0][-1], samples[1][-1]
            log(f"{last[0]['t']:5d} s  rss {last[0]['rss_kb'] >> 10}/{last[1]['rss_kb'] >> 10} "
                f"MiB  fds {last[0]['fds']}/{last[1]['fds']}  threads "
                f"{last[0]['threads']}/{last[1]['threads']}  "
                f"closed {stats.n.get('files closed', 0)}  wrong {len(stats.wrong)}")
            time.sleep(SAMPLE_EVERY)
        stop.set()
        for t in threads:
            t.join(timeout=600)
        sim.set_faults()
        stats.n["gateway faults injected"] = sim.stats()["faults"]
        for m in mounts:
            r = subprocess.run([str(BINARY), "flush", str(m.path)], capture_output=True,
                               text=True, timeout=600)
            if r.returncode != 0:
                log(f"flush of {m.path}: {r.stderr.strip()}")
        lost = verify(sim, repo, model, stats)
        for i, m in enumerate(mounts):
            if m.proc.poll() is not None:
                raise RuntimeError(f"daemon {i} died: {m.proc.returncode}")
        for m in mounts:
            m.unmount()
        report(args, seed, stats, samples, lost)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"seed": seed, "counts": stats.n, "wrong": stats.wrong,
                           "lost": lost, "samples": samples}, f, indent=1)
        failed = bool(stats.wrong or lost)
    except KeyboardInterrupt:
        failed = True
    finally:
        stop.set()
        cleanup.run()
    return 1 if failed else 0


def report(args, seed, stats, samples, lost):
    print()
    print(f"Soak: {args.minutes:g} min, two mounts of one branch, {args.fail_rate:.0%} faults, "
          f"latency {args.latency_ms} ms + 0..{args.jitter_ms} ms, seed {seed}")
    print()
    print("| figure | value |")
    print("|---|---|")
    print(f"| wrong bytes (reads that returned other bytes) | {len(stats.wrong)} |")
    print(f"| lost acknowledged writes | {len(lost)} |")
    for k in sorted(stats.n):
        print(f"| {k} | {stats.n[k]} |")
    print()
    print("| daemon | RSS MiB (after warm-up / end, max) | fds (after / end, max) "
          "| threads (after / end, max) |")
    print("|---|---|---|---|")
    for i, ss in enumerate(samples):
        if not ss:
            continue
        cells = []
        for k, scale in (("rss_kb", 1024), ("fds", 1), ("threads", 1)):
            mid, last = growth(ss, k)
            cells.append(f"{mid // scale} / {last // scale}, {max(s[k] for s in ss) // scale}")
        print(f"| m{i} | " + " | ".join(cells) + " |")
    for what, detail in stats.wrong[:20]:
        print(f"wrong: {what}: {detail}")
    for key, why in lost[:20]:
        print(f"lost: {key}: {why}")


if __name__ == "__main__":
    sys.exit(main())
