#!/usr/bin/python3
"""lakefuse next to its peers: s3fs and rclone mount on the same gateway.

Starts its own local lakeFS gateway (tests/lakefs_sim: port 0, temporary
data directory), fills one repository, and mounts its branch `main` with
each file system in turn: lakefuse with no option ("default"), lakefuse
with its explicit I/O modes (--direct-io, --page-cache), s3fs (FUSE, from
Debian) and rclone mount (from Debian). Then, at 0 ms and at 20 ms of
added latency (the gateway and the object store alike), for each of them:

  read    cold sequential read of a 1 GiB object (`dd bs=1M` to
          /dev/null, fresh mount), against curl GETting the same object
          from the same gateway; modes and curl alternate, median of
          --runs; the figure is the ratio to curl's median. Alternating
          with them, build/fuse_ceiling --direct-io: the same dd through a
          FUSE server answering from memory, what any FUSE file system
          opening the file past the page cache gets on this machine;
  ls      `ls -l` of a directory of 5000 files on a fresh mount: seconds,
          and the gateway's ListObjectsV2 and HeadObject counts;
  tree    a directory of 200 files of 20 KB read whole by `cp -r`, `tar c`,
          `grep -r` and `rsync -a`, each on a fresh mount: seconds, GETs
          and HEADs; then `cat` of 50 of them in no order, whose GETs
          beyond 50 are what reading ahead wasted;
  create  300 files of 100 bytes created one after another (open, write,
          close): seconds, then checked on the gateway;
  write   a sequential write of --write-mib MiB (`dd bs=1M` from a local
          file, close included), against boto3's upload_file of the same
          file (its defaults), alternating, median of --write-runs: the
          ratio to boto3, and whether the gateway held the exact bytes
          right after close (sha256 of a GET). A file system that uploads
          later says so, with when the bytes were there.

How each peer is run (their defaults, stated in the table's notes):
  s3fs    -o use_path_request_style, url=the gateway; otherwise its
          defaults (no stat cache expiry set, multipart writes staged
          in a local temporary file, uploaded at close).
  rclone  `rclone mount` with --vfs-cache-mode writes (without a VFS
          cache rclone cannot open a file for writing that it did not
          create sequentially); its VFS cache uploads a file after close,
          --vfs-write-back (5 s) later: the write row shows when the bytes
          reached the gateway.

Set-up: s3fs and rclone are installed from Debian by this script (apt-get
install, as root) if missing; a peer that cannot be had is left out and
said so. Nothing is installed by the test suite.

A benchmark, not a test: it asserts nothing about timings and exits
non-zero only if something broke. Every mount is unmounted and every
process stopped by PID at the end, also on error, SIGTERM or Ctrl-C.

Run: /usr/bin/python3 bench/peers.py [--runs 5] [--latencies 0,20]
     [--rows read,ls,tree,create,write] [--peers default,direct-io,...]
     [--read-mib 1024] [--write-mib 1024] [--sync-bodies]
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

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from read_bench import (CEILING, MB, MiB, CeilingMount, Cleanup, LakefuseMount,  # noqa: E402
                        curl_read, dd_read, log, median, presigned_url,
                        put_stream)  # (its processes and measures)
from conftest import Sim, new_repo_name  # noqa: E402
from lf_helpers import BigStream, PipeLimit, bulk_put, is_mounted  # noqa: E402

LAKEFUSE_MODES = {"default": [], "direct-io": ["--direct-io"], "page-cache": ["--page-cache"]}
PEERS = list(LAKEFUSE_MODES) + ["s3fs", "rclone"]
ROWS = ["read", "ls", "tree", "create", "write"]


# ----------------------------------------------------------------- set-up
def install_peers(wanted):
    """Installs s3fs and rclone from Debian when missing (root only)."""
    missing = [p for p in ("s3fs", "rclone") if p in wanted and not shutil.which(p)]
    if not missing:
        return
    if os.geteuid() != 0:
        log(f"not root: cannot install {', '.join(missing)}; they are left out")
        return
    log(f"installing {', '.join(missing)} from Debian (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq"] + missing, env=env, check=False,
                   timeout=1200)


class PeerMount:
    """s3fs or rclone mounting REPO/main, in the foreground, stopped by PID."""

    def __init__(self, kind, sim, repo, workdir, name, cleanup):
        self.kind, self.cleanup = kind, cleanup
        self.path = pathlib.Path(workdir) / f"mnt-{name}"
        self.path.mkdir(parents=True, exist_ok=True)
        self.log_path = pathlib.Path(workdir) / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
        if kind == "s3fs":
            pw = pathlib.Path(workdir) / "s3fs.passwd"
            pw.write_text(f"{sim.access_key}:{sim.secret_key}\n")
            pw.chmod(0o600)
            cmd = ["s3fs", f"{repo}:/main", str(self.path), "-f",
                   "-o", f"url={sim.endpoint}", "-o", "use_path_request_style",
                   "-o", f"passwd_file={pw}", "-o", "endpoint=us-east-1",
                   "-o", f"logfile={self.log_path}"]
        else:
            env.update({"RCLONE_CONFIG_LAKE_TYPE": "s3", "RCLONE_CONFIG_LAKE_PROVIDER": "Other",
                        "RCLONE_CONFIG_LAKE_ENDPOINT": sim.endpoint,
                        "RCLONE_CONFIG_LAKE_ACCESS_KEY_ID": sim.access_key,
                        "RCLONE_CONFIG_LAKE_SECRET_ACCESS_KEY": sim.secret_key,
                        "RCLONE_CONFIG_LAKE_REGION": "us-east-1",
                        "RCLONE_CONFIG_LAKE_FORCE_PATH_STYLE": "true"})
            cmd = ["rclone", "mount", f"lake:{repo}/main", str(self.path),
                   "--vfs-cache-mode", "writes",
                   "--cache-dir", str(pathlib.Path(workdir) / f"rclone-cache-{name}"),
                   "--log-file", str(self.log_path)]
        self.cmd = cmd
        self.err = open(pathlib.Path(workdir) / f"{name}.stderr", "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.err,
                                     stderr=self.err, env=env)
        self.pid = self.proc.pid
        self._undo = cleanup.push(self.unmount, f"{kind} {self.path} (pid {self.pid})")
        deadline = time.monotonic() + 30
        while not is_mounted(self.path):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{kind} exited with {self.proc.returncode}; "
                                   f"see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} not mounted within 30 s; see {self.log_path}")
            time.sleep(0.05)

    def data(self, rel):
        return self.path / rel

    def unmount(self):
        self.cleanup.remove(self._undo)
        for _ in range(5):
            if not is_mounted(self.path):
                break
            r = subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True,
                               timeout=60)
            if r.returncode != 0 and is_mounted(self.path):
                time.sleep(1)
        if is_mounted(self.path):
            subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True,
                           timeout=30)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.err.close()


class LfMount(LakefuseMount):
    def data(self, rel):
        return self.path / "main" / rel


def mount(peer, sim, repo, workdir, name, cleanup, extra):
    if peer in LAKEFUSE_MODES:
        return LfMount(sim, f"lakefs://{repo}", workdir, name, extra + LAKEFUSE_MODES[peer],
                       cleanup)
    return PeerMount(peer, sim, repo, workdir, name, cleanup)


# --------------------------------------------------------------- measures
def row_read(peers, sim, repo, workdir, cleanup, args, label):
    url = presigned_url(sim, repo, "main/big/read.bin")
    size = args.read_mib * MiB
    curl_read(url, size)                           # the gateway's page cache
    # What any FUSE server reading this way gets on this machine: one
    # answering from memory, its files opened with direct I/O as lakefuse
    # opens big objects (no network, no gateway sharing the CPUs).
    refs = ["curl"] + (["ceiling"] if CEILING.exists() else [])
    runs = {p: [] for p in peers + refs}
    for i in range(args.runs):
        for p in refs + peers:                     # alternating
            if p == "curl":
                runs[p].append(curl_read(url, size, (sim.pid,))[0])
                continue
            if p == "ceiling":
                c = CeilingMount(workdir, cleanup, args.read_mib, "direct", f"{label}-{i}")
                try:
                    runs[p].append(dd_read(c.data(), size)[0])
                finally:
                    c.unmount()
                continue
            m = mount(p, sim, repo, workdir, f"{label}-read-{p}{i}", cleanup, args.lakefuse_arg)
            try:
                runs[p].append(dd_read(m.data("big/read.bin"), size)[0])
            finally:
                m.unmount()
        log(f"  [{label}] read run {i + 1}: " +
            ", ".join(f"{p} {runs[p][-1]:.0f}" for p in refs + peers) + " MB/s")
    c = median(runs["curl"])
    out = {p: {"mbps": median(runs[p]), "ratio": median(runs[p]) / c, "runs": runs[p]}
           for p in peers + refs}
    return out


def row_ls(peers, sim, repo, workdir, cleanup, args, label):
    out = {}
    for p in peers:
        m = mount(p, sim, repo, workdir, f"{label}-ls-{p}", cleanup, args.lakefuse_arg)
        try:
            d = m.data("list")
            os.stat(d)
            sim.reset_stats()
            t0 = time.perf_counter()
            r = subprocess.run(["ls", "-l", "--color=never", str(d)], capture_output=True,
                               env=dict(os.environ, LC_ALL="C"), timeout=1800)
            dt = time.perf_counter() - t0
            reqs = sim.stats()["requests"]
        finally:
            m.unmount()
        n = len(r.stdout.splitlines()) - 1
        out[p] = {"s": dt, "list": reqs.get("ListObjectsV2", 0) + reqs.get("ListObjects", 0),
                  "head": reqs.get("HeadObject", 0), "entries": n}
        log(f"  [{label}] ls -l {p}: {dt:.2f} s, {n} entries, {reqs}")
    return out


def requests_of(stats):
    """The gateway's requests by operation, with the storage endpoint's GETs
    and HEADs (presigned, lakefuse's default where lakeFS offers it) added
    to GetObject and HeadObject: a read costs the same wherever it went."""
    reqs = dict(stats["requests"])
    for op, n in stats["storage"]["by_operation"].items():
        if op in ("StorageGetObject", "StorageHeadObject"):
            name = op[len("Storage"):]
            reqs[name] = reqs.get(name, 0) + n
    return reqs


TREE_TOOLS = {
    "cp -r": lambda src, dst: ["cp", "-r", str(src), str(dst)],
    "tar c": lambda src, dst: ["tar", "cf", str(dst) + ".tar", "-C", str(src), "."],
    "grep -r": lambda src, dst: ["grep", "-r", "-c", "zzzz", str(src)],
    "rsync -a": lambda src, dst: ["rsync", "-a", str(src) + "/", str(dst)],
}


def row_tree(peers, sim, repo, workdir, cleanup, args, label):
    """Each tool reads the whole tree on a fresh mount; then a reader that
    opens a quarter of the files in no order (`cat` of shuffled names):
    the GETs beyond its files are what reading ahead wasted on it."""
    import random
    # The gateway answers its first requests of a run slower: one pass
    # untimed, or the first tool of the first peer pays for it (0.5 s
    # against 0.27 for the same `cp -r` measured later).
    m = mount(peers[0], sim, repo, workdir, f"{label}-tree-warmup", cleanup, args.lakefuse_arg)
    try:
        subprocess.run(["cat"] + [str(m.data("tree") / f"f{i:03d}.dat")
                                  for i in range(args.tree_files)],
                       capture_output=True, timeout=1800)
    finally:
        m.unmount()
    out = {}
    for p in peers:
        out[p] = {}
        for tool, argv in list(TREE_TOOLS.items()) + [("random", None)]:
            # a mount (and cache directory) of its own: every tool starts cold
            m = mount(p, sim, repo, workdir, f"{label}-tree-{p}-{tool.split()[0]}", cleanup,
                      args.lakefuse_arg)
            dst = pathlib.Path(workdir) / f"tree-out-{label}-{p}"
            names = [f"f{i:03d}.dat" for i in range(args.tree_files)]
            picked = random.Random(5).sample(names, len(names) // 4)
            try:
                os.listdir(m.data("tree"))
                sim.reset_stats()
                t0 = time.perf_counter()
                if argv:
                    r = subprocess.run(argv(m.data("tree"), dst), capture_output=True,
                                       timeout=1800)
                    ok = r.returncode in (0, 1)   # grep: 1 is "no line matched"
                else:
                    r = subprocess.run(["cat"] + [str(m.data("tree") / n) for n in picked],
                                       capture_output=True, timeout=1800)
                    ok = r.stdout == b"".join(tree_file(int(n[1:4])) for n in picked)
                dt = time.perf_counter() - t0
                st = sim.stats()
                reqs = requests_of(st)
            finally:
                m.unmount()
            if tool in ("cp -r", "rsync -a"):
                ok = ok and all((dst / f"f{i:03d}.dat").read_bytes() == tree_file(i)
                                for i in range(args.tree_files))
            shutil.rmtree(dst, ignore_errors=True)
            pathlib.Path(str(dst) + ".tar").unlink(missing_ok=True)
            files = len(picked) if tool == "random" else args.tree_files
            out[p][tool] = {"s": dt, "gets": reqs.get("GetObject", 0), "files": files,
                            "heads": reqs.get("HeadObject", 0), "ok": ok}
            log(f"  [{label}] {tool} {p}: {dt:.2f} s, {reqs}, API calls {st['api']['requests']}, "
                f"{'ok' if ok else 'FAILED'}")
    return out


def row_create(peers, sim, repo, workdir, cleanup, args, label):
    out = {}
    for p in peers:
        m = mount(p, sim, repo, workdir, f"{label}-create-{p}", cleanup, args.lakefuse_arg)
        d = m.data(f"created-{label}-{p}")
        try:
            t0 = time.perf_counter()
            d.mkdir()
            for i in range(args.creates):
                with open(d / f"c{i:03d}", "wb") as f:
                    f.write(b"c" * 100)
            dt = time.perf_counter() - t0
        finally:
            m.unmount()
        # after unmount: a peer that uploads late has had its chance
        keys = rb_list(sim, repo, f"main/created-{label}-{p}/")
        out[p] = {"s": dt, "stored": len(keys)}
        log(f"  [{label}] {args.creates} creates {p}: {dt:.2f} s, {len(keys)} on the gateway")
    return out


def rb_list(sim, repo, prefix):
    s3 = sim.s3()
    keys, token = [], None
    while True:
        kw = {"Bucket": repo, "Prefix": prefix}
        if token:
            kw["ContinuationToken"] = token
        r = s3.list_objects_v2(**kw)
        keys += [o["Key"] for o in r.get("Contents", [])]
        if not r.get("IsTruncated"):
            return keys
        token = r["NextContinuationToken"]


def boto3_upload(sim, repo, src, key):
    """Seconds for boto3's upload_file (its defaults: 8 MiB parts, 10
    threads) of the local file to the gateway."""
    s3 = sim.s3()
    t0 = time.perf_counter()
    s3.upload_file(str(src), repo, key)
    return time.perf_counter() - t0


def row_write(peers, sim, repo, workdir, cleanup, args, label):
    """Alternating with boto3's upload_file of the same local file, median
    of --write-runs; the bytes are checked on the gateway right after
    close (or, for a peer that uploads later, polled for until there)."""
    src = pathlib.Path(workdir) / "write-src.bin"
    size = args.write_mib * MiB
    want = hashlib.sha256()
    with open(src, "rb") as f:
        for chunk in iter(lambda: f.read(8 * MiB), b""):
            want.update(chunk)
    want = want.hexdigest()
    runs = {p: [] for p in ["boto3"] + peers}
    after = {p: None for p in peers}
    failed = {p: 0 for p in peers}
    for i in range(args.write_runs):
        for p in ["boto3"] + peers:
            key = f"written/{label}-{p}-{i}.bin"
            # The previous writer's bytes on disk before this one starts.
            os.sync()
            if p == "boto3":
                dt = boto3_upload(sim, repo, src, f"main/{key}")
                if sha256_of_object(sim, repo, f"main/{key}") != want:
                    raise RuntimeError("boto3's upload is not on the gateway")
                sim.s3().delete_object(Bucket=repo, Key=f"main/{key}")
                runs[p].append(size / dt / MB)
                continue
            m = mount(p, sim, repo, workdir, f"{label}-write-{p}{i}", cleanup, args.lakefuse_arg)
            try:
                m.data("written").mkdir(exist_ok=True)
                t0 = time.perf_counter()
                r = subprocess.run(["dd", f"if={src}", f"of={m.data(key)}", "bs=1M"],
                                   capture_output=True, text=True, timeout=3600)
                dt = time.perf_counter() - t0
                if r.returncode != 0:
                    # reported (and counted in the table), not fatal: the
                    # other figures of the run stay worth having
                    tail = ""
                    if hasattr(m, "log_path") and m.log_path.exists():
                        tail = m.log_path.read_text(errors="replace")[-3000:]
                    log(f"  [{label}] write {p}: dd failed: {r.stderr.strip()}\n{tail}")
                    failed[p] += 1
                    dt = float("inf")
                elif sha256_of_object(sim, repo, f"main/{key}") != want:
                    # uploaded later (rclone's write-back): how much later
                    deadline = time.perf_counter() + 300
                    late = float("inf")
                    while time.perf_counter() < deadline:
                        time.sleep(0.5)
                        if sha256_of_object(sim, repo, f"main/{key}") == want:
                            late = time.perf_counter() - t0
                            break
                    after[p] = max(after[p] or 0, late)
            finally:
                m.unmount()
            sim.s3().delete_object(Bucket=repo, Key=f"main/{key}")
            runs[p].append(size / dt / MB)
        log(f"  [{label}] write run {i + 1}: " +
            ", ".join(f"{p} {runs[p][-1]:.0f}" for p in ["boto3"] + peers) + " MB/s" +
            "".join(f"; {p} on the gateway {after[p]:.0f} s after the write began"
                    for p in peers if after[p] is not None))
    b = median(runs["boto3"])
    out = {p: {"mbps": median(runs[p]), "ratio": median(runs[p]) / b, "after": after[p],
               "runs": runs[p], "failed": failed[p]} for p in peers}
    out["boto3"] = {"mbps": b, "runs": runs["boto3"]}
    return out


def sha256_of_object(sim, repo, key):
    try:
        body = sim.s3().get_object(Bucket=repo, Key=key)["Body"]
    except Exception:  # noqa: BLE001 - not there (yet)
        return None
    h = hashlib.sha256()
    for chunk in iter(lambda: body.read(8 * MiB), b""):
        h.update(chunk)
    return h.hexdigest()


def tree_file(i):
    return (b"%05d" % i) * 4000   # 20,000 bytes


# ---------------------------------------------------------------- data
def fill(sim, repo, args, workdir):
    t0 = time.perf_counter()
    if "read" in args.rows:
        put_stream(sim, repo, "main/big/read.bin", BigStream(4242, args.read_mib * MiB))
    if "ls" in args.rows:
        bulk_put(sim, repo, [(f"main/list/f{i:05d}.dat", b"x" * (i % 100))
                             for i in range(args.ls_files)], threads=12)
    if "tree" in args.rows:
        bulk_put(sim, repo, [(f"main/tree/f{i:03d}.dat", tree_file(i))
                             for i in range(args.tree_files)], threads=12)
    if "write" in args.rows:
        stream = BigStream(777, args.write_mib * MiB)
        with open(pathlib.Path(workdir) / "write-src.bin", "wb") as f:
            for piece in stream.pieces():
                f.write(piece)
    log(f"data in place in {time.perf_counter() - t0:.0f} s")


# ---------------------------------------------------------------- table
def table(results, peers, args):
    lats = list(results)
    print()
    print(f"lakefuse and its peers: {os.cpu_count()} CPUs, local gateway on loopback, "
          f"fresh mount per measure; read: median of {args.runs}, alternating with curl")
    print()
    print("| measure | latency | " + " | ".join(peers) + " |")
    print("|---|---|" + "---|" * len(peers))
    for lat in lats:
        r = results[lat]
        if "read" in r:
            ceil = r["read"].get("ceiling")
            print(f"| cold sequential read of {args.read_mib} MiB, ratio to curl "
                  f"({r['read']['curl']['mbps']:.0f} MB/s" +
                  (f"; FUSE ceiling {ceil['mbps']:.0f}, {ceil['ratio']:.2f}" if ceil else "") +
                  f") | {lat} ms | " +
                  " | ".join(f"{r['read'][p]['ratio']:.2f} ({r['read'][p]['mbps']:.0f} MB/s)"
                             for p in peers) + " |")
        if "ls" in r:
            print(f"| `ls -l` of {args.ls_files} files: s (LIST / HEAD) | {lat} ms | " +
                  " | ".join(f"{r['ls'][p]['s']:.2f} ({r['ls'][p]['list']} / "
                             f"{r['ls'][p]['head']})" for p in peers) + " |")
        if "tree" in r:
            for tool in list(TREE_TOOLS) + ["random"]:
                what = (f"`{tool}` of {args.tree_files} files of 20 KB" if tool != "random" else
                        f"`cat` of {args.tree_files // 4} of them in no order")
                print(f"| {what}: s (GETs / HEADs) | {lat} ms | " + " | ".join(
                    f"{r['tree'][p][tool]['s']:.2f} ({r['tree'][p][tool]['gets']} / "
                    f"{r['tree'][p][tool]['heads']})" + ("" if r['tree'][p][tool]['ok'] else
                                                         " FAILED") for p in peers) + " |")
        if "create" in r:
            print(f"| {args.creates} file creates: s (stored after unmount) | {lat} ms | " +
                  " | ".join(f"{r['create'][p]['s']:.2f} ({r['create'][p]['stored']})"
                             for p in peers) + " |")
        if "write" in r:
            def cell(w):
                fig = f"{w['ratio']:.2f} ({w['mbps']:.0f} MB/s)"
                if w["failed"]:
                    fig += f", {w['failed']} of {args.write_runs} writes FAILED"
                if w["after"] is None:
                    return fig + ", stored at close"
                if w["after"] == float("inf"):
                    return fig + ", NOT stored within 300 s"
                return fig + f", stored {w['after']:.0f} s after the write began"
            print(f"| sequential write of {args.write_mib} MiB (close included), ratio to "
                  f"boto3 upload_file ({r['write']['boto3']['mbps']:.0f} MB/s) | {lat} ms | " +
                  " | ".join(cell(r["write"][p]) for p in peers) + " |")
    print()
    for lat in lats:
        if "read" in results[lat]:
            rr = results[lat]["read"]
            print(f"read runs at {lat} ms, MB/s: " + "; ".join(
                f"{p} " + ", ".join(f"{x:.0f}" for x in rr[p]["runs"])
                for p in ["curl", "ceiling"] + peers if p in rr))
        if "write" in results[lat]:
            rw = results[lat]["write"]
            print(f"write runs at {lat} ms, MB/s: " + "; ".join(
                f"{p} " + ", ".join(f"{x:.0f}" for x in rw[p]["runs"])
                for p in ["boto3"] + peers))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--latencies", default="0,20", help="added latency of the gateway and the object store, ms, comma list")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--read-mib", type=int, default=1024)
    ap.add_argument("--write-mib", type=int, default=1024)
    ap.add_argument("--write-runs", type=int, default=3)
    ap.add_argument("--ls-files", type=int, default=5000)
    ap.add_argument("--tree-files", type=int, default=200)
    ap.add_argument("--creates", type=int, default=300)
    ap.add_argument("--lakefuse-arg", action="append", default=[],
                    help="extra argument for every lakefuse mount (--lakefuse-arg=--x=y)")
    ap.add_argument("--sync-bodies", action="store_true",
                    help="the gateway fsyncs every body and part (lakeFS's local block "
                         "adapter does not; before issue #11 the local gateway did)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    args.rows = [r for r in args.rows.split(",") if r]
    peers = [p for p in args.peers.split(",") if p]
    for x in args.rows:
        if x not in ROWS:
            sys.exit(f"unknown row {x}; rows are {', '.join(ROWS)}")
    for p in peers:
        if p not in PEERS:
            sys.exit(f"unknown peer {p}; peers are {', '.join(PEERS)}")
    install_peers(peers)
    for p in ("s3fs", "rclone"):
        if p in peers and not shutil.which(p):
            log(f"{p} is not installed: left out")
            peers.remove(p)

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="lakefuse-peers-"))
    cleanup = Cleanup()
    if not args.keep:
        cleanup.push(lambda: shutil.rmtree(workdir, ignore_errors=True), f"remove {workdir}")

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        pipes = PipeLimit().raise_()
        cleanup.push(pipes.restore, "fs.pipe-max-size")
        # --drop-deleted-blobs: the write row deletes what it checked, and
        # its body goes with it, so every writer starts from the same disk
        # and page cache.
        sim = Sim(workdir / "data", extra_args=["--drop-deleted-blobs"] +
                  (["--sync-bodies"] if args.sync_bodies else []))
        sim.start()
        cleanup.push(sim.stop, f"gateway pid {sim.pid}")
        repo = new_repo_name("peers")
        sim.create_repo(repo)
        log(f"gateway pid {sim.pid} at {sim.endpoint}; repository {repo}; work dir {workdir}")
        fill(sim, repo, args, workdir)
        fns = {"read": row_read, "ls": row_ls, "tree": row_tree, "create": row_create,
               "write": row_write}
        results = {}
        for lat in (int(x) for x in args.latencies.split(",")):
            # The object store as far away as the lakeFS server: lakefuse's
            # presigned reads and writes go there, not through the gateway.
            sim.set_faults(0.0, lat, storage={"latency_ms": lat})
            log(f"-- gateway and storage latency {lat} ms")
            results[lat] = {}
            for row in args.rows:
                results[lat][row] = fns[row](peers, sim, repo, workdir, cleanup, args, lat)
        sim.set_faults(0.0, 0)
        table(results, peers, args)
        return 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        cleanup.run()


if __name__ == "__main__":
    sys.exit(main())
