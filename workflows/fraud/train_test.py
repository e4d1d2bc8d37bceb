"""The train binary trains, stamps and stores a model; same commit and data, same ID."""

import pathlib
import re

from roundhouse.platform.registry import store as store_lib
from roundhouse.workflows.fraud.train_testlib import run

HERE = pathlib.Path(__file__).parent


def test_train_prints_one_json_line_and_stores_a_stamped_model(tmp_path):
    out = run([str(HERE / "train")], tmp_path)
    assert set(out) == {"model_id", "git_sha", "git_dirty", "metrics", "model_path"}
    assert re.fullmatch(r"[0-9a-f]{40}", out["git_sha"]) and out["git_dirty"] in (True, False)
    assert 0.5 < out["metrics"]["roc_auc"] <= 1.0
    assert {"pr_auc", "recall_at_1pct_fpr"} <= set(out["metrics"])
    assert pathlib.Path(out["model_path"]).is_file()

    record = store_lib.open_store(str(tmp_path)).get(out["model_id"])
    assert record.git_sha == out["git_sha"] and record.bazel_target == "//workflows/fraud:train"
    assert record.params["random_state"] == 7 and record.params["n_estimators"] == 200
    assert record.data.digest and record.data.files[0].sha256 and record.data.files[0].size > 0
    assert {"numpy", "xgboost-cpu", "python"} <= set(record.library_versions)
    assert record.request.workflow == "fraud" and record.request.holdout.time_cutoff.column == "event_time"

    # Same commit and data: the same model ID, and the store keeps the first copy.
    again = run([str(HERE / "train")], tmp_path)
    assert again["model_id"] == out["model_id"]
    assert store_lib.open_store(str(tmp_path)).list() == [out["model_id"]]
