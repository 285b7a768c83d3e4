"""Hardening: one staging area per live mount on a shared cache directory,
no FUSE options smuggled in through a ref, stored modes clamped, paths
that stay right after the daemon leaves the caller's directory, an
endpoint with its default port written out."""
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from lf_helpers import BINARY, find_daemon_pids, get, is_mounted, pid_alive, wait_until


def uri(repo, ref=None):
    return f"lakefs://{repo}" + (f"/{ref}" if ref else "")


def cache_of(m):
    return m.cmd[m.cmd.index("--cache-dir") + 1]


def staged_data_files(cache):
    """Staged data files (not manifests, not lock files) anywhere under
    the cache directory's staging/."""
    out = []
    for d, _, names in os.walk(os.path.join(cache, "staging")):
        out += [os.path.join(d, n) for n in names if n.startswith("f-") and not n.endswith(".m")]
    return out


def mountinfo(path):
    """(mount options, source, super options) of the mount at path."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[4] == path:
                return (fields[5].split(","), fields[sep + 2].replace("\\054", ","),
                        fields[sep + 3].split(","))
    return None


def env_for(lakefs):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "LAKECTL_"))}
    env.update(AWS_ACCESS_KEY_ID=lakefs.access_key, AWS_SECRET_ACCESS_KEY=lakefs.secret_key)
    return env


class Writer:
    """A file held open for writing by a process of its own: a descriptor
    of ours would be closed (and the file flushed) by every fork we make."""

    SCRIPT = ("import os, sys\n"
              "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
              "os.write(fd, sys.argv[2].encode())\n"
              "print('written', flush=True)\n"
              "rest = sys.stdin.readline().rstrip('\\n')\n"
              "try:\n"
              "    os.write(fd, rest.encode())\n"
              "    os.close(fd)\n"
              "    print('closed', flush=True)\n"
              "except OSError as e:\n"
              "    print('error', e.errno, flush=True)\n")

    def __init__(self, path, data):
        self.p = subprocess.Popen([sys.executable, "-c", self.SCRIPT, str(path), data],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "written"

    def finish(self, rest):
        """Appends rest and closes; returns the writer's last line."""
        out, _ = self.p.communicate(rest + "\n", timeout=60)
        return out.strip()


class BgDaemon:
    """A `lakefuse mount` run in the background from a chosen directory,
    unmounted and reaped (by PID) at the end."""

    def __init__(self, args, cwd, env, mountpoint_arg, mountpoint_abs):
        self.mnt = mountpoint_abs
        self.res = subprocess.run([str(BINARY), "mount", *args], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=120)
        self.pids = [p for p in find_daemon_pids(BINARY, mountpoint_arg) if pid_alive(p)]

    def close(self):
        for _ in range(4):
            if not is_mounted(self.mnt):
                break
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True,
                           timeout=30)
        try:
            wait_until(lambda: not any(pid_alive(p) for p in self.pids), 20,
                       what="the daemon to exit")
        except TimeoutError:
            for p in self.pids:
                if pid_alive(p):
                    os.kill(p, signal.SIGKILL)


