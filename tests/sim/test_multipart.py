"""Multipart uploads: checklist line 19 plus part-size rules, writes to
read-only refs, If-None-Match on Complete."""
import hashlib

import pytest
from botocore.exceptions import ClientError

import rawhttp
from sim_helpers import error_of, get_bytes, list_keys, meta, rand_bytes

MiB = 1024 * 1024


def multipart_etag(parts):
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return '"%s-%d"' % (hashlib.md5(digests).hexdigest(), len(parts))


def same_digest(etag, want):
    """ETag equal to want, with or without the "-N" part count."""
    return etag.strip('"').split("-")[0] == want.strip('"').split("-")[0]


def upload(s3, repo, key, parts):
    mpu = s3.create_multipart_upload(Bucket=repo, Key=key)
    uid = mpu["UploadId"]
    assert uid
    done = []
    for i, p in enumerate(parts, 1):
        r = s3.upload_part(Bucket=repo, Key=key, UploadId=uid, PartNumber=i, Body=p)
        assert r["ETag"] == '"%s"' % hashlib.md5(p).hexdigest()
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    return uid, done


def test_c19_multipart_three_8mib_parts_and_tail(s3, repo):
    parts = [rand_bytes(8 * MiB) for _ in range(3)] + [rand_bytes(MiB + 123)]
    whole = b"".join(parts)
    uid, done = upload(s3, repo, "main/mpu/big.bin", parts)
    # nothing visible before Complete
    assert list_keys(s3, repo, "main/mpu/")[0] == []
    r = s3.complete_multipart_upload(Bucket=repo, Key="main/mpu/big.bin", UploadId=uid,
                                     MultipartUpload={"Parts": done})
    assert r["ETag"] == multipart_etag(parts)
    assert r["ETag"].endswith('-4"')
    got = get_bytes(s3, repo, "main/mpu/big.bin")
    assert len(got) == len(whole)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(whole).hexdigest()
    # HEAD and listings: lakeFS stores the digest without "-N"
    # (postobject.go: strings.Split(resp.ETag, "-")[0]); accept both forms
    h = s3.head_object(Bucket=repo, Key="main/mpu/big.bin")
    assert h["ContentLength"] == len(whole)
    assert same_digest(h["ETag"], multipart_etag(parts))
    lst = s3.list_objects_v2(Bucket=repo, Prefix="main/mpu/")["Contents"]
    assert [(c["Key"], c["Size"]) for c in lst] == [("main/mpu/big.bin", len(whole))]
    assert same_digest(lst[0]["ETag"], multipart_etag(parts))
    # a range that spans a part boundary
    g = s3.get_object(Bucket=repo, Key="main/mpu/big.bin",
                      Range=f"bytes={8 * MiB - 10}-{8 * MiB + 9}")
    assert g["Body"].read() == whole[8 * MiB - 10:8 * MiB + 10]


def test_c19_multipart_metadata_and_content_type(s3, repo):
    mpu = s3.create_multipart_upload(Bucket=repo, Key="main/m", ContentType="video/x-test",
                                     Metadata={"who": "mpu"})
    r = s3.upload_part(Bucket=repo, Key="main/m", UploadId=mpu["UploadId"], PartNumber=1,
                       Body=b"only part")
    s3.complete_multipart_upload(Bucket=repo, Key="main/m", UploadId=mpu["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["ETag"]}]})
    h = s3.head_object(Bucket=repo, Key="main/m")
    assert h["ContentType"] == "video/x-test"
    assert meta(h["Metadata"]) == {"who": "mpu"}
    assert same_digest(h["ETag"], multipart_etag([b"only part"]))


def test_c19_abort_leaves_nothing(s3, repo):
    uid, done = upload(s3, repo, "main/aborted", [rand_bytes(5 * MiB), b"tail"])
    r = s3.abort_multipart_upload(Bucket=repo, Key="main/aborted", UploadId=uid)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=repo, Key="main/aborted")
    assert error_of(ei)[0] == 404
    assert list_keys(s3, repo, "main/")[0] == []
    with pytest.raises(ClientError) as ei:
        s3.complete_multipart_upload(Bucket=repo, Key="main/aborted", UploadId=uid,
                                     MultipartUpload={"Parts": done})
    # S3 says 404 NoSuchUpload; lakeFS reports its tracker miss as 500
    assert error_of(ei) in [(404, "NoSuchUpload"), (500, "InternalError")]
    assert list_keys(s3, repo, "main/")[0] == []


def test_c19_upload_part_copy_with_range(s3, repo):
    src = rand_bytes(12 * MiB)
    s3.put_object(Bucket=repo, Key="main/src.bin", Body=src)
    mpu = s3.create_multipart_upload(Bucket=repo, Key="main/dst.bin")
    uid = mpu["UploadId"]
    ranges = [(0, 6 * MiB - 1), (6 * MiB, 11 * MiB - 1)]
    parts = []
    for i, (a, b) in enumerate(ranges, 1):
        r = s3.upload_part_copy(Bucket=repo, Key="main/dst.bin", UploadId=uid, PartNumber=i,
                                CopySource=f"{repo}/main/src.bin",
                                CopySourceRange=f"bytes={a}-{b}")
        etag = r["CopyPartResult"]["ETag"]
        assert etag == '"%s"' % hashlib.md5(src[a:b + 1]).hexdigest()
        parts.append({"PartNumber": i, "ETag": etag})
    tail = b"tail bytes"
    r = s3.upload_part(Bucket=repo, Key="main/dst.bin", UploadId=uid, PartNumber=3, Body=tail)
    parts.append({"PartNumber": 3, "ETag": r["ETag"]})
    r = s3.complete_multipart_upload(Bucket=repo, Key="main/dst.bin", UploadId=uid,
                                     MultipartUpload={"Parts": parts})
    want = src[:11 * MiB] + tail
    assert r["ETag"] == multipart_etag([src[:6 * MiB], src[6 * MiB:11 * MiB], tail])
    got = get_bytes(s3, repo, "main/dst.bin")
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(want).hexdigest()


def test_c19_upload_part_copy_from_commit(lakefs, s3, repo):
    src = rand_bytes(6 * MiB)
    s3.put_object(Bucket=repo, Key="main/src.bin", Body=src)
    cid = lakefs.commit(repo, "main")
    s3.put_object(Bucket=repo, Key="main/src.bin", Body=b"overwritten")
    mpu = s3.create_multipart_upload(Bucket=repo, Key="main/dst.bin")
    r = s3.upload_part_copy(Bucket=repo, Key="main/dst.bin", UploadId=mpu["UploadId"],
                            PartNumber=1, CopySource=f"{repo}/{cid}/src.bin")
    s3.complete_multipart_upload(
        Bucket=repo, Key="main/dst.bin", UploadId=mpu["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"]}]})
    assert get_bytes(s3, repo, "main/dst.bin") == src


