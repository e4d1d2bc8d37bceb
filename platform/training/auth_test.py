"""Team tokens on the training API: 401 without a usable token, 403 for another team's jobs
and tags, and the admin command on the service's own database."""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roundhouse.platform.api import model_pb2, training_pb2
from roundhouse.platform.api.validate import ResourceLimits
from roundhouse.platform.auth.sql_tokens import SqliteTokenStore
from roundhouse.platform.data.sources import DataAccess
from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.platform.jobs.store import Job
from roundhouse.platform.registry.store import open_store
from roundhouse.platform.registry.tags import TagStore
from roundhouse.platform.training import tokens_main
from roundhouse.platform.training.app import create_app

LIMITS = ResourceLimits(max_cpu=4, max_memory_bytes=16 * 2**30, max_gpu=0)


class Api:
    """The app's test client, calling as one token or another."""

    def __init__(self, client, tokens, models, jobs, db):
        self.client, self.tokens, self.models, self.jobs, self.db = client, tokens, models, jobs, db
        self.as_ = {}
        for team in ("risk", "growth", "admin"):
            record, token = tokens.create(team, name=f"{team} bot")
            self.as_[team] = token
            setattr(self, f"{team}_id", record.id)

    def __call__(self, who, method, path, body=None):
        headers = {} if who is None else {"Authorization": f"Bearer {self.as_.get(who, who)}"}
        data = None if body is None else json.dumps(body)
        return self.client.open(path, method=method, headers=headers, data=data)


@pytest.fixture
def api(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"x1": [0.1, 0.2], "y": [0, 1]}), data / "toy.parquet")
    db = str(tmp_path / "jobs.sqlite")
    jobs, tokens = SqliteJobStore(db), SqliteTokenStore(db)
    models = open_store(str(tmp_path / "models"))
    app = create_app(jobs, models, workflows={"toy"}, limits=LIMITS,
                     data=DataAccess(roots=(data,), read_files=True), tokens=tokens)
    api = Api(app.test_client(), tokens, models, jobs, db)
    api.data = data
    yield api
    tokens.close()
    jobs.close()


def job_request(api, team=None):
    body = {"metadata": {"owner": "ana"},
            "data": {"parquet": {"uri": str(api.data / "toy.parquet"), "label_columns": ["y"]}},
            "holdout": {"random": {"fraction": 0.5, "seed": 3}}, "workflow": "toy"}
    if team is not None:
        body["metadata"]["team"] = team
    return body


def submit(api, who, team=None):
    resp = api(who, "POST", "/v1/jobs", job_request(api, team))
    assert resp.status_code == 202, resp.json
    return resp.json["job_id"]


def model(api, seed):
    record = model_pb2.ModelRecord(bazel_target="//x:train")
    record.artifact.format = "joblib"
    record.metrics["seed"] = seed
    return api.models.put(b"model %d" % seed, record).record.model_id


def test_every_path_but_healthz_needs_a_usable_token(api):
    assert api(None, "GET", "/healthz").status_code == 200
    risk_job = submit(api, "risk")
    for method, path in [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", f"/v1/jobs/{risk_job}"),
                         ("POST", f"/v1/jobs/{risk_job}/cancel"), ("GET", "/v1/tags"),
                         ("PUT", "/v1/tags/x"), ("POST", "/v1/meta-models"), ("GET", "/nowhere")]:
        resp = api(None, method, path, {})
        assert resp.status_code == 401 and resp.json["reason"] == "missing", (method, path, resp.json)
    assert api("rh_nope", "GET", "/v1/jobs").json["reason"] == "malformed"
    unknown = "rh_0123456789ab_" + "A" * 43
    resp = api(unknown, "GET", "/v1/jobs")
    assert resp.status_code == 401 and resp.json["error"] == "unauthenticated: unknown token 0123456789ab"
    api.tokens.revoke(api.risk_id)
    resp = api("risk", "GET", f"/v1/jobs/{risk_job}")
    assert resp.status_code == 401 and resp.json["reason"] == "revoked" and api.risk_id in resp.json["error"]
    assert api.jobs.get(risk_job).state == Job.QUEUED  # nothing was cancelled on the way


