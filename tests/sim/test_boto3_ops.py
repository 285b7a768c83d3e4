"""Checklist line 22: boto3 with the seed docs' Config (path style,
checksums only when required) works for every operation, and never sends a
streaming payload mode."""
import hashlib
import io
import urllib.request

from boto3.s3.transfer import TransferConfig

MiB = 1024 * 1024


def test_c22_boto3_seed_config_every_operation(lakefs, repo):
    s3 = lakefs.s3()
    sent = []

    def record(request, **kw):
        v = request.headers.get("x-amz-content-sha256") or b""
        sent.append((request.method, v.decode() if isinstance(v, bytes) else v))

    s3.meta.events.register("before-send.s3.*", record)

    assert repo in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket=repo)
    s3.put_object(Bucket=repo, Key="main/a", Body=b"alpha", Metadata={"x": "1"})
    assert s3.get_object(Bucket=repo, Key="main/a")["Body"].read() == b"alpha"
    assert s3.get_object(Bucket=repo, Key="main/a", Range="bytes=1-2")["Body"].read() == b"lp"
    assert {k.lower(): v for k, v in s3.head_object(Bucket=repo, Key="main/a")["Metadata"].items()} == {"x": "1"}
    s3.copy_object(Bucket=repo, Key="main/b", CopySource=f"{repo}/main/a")
    assert [c["Key"] for c in s3.list_objects_v2(Bucket=repo, Prefix="main/")["Contents"]] == \
        ["main/a", "main/b"]
    assert [c["Key"] for c in s3.list_objects(Bucket=repo, Prefix="main/")["Contents"]] == \
        ["main/a", "main/b"]
    s3.delete_object(Bucket=repo, Key="main/b")
    s3.put_object(Bucket=repo, Key="main/c", Body=b"c")
    r = s3.delete_objects(Bucket=repo, Delete={"Objects": [{"Key": "main/c"}]})
    assert [d["Key"] for d in r["Deleted"]] == ["main/c"]
    # multipart, including a part copy
    big = b"m" * (5 * MiB)
    mpu = s3.create_multipart_upload(Bucket=repo, Key="main/mpu")
    p1 = s3.upload_part(Bucket=repo, Key="main/mpu", UploadId=mpu["UploadId"],
                        PartNumber=1, Body=big)
    p2 = s3.upload_part_copy(Bucket=repo, Key="main/mpu", UploadId=mpu["UploadId"],
                             PartNumber=2, CopySource=f"{repo}/main/a",
                             CopySourceRange="bytes=0-2")
    s3.complete_multipart_upload(
        Bucket=repo, Key="main/mpu", UploadId=mpu["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]},
                                   {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=repo, Key="main/mpu")["Body"].read() == big + b"alp"
    mpu2 = s3.create_multipart_upload(Bucket=repo, Key="main/gone")
    s3.abort_multipart_upload(Bucket=repo, Key="main/gone", UploadId=mpu2["UploadId"])
    # managed transfers (s3transfer): multipart upload, ranged parallel download
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                         max_concurrency=4)
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB
    s3.upload_fileobj(io.BytesIO(data), repo, "main/managed", Config=cfg)
    out = io.BytesIO()
    s3.download_fileobj(repo, "main/managed", out, Config=cfg)
    assert hashlib.sha256(out.getvalue()).digest() == hashlib.sha256(data).digest()
    assert s3.head_object(Bucket=repo, Key="main/managed")["ContentLength"] == len(data)
    # presigned URL
    url = s3.generate_presigned_url("get_object", Params={"Bucket": repo, "Key": "main/a"})
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == b"alpha"
    s3.get_bucket_versioning(Bucket=repo)

    assert sent, "event hook saw no requests"
    modes = {v for _, v in sent}
    assert not any(v.startswith("STREAMING") for v in modes), modes
