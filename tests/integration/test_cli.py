"""The command line speaks plainly: each message a new user meets, checked
by its exit status and its key words.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_cli.py
"""
import os
import subprocess

import pytest

from lf_helpers import BINARY, closed_port, is_mounted, pid_alive, wait_until


def lakefuse(*args, cwd=None):
    return subprocess.run([str(BINARY), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


# ------------------------------------------------------------ verbs
@pytest.mark.parametrize("word,suggested", [
    ("umount", "lakefuse unmount"),
    ("help", "lakefuse --help"),
    ("mnt", "lakefuse mount"),
    ("unmout", "lakefuse unmount"),
    ("version", "lakefuse --version"),
])
def test_unknown_command_suggests_the_closest(word, suggested):
    r = lakefuse(word, "/somewhere")
    assert r.returncode == 2, r
    assert f"unknown command '{word}'" in r.stderr and suggested in r.stderr, r
    assert len(r.stderr.splitlines()) <= 2, "a line or two, not the whole usage"
    assert r.stdout == ""


def test_unknown_command_with_nothing_close():
    r = lakefuse("frobnicate")
    assert r.returncode == 2
    assert "unknown command 'frobnicate'" in r.stderr and "mount, unmount" in r.stderr
    assert "did you mean" not in r.stderr
    assert len(r.stderr.splitlines()) <= 2


# ------------------------------------------------------------ mount
def test_missing_mountpoint_says_so(lakefs, repo):
    r = lakefuse("mount", "--endpoint", lakefs.endpoint, f"lakefs://{repo}/main")
    assert r.returncode != 0
    assert f"missing MOUNTPOINT after lakefs://{repo}/main" in r.stderr, r
    assert "No such file" not in r.stderr


def test_bad_repository_name_is_named(lakefs):
    r = lakefuse("mount", "--endpoint", lakefs.endpoint, "lakefs://Demo/main/data", "/tmp")
    assert r.returncode != 0
    assert "repository name 'Demo' is not valid" in r.stderr, r


def test_https_endpoint_on_a_plain_http_port(lakefs, repo, mount_bg):
    assert lakefs.endpoint.startswith("http://")
    res = mount_bg(f"lakefs://{repo}", endpoint="https://" + lakefs.endpoint[len("http://"):])
    assert res.returncode not in (0, None), res
    assert "TLS handshake failed" in res.stderr and "plain HTTP" in res.stderr, res
    assert "http://" in res.stderr
    assert not is_mounted(res.path)


def test_refused_connection_is_not_called_tls(lakefs, repo, mount_bg):
    res = mount_bg(f"lakefs://{repo}", endpoint=f"https://127.0.0.1:{closed_port()}")
    assert res.returncode not in (0, None)
    assert "connection refused" in res.stderr and "TLS" not in res.stderr, res


def test_successful_mount_prints_one_line_and_notes_go_to_the_log(lakefs, repo, mount_bg):
    # --disk-cache-size makes the mount log a note (reads are not spliced).
    res = mount_bg(f"lakefs://{repo}/main", "--disk-cache-size", "16", check=True,
                   log_level="info")
    lines = res.stdout.splitlines()
    assert len(lines) == 1, res.stdout
    cache = res.mount.cmd[res.mount.cmd.index("--cache-dir") + 1]
    assert lines[0] == f"mounted lakefs://{repo}/main on {res.path} (read-write; cache {cache})"
    assert res.stderr == "", "notes belong in the log"
    assert "not spliced" in res.mount.log()


def test_background_mount_without_a_log_file_keeps_the_terminal_quiet(lakefs, repo, mount_bg):
    res = mount_bg(f"lakefs://{repo}", "--disk-cache-size", "16", "--read-only", check=True,
                   log_file=False, log_level="info")
    assert res.stderr == "", res
    assert res.stdout.count("\n") == 1 and "(read-only; cache " in res.stdout, res


def test_non_empty_mountpoint_warns_that_files_are_hidden(lakefs, repo, mount_bg, tmp_path):
    mp = tmp_path / "full"
    mp.mkdir()
    (mp / "mine.txt").write_text("hidden by the mount")
    res = mount_bg(f"lakefs://{repo}", mountpoint=mp, check=True)
    assert "not empty" in res.stderr and "hidden" in res.stderr and str(mp) in res.stderr, res
    assert os.listdir(mp) == ["main"]


def test_empty_mountpoint_gets_no_warning(lakefs, repo, mount_bg):
    res = mount_bg(f"lakefs://{repo}", check=True)
    assert "not empty" not in res.stderr


# ------------------------------------------------------------ unmount
def test_unmount_help_is_ours():
    for flag in ("--help", "-h"):
        r = lakefuse("unmount", flag)
        assert r.returncode == 0, r
        assert r.stdout.startswith("usage: lakefuse unmount") and "--lazy" in r.stdout
        assert "fusermount" not in r.stdout + r.stderr


def test_unmount_of_a_directory_that_is_not_mounted(tmp_path):
    r = lakefuse("unmount", tmp_path)
    assert r.returncode == 1
    assert f"{tmp_path} is not mounted" in r.stderr, r
    r = lakefuse("unmount", tmp_path / "missing")
    assert r.returncode == 1 and "No such file or directory" in r.stderr, r


def test_unmount_of_another_file_system_leaves_it_alone():
    r = lakefuse("unmount", "/proc")
    assert r.returncode == 1
    assert "is not a lakefuse mount" in r.stderr and "proc" in r.stderr, r
    assert os.path.ismount("/proc")


def test_unmount_without_a_mountpoint():
    r = lakefuse("unmount")
    assert r.returncode == 2 and "missing MOUNTPOINT" in r.stderr, r


def test_busy_unmount_names_the_holders_then_lazy_detaches(lakefs, repo, s3, mount):
    s3.put_object(Bucket=repo, Key="main/d/f.txt", Body=b"held open")
    m = mount(f"lakefs://{repo}")
    in_dir = subprocess.Popen(["sleep", "600"], cwd=m.path / "main" / "d")
    held = open(m.path / "main" / "d" / "f.txt", "rb")
    try:
        r = lakefuse("unmount", m.path)
        assert r.returncode == 1, r
        assert f"{m.path} is busy" in r.stderr, r
        assert f"pid {in_dir.pid} (sleep): working directory main/d" in r.stderr, r
        assert f"pid {os.getpid()} (" in r.stderr and "open file main/d/f.txt" in r.stderr, r
        assert f"lakefuse unmount -z {m.path}" in r.stderr and "lazy" in r.stderr
        assert is_mounted(m.path)
        assert held.read() == b"held open", "a refused unmount changes nothing"

        r = lakefuse("unmount", "-z", m.path)
        assert r.returncode == 0, r
        assert not is_mounted(m.path)
    finally:
        held.close()
        in_dir.kill()
        in_dir.wait(timeout=30)
    # The detached daemon ends once its last user is gone.
    wait_until(lambda: not m.alive(), 30, what="the daemon to exit after the lazy unmount")


def test_unmount_by_a_relative_name_with_a_trailing_slash(lakefs, repo, mount):
    m = mount(f"lakefs://{repo}")
    r = lakefuse("unmount", m.path.name + "/", cwd=m.path.parent)
    assert r.returncode == 0, r
    assert not is_mounted(m.path)
    wait_until(lambda: not m.alive(), 30, what="the daemon to exit")
    assert pid_alive(m.pid) is False
