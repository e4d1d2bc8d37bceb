"""Where events files live: a local path or an s3:// URI, resolved to a pyarrow filesystem.

S3 goes through pyarrow's own S3FileSystem (not s3fs); its endpoint, region and keys come from
the standard AWS environment variables (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL for an
S3-compatible server such as moto's on loopback; AWS_REGION / AWS_DEFAULT_REGION;
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, else the SDK's credential chain).
"""
from __future__ import annotations

import os
from urllib.parse import urlsplit

import pyarrow.fs as pafs

S3 = "s3://"


def is_s3(uri: str) -> bool:
    return str(uri).startswith(S3)


def s3_filesystem(environ=os.environ) -> pafs.S3FileSystem:
    kwargs = {}
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        url = urlsplit(endpoint)
        kwargs.update(endpoint_override=url.netloc or url.path, scheme=url.scheme or "https")
    if environ.get("AWS_ACCESS_KEY_ID"):
        kwargs.update(access_key=environ["AWS_ACCESS_KEY_ID"],
                      secret_key=environ.get("AWS_SECRET_ACCESS_KEY", ""))
    return pafs.S3FileSystem(
        region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        **kwargs)


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it): s3://bucket/prefix -> (S3FileSystem, "bucket/prefix")."""
    uri = str(uri)
    if is_s3(uri):
        path = uri[len(S3):].strip("/")
        if not path:
            raise ValueError(f"{uri!r}: an s3:// URI needs a bucket (s3://BUCKET/PREFIX)")
        return s3_filesystem(), path
    if "://" in uri:
        raise ValueError(f"{uri!r}: only local paths and s3:// URIs are supported")
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


def display(fs: pafs.FileSystem, path: str) -> str:
    """A path as the user would write it (s3://bucket/key for S3)."""
    return S3 + path if isinstance(fs, pafs.S3FileSystem) else path
