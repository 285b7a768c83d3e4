"""lakefuse through mount(8): /etc/fstab lines and `mount -t fuse.lakefuse`.

mount.fuse3 finds lakefuse on /bin/sh's default PATH, so the binary under
test must sit in one of its directories. Nothing is installed: each test
runs mount(8) in a private mount namespace (mount_ns.py) whose
/usr/local/sbin holds a `lakefuse` symlink to the binary. Everything
vanishes with the namespace. test_install.py does the same with the
installed package.

Needs root (mount(8) of a fuse.* type as another user needs a `user` fstab
line, and unshare needs CAP_SYS_ADMIN).

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration/test_fstab.py
"""
import errno
import os

import pytest

from lf_helpers import BINARY, errno_of, find_daemon_pids, get, pid_alive, wait_until
from mount_ns import Namespace, fstab_options, umount, write_lakectl_file

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount(8) tests need root")


@pytest.fixture
def ns(tmp_path):
    n = Namespace(tmp_path)
    yield n
    problems = n.close()
    if problems:
        pytest.fail("mount(8) teardown problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def lakectl_file(lakefs, tmp_path):
    return write_lakectl_file(lakefs, tmp_path / "lakectl.yaml")


def test_fstab_mount_all_read_write_umount(lakefs, repo, s3, ns, lakectl_file, tmp_path):
    s3.put_object(Bucket=repo, Key="main/a.txt", Body=b"through /etc/fstab\n")
    auto_mp, manual_mp = ns.mountpoint("auto"), ns.mountpoint("manual")
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# written by test_fstab.py\n"
        f"lakefs://{repo}/main {auto_mp} fuse.lakefuse "
        f"_netdev,nofail,{fstab_options(tmp_path, lakectl_file, 'auto')} 0 0\n"
        f"lakefs://{repo}/main {manual_mp} fuse.lakefuse "
        f"noauto,_netdev,x-systemd.automount,x-systemd.idle-timeout=60,"
        f"{fstab_options(tmp_path, lakectl_file, 'manual', 'read_only')} 0 0\n")

    r = ns.run("mount", "-a", "--fstab", fstab)
    assert r.returncode == 0, r
    assert r.stdout == "" and r.stderr == "", "mount(8) is quiet on success"
    # live the moment mount(8) returned; noauto left alone
    assert [m[:2] for m in ns.mounts_at(auto_mp)] == [("fuse.lakefuse", f"lakefs://{repo}/main")]
    assert ns.mounts_at(manual_mp) == []
    assert (ns.path(auto_mp) / "a.txt").read_bytes() == b"through /etc/fstab\n"

    # A second `mount -a` sees the line mounted (source and type match it).
    r = ns.run("mount", "-a", "--fstab", fstab)
    assert r.returncode == 0, r
    assert len(ns.mounts_at(auto_mp)) == 1

    # noauto: mounted by naming it; its own options (read_only) apply.
    r = ns.run("mount", "--fstab", fstab, manual_mp)
    assert r.returncode == 0, r
    assert (ns.path(manual_mp) / "a.txt").read_bytes() == b"through /etc/fstab\n"
    assert errno_of(lambda: (ns.path(manual_mp) / "no.txt").write_bytes(b"x")) == errno.EROFS

    (ns.path(auto_mp) / "new.txt").write_bytes(b"written through an fstab mount\n")
    umount(ns, auto_mp)
    umount(ns, manual_mp)
    assert get(s3, repo, "main/new.txt") == b"written through an fstab mount\n"
    assert f"mounted lakefs://{repo}/main at {auto_mp}" in (tmp_path / "auto.log").read_text()


def test_mount_t_with_options(lakefs, repo, s3, ns, lakectl_file, tmp_path):
    s3.put_object(Bucket=repo, Key="main/d/b.txt", Body=b"mount -t\n")
    mp = ns.mountpoint("mnt")
    r = ns.run("mount", "-t", "fuse.lakefuse", f"lakefs://{repo}/main/d", mp, "-o",
               f"endpoint={lakefs.endpoint},{fstab_options(tmp_path, lakectl_file, 'mnt')},"
               f"ro,cache_size=64,branch_ttl=0")
    assert r.returncode == 0, r
    (fstype, source, opts), = ns.mounts_at(mp)
    assert (fstype, source) == ("fuse.lakefuse", f"lakefs://{repo}/main/d")
    assert "ro" in opts.split(",") and "nosuid" in opts.split(","), opts
    assert os.listdir(ns.path(mp)) == ["b.txt"]
    assert (ns.path(mp) / "b.txt").read_bytes() == b"mount -t\n"
    assert errno_of(lambda: (ns.path(mp) / "c.txt").write_bytes(b"x")) == errno.EROFS
    umount(ns, mp)


