"""The direct-to-storage calls of lakeFS's REST API and the storage endpoint
their presigned URLs point at (tests/lakefs_sim/storage.py): the storage
configuration's capability fields, stat with presign=true, staging backing
and link, presigned multipart uploads, signed and expiring URLs, the
storage's own counters, faults and latency, and a server whose storage
cannot presign (--no-presign)."""
import hashlib
import time
import urllib.parse

import pytest

import rawhttp
from sim_helpers import md5_hex, rand_bytes

MiB = 1 << 20


def put_gateway(lakefs, repo, key, data, headers=None):
    r = rawhttp.request(lakefs, "PUT", f"/{repo}/{key}", body=data, headers=headers)
    assert r.status == 200, r.body
    return r


def stat(lakefs, repo, ref, path, presign=True, expect=200):
    q = urllib.parse.urlencode({"path": path, "presign": "true" if presign else "false"})
    return lakefs.api("GET", f"/repositories/{repo}/refs/{ref}/objects/stat?{q}",
                      expect=expect)[1]


def backing(lakefs, repo, branch, path, presign=True, expect=200):
    q = urllib.parse.urlencode({"path": path, "presign": "true" if presign else "false"})
    return lakefs.api("GET", f"/repositories/{repo}/branches/{branch}/staging/backing?{q}",
                      expect=expect)[1]


def link(lakefs, repo, branch, path, body, headers=None):
    q = urllib.parse.urlencode({"path": path})
    url = f"/api/v1/repositories/{repo}/branches/{branch}/staging/backing?{q}"
    return lakefs._http("PUT", url, body, headers=headers)


def upload(lakefs, repo, branch, path, data, meta=None):
    """backing + presigned PUT + link, as a client does; returns the stats."""
    loc = backing(lakefs, repo, branch, path)
    r = rawhttp.send_url("PUT", loc["presigned_url"], body=data)
    assert r.status == 200, r.body
    etag = r.header("etag").strip('"')
    st, doc = link(lakefs, repo, branch, path,
                   {"staging": {"physical_address": loc["physical_address"]},
                    "checksum": etag, "size_bytes": len(data), "user_metadata": meta or {}})
    assert st == 200, doc
    return doc


def pmpu(lakefs, repo, branch, path, method, upload_id=None, body=None, parts=None, part=None):
    q = {"path": path}
    if parts is not None:
        q["parts"] = parts
    url = f"/api/v1/repositories/{repo}/branches/{branch}/staging/pmpu"
    if upload_id:
        url += f"/{upload_id}"
    if part:
        url += f"/parts/{part}"
    return lakefs._http(method, url + "?" + urllib.parse.urlencode(q), body)


def test_storage_config_says_presign_is_supported(lakefs):
    _, cfg = lakefs.api("GET", "/config", expect=200)
    sc = cfg["storage_config"]
    assert sc["pre_sign_support"] is True and sc["pre_sign_multipart_upload"] is True
    for field in ("blockstore_type", "blockstore_namespace_example",
                  "blockstore_namespace_ValidityRegex", "pre_sign_support_ui",
                  "import_support", "import_validity_regex"):
        assert field in sc, field          # swagger's required fields
    _, old = lakefs.api("GET", "/config/storage", expect=200)
    assert old == sc


