"""Evaluations in the real training service: jobs train two toy models, an evaluation scores
them through the toy workflow's binary (`toy_train --evaluate`, whose own evaluate adds a
slice), a killed service loses no evaluation, and the CLI submits, waits and lists."""

import json
import os
import pathlib
import subprocess
import time

import pytest
import yaml

from roundhouse.platform.training.service_testlib import Service, call, request, toy_data

CLI = pathlib.Path(__file__).parents[1] / "cli"


@pytest.fixture
def trained(tmp_path):
    """A running service with two trained toy models; yields (service, data, [model IDs], [metrics])."""
    data = toy_data(tmp_path / "toy.parquet")
    svc = Service(tmp_path, str(tmp_path / "jobs.sqlite")).start()
    try:
        ids, metrics = [], []
        for params in ({}, {"C": 0.01}):
            job_id = call(svc.base, "POST", "/v1/jobs", request(data, **params))[1]["job_id"]
            assert svc.wait(job_id)["state"] == "SUCCEEDED"
            result = call(svc.base, "GET", f"/v1/jobs/{job_id}/result")[1]
            ids.append(result["model_id"])
            metrics.append(result["metrics"])
        yield svc, data, ids, metrics
    finally:
        svc.stop()


def evaluation(data, models, **extra):
    body = request(data)
    return {"metadata": body["metadata"], "data": body["data"], "holdout": body["holdout"],
            "models": models, "bootstrap": {"resamples": 200}, **extra}


def wait(svc, evaluation_id, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, got = call(svc.base, "GET", f"/v1/evaluations/{evaluation_id}")
        assert status == 200, got
        if got["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return got
        time.sleep(0.2)
    raise AssertionError(f"evaluation {evaluation_id} still {got['state']}")


def test_two_models_on_the_same_rows_with_the_workflows_slices(trained):
    svc, data, (first, second), (first_metrics, second_metrics) = trained
    status, body = call(svc.base, "POST", "/v1/evaluations", evaluation(data, [first, second]))
    assert status == 202, body
    got = wait(svc, body["evaluation_id"])
    assert got["state"] == "SUCCEEDED", got
    result = got["result"]
    assert [m["model_id"] for m in result["models"]] == [first, second]
    # The holdout the jobs held out: the point estimates are the metrics the jobs recorded.
    for model, recorded in zip(result["models"], (first_metrics, second_metrics)):
        assert model["metrics"]["roc_auc"]["value"] == pytest.approx(recorded["roc_auc"], abs=1e-12)
        assert model["metrics"]["roc_auc"]["low"] <= model["metrics"]["roc_auc"]["value"] <= \
            model["metrics"]["roc_auc"]["high"]
        # The toy workflow's own evaluate ran in its binary.
        assert set(model["slices"]["x2_sign"]) == {"negative", "positive"}
        assert "mean_score" in model["workflow_metrics"]
    assert {d["metric"] for d in result["differences"]} == {"roc_auc", "pr_auc", "recall_at_1pct_fpr"}
    assert result["rows"] == 100  # a quarter of the 400 toy rows
    logs = call(svc.base, "GET", f"/v1/evaluations/{body['evaluation_id']}/logs")[1]["text"]
    assert "[evaluate] scoring 2 model(s) on 100 holdout rows" in logs
    listed = call(svc.base, "GET", "/v1/evaluations?state=succeeded")[1]["evaluations"]
    assert [e["id"] for e in listed] == [body["evaluation_id"]]

    status, refused = call(svc.base, "POST", "/v1/evaluations",
                           evaluation(data, [first, "m-000000000000000000000000"]))
    assert status == 400 and refused["field"] == "models[1]", refused


def test_a_killed_service_loses_no_evaluation(trained):
    svc, data, ids, _ = trained
    queued = [call(svc.base, "POST", "/v1/evaluations", evaluation(data, ids, bootstrap={"seed": s}))[1]
              ["evaluation_id"] for s in (1, 2)]
    svc.kill()  # SIGKILL, queued or running: the restarted worker runs them or takes them back
    svc.start()
    for evaluation_id in queued:
        assert wait(svc, evaluation_id)["state"] == "SUCCEEDED"


def test_the_cli_evaluates_waits_and_lists(trained, tmp_path):
    svc, data, ids, _ = trained
    spec = tmp_path / "evaluation.yaml"
    spec.write_text(yaml.safe_dump(evaluation(data, ids)))

    def cli(*args):
        proc = subprocess.run([str(CLI), "--server", svc.base, "--token", svc.token, *args],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "USER": "ana"})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    proc = cli("evaluate", str(spec), "--wait")
    evaluation_id, _, rest = proc.stdout.partition("\n")
    result = json.loads(rest)
    assert [m["model_id"] for m in result["models"]] == ids
    assert "roc_auc" in proc.stderr and "above 0 in" in proc.stderr  # the table
    assert evaluation_id in cli("evaluations").stdout
    assert json.loads(cli("evaluation", evaluation_id).stdout)["state"] == "SUCCEEDED"
