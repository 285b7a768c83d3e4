"""The package on this machine, as an administrator uses it: `apt-get
install ./lakefuse_*.deb`, an fstab line that mount(8) serves with the
installed /usr/bin/lakefuse, `lakefuse stats` and the metrics file, the
unit checked by systemd-analyze (man page included), then `apt-get remove`.

It changes the machine, so it needs root and is skipped when a lakefuse
package, or any file the package installs, is here before it (it would
replace, then remove them). Whether it passes or fails, the mount is gone
and the package purged at its end. Runtime libraries apt-get pulled in
stay: they are the build's own dependencies. The package is made from the
build under test (LAKEFUSE_PREBUILT), and mount(8) runs in a private mount
namespace (mount_ns.py) whose /usr/local holds no lakefuse, so the helper
finds the one in /usr/bin.

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration/test_install.py
"""
import json
import os
import shutil
import subprocess

import pytest

from lf_helpers import BINARY, build_deb, get, wait_until
from mount_ns import Namespace, fstab_options, umount, write_lakectl_file

INSTALLED = "/usr/bin/lakefuse"
MAN_PAGE = "/usr/share/man/man1/lakefuse.1.gz"
UNIT = "/lib/systemd/system/lakefuse@.service"
PACKAGE_PATHS = [INSTALLED, MAN_PAGE, UNIT, "/usr/share/doc/lakefuse"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installing a package needs root")


def dpkg_status():
    """dpkg's two-letter status of lakefuse ("ii", "rc", ...), or None when
    dpkg has no record of it."""
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "lakefuse"],
                       capture_output=True, text=True, timeout=60)
    return (r.stdout.strip() or None) if r.returncode == 0 else None


def gone():
    return dpkg_status() in (None, "un")


def apt_get(*args):
    # another apt on the machine holds the lock for a while: wait for it
    return subprocess.run(["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", *args],
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def test_install_mount_through_fstab_remove(lakefs, repo, s3, tmp_path):
    for tool in ("apt-get", "dpkg-query", "systemd-analyze", "unshare", "nsenter"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (scripts/deps.sh)")
    if not gone():
        pytest.skip(f"a lakefuse package is installed (dpkg: {dpkg_status()}); "
                    f"this test would replace and remove it")
    present = [p for p in PACKAGE_PATHS if os.path.lexists(p)]
    if present:
        pytest.skip(f"{present} exist without the package; installing would overwrite them")
    r, deb = build_deb(tmp_path / "deb")
    assert r.returncode == 0, r
    version = subprocess.run([BINARY, "--version"], capture_output=True, text=True,
                             check=True, timeout=60).stdout

    s3.put_object(Bucket=repo, Key="main/hello.txt", Body=b"read by the package\n")
    cfg = write_lakectl_file(lakefs, tmp_path / "lakectl.yaml")
    ns = None
    try:
        r = apt_get("install", "--no-install-recommends", deb)
        assert r.returncode == 0, r
        assert dpkg_status() == "ii"
        assert [p for p in PACKAGE_PATHS if not os.path.exists(p)] == []
        r = subprocess.run([INSTALLED, "--version"], capture_output=True, text=True, timeout=60)
        assert (r.returncode, r.stdout) == (0, version), r
        if shutil.which("man"):
            r = subprocess.run(["man", "-w", "lakefuse"], capture_output=True, text=True,
                               timeout=60)
            assert r.stdout.strip() == MAN_PAGE, r
        # the installed unit as systemd would load it: its ExecStart binary
        # and its Documentation= man page are there
        r = subprocess.run(["systemd-analyze", "verify", UNIT], capture_output=True,
                           text=True, timeout=120)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r

        ns = Namespace(tmp_path, binary=INSTALLED, link=False)
        mp = ns.mountpoint("mnt")
        prom = tmp_path / "metrics" / "lakefuse.prom"
        prom.parent.mkdir()
        fstab = tmp_path / "fstab"
        fstab.write_text(f"lakefs://{repo}/main {mp} fuse.lakefuse _netdev,"
                         f"{fstab_options(tmp_path, cfg, 'mnt')},"
                         f"metrics_file={prom},metrics_interval=0.2 0 0\n")
        r = ns.run("mount", "--fstab", fstab, mp)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r
        assert [m[:2] for m in ns.mounts_at(mp)] == [("fuse.lakefuse", f"lakefs://{repo}/main")]
        assert len(ns.daemons(mp)) == 1, "one daemon, and it runs /usr/bin/lakefuse"

        assert (ns.path(mp) / "hello.txt").read_bytes() == b"read by the package\n"
        (ns.path(mp) / "new.txt").write_bytes(b"written through the installed package\n")
        r = ns.run("lakefuse", "stats", "--json", mp)     # /usr/bin is on mount(8)'s PATH
        assert r.returncode == 0, r
        counters = json.loads(r.stdout)
        # Read from the gateway, or from the storage by presigned URL (the
        # default where the server offers them, as this one does).
        reads = (counters["requests"]["by_op"].get("GetObject", 0) +
                 counters.get("storage", {}).get("requests", 0))
        assert reads >= 1, counters
        assert counters["requests"]["by_op"].get("PutObject", 0) == 1, counters
        wait_until(lambda: prom.exists() and "lakefuse_requests_total{" in prom.read_text(),
                   10, what="the metrics file")
        umount(ns, mp)
        assert get(s3, repo, "main/new.txt") == b"written through the installed package\n"
        problems, ns = ns.close(), None
        assert problems == []

        r = apt_get("remove", "lakefuse")
        assert r.returncode == 0, r
        assert gone(), f"dpkg still knows lakefuse: {dpkg_status()} (a conffile left?)"
        assert [p for p in PACKAGE_PATHS if os.path.lexists(p)] == []
        if shutil.which("man"):
            r = subprocess.run(["man", "-w", "lakefuse"], capture_output=True, text=True,
                               timeout=60)
            assert r.returncode != 0, r
    finally:
        if ns is not None:
            ns.close()
        if not gone():
            apt_get("purge", "lakefuse")
