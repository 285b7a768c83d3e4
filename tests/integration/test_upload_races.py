"""Name changes racing a file's first upload, driven rather than hoped
for: the gateway holds the upload (a "stall" rule, tests/lakefs_sim/
knobs.py) until the test has made the rename or unlink happen, so each
interleaving runs on every schedule. After each, the gateway and the
mount must hold the same names with the same bytes: a name the mount
removed is gone from the gateway too.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_upload_races.py
"""
import os
import threading

import pytest

from lf_helpers import file_tree, gateway_files, wait_until

STALL_MS = 1500


def uri(repo):
    return f"lakefs://{repo}"


def stalls(lakefs):
    return lakefs.stats()["faults_by_kind"].get("stall", 0)


class Closer(threading.Thread):
    """Writes a new file and closes it: the close uploads (and is held)."""

    def __init__(self, path, data):
        super().__init__()
        self.path, self.data, self.error = path, data, None

    def run(self):
        try:
            with open(self.path, "wb") as f:
                f.write(self.data)
        except OSError as e:
            self.error = e


def held_close(lakefs, path, data, key):
    """Starts a close whose PutObject of key the gateway holds; returns
    once the gateway holds it."""
    lakefs.reset_stats()
    lakefs.set_faults(rules=[{"operation": "PutObject", "kind": "stall",
                              "path_contains": key, "stall_ms": STALL_MS}])
    t = Closer(path, data)
    t.start()
    wait_until(lambda: stalls(lakefs) == 1, 30, what=f"the upload of {key} to be held")
    return t


def test_rename_of_a_new_file_while_its_first_upload_is_under_way(lakefs, repo, s3, mount):
    """The old name's upload lands after the rename began: the rename
    deletes it there (it is this mount's object, stored a moment ago)."""
    m = mount(uri(repo))
    b = m.path / "main"
    t = held_close(lakefs, b / "src", b"first upload", "main/src")
    os.rename(b / "src", b / "dst")
    t.join()
    assert t.error is None
    assert file_tree(b) == {"dst": b"first upload"}
    assert gateway_files(s3, repo) == {"dst": b"first upload"}


@pytest.mark.parametrize("target_exists", [False, True], ids=["to-new", "onto-empty-dir"])
def test_directory_rename_while_a_new_file_inside_uploads(lakefs, repo, s3, mount,
                                                         target_exists):
    """The directory's listing for the copy is taken while the upload is
    held, so the copy cannot carry it: the upload lands under the old
    directory, and the rename must not leave it there."""
    m = mount(uri(repo))
    b = m.path / "main"
    os.mkdir(b / "d1")
    if target_exists:
        os.mkdir(b / "d2")
    t = held_close(lakefs, b / "d1" / "x", b"inside", "main/d1/x")
    os.rename(b / "d1", b / "d2")
    t.join()
    assert t.error is None
    assert file_tree(b) == {"d2/x": b"inside"}
    assert gateway_files(s3, repo) == {"d2/x": b"inside"}
    # And the old directory is gone for good: a fresh create there is a
    # new file, not a conflict with a leftover.
    os.mkdir(b / "d1")
    (b / "d1" / "x").write_bytes(b"again")
    assert gateway_files(s3, repo) == {"d1/x": b"again", "d2/x": b"inside"}


def test_unlink_of_a_new_file_while_its_first_upload_is_under_way(lakefs, repo, s3, mount):
    """The unlink waits for the upload and then deletes what it stored."""
    m = mount(uri(repo))
    b = m.path / "main"
    t = held_close(lakefs, b / "gone", b"short-lived", "main/gone")
    os.unlink(b / "gone")
    t.join()
    assert file_tree(b) == {}
    assert gateway_files(s3, repo) == {}