def test_stat_presign_gives_a_storage_url_for_ranged_gets(lakefs, repo):
    data = rand_bytes(3 * MiB + 17)
    put_gateway(lakefs, repo, "main/d/f.bin", data)
    lakefs.reset_stats()
    before = time.time()
    st = stat(lakefs, repo, "main", "d/f.bin")
    url = st["physical_address"]
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme == "http" and parts.port != lakefs.port
    assert f"{parts.scheme}://{parts.netloc}" == lakefs.storage_info()["endpoint"]
    assert "X-Amz-Signature=" in parts.query
    assert st["checksum"] == md5_hex(data) and st["size_bytes"] == len(data)
    assert before + 800 <= st["physical_address_expiry"] <= time.time() + 901
    r = rawhttp.send_url("GET", url, headers={"Range": "bytes=1000-2000999"})
    assert r.status == 206 and r.body == data[1000:2001000]
    assert r.header("content-range") == f"bytes 1000-2000999/{len(data)}"
    r = rawhttp.send_url("GET", url)
    assert r.status == 200 and r.body == data
    r = rawhttp.send_url("GET", url, headers={"Range": f"bytes={len(data)}-"})
    assert r.status == 416 and r.error_code == "InvalidRange"
    s = lakefs.stats()
    assert s["storage"]["bytes_out"] >= len(data) + 2_000_000
    assert s["storage"]["by_operation"] == {"StorageGetObject": 3}
    assert s["bytes_out"] < 10_000 and s["requests"] == {}   # the gateway carried no data
    # without presign, the address is the store's own
    assert stat(lakefs, repo, "main", "d/f.bin", presign=False)["physical_address"].startswith(
        "local://")


def test_presigned_urls_are_signed_for_one_method_and_path(lakefs, repo):
    put_gateway(lakefs, repo, "main/a", b"a" * 100)
    put_gateway(lakefs, repo, "main/b", b"b" * 100)
    url_a = stat(lakefs, repo, "main", "a")["physical_address"]
    url_b = stat(lakefs, repo, "main", "b")["physical_address"]
    assert rawhttp.send_url("GET", url_a).body == b"a" * 100
    tampered = url_a.replace("X-Amz-Expires=900", "X-Amz-Expires=901")
    r = rawhttp.send_url("GET", tampered)
    assert r.status == 403 and r.error_code == "SignatureDoesNotMatch"
    # a's signature on b's path
    sig_a = urllib.parse.parse_qs(urllib.parse.urlsplit(url_a).query)["X-Amz-Signature"][0]
    sig_b = urllib.parse.parse_qs(urllib.parse.urlsplit(url_b).query)["X-Amz-Signature"][0]
    r = rawhttp.send_url("GET", url_b.replace(sig_b, sig_a))
    assert r.status == 403 and r.error_code == "SignatureDoesNotMatch"
    r = rawhttp.send_url("PUT", url_a, body=b"overwrite")   # a GET URL cannot write
    assert r.status == 403
    assert rawhttp.send_url("GET", url_a).body == b"a" * 100
    r = rawhttp.send_url("GET", url_a.split("?")[0])
    assert r.status == 403 and r.error_code == "AccessDenied"


def test_presigned_urls_expire(other_sim):
    sim = other_sim("--presign-expiry", "2")
    repo = f"x-{time.time_ns() % 10**9}"
    sim.create_repo(repo)
    put_gateway(sim, repo, "main/f", b"f" * 1000)
    st = stat(sim, repo, "main", "f")
    assert st["physical_address_expiry"] - time.time() <= 2.01
    assert rawhttp.send_url("GET", st["physical_address"]).status == 200
    time.sleep(max(0.0, st["physical_address_expiry"] - time.time()) + 0.05)
    r = rawhttp.send_url("GET", st["physical_address"])
    assert r.status == 403 and r.error_code == "AccessDenied"
    assert "expired" in r.error_message
    fresh = stat(sim, repo, "main", "f")["physical_address"]     # a new one works
    assert rawhttp.send_url("GET", fresh).body == b"f" * 1000


