"""The shared train command line records the image it ran in: a Kubernetes Job sets
$ROUNDHOUSE_IMAGE, the model record keeps it, and the model ID does not depend on it."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

from roundhouse.platform.api import model_pb2
from roundhouse.platform.registry import model_id
from roundhouse.platform.registry.store import open_store
from roundhouse.platform.training import entry
from roundhouse.platform.training.workflow import Workflow

IMAGE = "127.0.0.1:5000/roundhouse/toy@sha256:" + "ab" * 32

WORKFLOW = Workflow(name="toy", features=("x1", "x2"), label="y",
                    train=lambda train, holdout, params: LogisticRegression().fit(
                        train[["x1", "x2"]], train["y"]))


def no_default_request(args, home):
    raise AssertionError("the test passes --request")


@pytest.fixture
def train(tmp_path, monkeypatch, capsys):
    """Runs the train command on a toy request; returns the stored record of its model."""
    for name in ("ROUNDHOUSE_IMAGE", "ROUNDHOUSE_REQUEST", "ROUNDHOUSE_JOB_ID", "ROUNDHOUSE_STORE"):
        monkeypatch.delenv(name, raising=False)
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=200), rng.normal(size=200)
    pq.write_table(pa.table({"x1": x1, "x2": x2, "y": (x1 + 0.3 * x2 > 0).astype(int)}),
                   tmp_path / "toy.parquet")
    request = tmp_path / "request.json"
    request.write_text(json.dumps({
        "workflow": "toy", "metadata": {"owner": "ana", "description": "toy"},
        "data": {"parquet": {"uri": str(tmp_path / "toy.parquet"), "label_columns": ["y"]}},
        "holdout": {"random": {"fraction": 0.25, "seed": 3}}}))
    store = open_store(str(tmp_path / "models"))

    def run() -> model_pb2.ModelRecord:
        argv = ["--request", str(request), "--home", str(tmp_path), "--store", str(tmp_path / "models")]
        assert entry.main(WORKFLOW, "//platform/training:entry_test", no_default_request,
                          argv=argv) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        return store.get(summary["model_id"])

    return run


def test_the_image_from_the_environment_is_recorded_and_not_part_of_the_model_id(train, monkeypatch):
    monkeypatch.setenv("ROUNDHOUSE_IMAGE", IMAGE)
    record = train()
    assert record.image == IMAGE
    without = model_pb2.ModelRecord()
    without.CopyFrom(record)
    without.ClearField("image")
    assert model_id.compute(without) == model_id.compute(record) == record.model_id
    # The same training outside a container is the same model.
    monkeypatch.delenv("ROUNDHOUSE_IMAGE")
    assert train().model_id == record.model_id


def test_outside_a_container_the_record_has_no_image(train):
    assert train().image == ""
