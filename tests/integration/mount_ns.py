"""mount(8) in a private mount namespace, for the fstab and package tests.

util-linux runs /sbin/mount.fuse (fuse3's mount.fuse3) with a cleared
environment, and mount.fuse3 runs `lakefuse SOURCE MOUNTPOINT -o OPTS`
through /bin/sh, whose PATH is then its built-in default
(/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin). In the
namespace /usr/local/sbin and /usr/local/bin are bind mounts of temporary
directories: the first holds a `lakefuse` symlink to the binary under test
(test_fstab.py), or both are empty so that the helper finds the installed
/usr/bin/lakefuse and nothing an earlier `scripts/install.sh` left in
/usr/local (test_install.py). The tests reach the namespace's files through
/proc/PID/root of the process holding it; its mounts vanish with it.
"""
import os
import pathlib
import re
import signal
import subprocess

import pytest

from lf_helpers import BINARY, find_daemon_pids, pid_alive, wait_until

MOUNT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}   # lakefuse is not on it

SANITIZER_RE = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
                          r"WARNING: ThreadSanitizer|SUMMARY: \w+Sanitizer")


def _unescape(s):
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
            .replace("\\134", "\\")


class Namespace:
    """A private mount namespace where the helper's `lakefuse` is binary:
    linked from /usr/local/sbin, or, with link=False, the one in /usr/bin
    (nothing in /usr/local then)."""

    def __init__(self, tmp_path, binary=BINARY, link=True):
        self.tmp = tmp_path
        self.binary = binary
        sbin, local_bin = tmp_path / "helper-sbin", tmp_path / "helper-bin"
        sbin.mkdir()
        local_bin.mkdir()
        if link:
            (sbin / "lakefuse").symlink_to(os.path.realpath(binary))
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
             f"mount --bind '{sbin}' /usr/local/sbin && "
             f"mount --bind '{local_bin}' /usr/local/bin && echo ready && exec sleep 3600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline()
        if line.strip() != "ready":
            err = self.holder.stderr.read() if self.holder.poll() is not None else ""
            self.holder.kill()
            self.holder.wait(timeout=10)
            pytest.skip(f"cannot make a private mount namespace: {err.strip()}")
        self.mountpoints = []
        # mount(8) keeps these variables: a sanitizer build's daemon, whose
        # stderr is /dev/null once in the background, reports into files.
        self.san_dir = tmp_path / "sanitizer"
        self.san_dir.mkdir()
        self.env = dict(MOUNT_ENV, ASAN_OPTIONS=f"log_path={self.san_dir}/asan",
                        UBSAN_OPTIONS=f"print_stacktrace=1:log_path={self.san_dir}/ubsan",
                        TSAN_OPTIONS=f"log_path={self.san_dir}/tsan")

    def run(self, *cmd, timeout=120):
        """cmd inside the namespace, with no lakefuse on its PATH."""
        return subprocess.run(["nsenter", "-t", str(self.holder.pid), "-m", "--", *map(str, cmd)],
                              capture_output=True, text=True, timeout=timeout, env=self.env)

    def path(self, p):
        """The namespace's view of an absolute path p."""
        return pathlib.Path(f"/proc/{self.holder.pid}/root{p}")

    def mounts_at(self, p):
        """(fstype, source, options) of every mount exactly at p, in the namespace."""
        found = []
        with open(f"/proc/{self.holder.pid}/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                if _unescape(fields[4]) == str(p):
                    found.append((fields[sep + 1], _unescape(fields[sep + 2]), fields[5]))
        return found

    def mountpoint(self, name):
        mp = self.tmp / name
        mp.mkdir()
        self.mountpoints.append(mp)
        return mp

    def daemons(self, mp):
        """Live processes of this namespace's binary serving mp."""
        return [p for p in find_daemon_pids(self.binary, mp) if pid_alive(p)]

    def close(self):
        """Unmounts what is left, waits for the daemons, ends the namespace;
        returns the problems found on the way."""
        problems = []
        for mp in self.mountpoints:
            pids = self.daemons(mp)
            while self.mounts_at(mp):
                problems.append(f"{mp} was still mounted")
                self.run("umount", "-l", mp)
            for pid in pids:
                try:
                    wait_until(lambda: not pid_alive(pid), 20, what=f"daemon {pid} to exit")
                except TimeoutError:
                    problems.append(f"daemon {pid} of {mp} did not exit; killed")
                    os.kill(pid, signal.SIGKILL)
        self.holder.kill()
        self.holder.wait(timeout=10)
        for p in sorted(self.san_dir.iterdir()):
            text = p.read_text(errors="replace")
            if SANITIZER_RE.search(text):
                problems.append(f"sanitizer report in {p.name}: {text[:3000]}")
        return problems


def write_lakectl_file(lakefs, path):
    """A lakectl-style credentials file, mode 0600: all an fstab line has."""
    path.write_text("credentials:\n"
                    f"  access_key_id: {lakefs.access_key}\n"
                    f"  secret_access_key: {lakefs.secret_key}\n"
                    "server:\n"
                    f"  endpoint_url: {lakefs.endpoint}/api/v1\n")
    path.chmod(0o600)
    return path


def fstab_options(tmp_path, cfg, name, extra=""):
    """The options an fstab line needs here: credentials and endpoint from
    the file, a cache and a log of this test's own."""
    opts = (f"config={cfg},cache_dir={tmp_path / ('cache-' + name)},"
            f"log_file={tmp_path / (name + '.log')},log_level=debug")
    return opts + ("," + extra if extra else "")


def umount(ns, mp):
    """umount(8), then waits for the daemon, whose exit comes after the
    staged uploads."""
    pids = ns.daemons(mp)
    assert pids, f"no lakefuse daemon for {mp}"
    r = ns.run("umount", mp)
    assert r.returncode == 0, r
    assert ns.mounts_at(mp) == []
    for pid in pids:
        wait_until(lambda: not pid_alive(pid), 60, what="the daemon to exit after umount")
