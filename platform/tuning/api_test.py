"""The tuning endpoints in the service's own Flask app (Flask's test client): the door's checks,
teams, and a search advanced by the service's loop with its trial jobs finished by the test."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roundhouse.platform.api import job_pb2
from roundhouse.platform.api.validate import ResourceLimits
from roundhouse.platform.auth.sql_tokens import SqliteTokenStore
from roundhouse.platform.data.sources import DataAccess
from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.platform.jobs.store import Job
from roundhouse.platform.training.app import create_app
from roundhouse.platform.tuning.search import TuningLoop
from roundhouse.platform.tuning.store import TuningStore

LIMITS = ResourceLimits(max_cpu=4, max_memory_bytes=16 * 2**30, max_gpu=0)


class Api:
    def __init__(self, client, tokens):
        self.client = client
        self.as_ = {team: tokens.create(team, name=f"{team} bot")[1] for team in ("risk", "growth")}
        self.as_["admin"] = tokens.create("ops", admin=True, name="admin")[1]

    def __call__(self, who, method, path, body=None):
        headers = {} if who is None else {"Authorization": f"Bearer {self.as_[who]}"}
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
        return self.client.open(path, method=method, headers=headers, data=data)


@pytest.fixture
def api(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"x1": [0.1, 0.2], "y": [0, 1]}), data / "toy.parquet")
    db = str(tmp_path / "jobs.sqlite")
    jobs, tokens = SqliteJobStore(db), SqliteTokenStore(db)
    tuning = TuningStore(jobs)
    app = create_app(jobs, None, workflows={"toy"}, limits=LIMITS,
                     data=DataAccess(roots=(data,), read_files=True), tokens=tokens, tuning=tuning)
    a = Api(app.test_client(), tokens)
    a.data, a.jobs, a.tuning = data, jobs, tuning
    yield a
    tokens.close()
    jobs.close()


def search_body(api, **overrides):
    template = {"metadata": {"owner": "ana"},
                "data": {"parquet": {"uri": str(api.data / "toy.parquet"), "label_columns": ["y"]}},
                "holdout": {"random": {"fraction": 0.5, "seed": 3}}, "workflow": "toy",
                "params": {"sleep_seconds": 0}}
    body = {"template": template, "space": {"C": {"type": "float", "low": 0.01, "high": 100.0, "log": True}},
            "metric": "roc_auc", "direction": "maximize", "budget": 4, "parallelism": 2, "seed": 1}
    body.update(overrides)
    return body


def finish_all(jobs, value=lambda c: 1.0 / (1.0 + abs(c - 1.0))):
    while (job := jobs.claim("runner", 30)) is not None:
        result = job_pb2.JobResult(model_id="m-" + job.id[:24])
        result.metrics["roc_auc"] = value(job.request.params["C"])
        jobs.transition(job.id, Job.SUCCEEDED, result=result, worker="runner")


def test_a_search_runs_through_the_api(api):
    resp = api("risk", "POST", "/v1/tuning", search_body(api))
    assert resp.status_code == 202, resp.json
    search_id = resp.json["search_id"]
    loop = TuningLoop(api.tuning, api.jobs, "svc")
    for _ in range(10):
        loop.step()
        got = api("risk", "GET", f"/v1/tuning/{search_id}").json
        assert sum(t["state"] == "RUNNING" for t in got["trials"]) <= 2
        if got["state"] != "RUNNING":
            break
        finish_all(api.jobs)
    assert got["state"] == "SUCCEEDED" and len(got["trials"]) == 4, got
    best = max(got["trials"], key=lambda t: t["value"])
    assert got["best"]["number"] == best["number"] and got["best"]["model_id"] == best["model_id"]
    assert got["team"] == "risk" and got["spec"]["template"]["metadata"]["team"] == "risk"
    for t in got["trials"]:
        job = api("risk", "GET", f"/v1/jobs/{t['job_id']}").json
        assert job["request"]["metadata"]["team"] == "risk" and job["request"]["params"]["C"] == t["params"]["C"]
    listed = api("risk", "GET", "/v1/tuning").json["searches"]
    assert [s["id"] for s in listed] == [search_id] and "trials" not in listed[0]
    assert listed[0]["best"]["model_id"] == got["best"]["model_id"]
    # another team neither sees nor lists it; an admin does
    assert api("growth", "GET", f"/v1/tuning/{search_id}").status_code == 403
    assert api("growth", "GET", "/v1/tuning").json["searches"] == []
    assert api("growth", "GET", "/v1/tuning?team=risk").status_code == 403
    assert api("admin", "GET", f"/v1/tuning/{search_id}").status_code == 200
    assert [s["id"] for s in api("admin", "GET", "/v1/tuning?team=risk&state=succeeded").json["searches"]] == [search_id]
    assert api("risk", "GET", "/v1/tuning/nope").status_code == 404
    assert api("risk", "GET", "/v1/tuning?state=sideways").status_code == 400
    assert api("risk", "POST", f"/v1/tuning/{search_id}/cancel").status_code == 409


@pytest.mark.parametrize("overrides, field", [
    ({"space": {"C": {"type": "gaussian"}}}, "space.C.type"),
    ({"space": {"C": {"type": "float", "low": 2.0, "high": 1.0}}}, "space.C.low"),
    ({"space": {"C": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}}, "space.C.low"),
    ({"space": {"C": {"type": "categorical", "choices": []}}}, "space.C.choices"),
    ({"metric": "accuracy"}, "metric"),
    ({"direction": "sideways"}, "direction"),
    ({"budget": 0}, "budget"),
    ({"parallelism": 0}, "parallelism"),
])
def test_bad_requests_name_the_field(api, overrides, field):
    resp = api("risk", "POST", "/v1/tuning", search_body(api, **overrides))
    assert resp.status_code == 400 and resp.json["field"] == field, resp.json
    assert resp.json["error"].startswith("invalid tuning request: " + field)


def test_the_template_is_checked_as_a_training_request(api):
    def template_error(change):
        body = search_body(api)
        change(body["template"])
        resp = api("risk", "POST", "/v1/tuning", body)
        assert resp.status_code == 400, resp.json
        return resp.json

    assert template_error(lambda t: t.update(workflow="nope")) | {} and \
        template_error(lambda t: t.update(workflow="nope"))["known"] == ["toy"]
    assert template_error(lambda t: t.update(workflow="nope"))["field"] == "template.workflow"
    assert template_error(lambda t: t.update(colour="red"))["field"] == "template.colour"
    assert template_error(lambda t: t["data"]["parquet"].update(uri="/etc/passwd"))["field"].startswith("template.data")
    assert template_error(lambda t: t.update(resources={"type": "CPU", "cpu": 64}))["field"] == "template.resources.cpu"
    # ... with the same messages POST /v1/jobs gives
    body = search_body(api)
    body["template"]["workflow"] = "nope"
    job = api("risk", "POST", "/v1/jobs", body["template"]).json
    assert job["field"] == "workflow" and job["known"] == ["toy"]
    tuning = template_error(lambda t: t.update(workflow="nope"))
    assert tuning["details"][0]["message"] == job["details"][0]["message"]
    assert api("risk", "POST", "/v1/tuning", b"{not json").status_code == 400


def test_teams(api):
    body = search_body(api)
    body["template"]["metadata"]["team"] = "growth"
    assert api("risk", "POST", "/v1/tuning", body).status_code == 403
    resp = api("admin", "POST", "/v1/tuning", body)
    assert resp.status_code == 202
    assert api.tuning.get(resp.json["search_id"]).team == "growth"
    assert api(None, "GET", "/v1/tuning").status_code == 401


def test_cancel_stops_the_search_and_its_jobs(api):
    search_id = api("risk", "POST", "/v1/tuning", search_body(api)).json["search_id"]
    loop = TuningLoop(api.tuning, api.jobs, "svc")
    loop.step()
    assert api("growth", "POST", f"/v1/tuning/{search_id}/cancel").status_code == 403
    resp = api("risk", "POST", f"/v1/tuning/{search_id}/cancel")
    assert resp.status_code == 202 and resp.json["state"] == "CANCELLED"
    got = api.tuning.get(search_id)
    assert len(got.trials) == 2
    assert all(api.jobs.get(t.job_id).state == Job.CANCELLED for t in got.trials)
    loop.step()
    assert len(api.tuning.get(search_id).trials) == 2
