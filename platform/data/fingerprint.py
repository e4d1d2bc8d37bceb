"""Fingerprints of training input: enough to tell later whether a model saw the same data.

Local files get path, size and a sha256 of their content. S3 objects get path, size and
ETag (and version ID when the bucket is versioned) from one listing, because re-reading
every object just to hash it would double the cost of a training run.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Iterable

from roundhouse.platform.api import model_pb2
from roundhouse.platform.data import storage

_CHUNK = 1 << 20


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def local_files(paths: Iterable[str], role: str) -> list[model_pb2.FileFingerprint]:
    return [
        model_pb2.FileFingerprint(path=os.path.abspath(p), size=os.path.getsize(p),
                                  sha256=sha256_file(p), role=role)
        for p in sorted(paths)
    ]


def s3_objects(uris: Iterable[str], s3: storage.S3Options | None,
               role: str) -> list[model_pb2.FileFingerprint]:
    """Fingerprint s3:// objects by listing their common prefix once per bucket."""
    uris = sorted(set(uris))
    if not uris:
        return []
    client = (s3 or storage.S3Options.from_env()).boto3_client()
    by_bucket: dict[str, list[str]] = {}
    for uri in uris:
        bucket, key = storage.split_s3(uri)
        by_bucket.setdefault(bucket, []).append(key)
    out = []
    for bucket, keys in sorted(by_bucket.items()):
        prefix = os.path.commonprefix(keys)
        listed = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                listed[obj["Key"]] = obj
        for key in keys:
            obj = listed.get(key)
            if obj is None:
                # Listed after the read started: ask for it directly rather than guess.
                obj = client.head_object(Bucket=bucket, Key=key)
                obj = {"Size": obj["ContentLength"], "ETag": obj["ETag"],
                       "VersionId": obj.get("VersionId", "")}
            out.append(model_pb2.FileFingerprint(
                path=f"s3://{bucket}/{key}", size=obj["Size"], etag=obj["ETag"].strip('"'),
                version_id=obj.get("VersionId") or "", role=role))
    return out


def digest(fp: model_pb2.DataFingerprint) -> str:
    """One sha256 over everything that identifies the data (not the row count, which follows)."""
    canonical = json.dumps(
        {
            "files": sorted((f.role, f.path, f.size, f.sha256, f.etag, f.version_id)
                            for f in fp.files),
            "queries": sorted((q.role, q.warehouse, q.query) for q in fp.queries),
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
