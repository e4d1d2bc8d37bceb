import os

import pytest

from roundhouse.platform.api import model_pb2
from roundhouse.platform.registry import store as store_lib


def record(sha="a" * 40, auc=0.9):
    r = model_pb2.ModelRecord(git_sha=sha, git_dirty=False, bazel_target="//workflows/fraud:train")
    r.metrics["roc_auc"] = auc
    r.artifact.format = "joblib"
    return r


def test_put_assigns_a_content_derived_id_and_reads_back(tmp_path):
    store = store_lib.LocalModelStore(tmp_path)
    stored = store.put(b"model-bytes", record())
    assert stored.created and stored.record.model_id.startswith("m-")
    assert store.artifact(stored.record.model_id) == b"model-bytes"
    back = store.get(stored.record.model_id)
    assert back.git_sha == "a" * 40 and back.artifact.size == len(b"model-bytes")
    assert store.list() == [stored.record.model_id]


def test_same_content_same_id_different_content_different_id(tmp_path):
    store = store_lib.LocalModelStore(tmp_path)
    a = store.put(b"x", record()).record.model_id
    r = record()
    r.timings.train_seconds = 12.5  # timings do not define a model
    assert store.put(b"x", r).record.model_id == a
    assert store.put(b"y", record()).record.model_id != a
    assert store.put(b"x", record(sha="b" * 40)).record.model_id != a
    assert store.put(b"x", record(auc=0.8)).record.model_id != a


def test_write_once_never_overwrites(tmp_path):
    store = store_lib.LocalModelStore(tmp_path)
    first = store.put(b"x", record())
    path = first.artifact_path
    mtime = os.stat(path).st_mtime_ns
    again = store.put(b"x", record())
    assert not again.created
    assert os.stat(path).st_mtime_ns == mtime and path.read_bytes() == b"x"
    assert [p.name for p in store.models.iterdir()] == [first.record.model_id]  # no temp left


def test_unknown_model_names_the_id_and_store(tmp_path):
    store = store_lib.LocalModelStore(tmp_path)
    with pytest.raises(store_lib.ModelNotFound, match="m-nope"):
        store.get("m-nope")