def test_staging_backing_put_and_link_make_an_object(lakefs, repo, s3):
    data = rand_bytes(700_000)
    lakefs.reset_stats()
    loc = backing(lakefs, repo, "main", "dir/new.bin")
    assert loc["physical_address"].startswith("local://")
    assert urllib.parse.urlsplit(loc["presigned_url"]).port != lakefs.port
    assert loc["presigned_url_expiry"] > time.time()
    # the storage checks a Content-MD5 it is given
    r = rawhttp.send_url("PUT", loc["presigned_url"], body=data,
                         headers={"Content-MD5": rawhttp.md5_b64(b"other")})
    assert r.status == 400 and r.error_code == "BadDigest"
    r = rawhttp.send_url("PUT", loc["presigned_url"], body=data,
                         headers={"Content-MD5": rawhttp.md5_b64(data)})
    assert r.status == 200 and r.header("etag") == f'"{md5_hex(data)}"'
    # not visible before the link
    assert rawhttp.request(lakefs, "HEAD", f"/{repo}/main/dir/new.bin").status == 404
    meta = {"X-Amz-Meta-mode": "33188", "X-Amz-Meta-mtime": "1700000000"}
    st, doc = link(lakefs, repo, "main", "dir/new.bin",
                   {"staging": {"physical_address": loc["physical_address"]},
                    "checksum": f'"{md5_hex(data)}"', "size_bytes": len(data),
                    "user_metadata": meta, "content_type": "application/x-test"})
    assert st == 200, doc
    assert doc["checksum"] == md5_hex(data) and doc["size_bytes"] == len(data)
    assert doc["metadata"] == meta and doc["path"] == "dir/new.bin"
    s = lakefs.stats()
    assert s["storage"]["bytes_in"] >= 2 * len(data)
    assert s["bytes_in"] < 10_000            # the server saw metadata only
    # the gateway serves it with the linked attributes
    got = s3.get_object(Bucket=repo, Key="main/dir/new.bin")
    assert got["Body"].read() == data
    assert got["ETag"] == f'"{md5_hex(data)}"'
    assert got["ContentType"] == "application/x-test"
    assert {k.lower(): v for k, v in got["Metadata"].items()} == {"mode": "33188",
                                                                  "mtime": "1700000000"}


def test_link_checks_the_address_branch_condition_and_fields(lakefs, repo):
    data = b"x" * 1000
    doc = upload(lakefs, repo, "main", "p", data)
    assert doc["checksum"] == md5_hex(data)
    loc = backing(lakefs, repo, "main", "q")
    assert rawhttp.send_url("PUT", loc["presigned_url"], body=data).status == 200
    body = {"staging": {"physical_address": loc["physical_address"]},
            "checksum": md5_hex(data), "size_bytes": len(data)}
    # another path, or a forged signature: not an address this server gave out
    assert link(lakefs, repo, "main", "elsewhere", body)[0] == 400
    forged = dict(body, staging={"physical_address": loc["physical_address"][:-4] + "0000"})
    assert link(lakefs, repo, "main", "q", forged)[0] == 400
    assert link(lakefs, repo, "main", "q", dict(body, checksum=""))[0] == 400
    lakefs.create_branch(repo, "other")
    assert link(lakefs, repo, "other", "q", body)[0] == 400   # signed for main
    assert link(lakefs, repo, "nosuch", "q", body)[0] == 404
    # If-None-Match: * on an existing path
    st, _ = link(lakefs, repo, "main", "p",
                 dict(body, staging={"physical_address": backing(
                     lakefs, repo, "main", "p", presign=False)["physical_address"]}),
                 headers={"If-None-Match": "*"})
    assert st == 412
    assert link(lakefs, repo, "main", "q", body, headers={"If-None-Match": "*"})[0] == 200
    r = rawhttp.request(lakefs, "GET", f"/{repo}/main/q")
    assert r.status == 200 and r.body == data


def test_link_address_survives_a_restart_but_urls_do_not(other_sim):
    sim = other_sim("--presign-expiry", "600")
    repo = f"r-{time.time_ns() % 10**9}"
    sim.create_repo(repo)
    data = b"restart" * 100
    loc = backing(sim, repo, "main", "f")
    sim.restart()
    r = rawhttp.send_url("PUT", loc["presigned_url"], body=data)
    assert r.status == 403 and r.error_code == "SignatureDoesNotMatch"
    # what the old URL would have written, written by a fresh one
    fresh = backing(sim, repo, "main", "f")
    assert rawhttp.send_url("PUT", fresh["presigned_url"], body=data).status == 200
    body = {"checksum": md5_hex(data), "size_bytes": len(data)}
    # an address handed out before the restart still links (lakeFS's
    # signing key is configuration, not state), for its own path only
    assert link(sim, repo, "main", "g", dict(body, staging={
        "physical_address": loc["physical_address"]}))[0] == 400
    assert link(sim, repo, "main", "f", dict(body, staging={
        "physical_address": loc["physical_address"]}))[0] == 200
    assert link(sim, repo, "main", "f", dict(body, staging={
        "physical_address": fresh["physical_address"]}))[0] == 200
    assert rawhttp.request(sim, "GET", f"/{repo}/main/f").body == data


