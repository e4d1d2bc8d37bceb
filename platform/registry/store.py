"""The model store: immutable models by ID, on a local directory (default) or S3.

Keys: models/<model_id>/model.<ext>, then any derived files (the scorer's serving form,
models/<model_id>/serving.trees), then models/<model_id>/record.json. All are written
create-if-absent and the record goes last, so a model exists exactly when its record does:
a reader never sees half a model, and an ID that exists is never overwritten.
"""

import dataclasses
import hashlib

from google.protobuf import json_format

from roundhouse.platform.api import model_pb2
from roundhouse.platform.registry import blobs as blobs_lib
from roundhouse.platform.registry import model_id

ARTIFACT_FILE = {"xgboost-json": "model.json", "joblib": "model.joblib", "meta-json": "meta.json"}


class ModelNotFound(KeyError):
    def __str__(self):
        return f"no model {self.args[0]!r} in the model store at {self.args[1]}"


@dataclasses.dataclass(frozen=True)
class StoredModel:
    record: model_pb2.ModelRecord
    artifact_path: str  # a local path or an s3:// URL
    created: bool  # False when an identical model was already stored


class ModelStore:
    def __init__(self, blobs: blobs_lib.Blobs):
        self.blobs = blobs

    @staticmethod
    def _record_key(mid):
        return f"models/{mid}/record.json"

    def put(self, artifact: bytes, record: model_pb2.ModelRecord,
            derived: dict[str, bytes] | None = None) -> StoredModel:
        """Stores the artifact with its record; fills in the artifact fields and the model ID.
        `derived` files (name -> bytes, made from the artifact) are stored beside it."""
        record = _copy(record)
        record.artifact.sha256 = hashlib.sha256(artifact).hexdigest()
        record.artifact.size = len(artifact)
        record.model_id = model_id.compute(record)
        key = f"models/{record.model_id}/{ARTIFACT_FILE[record.artifact.format]}"
        record.artifact.uri = self.blobs.describe(key)
        if self.exists(record.model_id):
            return StoredModel(self.get(record.model_id), record.artifact.uri, created=False)
        # Same ID => same bytes, so an artifact left by an interrupted earlier put is fine.
        self.blobs.put_new(key, artifact)
        for name, data in sorted((derived or {}).items()):
            self.blobs.put_new(f"models/{record.model_id}/{name}", data)
        text = json_format.MessageToJson(record, sort_keys=True) + "\n"
        if not self.blobs.put_new(self._record_key(record.model_id), text.encode()):
            return StoredModel(self.get(record.model_id), record.artifact.uri, created=False)
        return StoredModel(record, record.artifact.uri, created=True)

    def get(self, mid: str) -> model_pb2.ModelRecord:
        data = self.blobs.get(self._record_key(mid))
        if data is None:
            raise ModelNotFound(mid, self.blobs.describe(""))
        return json_format.Parse(data, model_pb2.ModelRecord())

    def artifact(self, mid: str) -> bytes:
        record = self.get(mid)
        return self.blobs.get(f"models/{mid}/{ARTIFACT_FILE[record.artifact.format]}")

    def derived(self, mid: str, name: str) -> bytes | None:
        """A file stored beside the artifact by `put(derived=...)`; None for models stored
        without it (older models)."""
        return self.blobs.get(f"models/{mid}/{name}")

    def exists(self, mid: str) -> bool:
        return self.blobs.get(self._record_key(mid)) is not None

    def list(self) -> list[str]:
        return sorted(k.split("/")[1] for k in self.blobs.list("models/") if k.endswith("/record.json"))


def open_store(url: str) -> ModelStore:
    """ModelStore at a local directory or s3://bucket/prefix."""
    return ModelStore(blobs_lib.open_blobs(url))


def _copy(record):
    out = model_pb2.ModelRecord()
    out.CopyFrom(record)
    return out
