"""The evaluation endpoints in the training service's own app (Flask's test client, a SQLite
job store, team tokens), with evaluations run by the service's Worker through an executor
that runs the evaluation runner in this process, as a workflow binary's `--evaluate` does."""

import dataclasses
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

from roundhouse.platform import build_info
from roundhouse.platform.api import model_pb2, validate
from roundhouse.platform.api.validate import ResourceLimits
from roundhouse.platform.auth.sql_tokens import SqliteTokenStore
from roundhouse.platform.data.sources import DataAccess
from roundhouse.platform.evaluation import runner, slices, spec as spec_lib, summary
from roundhouse.platform.evaluation.store import EvaluationStore
from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.platform.jobs.store import Job
from roundhouse.platform.registry.store import open_store
from roundhouse.platform.registry.tags import TagStore
from roundhouse.platform.training import runner as training_runner
from roundhouse.platform.training.app import create_app
from roundhouse.platform.training.worker import Worker
from roundhouse.platform.training.workflow import Workflow

LIMITS = ResourceLimits(max_cpu=4, max_memory_bytes=16 * 2**30, max_gpu=0)
SUCCEEDED, FAILED = "SUCCEEDED", "FAILED"


def toy_evaluate(holdout_df, scores):
    return {"metrics": {"mean_score": float(scores.mean())},
            "slices": {"x2_sign": slices.by(np.where(holdout_df["x2"] > 0, "positive", "negative"),
                                            holdout_df["y"], scores)}}


def toy(features, C=1.0):
    return Workflow(name="toy", features=features, label="y", evaluate=toy_evaluate,
                    train=lambda t, h, p: LogisticRegression(C=C).fit(t[list(features)], t["y"]))


@dataclasses.dataclass
class Status:
    state: int
    reason: str = ""
    lost: bool = False

    @property
    def finished(self):
        return True


class InProcessExecutor:
    """Runs an evaluation when it is submitted, in this process, with the output a workflow
    binary's `train --evaluate` prints."""
    name = "local"

    def __init__(self, models, workflow):
        self.models, self.workflow, self.runs = models, workflow, {}

    def submit(self, evaluation_id, spec):
        out = io.StringIO()
        try:
            result = runner.run(spec_lib.parse(spec), self.models, self.workflow,
                                progress=lambda m: print(f"[evaluate] {m}", file=out))
            print(summary.line(result.to_dict()), file=out)
            self.runs[evaluation_id] = (Status(Job.SUCCEEDED), out.getvalue())
        except Exception as e:  # noqa: BLE001 -- the binary prints it and exits 1
            print(f"train: error: {e}", file=out)
            self.runs[evaluation_id] = (Status(Job.FAILED, f"exited with code 1; last output: {e}"),
                                        out.getvalue())
        return evaluation_id

    def status(self, ref):
        return self.runs[ref][0]

    def logs(self, ref):
        return self.runs[ref][1]

    def cancel(self, ref):
        pass