def test_presigned_multipart_upload(lakefs, repo, s3):
    p1, p2, tail = rand_bytes(5 * MiB), rand_bytes(6 * MiB), rand_bytes(1234)
    st, up = pmpu(lakefs, repo, "main", "big.bin", "POST", parts=2)
    assert st == 201, up
    assert len(up["presigned_urls"]) == 2
    etags = []
    for n, (data, url) in enumerate(zip((p1, p2), up["presigned_urls"]), 1):
        assert f"partNumber={n}" in url
        r = rawhttp.send_url("PUT", url, body=data)
        assert r.status == 200 and r.header("etag") == f'"{md5_hex(data)}"'
        etags.append(r.header("etag"))
    # a third part's URL, asked for on its own (uploadPart)
    st, part = pmpu(lakefs, repo, "main", "big.bin", "PUT", up["upload_id"],
                    {"physical_address": up["physical_address"]}, part=3)
    assert st == 200, part
    r = rawhttp.send_url("PUT", part["presigned_url"], body=tail)
    assert r.status == 200
    etags.append(r.header("etag"))
    # a part URL names its upload and number: it cannot write another part
    r = rawhttp.send_url("PUT", part["presigned_url"].replace("partNumber=3", "partNumber=4"),
                         body=tail)
    assert r.status == 403
    lakefs.reset_stats()
    st, doc = pmpu(lakefs, repo, "main", "big.bin", "PUT", up["upload_id"],
                   {"physical_address": up["physical_address"],
                    "parts": [{"part_number": i + 1, "etag": e} for i, e in enumerate(etags)],
                    "user_metadata": {"X-Amz-Meta-uid": "1000"}})
    assert st == 200, doc
    want = b"".join((p1, p2, tail))
    digest = hashlib.md5(b"".join(hashlib.md5(x).digest() for x in (p1, p2, tail))).hexdigest()
    assert doc["checksum"] == f"{digest}-3" and doc["size_bytes"] == len(want)
    assert lakefs.stats()["bytes_in"] < 10_000
    got = s3.get_object(Bucket=repo, Key="main/big.bin")
    assert got["Body"].read() == want
    assert got["ETag"] == f'"{digest}-3"'
    assert {k.lower(): v for k, v in got["Metadata"].items()} == {"uid": "1000"}
    # completed: the upload is gone
    st, _ = pmpu(lakefs, repo, "main", "big.bin", "PUT", up["upload_id"],
                 {"physical_address": up["physical_address"],
                  "parts": [{"part_number": 1, "etag": etags[0]}]})
    assert st == 404


def test_presigned_multipart_abort_and_part_rules(lakefs, repo):
    st, up = pmpu(lakefs, repo, "main", "m", "POST")
    assert st == 201 and "presigned_urls" not in up
    addr = {"physical_address": up["physical_address"]}
    urls = [pmpu(lakefs, repo, "main", "m", "PUT", up["upload_id"], addr, part=n)[1][
        "presigned_url"] for n in (1, 2)]
    small = [rand_bytes(1000), rand_bytes(1000)]
    etags = [rawhttp.send_url("PUT", u, body=d).header("etag") for u, d in zip(urls, small)]
    st, doc = pmpu(lakefs, repo, "main", "m", "PUT", up["upload_id"],
                   dict(addr, parts=[{"part_number": 1, "etag": etags[0]},
                                     {"part_number": 2, "etag": etags[1]}]))
    assert st == 500 and "EntityTooSmall" in doc["message"]      # S3's part-size rule
    st, _ = pmpu(lakefs, repo, "main", "m", "PUT", up["upload_id"],
                 dict(addr, parts=[{"part_number": 1, "etag": '"' + "0" * 32 + '"'}]))
    assert st == 500
    assert pmpu(lakefs, repo, "main", "other", "DELETE", up["upload_id"], addr)[0] == 400
    assert pmpu(lakefs, repo, "main", "m", "DELETE", up["upload_id"], addr)[0] == 204
    r = rawhttp.send_url("PUT", urls[0], body=small[0])
    assert r.status == 404 and r.error_code == "NoSuchUpload"
    assert rawhttp.request(lakefs, "HEAD", f"/{repo}/main/m").status == 404
    assert pmpu(lakefs, repo, "nosuch", "m", "POST")[0] == 404