def test_config_file_others_can_read_is_refused(lakefs, repo, ns, lakectl_file, tmp_path):
    mp = ns.mountpoint("mnt")
    lakectl_file.chmod(0o640)
    r = ns.run("mount", "-t", "fuse.lakefuse", f"lakefs://{repo}/main", mp, "-o",
               fstab_options(tmp_path, lakectl_file, "mnt"))
    assert r.returncode != 0, r
    assert f"refusing config file {lakectl_file}" in r.stderr, r
    assert "mode 0640" in r.stderr and f"chmod 600 {lakectl_file}" in r.stderr, r
    assert lakefs.secret_key not in r.stderr + r.stdout
    assert ns.mounts_at(mp) == [] and ns.daemons(mp) == []

    lakectl_file.chmod(0o600)
    os.chown(lakectl_file, 4321, 4321)
    r = ns.run("mount", "-t", "fuse.lakefuse", f"lakefs://{repo}/main", mp, "-o",
               fstab_options(tmp_path, lakectl_file, "mnt"))
    assert r.returncode != 0, r
    assert "belongs to uid 4321" in r.stderr and "mounting user (uid 0)" in r.stderr, r
    assert ns.mounts_at(mp) == []


def test_unknown_option_is_named(lakefs, repo, ns, lakectl_file, tmp_path):
    mp = ns.mountpoint("mnt")
    fstab = tmp_path / "fstab"
    fstab.write_text(f"lakefs://{repo}/main {mp} fuse.lakefuse "
                     f"{fstab_options(tmp_path, lakectl_file, 'mnt', 'cache_sise=64')} 0 0\n")
    r = ns.run("mount", "-T", fstab, mp)
    assert r.returncode != 0, r
    assert "unknown mount option 'cache_sise'" in r.stderr, r
    assert "cache_dir=DIR" in r.stderr
    assert ns.mounts_at(mp) == []


def test_failed_start_fails_mount_with_the_reason(lakefs, repo, ns, lakectl_file, tmp_path):
    """The daemon checks the repository before mounting: mount(8) gets its
    message and a non-zero status, and nothing is left mounted."""
    mp = ns.mountpoint("mnt")
    r = ns.run("mount", "-t", "fuse.lakefuse", "lakefs://no-such-repo/main", mp, "-o",
               fstab_options(tmp_path, lakectl_file, "mnt"))
    assert r.returncode != 0, r
    assert "repository 'no-such-repo' not found" in r.stderr, r
    assert ns.mounts_at(mp) == [] and ns.daemons(mp) == []


def test_drop_privileges(lakefs, repo, s3, ns, lakectl_file, tmp_path):
    """mount.fuse3's drop_privileges: it mounts, then runs lakefuse without
    any capability on the descriptor (the mount point reads /dev/fd/N)."""
    s3.put_object(Bucket=repo, Key="main/a.txt", Body=b"no capabilities needed\n")
    mp = ns.mountpoint("mnt")
    r = ns.run("mount", "-t", "fuse.lakefuse", f"lakefs://{repo}/main", mp, "-o",
               "drop_privileges,nosuid,nodev," + fstab_options(tmp_path, lakectl_file, "mnt"))
    assert r.returncode == 0, r
    assert [m[0] for m in ns.mounts_at(mp)] == ["fuse.lakefuse"]
    assert (ns.path(mp) / "a.txt").read_bytes() == b"no capabilities needed\n"
    (ns.path(mp) / "b.txt").write_bytes(b"and writes\n")
    # its argv names /dev/fd/N, not the mount point: found by the source
    daemons = [p for p in find_daemon_pids(BINARY, f"lakefs://{repo}/main") if pid_alive(p)]
    assert len(daemons) == 1, daemons
    status = open(f"/proc/{daemons[0]}/status").read()
    assert "CapEff:\t0000000000000000" in status, status
    r = ns.run("umount", mp)
    assert r.returncode == 0, r
    wait_until(lambda: not pid_alive(daemons[0]), 60, what="the daemon to exit after umount")
    assert get(s3, repo, "main/b.txt") == b"and writes\n"