@pytest.fixture
def service(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    n = 2000
    x1, x2, x3 = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    y = (x1 + x2 + 0.5 * rng.normal(size=n) > 1.5).astype(int)
    pq.write_table(pa.table({"x1": x1, "x2": x2, "x3": x3, "y": y}), data / "toy.parquet")
    (tmp_path / "outside").mkdir()
    pq.write_table(pa.table({"x1": x1, "y": y}), tmp_path / "outside" / "toy.parquet")
    db = str(tmp_path / "jobs.sqlite")
    jobs, tokens = SqliteJobStore(db), SqliteTokenStore(db)
    models = open_store(str(tmp_path / "models"))
    evaluations = EvaluationStore(jobs)
    app = create_app(jobs, models, workflows={"toy"}, limits=LIMITS,
                     data=DataAccess(roots=(data,), read_files=True), tokens=tokens,
                     evaluations=evaluations)
    svc = Service(app.test_client(), tokens, models, evaluations, data)
    rows = svc.rows()
    for name, workflow in (("weak", toy(("x1",))), ("strong", toy(("x1", "x2")))):
        request = validate.parse_request({**rows, "workflow": "toy"})
        setattr(svc, name, training_runner.run(request, workflow, models, build_info.current(),
                                               f"//toy:{name}").record.model_id)
    TagStore(models).set("toy-prod", svc.weak, by="ana")
    svc.worker = Worker(evaluations, InProcessExecutor(models, toy(("x1", "x2"))), "test-worker",
                        capacity=1, parse_result=summary.parse)
    yield svc
    tokens.close()
    jobs.close()


class Service:
    def __init__(self, client, tokens, models, evaluations, data):
        self.client, self.tokens, self.models, self.evaluations, self.data = client, tokens, models, evaluations, data
        self.as_ = {team: tokens.create(team, name=f"{team} bot")[1] for team in ("risk", "growth")}
        self.as_["admin"] = tokens.create("ops", admin=True, name="ops admin")[1]

    def rows(self):
        return {"metadata": {"owner": "ana", "description": "challenger vs prod"},
                "data": {"parquet": {"uri": str(self.data / "toy.parquet"), "label_columns": ["y"]}},
                "holdout": {"random": {"fraction": 0.3, "seed": 5}}}

    def body(self, **change):
        return {**self.rows(), "models": ["toy-prod", self.strong], "bootstrap": {"resamples": 200}, **change}

    def __call__(self, method, path, body=None, who="risk"):
        headers = {} if who is None else {"Authorization": f"Bearer {self.as_.get(who, who)}"}
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
        return self.client.open(path, method=method, headers=headers, data=data)

    def submit(self, who="risk", **change):
        resp = self("POST", "/v1/evaluations", self.body(**change), who=who)
        assert resp.status_code == 202, resp.json
        return resp.json["evaluation_id"]

    def run(self):
        for _ in range(3):  # claim and run, then record the outcome
            self.worker.step()


def test_an_evaluation_runs_and_its_result_is_stored(service):
    resp = service("POST", "/v1/evaluations", service.body())
    assert resp.status_code == 202, resp.json
    evaluation_id = resp.json["evaluation_id"]
    # The tag is resolved at submit: the evaluation records what it pointed at.
    assert resp.json["models"] == [{"ref": "toy-prod", "model_id": service.weak},
                                   {"ref": service.strong, "model_id": service.strong}]
    assert resp.json["workflow"] == "toy"  # from the models' records
    got = service("GET", f"/v1/evaluations/{evaluation_id}").json
    assert got["state"] == "QUEUED" and "result" not in got and got["team"] == "risk"

    service.run()
    got = service("GET", f"/v1/evaluations/{evaluation_id}").json
    assert got["state"] == SUCCEEDED, got
    result = got["result"]
    weak, strong = result["models"]
    assert (weak["ref"], weak["model_id"], strong["model_id"]) == ("toy-prod", service.weak, service.strong)
    record = service.models.get(service.weak)
    assert weak["metrics"]["roc_auc"]["value"] == record.metrics["roc_auc"]  # the rows it was trained on
    roc = next(d for d in result["differences"] if d["metric"] == "roc_auc")
    assert roc["model"] == service.strong and roc["baseline"] == service.weak and roc["low"] > 0
    # The workflow's own evaluate ran: its metric and its slices are in the result.
    assert set(strong["slices"]["x2_sign"]) == {"negative", "positive"} and 0 < strong["workflow_metrics"]["mean_score"] < 1
    assert result["bootstrap"]["resamples"] == 200

    listed = service("GET", "/v1/evaluations").json["evaluations"]
    assert [e["id"] for e in listed] == [evaluation_id] and "result" not in listed[0]
    assert listed[0]["models"][0] == {"ref": "toy-prod", "model_id": service.weak}
    assert service("GET", "/v1/evaluations?state=succeeded").json["evaluations"][0]["id"] == evaluation_id
    assert service("GET", "/v1/evaluations?state=queued").json["evaluations"] == []
    logs = service("GET", f"/v1/evaluations/{evaluation_id}/logs").json
    assert "[evaluate] scoring 2 model(s)" in logs["text"]


def test_moving_the_tag_later_does_not_change_a_queued_evaluation(service):
    evaluation_id = service.submit()
    TagStore(service.models).set("toy-prod", service.strong, by="ben")
    service.run()
    got = service("GET", f"/v1/evaluations/{evaluation_id}").json
    assert got["result"]["models"][0]["model_id"] == service.weak


@pytest.mark.parametrize("change, field, words", [
    ({"models": ["toy-prod", "m-000000000000000000000000"]}, "models[1]", "no model 'm-0000"),
    ({"models": ["no-such-tag"]}, "models[0]", "neither a model ID in the model store nor a tag"),
    ({"models": ["toy-prod", "{weak}"]}, "models[1]", "which models[0] ('toy-prod') names already"),
    ({"models": ["toy-prod", "{meta}"]}, "models[1]", "threshold meta-model"),
    ({"data": {"parquet": {"uri": "{data}/toy.parquet", "columns": ["x1", "x3"], "label_columns": ["y"]}}},
     "models[1]", "reads column(s) x2, which the data does not provide"),
    ({"data": {"parquet": {"uri": "{data}/../outside/toy.parquet", "label_columns": ["y"]}}},
     "data.parquet.uri", "outside this service's data folders"),
    ({"data": {"parquet": {"uri": "{data}/nope.parquet", "label_columns": ["y"]}}},
     "data.parquet.uri", "no such file"),
    ({"data": {"parquet": {"uri": "{data}/toy.parquet", "label_columns": ["label"]}}},
     "data.parquet.label_columns[0]", "no column 'label'"),
    ({"workflow": "churn"}, "workflow", "unknown workflow 'churn'; this service runs toy"),
    ({"holdout": {"random": {"fraction": 1.5}}}, "holdout.random.fraction", "between 0 and 1"),
    ({"resources": {"cpu": 1}}, "resources", "unknown field 'resources'"),
    ({"bootstrap": {"resamples": 10**6}}, "bootstrap.resamples", "from 1 to 10000"),
])
def test_bad_requests_get_400_naming_the_field_and_nothing_is_queued(service, change, field, words):
    record = model_pb2.ModelRecord()  # a meta-model, as platform/registry/meta_models stores one
    record.meta.kind, record.artifact.format = "threshold", "meta-json"
    meta = service.models.put(b'{"kind": "threshold"}', record).record.model_id
    text = (json.dumps(service.body(**change)).replace("{data}", str(service.data))
            .replace("{weak}", service.weak).replace("{meta}", meta))
    resp = service("POST", "/v1/evaluations", text.encode())
    assert resp.status_code == 400, resp.json
    assert resp.json["field"] == field, resp.json
    assert resp.json["error"].startswith("invalid evaluation request: ") and words in resp.json["error"], resp.json
    assert service.evaluations.list() == []


def test_a_body_that_is_not_json_gets_400(service):
    resp = service("POST", "/v1/evaluations", b"{not json")
    assert resp.status_code == 400 and "not valid JSON" in resp.json["error"]


def test_an_evaluation_belongs_to_the_callers_team(service):
    mine = service.submit(who="risk")
    # The body names no team: the evaluation is the token's team's, and its spec says so.
    assert service("GET", f"/v1/evaluations/{mine}").json["spec"]["metadata"]["team"] == "risk"
    assert service("GET", f"/v1/evaluations/{mine}", who=None).status_code == 401
    other = service("GET", f"/v1/evaluations/{mine}", who="growth")
    assert other.status_code == 403 and "belongs to team 'risk'" in other.json["error"]
    assert service("POST", f"/v1/evaluations/{mine}/cancel", who="growth").status_code == 403
    assert service("GET", "/v1/evaluations", who="growth").json["evaluations"] == []
    assert service("GET", "/v1/evaluations?team=risk", who="growth").status_code == 403
    assert [e["id"] for e in service("GET", "/v1/evaluations", who="admin").json["evaluations"]] == [mine]
    assert service("GET", f"/v1/evaluations/{mine}", who="admin").status_code == 200
    # metadata.team may only name the caller's own team (an admin's may name any).
    refused = service("POST", "/v1/evaluations", service.body(metadata={"owner": "ana", "team": "growth"}))
    assert refused.status_code == 403 and "metadata.team is 'growth'" in refused.json["error"]
    for_growth = service.submit(who="admin", metadata={"owner": "ops", "team": "growth"})
    assert [e["id"] for e in service("GET", "/v1/evaluations", who="growth").json["evaluations"]] == [for_growth]


def test_cancel_a_queued_evaluation_and_unknown_ids(service):
    evaluation_id = service.submit()
    resp = service("POST", f"/v1/evaluations/{evaluation_id}/cancel")
    assert resp.status_code == 202 and resp.json["state"] == "CANCELLED"
    assert service("POST", f"/v1/evaluations/{evaluation_id}/cancel").status_code == 409
    missing = service("GET", "/v1/evaluations/nope")
    assert missing.status_code == 404 and missing.json["error"] == "no evaluation 'nope'"
    assert service("GET", "/v1/evaluations?state=sideways").status_code == 400


def test_an_evaluation_that_cannot_run_fails_with_the_reason(service):
    # Only reading the rows can tell that no row passes the filter.
    parquet = {"uri": str(service.data / "toy.parquet"), "label_columns": ["y"],
               "filters": [{"column": "x1", "op": "GT", "value": 1000}]}
    evaluation_id = service.submit(data={"parquet": parquet})
    service.run()
    got = service("GET", f"/v1/evaluations/{evaluation_id}").json
    assert got["state"] == FAILED and "of 0 rows" in got["reason"] and "result" not in got