def test_a_job_belongs_to_the_team_of_the_token_that_submitted_it(api):
    filled = submit(api, "risk")
    assert api.jobs.get(filled).request.metadata.team == "risk"  # filled from the token
    same = submit(api, "risk", team="risk")
    assert api.jobs.get(same).request.metadata.team == "risk"
    resp = api("risk", "POST", "/v1/jobs", job_request(api, team="growth"))
    assert resp.status_code == 403, resp.json
    assert "metadata.team is 'growth'" in resp.json["error"]
    assert f"token {api.risk_id} is of team 'risk'" in resp.json["error"]
    assert len(api.jobs.list()) == 2  # nothing queued
    # An admin may submit for any team; the job is that team's.
    for_growth = submit(api, "admin", team="growth")
    assert api.jobs.get(for_growth).request.metadata.team == "growth"
    assert api("growth", "GET", f"/v1/jobs/{for_growth}").status_code == 200
    assert api.jobs.get(submit(api, "admin")).request.metadata.team == "admin"


def test_another_teams_job_is_403_for_get_cancel_logs_and_result(api):
    job_id = submit(api, "risk")
    api.jobs.append_logs(job_id, "secret risk stuff\n")
    for method, path in [("GET", f"/v1/jobs/{job_id}"), ("GET", f"/v1/jobs/{job_id}/logs"),
                         ("GET", f"/v1/jobs/{job_id}/result"), ("POST", f"/v1/jobs/{job_id}/cancel")]:
        resp = api("growth", method, path)
        assert resp.status_code == 403, (path, resp.json)
        assert f"job {job_id} belongs to team 'risk'" in resp.json["error"] and resp.json["team"] == "growth"
        assert "secret" not in resp.get_data(as_text=True)
    assert api.jobs.get(job_id).state == Job.QUEUED
    assert api("risk", "GET", f"/v1/jobs/{job_id}").json["id"] == job_id
    assert api("risk", "GET", f"/v1/jobs/{job_id}/logs").json["text"] == "secret risk stuff\n"
    assert api("risk", "GET", f"/v1/jobs/{job_id}/result").status_code == 409  # not succeeded yet
    assert api("admin", "GET", f"/v1/jobs/{job_id}/logs").status_code == 200
    resp = api("risk", "POST", f"/v1/jobs/{job_id}/cancel")
    assert resp.status_code == 202 and resp.json["state"] == "CANCELLED"
    assert f"token {api.risk_id}, team risk" in resp.json["reason"]
    assert api("growth", "GET", "/v1/jobs/nope").status_code == 404  # no such job: 404 for anyone
    # A job from before team tokens (no team) is the admin's alone.
    old = api.jobs.create(training_pb2.TrainingRequest(workflow="toy"))
    resp = api("risk", "GET", f"/v1/jobs/{old.id}")
    assert resp.status_code == 403 and "belongs to no team" in resp.json["error"]
    assert api("admin", "GET", f"/v1/jobs/{old.id}").status_code == 200


def test_a_team_lists_only_its_own_jobs_and_an_admin_sees_all(api):
    risk = {submit(api, "risk"), submit(api, "risk")}
    growth = {submit(api, "growth")}

    def listed(who, query=""):
        resp = api(who, "GET", "/v1/jobs" + query)
        assert resp.status_code == 200, resp.json
        return {j["id"] for j in resp.json["jobs"]}

    assert listed("risk") == risk and listed("growth") == growth
    assert listed("risk", "?team=risk&owner=ana") == risk
    resp = api("risk", "GET", "/v1/jobs?team=growth")
    assert resp.status_code == 403 and "lists only that team's jobs" in resp.json["error"]
    assert listed("admin") == risk | growth
    assert listed("admin", "?team=growth") == growth