# ------------------------------------------------- 1. one cache directory
def test_mounts_sharing_a_cache_dir_never_take_each_others_staged_files(lakefs, repo, s3,
                                                                         mount):
    """A (alive) has a.txt open with data staged; D dies with d.txt staged.
    A read-only mount on the same cache directory uploads nothing; a
    writable one uploads D's file and leaves A's alone; A then finishes."""
    # Existing objects, written over in place: nothing is uploaded before
    # a close, so what the branch holds tells who uploaded what.
    s3.put_object(Bucket=repo, Key="main/a.txt", Body=b"a: original")
    s3.put_object(Bucket=repo, Key="main/d.txt", Body=b"d: original")
    a = mount(uri(repo))
    cache = cache_of(a)
    wa = Writer(a.path / "main" / "a.txt", "a: PARTIAL")
    d = mount(uri(repo), "--cache-dir", cache)
    wd = Writer(d.path / "main" / "d.txt", "d: left by a killed daemon")
    d.expect_nonzero_exit = True
    os.kill(d.pid, signal.SIGKILL)
    wait_until(lambda: not d.alive(), 20, what="the daemon to die")
    wd.finish("")
    assert len(staged_data_files(cache)) == 2, "a new mount took a live mount's staged file"

    dead = b"d: left by a killed daemon"
    ro = mount(uri(repo), "--cache-dir", cache, "--read-only")
    # The mount says it leaves them; one that uploads shows it on the branch.
    wait_until(lambda: "files staged by earlier runs are left" in ro.log() or
               get(s3, repo, "main/d.txt") == dead, 20, what="the read-only mount's start")
    assert get(s3, repo, "main/d.txt") == b"d: original", "a read-only mount uploaded"
    assert get(s3, repo, "main/a.txt") == b"a: original", "a live mount's file was uploaded"

    w = mount(uri(repo), "--cache-dir", cache)
    wait_until(lambda: "recovery: done" in w.log() or
               get(s3, repo, "main/a.txt") != b"a: original", 60,
               what="the recovery to finish")
    assert get(s3, repo, "main/d.txt") == dead
    assert get(s3, repo, "main/a.txt") == b"a: original", "a live mount's file was uploaded"
    assert "1 staging area(s) of earlier runs adopted" in w.log()

    assert wa.finish(" and the rest") == "closed"
    assert get(s3, repo, "main/a.txt") == b"a: PARTIAL and the rest"
    assert staged_data_files(cache) == []


# ------------------------------------------------- 2. refs and modes
def test_a_ref_with_commas_adds_no_mount_options(lakefs, repo, s3, mount):
    s3.put_object(Bucket=repo, Key="main/x.txt", Body=b"tagged")
    lakefs.commit(repo, "main")
    tag = "v1,allow_other,suid"
    lakefs.create_tag(repo, tag, "main")
    m = mount(uri(repo, tag))
    assert (m.path / "x.txt").read_bytes() == b"tagged"
    opts, source, super_opts = mountinfo(m.path)
    assert "allow_other" not in super_opts, super_opts
    assert "nosuid" in opts, opts
    assert source == f"lakefs://{repo}/{tag}", source


def test_stored_setuid_bits_are_cleared_unless_asked_for(lakefs, repo, s3, mount):
    s3.put_object(Bucket=repo, Key="main/tool", Body=b"#!/bin/sh\n",
                  Metadata={"mode": str(0o104755), "uid": "0", "gid": "0"})
    s3.put_object(Bucket=repo, Key="main/dir-like", Body=b"x",
                  Metadata={"mode": str(0o103777)})
    # -o suid alone does not make stored bits count: the mount stays nosuid
    m = mount(uri(repo), "-o", "suid")
    assert os.stat(m.path / "main" / "tool").st_mode & 0o7777 == 0o755
    assert os.stat(m.path / "main" / "dir-like").st_mode & 0o7777 == 0o777
    assert "nosuid" in mountinfo(m.path)[0]
    m2 = mount(uri(repo), "--setuid-bits", "-o", "suid")
    assert os.stat(m2.path / "main" / "tool").st_mode & 0o7777 == 0o4755
    assert "nosuid" not in mountinfo(m2.path)[0]


# ------------------------------------------------- 3. relative paths
def test_relative_mountpoint_is_unmounted_on_sigterm(lakefs, repo, s3, tmp_path):
    s3.put_object(Bucket=repo, Key="main/r.txt", Body=b"relative")
    (tmp_path / "rel-mnt").mkdir()
    args = ["--endpoint", lakefs.endpoint, "--cache-dir", "cache", "--log-file", "rel.log",
            uri(repo), "rel-mnt"]
    d = BgDaemon(args, tmp_path, env_for(lakefs), "rel-mnt", tmp_path / "rel-mnt")
    try:
        assert d.res.returncode == 0, d.res.stderr
        assert (tmp_path / "rel-mnt" / "main" / "r.txt").read_bytes() == b"relative"
        assert (tmp_path / "rel.log").exists() and (tmp_path / "cache" / "staging").is_dir()
        assert len(d.pids) == 1
        os.kill(d.pids[0], signal.SIGTERM)
        wait_until(lambda: not pid_alive(d.pids[0]), 30, what="the daemon to exit")
        assert not is_mounted(tmp_path / "rel-mnt"), "SIGTERM left the mount behind"
    finally:
        d.close()


