"""The schedule endpoints on the training app (Flask's test client): checks at the door
naming the field, teams (403), listing, runs now and their listing."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roundhouse.platform.api.validate import ResourceLimits
from roundhouse.platform.auth.sql_tokens import SqliteTokenStore
from roundhouse.platform.data.sources import DataAccess
from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.platform.registry.store import open_store
from roundhouse.platform.registry.tags import TagStore
from roundhouse.platform.schedules.store import ScheduleStore
from roundhouse.platform.training.app import create_app

LIMITS = ResourceLimits(max_cpu=4, max_memory_bytes=16 * 2**30, max_gpu=0)


@pytest.fixture
def api(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"event_time": pa.array([0, 1], pa.timestamp("us", tz="UTC")),
                             "x1": [0.1, 0.2], "y": [0, 1]}), data / "toy.parquet")
    db = str(tmp_path / "jobs.sqlite")
    jobs, tokens = SqliteJobStore(db), SqliteTokenStore(db)
    models = open_store(str(tmp_path / "models"))
    schedules = ScheduleStore(jobs)
    app = create_app(jobs, models, workflows={"toy"}, limits=LIMITS,
                     data=DataAccess(roots=(data,), read_files=True), tokens=tokens, schedules=schedules)
    client = app.test_client()
    as_ = {team: tokens.create(team, admin=team == "admin")[1] for team in ("risk", "growth", "admin")}

    def call(who, method, path, body=None):
        resp = client.open(path, method=method, headers={"Authorization": f"Bearer {as_[who]}"},
                           data=None if body is None else json.dumps(body))
        return resp.status_code, resp.get_json()
    call.data, call.models, call.jobs, call.schedules = data, models, jobs, schedules
    yield call
    tokens.close()
    jobs.close()


def body(api, **change):
    out = {"tag": "toy-prod", "cron": "0 3 * * *",
           "template": {"metadata": {"owner": "ana"},
                        "data": {"parquet": {"uri": str(api.data / "toy.parquet"), "label_columns": ["y"]}},
                        "workflow": "toy", "resources": {"type": "CPU", "cpu": 1}},
           "window": {"column": "event_time", "days": 30, "holdout_days": 3},
           "gate": {"metric": "roc_auc", "min_improvement": 0.001}}
    out.update(change)
    return out


def template(api, **change):
    return {**body(api)["template"], **change}


def test_create_list_get_and_run_now(api):
    status, schedule = api("risk", "POST", "/v1/schedules", body(api))
    assert status == 201, schedule
    assert schedule["team"] == "risk" and schedule["owner"] == "ana" and schedule["next_slot"].endswith("T03:00:00Z")
    assert api("risk", "GET", "/v1/schedules")[1]["schedules"] == [schedule]
    assert api("growth", "GET", "/v1/schedules")[1]["schedules"] == []
    assert api("admin", "GET", "/v1/schedules")[1]["schedules"] == [schedule]
    assert api("risk", "GET", f"/v1/schedules/{schedule['id']}") == (200, schedule)
    assert api("growth", "GET", f"/v1/schedules/{schedule['id']}")[0] == 403
    assert api("growth", "POST", f"/v1/schedules/{schedule['id']}/run")[0] == 403
    assert api("risk", "GET", "/v1/schedules/s-nope")[0] == 404
    status, run = api("risk", "POST", f"/v1/schedules/{schedule['id']}/run")
    assert status == 202 and run["state"] == "PENDING" and run["kind"] == "manual"
    assert api("risk", "GET", f"/v1/schedules/{schedule['id']}/runs")[1]["runs"] == [run]


@pytest.mark.parametrize("change, field", [
    ({"cron": "0 25 * * *"}, "cron"),
    ({"gate": {"metric": "roc_auc"}}, "gate.min_improvement"),
    ({"window": {"column": "event_time", "days": 30}}, "window.holdout_days"),
    ({"tag": "-no"}, "tag"),
])
def test_bad_schedules_get_400_naming_the_field(api, change, field):
    status, answer = api("risk", "POST", "/v1/schedules", body(api, **change))
    assert status == 400 and field in {e["field"] for e in answer["details"]}, answer


@pytest.mark.parametrize("tmpl, field", [
    ({"workflow": "nope"}, "template.workflow"),                       # not a workflow this service runs
    ({"resources": {"type": "CPU", "cpu": 64}}, "template.resources.cpu"),  # past the limits
    ({"params": []}, "template.params"),
    ({"holdout": {"random": {"fraction": 0.1}}}, "template.holdout"),
])
def test_bad_templates_are_checked_as_jobs_are(api, tmpl, field):
    status, answer = api("risk", "POST", "/v1/schedules", body(api, template=template(api, **tmpl)))
    assert status == 400 and field in json.dumps(answer), answer


def test_template_data_is_checked_as_a_jobs_is(api, tmp_path):
    outside = template(api, data={"parquet": {"uri": str(tmp_path / "elsewhere.parquet"), "label_columns": ["y"]}})
    status, answer = api("risk", "POST", "/v1/schedules", body(api, template=outside))
    assert status == 400 and answer["field"].startswith("template.data"), answer
    status, answer = api("risk", "POST", "/v1/schedules",
                         body(api, window={"column": "nope", "days": 30, "holdout_days": 3}))
    assert status == 400 and "nope" in answer["error"], answer


def test_a_schedule_targets_only_its_teams_tags(api):
    tags = TagStore(api.models)
    tags._append("growth-prod", lambda history: None, "bo", team="growth")  # a tag of team growth
    status, answer = api("risk", "POST", "/v1/schedules", body(api, tag="growth-prod"))
    assert status == 403 and "belongs to team 'growth'" in answer["error"]
    assert api("growth", "POST", "/v1/schedules", body(api, tag="growth-prod"))[0] == 201
    status, answer = api("risk", "POST", "/v1/schedules", body(api, team="growth"))
    assert status == 403
    status, answer = api("risk", "POST", "/v1/schedules",
                         body(api, template=template(api, metadata={"owner": "ana", "team": "growth"})))
    assert status == 403 and "template.metadata.team" in answer["error"]
    status, schedule = api("admin", "POST", "/v1/schedules", body(api, team="growth"))
    assert status == 201 and schedule["team"] == "growth"