def test_part_too_small_is_refused(s3, repo):
    """S3 answers 400 EntityTooSmall; lakeFS reports the block store's
    refusal as 500 InternalError (the reason is in the message)."""
    uid, done = upload(s3, repo, "main/small", [b"a" * MiB, b"b" * MiB])
    with pytest.raises(ClientError) as ei:
        s3.complete_multipart_upload(Bucket=repo, Key="main/small", UploadId=uid,
                                     MultipartUpload={"Parts": done})
    assert error_of(ei) == (500, "InternalError")
    assert "EntityTooSmall" in ei.value.response["Error"].get("Message", "")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=repo, Key="main/small")


def test_complete_with_wrong_part_etag_invalid_part(s3, repo):
    uid, done = upload(s3, repo, "main/wrong", [b"x" * 10])
    done[0]["ETag"] = '"%s"' % ("0" * 32)
    with pytest.raises(ClientError) as ei:
        s3.complete_multipart_upload(Bucket=repo, Key="main/wrong", UploadId=uid,
                                     MultipartUpload={"Parts": done})
    # S3: 400 InvalidPart; lakeFS turns block-store errors into 500
    assert error_of(ei) in [(400, "InvalidPart"), (500, "InternalError")]
    with pytest.raises(ClientError):
        s3.head_object(Bucket=repo, Key="main/wrong")


def test_upload_part_unknown_upload_id(s3, repo):
    with pytest.raises(ClientError) as ei:
        s3.upload_part(Bucket=repo, Key="main/x", UploadId="no-such-upload",
                       PartNumber=1, Body=b"x")
    assert error_of(ei) in [(404, "NoSuchUpload"), (500, "InternalError")]


def test_part_number_out_of_range(lakefs, s3, repo):
    uid = s3.create_multipart_upload(Bucket=repo, Key="main/pn")["UploadId"]
    for pn in ("0", "10001"):
        r = rawhttp.request(lakefs, "PUT", f"/{repo}/main/pn",
                            query={"partNumber": pn, "uploadId": uid}, body=b"x")
        # S3: 400 InvalidArgument; lakeFS: the block store refuses it (500)
        assert r.status in (400, 500), (pn, r)
    assert s3.list_objects_v2(Bucket=repo, Prefix="main/").get("Contents", []) == []


def test_multipart_to_commit_or_tag_is_nosuchbucket(lakefs, s3, repo):
    s3.put_object(Bucket=repo, Key="main/a", Body=b"a")
    cid = lakefs.commit(repo, "main")
    lakefs.create_tag(repo, "v1", cid)
    for ref in (cid, "v1"):
        with pytest.raises(ClientError) as ei:
            s3.create_multipart_upload(Bucket=repo, Key=f"{ref}/mpu")
        assert error_of(ei) == (404, "NoSuchBucket"), ref
    assert list_keys(s3, repo, f"{cid}/")[0] == [f"{cid}/a"]


def test_complete_if_none_match_star(lakefs, s3, repo):
    s3.put_object(Bucket=repo, Key="main/exists", Body=b"old")
    uid, done = upload(s3, repo, "main/exists", [b"new"])
    body = ("<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{p['PartNumber']}</PartNumber><ETag>{p['ETag']}</ETag></Part>"
        for p in done) + "</CompleteMultipartUpload>").encode()
    r = rawhttp.request(lakefs, "POST", f"/{repo}/main/exists", query={"uploadId": uid},
                        body=body, headers={"If-None-Match": "*"})
    assert r.status == 412 and r.error_code == "PreconditionFailed", r
    assert get_bytes(s3, repo, "main/exists") == b"old"
    # on an absent key it completes
    uid, done = upload(s3, repo, "main/fresh", [b"new"])
    body = ("<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{p['PartNumber']}</PartNumber><ETag>{p['ETag']}</ETag></Part>"
        for p in done) + "</CompleteMultipartUpload>").encode()
    r = rawhttp.request(lakefs, "POST", f"/{repo}/main/fresh", query={"uploadId": uid},
                        body=body, headers={"If-None-Match": "*"})
    assert r.status == 200, r
    assert get_bytes(s3, repo, "main/fresh") == b"new"
