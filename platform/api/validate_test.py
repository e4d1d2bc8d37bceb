"""Requests are parsed strictly and every rejection names the field at fault."""

import copy
import json

import pytest
from google.protobuf import json_format

from roundhouse.platform.api import job_pb2, model_pb2, training_pb2
from roundhouse.platform.api.validate import RequestError, parse_request

GOOD = {
    "metadata": {"owner": "ana", "team": "fraud", "description": "baseline"},
    "data": {
        "parquet": {
            "uri": "s3://training/fraud/2024/",
            "columns": ["amount", "merchant_count_1h"],
            "label_columns": ["is_fraud"],
            "filters": [
                {"column": "country", "op": "IN", "value": ["DE", "FR"]},
                {"column": "amount", "op": "GT", "value": 0},
            ],
        }
    },
    "holdout": {"random": {"fraction": 0.2, "seed": 7}},
    "workflow": "fraud",
    "params": {"max_depth": 6, "learning_rate": 0.1, "features": {"drop": ["x"]}},
    "resources": {"type": "GPU", "cpu": 4, "memory": "16Gi", "gpu": 1},
}


def with_change(path, value, base=GOOD):
    """GOOD with the value at dotted `path` replaced (value DELETE removes the key)."""
    req = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = req
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return req


DELETE = object()


def rejection(body):
    with pytest.raises(RequestError) as info:
        parse_request(body if isinstance(body, str) else json.dumps(body))
    return info.value


def test_good_request_parses_with_all_parts():
    req = parse_request(json.dumps(GOOD))
    assert req.metadata.owner == "ana"
    assert req.data.WhichOneof("kind") == "parquet"
    f0 = req.data.parquet.filters[0]
    assert (f0.column, f0.op) == ("country", training_pb2.RowFilter.IN)
    assert [v.string_value for v in f0.value.list_value.values] == ["DE", "FR"]
    assert req.holdout.random.seed == 7
    assert req.params["max_depth"] == 6
    assert req.resources.type == training_pb2.Resources.GPU


def test_camel_case_names_are_accepted_too():
    body = json.dumps(GOOD).replace("label_columns", "labelColumns")
    assert list(parse_request(body).data.parquet.label_columns) == ["is_fraud"]


@pytest.mark.parametrize("path, value, field, words", [
    # unknown fields, at several depths
    ("colour", "red", "colour", "unknown field"),
    ("holdout.random.fractio", 0.1, "holdout.random.fractio", "unknown field"),
    ("data.parquet.filters.1.operator", "GT", "data.parquet.filters[1].operator", "unknown field"),
    # mistyped fields
    ("holdout.random.fraction", "a fifth", "holdout.random.fraction", "expected a number"),
    ("holdout.random.seed", -1, "holdout.random.seed", "non-negative integer"),
    ("resources.type", "cpu", "resources.type", '"CPU", "GPU", "HIGHMEM"'),
    ("resources.gpu", "one", "resources.gpu", "non-negative integer"),
    ("data.parquet.columns", "amount", "data.parquet.columns", "expected a list"),
    ("data.parquet.columns", ["amount", 3], "data.parquet.columns[1]", "expected a string"),
    ("data.parquet.filters.0.op", "LIKE", "data.parquet.filters[0].op", '"EQ"'),
    ("metadata", "ana", "metadata", "expected a JSON object"),
    ("params", [1, 2], "params", "expected a JSON object"),
    ("holdout", {"time_cutoff": {"column": "t", "cutoff": "June"}},
     "holdout.time_cutoff.cutoff", "RFC 3339"),
    ("holdout", {"random": {"fraction": 0.1}, "dataset": {}}, "holdout", "only one of"),
    # missing fields
    ("metadata.owner", DELETE, "metadata.owner", "required"),
    ("workflow", DELETE, "workflow", "required"),
    ("data", DELETE, "data", "required"),
    ("holdout", DELETE, "holdout", "required"),
    ("data.parquet.uri", DELETE, "data.parquet.uri", "required"),
    ("data.parquet.label_columns", DELETE, "data.parquet.label_columns", "required"),
    ("data.parquet.filters.0.op", DELETE, "data.parquet.filters[0].op", "required"),
    ("holdout", {"time_cutoff": {"column": "event_time"}}, "holdout.time_cutoff.cutoff",
     "required"),
    # ranges and combinations
    ("holdout.random.fraction", 1.0, "holdout.random.fraction", "between 0 and 1"),
    ("holdout.random.fraction", 0, "holdout.random.fraction", "between 0 and 1"),
    ("resources.memory", "lots", "resources.memory", "not a memory quantity"),
    ("resources.cpu", -2, "resources.cpu", "non-negative"),
    ("resources.type", "CPU", "resources.gpu", "only given to resources.type GPU"),
    ("workflow", "../etc", "workflow", "not a workflow name"),
    ("commit", "3f1c2a9", "commit", "not a full git SHA"),
    ("commit", "HEAD", "commit", "not a full git SHA"),
    ("data.parquet.uri", "gs://b/x", "data.parquet.uri", "only local paths and s3://"),
    ("data.parquet.label_columns", ["amount"], "data.parquet.label_columns[0]", "feature column"),
    ("data.parquet.filters.0.value", "DE", "data.parquet.filters[0].value", "list of values"),
    ("data.parquet.filters.1.value", {"a": 1}, "data.parquet.filters[1].value", "number, string"),
])
def test_rejection_names_the_field(path, value, field, words):
    err = rejection(with_change(path, value))
    assert err.field == field, str(err)
    assert words in str(err)
    body = err.to_dict()
    assert body["field"] == field
    assert body["details"][0]["field"] == field


def test_semantic_errors_are_all_reported_at_once():
    req = with_change("metadata.owner", DELETE, with_change("holdout.random.fraction", 2))
    err = rejection(req)
    assert [e.field for e in err.errors] == ["metadata.owner", "holdout.random.fraction"]


def test_sql_source_and_dataset_holdout():
    req = with_change("data", {"sql": {"query": "select * from t", "label_columns": ["y"]}})
    req["holdout"] = {"dataset": {"source": {"parquet": {"uri": "/data/holdout"}}}}
    parsed = parse_request(json.dumps(req))
    assert parsed.data.sql.query == "select * from t"
    assert parsed.holdout.dataset.source.parquet.uri == "/data/holdout"
    req["data"]["sql"]["query"] = " "
    assert rejection(req).field == "data.sql.query"


def test_not_json_and_not_an_object_and_duplicate_keys():
    assert "not valid JSON" in str(rejection("{"))
    assert "JSON object" in str(rejection("[1]"))
    err = rejection('{"workflow": "a", "workflow": "b"}')
    assert err.field == "workflow" and "twice" in str(err)


def test_job_and_model_record_round_trip_through_json():
    req = parse_request(json.dumps(GOOD))
    job = job_pb2.Job(id="j1", state=job_pb2.Job.RUNNING, request=req, owner="ana")
    job.result.metrics["auc"] = 0.91
    again = json_format.Parse(json_format.MessageToJson(job), job_pb2.Job())
    assert again == job
    record = model_pb2.ModelRecord(model_id="m1", git_sha="abc", request=req)
    record.data.files.add(path="s3://training/a.parquet", size=10, etag='"e"')
    assert json_format.Parse(json_format.MessageToJson(record), model_pb2.ModelRecord()) == record