def test_a_team_moves_only_the_tags_it_created(api):
    a, b, c = model(api, 1), model(api, 2), model(api, 3)
    resp = api("risk", "PUT", "/v1/tags/fraud-prod", {"model_id": a, "by": "ana"})
    assert resp.status_code == 200 and resp.json == {"tag": "fraud-prod", "model_id": a, "team": "risk"}
    assert api("risk", "PUT", "/v1/tags/fraud-prod", {"model_id": b}).json["model_id"] == b

    for method, path, body in [("PUT", "/v1/tags/fraud-prod", {"model_id": c}),
                               ("POST", "/v1/tags/fraud-prod/rollback", None),
                               ("DELETE", "/v1/tags/fraud-prod", None)]:
        resp = api("growth", method, path, body)
        assert resp.status_code == 403, (method, resp.json)
        assert "tag 'fraud-prod' belongs to team 'risk'" in resp.json["error"], resp.json
    assert TagStore(api.models).get("fraud-prod") == b and len(TagStore(api.models).history("fraud-prod")) == 2
    # Everyone reads every tag.
    assert api("growth", "GET", "/v1/tags").json == {"tags": [{"tag": "fraud-prod", "model_id": b, "team": "risk"}]}
    assert api("growth", "GET", "/v1/tags/fraud-prod").json["model_id"] == b
    # A team cannot give its tag away; an admin can (and moves anything).
    resp = api("risk", "PUT", "/v1/tags/fraud-prod", {"model_id": c, "team": "growth"})
    assert resp.status_code == 403 and "only an admin token may hand" in resp.json["error"]
    assert api("admin", "POST", "/v1/tags/fraud-prod/rollback").json == {
        "tag": "fraud-prod", "model_id": a, "team": "risk"}
    assert api("admin", "PUT", "/v1/tags/fraud-prod", {"model_id": c, "team": "growth"}).json["team"] == "growth"
    assert api("risk", "DELETE", "/v1/tags/fraud-prod").status_code == 403
    resp = api("growth", "DELETE", "/v1/tags/fraud-prod")
    assert resp.status_code == 200 and resp.json["model_id"] is None
    assert api("growth", "GET", "/v1/tags").json == {"tags": []}

    history = api("risk", "GET", "/v1/tags/fraud-prod/history").json
    assert history["team"] == "growth"
    assert [(e["model_id"], e["by"], e["team"], e["token"]) for e in history["history"]] == [
        (a, "ana", "risk", api.risk_id), (b, "risk bot", "risk", api.risk_id),
        (a, "admin bot", "admin", api.admin_id), (c, "admin bot", "admin", api.admin_id),
        (None, "growth bot", "growth", api.growth_id)]


def test_a_tag_from_before_team_tokens_is_the_admins_alone(api):
    a, b = model(api, 1), model(api, 2)
    TagStore(api.models).set("legacy", a, by="ana")  # written into the store directly, no team
    assert api("risk", "GET", "/v1/tags").json["tags"] == [{"tag": "legacy", "model_id": a, "team": ""}]
    resp = api("risk", "PUT", "/v1/tags/legacy", {"model_id": b})
    assert resp.status_code == 403 and "belongs to no team" in resp.json["error"]
    assert api("admin", "PUT", "/v1/tags/legacy", {"model_id": b, "team": "risk"}).json["team"] == "risk"
    assert api("risk", "POST", "/v1/tags/legacy/rollback").json["model_id"] == a


