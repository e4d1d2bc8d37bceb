"""The training API refuses a bad request at the door: a 400 naming the field, never a 500,
and nothing queued."""

import copy
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roundhouse.platform.api.validate import ResourceLimits
from roundhouse.platform.auth.sql_tokens import SqliteTokenStore
from roundhouse.platform.data.sources import DataAccess
from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.platform.registry.store import open_store
from roundhouse.platform.training.app import create_app

LIMITS = ResourceLimits(max_cpu=4, max_memory_bytes=16 * 2**30, max_gpu=0)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    pq.write_table(pa.table({"x1": [0.1, 0.2], "x2": [1.0, 2.0], "y": [0, 1]}), root / "toy.parquet")
    (tmp_path / "outside").mkdir()
    pq.write_table(pa.table({"x1": [0.1], "y": [0]}), tmp_path / "outside" / "toy.parquet")
    return root


@pytest.fixture
def service(tmp_path, data):
    jobs = SqliteJobStore(str(tmp_path / "jobs.sqlite"))
    tokens = SqliteTokenStore(str(tmp_path / "jobs.sqlite"))
    app = create_app(jobs, open_store(str(tmp_path / "models")), workflows={"toy"}, limits=LIMITS,
                     data=DataAccess(roots=(data,), read_files=True), tokens=tokens)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {tokens.create('risk')[1]}"
    return client, jobs


def good(data):
    return {"metadata": {"owner": "ana"},
            "data": {"parquet": {"uri": str(data / "toy.parquet"), "columns": ["x1", "x2"],
                                 "label_columns": ["y"]}},
            "holdout": {"random": {"fraction": 0.25, "seed": 3}},
            "workflow": "toy", "resources": {"type": "CPU", "cpu": 1, "memory": "2Gi"}}


def changed(body, path, value):
    body = copy.deepcopy(body)
    *parents, last = path.split(".")
    node = body
    for p in parents:
        node = node[p]
    node[last] = value
    return body


def test_a_good_request_is_queued(service, data):
    client, jobs = service
    resp = client.post("/v1/jobs", data=json.dumps(good(data)))
    assert resp.status_code == 202, resp.json
    assert [j.id for j in jobs.list()] == [resp.json["job_id"]]


@pytest.mark.parametrize("path, value, field, words", [
    ("workflow", "churn", "workflow", "this service runs toy"),
    ("resources.type", 12345, "resources.type", '"CPU", "GPU", "HIGHMEM"'),
    ("resources.cpu", 1e308, "resources.cpu", "to 4 cores on this service"),
    ("resources.cpu", True, "resources.cpu", "got a boolean true"),
    ("resources.memory", "17Gi", "resources.memory", "1Mi to 16Gi on this service"),
    ("resources", {"type": "GPU", "gpu": 1}, "resources.gpu", "0 to 0 GPUs"),
    ("data.parquet.columns", ["x1", "x3"], "data.parquet.columns[1]", "it has: x1, x2, y"),
    ("data.parquet.label_columns", ["label"], "data.parquet.label_columns[0]", "'label'"),
    ("data.parquet.uri", "{data}/nope.parquet", "data.parquet.uri", "no such file"),
    ("data.parquet.uri", "{data}/../outside/toy.parquet", "data.parquet.uri",
     "outside this service's data folders: {data}"),
    ("data", {"sql": {"query": "select 1 as y", "warehouse": "/etc/wh.duckdb",
                      "label_columns": ["y"]}}, "data.sql.warehouse", "outside"),
    ("holdout", {"dataset": {"source": {"parquet": {"uri": "{data}/missing"}}}},
     "holdout.dataset.source.parquet.uri", "no such file"),
])
def test_bad_requests_get_400_naming_the_field(service, data, path, value, field, words):
    client, jobs = service
    text = json.dumps(changed(good(data), path, value)).replace("{data}", str(data))
    resp = client.post("/v1/jobs", data=text)
    assert resp.status_code == 400, resp.json
    assert resp.json["field"] == field, resp.json
    assert field in resp.json["error"] and words.replace("{data}", str(data)) in resp.json["error"]
    assert jobs.list() == []


@pytest.mark.parametrize("body, words", [
    (b"[" * 100_000, "more than 32 levels deep"),
    (b'{"params": ' * 50_000, "more than 32 levels deep"),
    (b'{"workflow": "t\xffy"}', "not valid UTF-8: byte 0xff at offset 15"),
    (b"{not json", "not valid JSON"),
])
def test_bodies_that_are_not_json_requests_get_400(service, body, words):
    client, jobs = service
    resp = client.post("/v1/jobs", data=body)
    assert resp.status_code == 400 and words in resp.json["error"], resp.json
    assert resp.json["field"] == "" and "request body" in resp.json["error"]
    assert jobs.list() == []


def test_a_body_over_the_limit_gets_413_and_nothing_is_queued(service):
    client, jobs = service
    resp = client.post("/v1/jobs", data=b" " * (2 << 20))
    assert resp.status_code == 413 and "over the limit of 1048576 bytes" in resp.json["error"]
    assert jobs.list() == []


@pytest.mark.parametrize("body, field, words", [
    (b"[" * 100_000, "(spec)", "more than 32 levels deep"),
    (b'{"kind": "\xc3("}', "(spec)", "not valid UTF-8: byte 0xc3 at offset 10"),
    (b"{not json", "(spec)", "not valid JSON"),
    (b'{"kind": "threshold", "kind": "x"}', "kind", "appears twice"),
    (b"[1]", "(spec)", "expected a JSON object"),
])
def test_meta_model_bodies_get_400_too(service, body, field, words):
    client, _ = service
    resp = client.post("/v1/meta-models", data=body)
    assert resp.status_code == 400 and resp.json["field"] == field, resp.json
    assert words in resp.json["error"]
