"""Durability and concurrency: checklist line 27 (restart and kill -9 keep
every acknowledged object, commit, branch and tag) and 16 concurrent
clients."""
import hashlib
import pathlib
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from sim_helpers import get_bytes, list_keys, meta, new_name, rand_bytes

MiB = 1024 * 1024


def _populate(sim):
    """Writes a little of everything; returns what must survive."""
    s3 = sim.s3()
    repo = new_name("dur")
    sim.create_repo(repo)
    objs = {f"main/f{i:02d}": rand_bytes(1000 + i * 997) for i in range(20)}
    objs["main/empty"] = b""
    objs["main/dir/"] = b""
    objs["main/ü n+i%c.txt"] = b"odd key"
    for k, v in objs.items():
        s3.put_object(Bucket=repo, Key=k, Body=v, Metadata={"n": str(len(v))},
                      ContentType="application/x-dur")
    c1 = sim.commit(repo, "main", "durable 1")
    sim.create_tag(repo, "t1", c1)
    sim.create_branch(repo, "side", source=c1)
    # multipart object
    parts = [rand_bytes(5 * MiB), rand_bytes(1234)]
    mpu = s3.create_multipart_upload(Bucket=repo, Key="main/mpu")
    done = []
    for i, p in enumerate(parts, 1):
        r = s3.upload_part(Bucket=repo, Key="main/mpu", UploadId=mpu["UploadId"],
                           PartNumber=i, Body=p)
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket=repo, Key="main/mpu", UploadId=mpu["UploadId"],
                                 MultipartUpload={"Parts": done})
    objs["main/mpu"] = b"".join(parts)
    # overwrite + delete after the commit (uncommitted, but acknowledged)
    objs["main/f00"] = b"overwritten after commit"
    s3.put_object(Bucket=repo, Key="main/f00", Body=objs["main/f00"])
    s3.delete_object(Bucket=repo, Key="main/f01")
    committed_f01 = objs.pop("main/f01")
    s3.put_object(Bucket=repo, Key="side/only-side", Body=b"side data")
    c2 = sim.commit(repo, "main", "durable 2")
    s3.put_object(Bucket=repo, Key="main/staged-only", Body=b"staged")
    objs["main/staged-only"] = b"staged"
    _, log = sim.api("GET", f"/repositories/{repo}/refs/main/commits", expect=200)
    return {"repo": repo, "objs": objs, "c1": c1, "c2": c2, "f01": committed_f01,
            "log": [c["id"] for c in log["results"]]}


def _verify(sim, st):
    s3 = sim.s3()
    repo = st["repo"]
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert repo in names
    keys, _ = list_keys(s3, repo, "main/")
    assert keys == sorted(st["objs"])
    for k, v in st["objs"].items():
        g = s3.get_object(Bucket=repo, Key=k)
        body = g["Body"].read()
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(v).hexdigest(), k
    h = s3.head_object(Bucket=repo, Key="main/f05")
    assert meta(h["Metadata"]) == {"n": str(len(st["objs"]["main/f05"]))}
    assert h["ContentType"] == "application/x-dur"
    # commits, tag, branch
    _, log = sim.api("GET", f"/repositories/{repo}/refs/main/commits", expect=200)
    assert [c["id"] for c in log["results"]] == st["log"]
    assert log["results"][0]["id"] == st["c2"]
    _, tag = sim.api("GET", f"/repositories/{repo}/tags", expect=200)
    assert [(t["id"], t["commit_id"]) for t in tag["results"]] == [("t1", st["c1"])]
    _, br = sim.api("GET", f"/repositories/{repo}/branches", expect=200)
    assert sorted(b["id"] for b in br["results"]) == ["main", "side"]
    assert get_bytes(s3, repo, f"{st['c1']}/f01") == st["f01"]
    assert get_bytes(s3, repo, "t1/f01") == st["f01"]
    assert get_bytes(s3, repo, "side/only-side") == b"side data"
    assert get_bytes(s3, repo, "side/f01") == st["f01"]
    _, diff = sim.api("GET", f"/repositories/{repo}/branches/main/diff", expect=200)
    assert [(d["type"], d["path"]) for d in diff["results"]] == [("added", "staged-only")]
    with pytest.raises(Exception):
        s3.head_object(Bucket=repo, Key="main/f01")
    # still writable
    s3.put_object(Bucket=repo, Key="main/after-restart", Body=b"ok")
    assert get_bytes(s3, repo, "main/after-restart") == b"ok"
    s3.delete_object(Bucket=repo, Key="main/after-restart")


@pytest.mark.parametrize("extra", [[], ["--sync-bodies"]], ids=["lakefs-like", "sync-bodies"])
def test_c27_restart_keeps_everything(sim_factory, extra):
    sim = sim_factory("graceful", extra_args=extra)
    st = _populate(sim)
    sim.restart(kill9=False)
    _verify(sim, st)


@pytest.mark.slow
def test_c27_kill9_keeps_every_acknowledged_write(sim_factory):
    sim = sim_factory("kill9")
    st = _populate(sim)
    old_pid = sim.pid
    sim.restart(kill9=True)
    assert sim.pid != old_pid
    _verify(sim, st)
    # a second kill -9 right after more writes
    s3 = sim.s3()
    for i in range(50):
        s3.put_object(Bucket=st["repo"], Key=f"main/burst{i:02d}", Body=b"b%d" % i)
        st["objs"][f"main/burst{i:02d}"] = b"b%d" % i
    sim.stop(signal.SIGKILL)
    sim.start()
    keys, _ = list_keys(sim.s3(), st["repo"], "main/")
    assert keys == sorted(st["objs"])
    for i in range(50):
        assert get_bytes(sim.s3(), st["repo"], f"main/burst{i:02d}") == b"b%d" % i