def test_tag_moves_say_what_is_wrong(api):
    a = model(api, 1)
    resp = api("risk", "PUT", "/v1/tags/Fraud Prod", {"model_id": a})
    assert resp.status_code == 400 and resp.json["field"] == "tag" and "bad tag name" in resp.json["error"]
    resp = api("risk", "PUT", "/v1/tags/t", {"model_id": "m-nope"})
    assert resp.status_code == 404 and "no model 'm-nope'" in resp.json["error"]
    resp = api("risk", "PUT", "/v1/tags/t", {"model": a})
    assert resp.status_code == 400 and resp.json["field"] == "model", resp.json
    resp = api("risk", "PUT", "/v1/tags/t", {})
    assert resp.status_code == 400 and resp.json["field"] == "model_id"
    resp = api("risk", "PUT", "/v1/tags/t", {"model_id": a, "team": "Not A Team"})
    assert resp.status_code == 400 and resp.json["field"] == "team"
    for method, path in [("POST", "/v1/tags/t/rollback"), ("DELETE", "/v1/tags/t"),
                         ("GET", "/v1/tags/t/history"), ("GET", "/v1/tags/t")]:
        resp = api("risk", method, path)
        assert resp.status_code == 404 and resp.json["error"] == "no tag 't'", (path, resp.json)
    api("risk", "PUT", "/v1/tags/t", {"model_id": a})
    resp = api("risk", "POST", "/v1/tags/t/rollback")
    assert resp.status_code == 409 and "no earlier model" in resp.json["error"]
    assert api("risk", "DELETE", "/v1/tags/t").status_code == 200
    resp = api("risk", "DELETE", "/v1/tags/t")
    assert resp.status_code == 409 and "points at no model" in resp.json["error"]


def test_only_an_admin_token_makes_and_revokes_tokens_over_http(api):
    assert api("risk", "GET", "/v1/whoami").json["team"] == "risk"
    for method, path, body in [("GET", "/v1/tokens", None), ("POST", "/v1/tokens", {"team": "risk"}),
                               ("POST", f"/v1/tokens/{api.growth_id}/revoke", None)]:
        resp = api("risk", method, path, body)
        assert resp.status_code == 403 and "needs an admin token" in resp.json["error"], resp.json
    made = api("admin", "POST", "/v1/tokens", {"team": "fraud-ops", "name": "ci"})
    assert made.status_code == 201 and made.json["team"] == "fraud-ops" and not made.json["admin"]
    assert api(made.json["token"], "GET", "/v1/whoami").json["id"] == made.json["id"]
    listed = api("admin", "GET", "/v1/tokens").json["tokens"]
    assert {t["team"] for t in listed} == {"risk", "growth", "admin", "fraud-ops"}
    assert made.json["token"] not in json.dumps(listed)
    assert api("admin", "POST", "/v1/tokens", {"team": "Bad Team"}).status_code == 400
    assert api("admin", "POST", "/v1/tokens", {"team": "x", "admin": "yes"}).status_code == 400
    assert api("admin", "POST", f"/v1/tokens/{made.json['id']}/revoke").json["revoked_at"] is not None
    assert api(made.json["token"], "GET", "/v1/whoami").json["reason"] == "revoked"
    assert api("admin", "POST", "/v1/tokens/nope/revoke").status_code == 404


def test_the_admin_command_works_on_the_services_database(api):
    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        code = tokens_main.main(["--jobs", api.db, *argv], out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    code, out, err = run("create", "--team", "fraud-ops", "--name", "airflow")
    token = out.strip()
    assert code == 0 and token.startswith("rh_") and "shown once" in err
    token_id = token.split("_")[1]
    assert api(token, "GET", "/v1/whoami").json == {
        "id": token_id, "team": "fraud-ops", "admin": False, "name": "airflow",
        "created_at": pytest.approx(api.tokens.get(token_id).created_at), "revoked_at": None}
    code, out, _ = run("list")
    line = next(line for line in out.splitlines() if line.startswith(token_id))
    assert code == 0 and "fraud-ops" in line and " no " in line and "airflow" in line and token not in out
    code, out, _ = run("revoke", token_id)
    assert code == 0 and "revoked" in out
    assert api(token, "GET", "/v1/jobs").json["reason"] == "revoked"
    assert token_id not in run("list", "--active")[1] and token_id in run("list")[1]
    code, _, err = run("revoke", "nope")
    assert code == 1 and "no token 'nope'" in err
    code, _, err = run("create", "--team", "Risk")
    assert code == 1 and "bad team name" in err
    code, out, _ = run("create", "--team", "ops", "--admin")
    assert code == 0 and api(out.strip(), "GET", "/v1/whoami").json["admin"] is True
