"""The train binary takes a TrainingRequest file, as executors start it."""

import json
import pathlib
import subprocess

from roundhouse.platform.registry import store as store_lib
from roundhouse.workflows.fraud.train_testlib import run

HERE = pathlib.Path(__file__).parent


def test_train_from_a_request_file_and_clear_errors_for_bad_ones(tmp_path):
    first = run([str(HERE / "train")], tmp_path)
    table = tmp_path / "data" / "fraud" / "table-seed7-n20000-d30.parquet"
    request = {
        "metadata": {"owner": "ana", "team": "risk"},
        "data": {"parquet": {"uri": str(table), "columns": ["amount", "card_charges_24h"],
                             "label_columns": ["is_fraud"]}},
        "holdout": {"random": {"fraction": 0.25, "seed": 1}},
        "workflow": "fraud",
        "params": {"n_estimators": 20},
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    result = tmp_path / "result.json"
    proc = subprocess.run([str(HERE / "train"), "--request", str(path), "--home", str(tmp_path),
                           "--result", str(result)], capture_output=True, text=True, timeout=600)
    # The fraud workflow's model uses all its features: a request naming fewer is refused
    # by the platform with the missing column named.
    assert proc.returncode != 0 and "card_charges_1h" in proc.stderr, proc.stderr
    assert not result.exists()

    request["data"]["parquet"]["columns"] = []  # every column but labels
    path.write_text(json.dumps(request))
    proc = subprocess.run([str(HERE / "train"), "--request", str(path), "--home", str(tmp_path),
                           "--result", str(result)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(result.read_text())
    assert out == json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["model_id"] != first["model_id"]
    record = store_lib.open_store(str(tmp_path)).get(out["model_id"])
    assert record.request.metadata.owner == "ana" and record.params["n_estimators"] == 20

    for change, words in [({"workflow": "churn"}, "this binary trains 'fraud'"),
                          ({"holdout": {"random": {"fraction": 2}}}, "holdout.random.fraction"),
                          ({"colour": "red"}, "colour")]:
        path.write_text(json.dumps({**request, **change}))
        proc = subprocess.run([str(HERE / "train"), "--request", str(path), "--home", str(tmp_path)],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr


def test_the_readme_example_request_is_valid_and_names_the_workflow_features():
    from roundhouse.platform.api import validate
    from roundhouse.workflows.fraud import features

    request = validate.parse_request((HERE / "request.json").read_text())
    assert request.workflow == "fraud"
    assert list(request.data.parquet.columns) == features.FEATURES
    assert list(request.data.parquet.label_columns) == [features.LABEL]
