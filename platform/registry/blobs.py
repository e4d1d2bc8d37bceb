"""Where the model store keeps its bytes: a local directory (default) or an S3 bucket.

Both give the two primitives the registry needs and nothing more:
  - put_new: create an object only if it does not exist (write-once models);
  - read_versioned / put_if_version: compare-and-swap (atomic tag moves).
S3 does both with conditional writes (If-None-Match / If-Match); the local directory with
hard links, renames and a lock file.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import pathlib
import tempfile

ABSENT = None  # version of an object that does not exist


class Blobs:
    def put_new(self, key: str, data: bytes) -> bool:
        """Creates key with data; False (and no change) if it already exists."""
        raise NotImplementedError

    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        raise NotImplementedError

    def put_if_version(self, key: str, data: bytes, version: str | None) -> bool:
        """Writes key only if its version is still `version` (ABSENT: still missing)."""
        raise NotImplementedError


    def list(self, prefix: str) -> list[str]:
        raise NotImplementedError

    def describe(self, key: str) -> str:
        raise NotImplementedError


class LocalBlobs(Blobs):
    def __init__(self, root: str | os.PathLike):
        self.root = pathlib.Path(root)

    def _path(self, key):
        return self.root / key

    def describe(self, key):
        return str(self._path(key))

    def _tempfile(self, path, data):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def put_new(self, key, data):
        path = self._path(key)
        tmp = self._tempfile(path, data)
        try:
            os.link(tmp, path)  # atomic create-if-absent: never exposes a partial file
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def get(self, key):
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @staticmethod
    def _version(data):
        return None if data is None else hashlib.sha256(data).hexdigest()

    def read_versioned(self, key):
        data = self.get(key)
        return data, self._version(data)

    def put_if_version(self, key, data, version):
        path = self._path(key)
        with self._locked():
            if self._version(self.get(key)) != version:
                return False
            os.replace(self._tempfile(path, data), path)
            return True


    def list(self, prefix):
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith("."))


@dataclasses.dataclass
class S3Blobs(Blobs):
    client: object  # a boto3 S3 client
    bucket: str
    prefix: str = ""

    def _key(self, key):
        return f"{self.prefix.rstrip('/')}/{key}" if self.prefix else key

    def describe(self, key):
        return f"s3://{self.bucket}/{self._key(key)}"

    @staticmethod
    def _code(error):
        return error.response.get("Error", {}).get("Code", "")

    def put_new(self, key, data):
        from botocore.exceptions import ClientError
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as e:
            if self._code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise

    def read_versioned(self, key):
        from botocore.exceptions import ClientError
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if self._code(e) in ("NoSuchKey", "404"):
                return None, None
            raise
        return obj["Body"].read(), obj["ETag"]

    def get(self, key):
        return self.read_versioned(key)[0]

    def put_if_version(self, key, data, version):
        from botocore.exceptions import ClientError
        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
            return True
        except ClientError as e:
            if self._code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise


    def list(self, prefix):
        keys = []
        strip = len(self._key(""))
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)):
            keys += [o["Key"][strip:] for o in page.get("Contents", [])]
        return sorted(keys)


def open_blobs(url: str) -> Blobs:
    """A local directory path, or s3://bucket/prefix (endpoint from AWS_ENDPOINT_URL)."""
    if url.startswith("s3://"):
        import boto3
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"model store URL {url!r} names no bucket: use s3://BUCKET[/PREFIX]")
        return S3Blobs(boto3.client("s3"), bucket, prefix)
    return LocalBlobs(url)
