"""Where data lives: a local path or an s3:// URI, resolved to a pyarrow filesystem and path.

S3 settings come from an explicit S3Options (built from the environment by default) so that
tests and services can point at a local S3-compatible server without global state.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping
from urllib.parse import urlsplit

import pyarrow.fs as pafs

S3_SCHEME = "s3://"


@dataclasses.dataclass(frozen=True)
class S3Options:
    # "http://127.0.0.1:9000" for an S3-compatible server; None means AWS itself.
    endpoint_url: str | None = None
    region: str | None = None
    # None means the standard AWS credential chain (environment, config files, instance role).
    access_key: str | None = None
    secret_key: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "S3Options":
        return cls(
            endpoint_url=environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL"),
            region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION"),
            access_key=environ.get("AWS_ACCESS_KEY_ID"),
            secret_key=environ.get("AWS_SECRET_ACCESS_KEY"),
        )

    def filesystem(self) -> pafs.S3FileSystem:
        kwargs = {}
        if self.endpoint_url:
            url = urlsplit(self.endpoint_url)
            kwargs.update(endpoint_override=url.netloc, scheme=url.scheme or "https")
        return pafs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region or "us-east-1",
            **kwargs,
        )

    def boto3_client(self):
        # Imported here: only fingerprinting S3 objects (ETags) needs boto3.
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region or "us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )


def is_s3(uri: str) -> bool:
    return uri.startswith(S3_SCHEME)


def split_s3(uri: str) -> tuple[str, str]:
    """s3://bucket/key/prefix -> ("bucket", "key/prefix")."""
    bucket, _, key = uri[len(S3_SCHEME):].partition("/")
    return bucket, key


def resolve(uri: str, s3: S3Options | None = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding `uri` and the path of `uri` inside it."""
    if is_s3(uri):
        return (s3 or S3Options.from_env()).filesystem(), uri[len(S3_SCHEME):].rstrip("/")
    if "://" in uri:
        raise ValueError(f"{uri!r}: only local paths and s3:// URIs are supported")
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


def display(uri: str, path: str) -> str:
    """A filesystem path from a dataset read from `uri`, written the way the user wrote it."""
    return f"{S3_SCHEME}{path}" if is_s3(uri) else path
