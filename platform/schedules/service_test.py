"""Retraining schedules in the real training service: the CLI makes a schedule, a run now
trains a challenger with the toy workflow's binary and, the tag having no model, promotes
it; a second schedule's challenger is evaluated against it (`toy_train --evaluate`) and
promoted through its gate, a third's is kept by its; the tag's history names each run."""

import datetime as dt
import json
import pathlib
import subprocess
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from roundhouse.platform.training.service_testlib import Service, call

CLI = pathlib.Path(__file__).parents[1] / "cli"


def events(path: pathlib.Path) -> pathlib.Path:
    """Toy rows over the last 80 days, with the event_time a window cuts on."""
    rng = np.random.default_rng(0)
    n = 800
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    times = now - 3600 - rng.uniform(0, 80 * 86400, size=n)
    y = (x1 + 0.3 * x2 + 0.3 * rng.normal(size=n) > 0).astype(int)
    pq.write_table(pa.table({"event_time": pa.array((times * 1e6).astype("int64"), pa.timestamp("us", tz="UTC")),
                             "x1": x1, "x2": x2, "y": y}), path)
    return path


def schedule(data, min_improvement, **params):
    return {"tag": "toy-prod", "cron": "0 3 * * *", "description": "toy retrain",
            "template": {"metadata": {"owner": "ana"},
                         "data": {"parquet": {"uri": str(data), "label_columns": ["y"]}},
                         "workflow": "toy", "params": params, "resources": {"type": "CPU", "cpu": 1}},
            "window": {"column": "event_time", "days": 90, "holdout_days": 30},
            "gate": {"metric": "roc_auc", "min_improvement": min_improvement, "bootstrap": {"resamples": 100}}}


def cli(svc, *args):
    proc = subprocess.run([str(CLI), "--server", svc.base, "--token", svc.token, *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def decided(svc, schedule_id, run_id, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = call(svc.base, "GET", f"/v1/schedules/{schedule_id}/runs")
        assert status == 200, body
        [run] = [r for r in body["runs"] if r["id"] == run_id]
        if run["state"] == "DECIDED":
            return run
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} still {run['state']}")


def run_now(svc, schedule_id):
    status, run = call(svc.base, "POST", f"/v1/schedules/{schedule_id}/run")
    assert status == 202, run
    return decided(svc, schedule_id, run["id"])


def test_a_schedule_retrains_gates_and_moves_the_tag(tmp_path):
    data = events(tmp_path / "events.parquet")
    svc = Service(tmp_path, str(tmp_path / "jobs.sqlite")).start()
    try:
        (tmp_path / "first.json").write_text(json.dumps(schedule(data, 0.0)))
        first = cli(svc, "schedule", str(tmp_path / "first.json")).strip()
        assert first in cli(svc, "schedules")

        # 1. the tag has no model: the challenger's job succeeded, so it is promoted
        run = run_now(svc, first)
        assert run["decision"] == "promoted", run
        assert run["evaluation_id"] == "" and run["reason"].startswith("the tag pointed at no model")
        job = call(svc.base, "GET", f"/v1/jobs/{run['job_id']}")[1]
        assert job["state"] == "SUCCEEDED" and job["request"]["holdout"]["time_cutoff"]["column"] == "event_time"
        assert call(svc.base, "GET", "/v1/tags/toy-prod")[1]["model_id"] == run["challenger_id"]
        champion = run["challenger_id"]

        # 2. another schedule's challenger against it, on the fresh holdout: through the gate
        second = call(svc.base, "POST", "/v1/schedules", schedule(data, -1.0, C=0.05))[1]["id"]
        promoted = run_now(svc, second)
        assert promoted["decision"] == "promoted", promoted
        assert promoted["champion_id"] == champion and promoted["challenger_id"] != champion
        evaluation = call(svc.base, "GET", f"/v1/evaluations/{promoted['evaluation_id']}")[1]
        assert evaluation["state"] == "SUCCEEDED", evaluation
        assert [m["model_id"] for m in evaluation["result"]["models"]] == [champion, promoted["challenger_id"]]
        gate = promoted["details"]["gate"]
        assert gate["passed"] and gate["improvement"] >= -1.0 and gate["rows"] == evaluation["result"]["rows"]

        # 3. a gate no challenger passes keeps the champion
        third = call(svc.base, "POST", "/v1/schedules", schedule(data, 1.0, C=3.0))[1]["id"]
        kept = run_now(svc, third)
        assert kept["decision"] == "kept" and not kept["details"]["gate"]["passed"], kept
        assert call(svc.base, "GET", "/v1/tags/toy-prod")[1]["model_id"] == promoted["challenger_id"]

        history = call(svc.base, "GET", "/v1/tags/toy-prod/history")[1]["history"]
        assert [(e["model_id"], e["by"]) for e in history] == [
            (champion, f"schedule {first} run {run['id']}"),
            (promoted["challenger_id"], f"schedule {second} run {promoted['id']}")]
        assert run["id"] in cli(svc, "runs", first) and "promoted" in cli(svc, "runs", second)
    finally:
        svc.stop()
