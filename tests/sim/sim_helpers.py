"""Small helpers shared by the tests/sim modules (kept out of conftest.py
so that test modules can import them by a unique module name)."""
import hashlib
import os
import uuid

from botocore.exceptions import ClientError


def new_name(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def error_of(excinfo):
    """(HTTP status, S3 error code) of a botocore ClientError."""
    e = excinfo.value if hasattr(excinfo, "value") else excinfo
    assert isinstance(e, ClientError), repr(e)
    return (e.response["ResponseMetadata"]["HTTPStatusCode"],
            e.response.get("Error", {}).get("Code"))


def md5_hex(data):
    return hashlib.md5(data).hexdigest()


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def rand_bytes(n):
    return os.urandom(n)


def put(s3, repo, key, data=b"", **kw):
    return s3.put_object(Bucket=repo, Key=key, Body=data, **kw)


def get_bytes(s3, repo, key, **kw):
    return s3.get_object(Bucket=repo, Key=key, **kw)["Body"].read()


def list_keys(s3, repo, prefix, delimiter=None, v2=True):
    """All keys and common prefixes under prefix (follows pagination)."""
    keys, prefixes = [], []
    kw = {"Bucket": repo, "Prefix": prefix}
    if delimiter:
        kw["Delimiter"] = delimiter
    if v2:
        pager = s3.get_paginator("list_objects_v2")
    else:
        pager = s3.get_paginator("list_objects")
    for page in pager.paginate(**kw):
        keys += [c["Key"] for c in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return keys, prefixes


def meta(d):
    """User metadata with lower-case keys: HTTP header names are case
    insensitive, and lakeFS (Go) sends them canonicalised (X-Amz-Meta-Color),
    so boto3 may report "Color" for a key stored as "color"."""
    return {k.lower(): v for k, v in (d or {}).items()}


def api_meta(d):
    """ObjectStats metadata as plain lower-case names: lakeFS stores gateway
    metadata under "X-Amz-Meta-<name>"; accept that and the bare name."""
    out = {}
    for k, v in (d or {}).items():
        k = k.lower()
        out[k[len("x-amz-meta-"):] if k.startswith("x-amz-meta-") else k] = v
    return out