def test_kill9_during_multipart_leaves_no_partial_object(sim_factory):
    sim = sim_factory("kill9mpu")
    s3 = sim.s3()
    repo = new_name("mpu")
    sim.create_repo(repo)
    mpu = s3.create_multipart_upload(Bucket=repo, Key="main/partial")
    s3.upload_part(Bucket=repo, Key="main/partial", UploadId=mpu["UploadId"],
                   PartNumber=1, Body=rand_bytes(5 * MiB))
    sim.restart(kill9=True)
    s3 = sim.s3()
    assert list_keys(s3, repo, "main/")[0] == []


# ------------------------------------------------------------ concurrency
def test_concurrent_16_threads_put_get_distinct_keys(lakefs, repo):
    s3 = lakefs.s3(max_pool_connections=32)
    barrier = threading.Barrier(16)
    errors = []

    def worker(t):
        try:
            barrier.wait(timeout=30)
            for i in range(8):
                key = f"main/conc/t{t:02d}/k{i}"
                data = rand_bytes(64 * 1024 + t * 100 + i)
                s3.put_object(Bucket=repo, Key=key, Body=data)
                got = s3.get_object(Bucket=repo, Key=key)["Body"].read()
                if got != data:
                    errors.append(f"{key}: got {len(got)} bytes, wanted {len(data)}")
                head = s3.head_object(Bucket=repo, Key=key)
                if head["ContentLength"] != len(data):
                    errors.append(f"{key}: HEAD length {head['ContentLength']}")
        except Exception as e:  # noqa: BLE001 - report every failure
            errors.append(f"thread {t}: {e!r}")

    with ThreadPoolExecutor(16) as ex:
        list(ex.map(worker, range(16)))
    assert errors == []
    keys, _ = list_keys(s3, repo, "main/conc/")
    assert len(keys) == 16 * 8


def test_concurrent_writers_same_key_never_mix(lakefs, repo):
    s3 = lakefs.s3(max_pool_connections=32)
    bodies = [bytes([65 + t]) * (256 * 1024) for t in range(8)]

    def writer(t):
        for _ in range(3):
            s3.put_object(Bucket=repo, Key="main/contended", Body=bodies[t])

    def reader(_):
        seen = []
        for _ in range(10):
            try:
                seen.append(s3.get_object(Bucket=repo, Key="main/contended")["Body"].read())
            except Exception:  # noqa: BLE001 - absent before the first write
                pass
        return seen

    with ThreadPoolExecutor(16) as ex:
        futs = [ex.submit(writer, t) for t in range(8)] + [ex.submit(reader, r) for r in range(8)]
        results = [f.result() for f in futs]
    for seen in results[8:]:
        for body in seen:
            assert body in bodies
    final = get_bytes(s3, repo, "main/contended")
    assert final in bodies
    h = s3.head_object(Bucket=repo, Key="main/contended")
    assert h["ETag"] == '"%s"' % hashlib.md5(final).hexdigest()


def test_concurrent_commits_and_writes(lakefs, repo):
    """Writers on two branches while the other is committed: every
    acknowledged write ends up either in a commit or staged."""
    lakefs.create_branch(repo, "b2")
    s3 = lakefs.s3(max_pool_connections=16)

    def writes(branch):
        for i in range(40):
            s3.put_object(Bucket=repo, Key=f"{branch}/w{i:02d}", Body=b"%d" % i)

    def commits():
        ids = []
        for _ in range(5):
            status, c = lakefs.api("POST", f"/repositories/{repo}/branches/main/commits",
                                   {"message": "c", "allow_empty": True})
            assert status == 201
            ids.append(c["id"])
        return ids

    with ThreadPoolExecutor(4) as ex:
        fs = [ex.submit(writes, "main"), ex.submit(writes, "b2"), ex.submit(commits)]
        for f in fs:
            f.result()
    for b in ("main", "b2"):
        keys, _ = list_keys(s3, repo, f"{b}/")
        assert keys == [f"{b}/w{i:02d}" for i in range(40)]
    lakefs.commit(repo, "main")
    keys, _ = list_keys(s3, repo, "main@/")
    assert len(keys) == 40


def test_drop_deleted_blobs_frees_only_bodies_nothing_refers_to(sim_factory):
    """--drop-deleted-blobs (for benchmarks): deleting an uncommitted
    object removes its body at once; a committed one's body stays (its
    commit refers to it), and so does everything else, byte for byte."""
    sim = sim_factory("drop", extra_args=["--drop-deleted-blobs"])
    s3 = sim.s3()
    repo = new_name("drop")
    sim.create_repo(repo)
    blobs = pathlib.Path(sim.data_dir) / "blobs"

    def count():
        return sum(1 for _ in blobs.rglob("*") if _.is_file())

    s3.put_object(Bucket=repo, Key="main/committed", Body=b"c" * 1000)
    sim.commit(repo, "main", "one")
    s3.put_object(Bucket=repo, Key="main/kept", Body=b"k" * 1000)
    before = count()
    s3.put_object(Bucket=repo, Key="main/big", Body=rand_bytes(3 * MiB))
    assert count() == before + 1
    s3.delete_object(Bucket=repo, Key="main/big")
    assert count() == before
    s3.delete_object(Bucket=repo, Key="main/committed")
    assert count() == before
    assert get_bytes(s3, repo, "main/kept") == b"k" * 1000
    _, log = sim.api("GET", f"/repositories/{repo}/refs/main/commits", expect=200)
    c1 = log["results"][0]["id"]
    assert get_bytes(s3, repo, f"{c1}/committed") == b"c" * 1000