def test_no_presign_server(other_sim):
    sim = other_sim("--no-presign")
    repo = f"n-{time.time_ns() % 10**9}"
    sim.create_repo(repo)
    sc = sim.api("GET", "/config", expect=200)[1]["storage_config"]
    assert sc["pre_sign_support"] is False and sc["pre_sign_multipart_upload"] is False
    assert sim.storage_info()["endpoint"] is None
    put_gateway(sim, repo, "main/f", b"data")
    stat(sim, repo, "main", "f", presign=True, expect=400)
    assert stat(sim, repo, "main", "f", presign=False)["size_bytes"] == 4
    backing(sim, repo, "main", "g", presign=True, expect=500)
    assert "presigned_url" not in backing(sim, repo, "main", "g", presign=False)
    assert pmpu(sim, repo, "main", "g", "POST")[0] == 501


def test_no_presign_multipart_server(other_sim):
    sim = other_sim("--no-presign-multipart")
    repo = f"m-{time.time_ns() % 10**9}"
    sim.create_repo(repo)
    sc = sim.api("GET", "/config", expect=200)[1]["storage_config"]
    assert sc["pre_sign_support"] is True and sc["pre_sign_multipart_upload"] is False
    assert pmpu(sim, repo, "main", "g", "POST")[0] == 501
    assert upload(sim, repo, "main", "g", b"single")["size_bytes"] == 6


def test_storage_faults_and_latency_are_the_storages_own(lakefs, repo):
    data = rand_bytes(200_000)
    put_gateway(lakefs, repo, "main/f", data)
    url = stat(lakefs, repo, "main", "f")["physical_address"]
    lakefs.reset_stats()
    try:
        lakefs.set_faults(storage={"fail_rate": 1.0})
        kinds = set()
        for _ in range(60):
            r = rawhttp.send_url("GET", url, timeout=20)
            kinds.add(r.kind if r.kind != "ok" else f"{r.status} {r.error_code}")
            assert r.kind != "ok" or r.status >= 500
        assert kinds == {"reset", "truncated", "500 InternalError", "503 SlowDown"}, kinds
        # the gateway is not affected
        assert rawhttp.request(lakefs, "GET", f"/{repo}/main/f").body == data
        lakefs.set_faults(fail_rate=1.0)             # nor is the storage by the gateway's
        assert rawhttp.send_url("GET", url).body == data
        lakefs.set_faults(storage={"latency_ms": 300})
        t0 = time.monotonic()
        assert rawhttp.send_url("GET", url).body == data
        assert time.monotonic() - t0 >= 0.3
        rules = [{"operation": "StoragePutObject", "kind": "lost", "count": 1}]
        lakefs.set_faults(rules=rules)
        loc = backing(lakefs, repo, "main", "g")
        assert rawhttp.send_url("PUT", loc["presigned_url"], body=data).kind == "reset"
        assert rawhttp.send_url("PUT", loc["presigned_url"], body=data).status == 200
    finally:
        lakefs.set_faults()
    s = lakefs.stats()
    assert s["storage"]["faults"] >= 60 and s["storage"]["requests"] >= 64
    settings = lakefs.faults()
    assert settings["storage"] == {"fail_rate": 0.0, "latency_ms": 0,
                                   "kinds": settings["kinds"]}
