"""Hyperparameter search in the real training service: a 4-trial search over the toy
workflow's C (log-scaled), each trial an ordinary training job whose model is stored; the
service is killed mid-search and restarted, and the search finishes without losing or
repeating a trial; the CLI's tune --wait and tuning."""

import json
import pathlib
import subprocess
import time

from roundhouse.platform.registry.store import open_store
from roundhouse.platform.training.service_testlib import Service, call, request, toy_data

CLI = pathlib.Path(__file__).parents[1] / "cli"


def search_body(data, budget=4, parallelism=2, **params):
    return {"template": request(data, **params),
            "space": {"C": {"type": "float", "low": 0.001, "high": 100.0, "log": True}},
            "metric": "roc_auc", "direction": "maximize", "budget": budget, "parallelism": parallelism,
            "seed": 3}


def wait_search(svc, search_id, until, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, found = call(svc.base, "GET", f"/v1/tuning/{search_id}")
        assert status == 200, found
        if until(found):
            return found
        time.sleep(0.3)
    raise AssertionError(f"search {search_id}: {found}")


def test_a_search_survives_a_restart_and_names_the_best_model(tmp_path):
    data = toy_data(tmp_path / "toy.parquet")
    svc = Service(tmp_path, str(tmp_path / "jobs.sqlite")).start()
    try:
        status, body = call(svc.base, "POST", "/v1/tuning", search_body(data, sleep_seconds=1))
        assert status == 202, body
        search_id = body["search_id"]
        status, bad = call(svc.base, "POST", "/v1/tuning",
                           {**search_body(data), "space": {"C": {"type": "float", "low": 0, "high": 1, "log": True}}})
        assert status == 400 and bad["field"] == "space.C.low", bad
        # once a trial finished, the service dies; the restarted one picks the search up
        before = wait_search(svc, search_id, lambda s: s["trial_counts"]["complete"] >= 1)
        svc.kill()
        svc.start()
        found = wait_search(svc, search_id, lambda s: s["state"] != "RUNNING")
        assert found["state"] == "SUCCEEDED", found
        trials = found["trials"]
        assert [t["number"] for t in trials] == [0, 1, 2, 3] and all(t["state"] == "COMPLETE" for t in trials), \
            [(t["number"], t["state"], t.get("reason"), t["job_id"]) for t in trials]
        for t0 in before["trials"]:  # a trial asked before the kill kept its params and its job
            t1 = trials[t0["number"]]
            assert (t1["params"], t1["job_id"]) == (t0["params"], t0["job_id"])
        jobs = call(svc.base, "GET", "/v1/jobs")[1]["jobs"]
        assert sorted(j["id"] for j in jobs) == sorted(t["job_id"] for t in trials)  # one job per trial
        best = max(trials, key=lambda t: (t["value"], -t["number"]))
        assert found["best"]["number"] == best["number"] and found["best"]["model_id"] == best["model_id"]
        models = open_store(str(tmp_path / "models"))
        for t in trials:
            result = call(svc.base, "GET", f"/v1/jobs/{t['job_id']}/result")[1]
            assert result["model_id"] == t["model_id"] and result["metrics"]["roc_auc"] == t["value"]
            record = models.get(t["model_id"])
            assert record.request.params["C"] == t["params"]["C"]  # the trial's params, stamped
            assert 0.001 <= t["params"]["C"] <= 100
        assert len({t["params"]["C"] for t in trials}) == 4
    finally:
        svc.stop()


def test_the_cli_tunes_waits_and_lists(tmp_path):
    data = toy_data(tmp_path / "toy.parquet")
    svc = Service(tmp_path, str(tmp_path / "jobs.sqlite")).start()
    try:
        spec = tmp_path / "search.json"
        spec.write_text(json.dumps(search_body(data, budget=2, parallelism=2)))

        def cli(*args):
            proc = subprocess.run([str(CLI), "--server", svc.base, "--token", svc.token, *args],
                                  capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr
            return proc

        proc = cli("tune", str(spec), "--wait")
        search_id = proc.stdout.splitlines()[0]
        found = json.loads("\n".join(proc.stdout.splitlines()[1:]))
        assert found["id"] == search_id and found["state"] == "SUCCEEDED" and len(found["trials"]) == 2
        assert "*" in proc.stderr and "roc_auc=" in proc.stderr  # the trials table, the best marked
        assert search_id in cli("tuning").stdout
        assert json.loads(cli("tuning", search_id).stdout)["best"]["model_id"] == found["best"]["model_id"]
    finally:
        svc.stop()