def test_relative_ca_bundle_works_after_daemonising(tmp_path, monkeypatch):
    from test_faults import _sim_class, make_ca
    ca, ca_key = make_ca(tmp_path, "hardening-ca")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the simulator helpers' own HTTPS calls
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=tmp_path)  # noqa
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "srv.key", "-out", "srv.csr")
    (tmp_path / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "srv.csr", "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "srv.pem")
    sim = _sim_class()(tmp_path / "tls-data", extra_args=["--tls-cert", str(tmp_path / "srv.pem"),
                                                         "--tls-key", str(tmp_path / "srv.key")])
    sim.start()
    d = None
    try:
        sim.create_repo("tls-rel")
        (tmp_path / "mnt").mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAKECTL_"))}
        env.update(AWS_ACCESS_KEY_ID=sim.access_key, AWS_SECRET_ACCESS_KEY=sim.secret_key)
        args = ["--endpoint", sim.endpoint, "--ca-bundle", ca.name, "--cache-dir",
                str(tmp_path / "cache"), "lakefs://tls-rel", str(tmp_path / "mnt")]
        d = BgDaemon(args, tmp_path, env, str(tmp_path / "mnt"), tmp_path / "mnt")
        assert d.res.returncode == 0, d.res.stderr
        (tmp_path / "mnt" / "main" / "w.txt").write_bytes(b"over TLS")
        assert os.listdir(tmp_path / "mnt" / "main") == ["w.txt"]
    finally:
        if d:
            d.close()
        sim.stop()


# ------------------------------------------------- 6. explicit default port
class Forwarder:
    """127.0.0.1:80 -> the simulator, byte for byte (the Host header the
    simulator checks signatures against is what the client sent)."""

    def __init__(self, port):
        self.port = port
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 80))
        self.ls.listen(64)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.port))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.stopped = True
        self.ls.close()


def test_endpoint_with_explicit_default_port_authenticates(lakefs, repo, s3, mount):
    try:
        fwd = Forwarder(lakefs.port)
    except OSError as e:
        pytest.skip(f"cannot listen on 127.0.0.1:80 ({e})")
    try:
        s3.put_object(Bucket=repo, Key="main/p.txt", Body=b"port eighty" * 1000)
        m = mount(uri(repo), "--no-splice", endpoint="http://127.0.0.1:80")
        assert (m.path / "main" / "p.txt").read_bytes() == b"port eighty" * 1000
        (m.path / "main" / "q.txt").write_bytes(b"written")
        assert get(s3, repo, "main/q.txt") == b"written"
        m2 = mount(uri(repo), endpoint="http://127.0.0.1:80/")
        assert (m2.path / "main" / "p.txt").read_bytes() == b"port eighty" * 1000
    finally:
        fwd.close()


# ------------------------------------------------- smaller holes
def test_a_branch_named_like_a_commit_id_is_a_branch(lakefs, repo, s3, mount):
    name = "ab" * 32
    lakefs.create_branch(repo, name)
    m = mount(uri(repo))
    (m.path / name / "w.txt").write_bytes(b"on a branch")
    assert get(s3, repo, f"{name}/w.txt") == b"on a branch"
    m2 = mount(uri(repo, name))
    (m2.path / "w2.txt").write_bytes(b"mounted at the branch")
    assert get(s3, repo, f"{name}/w2.txt") == b"mounted at the branch"


def test_daemon_environment_holds_no_credentials(lakefs, repo, mount_bg):
    """What /proc/PID/environ shows (and children inherit) has the secret
    wiped; no core file could hold it either."""
    res = mount_bg(uri(repo), check=True)
    environ = open(f"/proc/{res.mount.pid}/environ", "rb").read()
    assert lakefs.secret_key.encode() not in environ
    limits = open(f"/proc/{res.mount.pid}/limits").read().splitlines()
    core = [line for line in limits if line.startswith("Max core file size")][0].split()
    assert core[4:6] == ["0", "0"], core
    assert (res.path / "main").is_dir()  # and the mount still works
