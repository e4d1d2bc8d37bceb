"""The fraud workflow's own evaluate: the fraudulent amount caught at 1% false positives and
the platform's metrics per amount band, on its own and in a platform evaluation; and the train
binary evaluating the model it trained (`train --evaluate`) on the rows it held out."""

import json
import pathlib
import subprocess

import numpy as np
import pandas as pd
from google.protobuf import json_format

from roundhouse.platform.evaluation.evaluate import evaluate
from roundhouse.platform.evaluation.settings import Settings
from roundhouse.platform.registry import store as store_lib
from roundhouse.workflows.fraud import workflow
from roundhouse.workflows.fraud.train_testlib import run

HERE = pathlib.Path(__file__).parent


def holdout(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    amount = np.exp(rng.uniform(np.log(50), np.log(500_000), size=n)).astype(np.int64)
    is_fraud = rng.random(n) < 0.03
    frame = pd.DataFrame({"amount": amount, "is_fraud": is_fraud.astype(int)})
    scores = np.clip(0.3 * is_fraud + 0.5 * rng.random(n) + 0.2 * (amount > 100_000), 0, 1)
    return frame, scores


def test_amount_caught_and_amount_bands():
    frame, scores = holdout()
    out = workflow.evaluate(frame, scores)
    caught = out["metrics"]["fraud_amount_caught_at_1pct_fpr"]
    assert 0 < caught < 1
    bands = out["slices"]["amount_band"]
    assert set(bands) == set(workflow.AMOUNT_BAND_NAMES)
    assert sum(b["rows"] for b in bands.values()) == len(frame)
    assert sum(b["positives"] for b in bands.values()) == frame["is_fraud"].sum()
    assert all(0 <= b["roc_auc"] <= 1 for b in bands.values())
    # A perfect model catches every fraudulent cent.
    assert workflow.evaluate(frame, frame["is_fraud"].to_numpy(float))["metrics"][
        "fraud_amount_caught_at_1pct_fpr"] == 1.0


def test_the_threshold_flags_at_most_one_percent_of_legitimate_charges():
    frame, scores = holdout()
    y = frame["is_fraud"].to_numpy().astype(bool)
    flagged = workflow.flagged_at_fpr(y, scores)
    assert flagged[~y].sum() <= 0.01 * (~y).sum() and flagged[y].any()


class Scored:
    def __init__(self, model_id, scores):
        self.ref = self.model_id = model_id
        self.scores = scores

    def predict(self, frame):
        return self.scores


def test_in_a_platform_evaluation_the_slices_are_in_the_result():
    frame, scores = holdout()
    result = evaluate([Scored("m-a", scores), Scored("m-b", np.sqrt(scores))], frame, "is_fraud",
                      settings=Settings(resamples=20), workflow_evaluate=workflow.WORKFLOW.evaluate,
                      workflow_name="workflow fraud")
    for m in result.models:
        assert set(m.slices["amount_band"]) == set(workflow.AMOUNT_BAND_NAMES)
        assert "fraud_amount_caught_at_1pct_fpr" in m.workflow_metrics
    json.dumps(result.to_dict(), allow_nan=False)


def test_the_binary_evaluates_its_model_on_the_rows_it_held_out(tmp_path):
    trained = run([str(HERE / "train")], tmp_path)
    record = store_lib.open_store(str(tmp_path)).get(trained["model_id"])
    request = json_format.MessageToDict(record.request, preserving_proto_field_name=True)
    spec = {"metadata": request["metadata"], "data": request["data"], "holdout": request["holdout"],
            "models": [trained["model_id"]], "bootstrap": {"resamples": 100}}
    (tmp_path / "evaluation.json").write_text(json.dumps(spec))
    proc = subprocess.run([str(HERE / "train"), "--evaluate", str(tmp_path / "evaluation.json"),
                           "--store", str(tmp_path), "--result", str(tmp_path / "result.json")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "[evaluate] scoring 1 model(s)" in proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])["evaluation"]
    assert json.loads((tmp_path / "result.json").read_text())["evaluation"] == result
    (model,) = result["models"]
    assert model["metrics"]["roc_auc"]["value"] == record.metrics["roc_auc"]
    assert result["rows"] == record.metrics["holdout_rows"] and result["label"] == "is_fraud"
    assert set(model["slices"]["amount_band"]) <= set(workflow.AMOUNT_BAND_NAMES)
    assert 0 <= model["workflow_metrics"]["fraud_amount_caught_at_1pct_fpr"] <= 1
