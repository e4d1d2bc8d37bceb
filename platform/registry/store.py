"""The model store: immutable models by ID, on a local directory (the embedded default).

Layout: ROOT/models/<model_id>/{model.<ext>, record.json}. A model is written into a
temporary folder and renamed into place in one step, so a reader never sees half a model,
and an ID that already exists is never overwritten (write-once).
"""

import dataclasses
import hashlib
import os
import pathlib
import shutil
import tempfile

from google.protobuf import json_format

from roundhouse.platform.api import model_pb2
from roundhouse.platform.registry import model_id

ARTIFACT_FILE = {"xgboost-json": "model.json", "joblib": "model.joblib"}


class ModelNotFound(KeyError):
    def __str__(self):
        return f"no model {self.args[0]!r} in the model store at {self.args[1]}"


@dataclasses.dataclass(frozen=True)
class StoredModel:
    record: model_pb2.ModelRecord
    artifact_path: pathlib.Path
    created: bool  # False when an identical model was already stored


class LocalModelStore:
    def __init__(self, root: str | os.PathLike):
        self.root = pathlib.Path(root)
        self.models = self.root / "models"

    def put(self, artifact: bytes, record: model_pb2.ModelRecord) -> StoredModel:
        """Stores the artifact with its record; fills in artifact fields and the model ID."""
        record = _copy(record)
        record.artifact.sha256 = hashlib.sha256(artifact).hexdigest()
        record.artifact.size = len(artifact)
        record.model_id = model_id.compute(record)
        final = self.models / record.model_id
        name = ARTIFACT_FILE[record.artifact.format]
        record.artifact.uri = str(final / name)
        if final.exists():
            return StoredModel(self.get(record.model_id), final / name, created=False)
        self.models.mkdir(parents=True, exist_ok=True)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{record.model_id}.", dir=self.models))
        try:
            (tmp / name).write_bytes(artifact)
            (tmp / "record.json").write_text(json_format.MessageToJson(record, sort_keys=True) + "\n")
            for f in (tmp / name, tmp / "record.json"):
                os.chmod(f, 0o444)
                _fsync(f)
            os.rename(tmp, final)  # atomic; fails if another writer got there first
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not final.exists():
                raise
            return StoredModel(self.get(record.model_id), final / name, created=False)
        return StoredModel(record, final / name, created=True)

    def get(self, model_id: str) -> model_pb2.ModelRecord:
        path = self.models / model_id / "record.json"
        if not path.is_file():
            raise ModelNotFound(model_id, str(self.root))
        return json_format.Parse(path.read_text(), model_pb2.ModelRecord())

    def artifact(self, model_id: str) -> bytes:
        record = self.get(model_id)
        return (self.models / model_id / ARTIFACT_FILE[record.artifact.format]).read_bytes()

    def exists(self, model_id: str) -> bool:
        return (self.models / model_id / "record.json").is_file()

    def list(self) -> list[str]:
        if not self.models.is_dir():
            return []
        return sorted(p.name for p in self.models.iterdir() if not p.name.startswith("."))


def _copy(record):
    out = model_pb2.ModelRecord()
    out.CopyFrom(record)
    return out


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
