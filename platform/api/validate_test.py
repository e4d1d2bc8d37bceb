"""Requests are parsed strictly and every rejection names the field at fault."""

import copy
import json

import pytest
from google.protobuf import json_format

from roundhouse.platform.api import job_pb2, model_pb2, training_pb2
from roundhouse.platform.api import validate
from roundhouse.platform.api.validate import RequestError, ResourceLimits, parse_request

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
    # integers for enums (proto3 keeps unknown ones), booleans for numbers (json_format reads 1)
    ("resources.type", 12345, "resources.type",
     '12345 is not a valid value; expected one of "CPU", "GPU", "HIGHMEM"'),
    ("data.parquet.filters.0.op", 99, "data.parquet.filters[0].op", '"EQ", "NE"'),
    ("resources.cpu", True, "resources.cpu", "expected a number, got a boolean true"),
    ("resources.type", True, "resources.type", "got a boolean true"),
    ("holdout.random.fraction", False, "holdout.random.fraction", "got a boolean false"),
    ("resources.memory", "-8Gi", "resources.memory", "at least 1Mi"),
    ("resources.memory", "512m", "resources.memory", "at least 1Mi"),
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


def test_body_that_is_not_utf8_is_refused_with_the_byte_offset():
    body = json.dumps(GOOD).encode()
    at = body.index(b"baseline")
    with pytest.raises(RequestError) as info:
        parse_request(body[:at] + b"\xff" + body[at:])
    assert info.value.field == ""
    assert f"request body is not valid UTF-8: byte 0xff at offset {at}" in str(info.value)
    # UTF-16 is JSON too for json.loads, but not on the wire (RFC 8259).
    with pytest.raises(RequestError, match="not valid UTF-8"):
        parse_request(json.dumps(GOOD).encode("utf-16"))


def nested(depth):
    value = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_deeply_nested_body_is_refused_before_parsing():
    for body in ("[" * 100_000, "[" * 100_000 + "]" * 100_000, '{"params": ' * 50_000):
        with pytest.raises(RequestError) as info:
            parse_request(body.encode())
        assert info.value.field == "" and "more than 32 levels deep" in str(info.value)
    # The request object is level 1 and params level 2: 30 levels inside params.x fit, 31
    # do not (json_format itself would give up at 49, with a message naming no field).
    assert parse_request(json.dumps(with_change("params", {"x": nested(30)}))).params["x"]
    err = rejection(with_change("params", {"x": nested(31)}))
    assert "more than 32 levels deep" in str(err)


LIMITS = ResourceLimits(max_cpu=8, max_memory_bytes=64 * 2**30, max_gpu=2)


@pytest.mark.parametrize("path, value, field, words", [
    ("resources.cpu", 1e308, "resources.cpu", "0 (the resource type's default) to 8 cores"),
    ("resources.cpu", "1e308", "resources.cpu", "to 8 cores on this service, got 1e+308"),
    ("resources.cpu", "Infinity", "resources.cpu", "non-negative number of cores"),
    ("resources.cpu", 8.5, "resources.cpu", "got 8.5"),
    ("resources.memory", "65Gi", "resources.memory", "must be 1Mi to 64Gi on this service"),
    ("resources.memory", "1e400", "resources.memory", "to 64Gi"),
    ("resources.memory", "70G", "resources.memory", "to 64Gi"),
    ("resources.gpu", 3, "resources.gpu", "must be 0 to 2 GPUs on this service, got 3"),
])
def test_resources_beyond_the_services_limits_are_refused(path, value, field, words):
    body = json.dumps(with_change(path, value))
    with pytest.raises(RequestError) as info:
        parse_request(body, LIMITS)
    assert info.value.field == field, str(info.value)
    assert words in str(info.value)
    # A workflow binary checking its own request knows no limits (Infinity is wrong anyway).
    if value != "Infinity":
        parse_request(body)


def test_resources_at_the_limits_are_accepted():
    req = with_change("resources", {"type": "GPU", "cpu": 8, "memory": "64Gi", "gpu": 2})
    assert parse_request(json.dumps(req), LIMITS).resources.memory == "64Gi"


def test_quantities():
    assert validate.quantity("8Gi") == 8 * 2**30
    assert validate.quantity("500m") == 0.5
    assert validate.quantity("1.5k") == 1500
    assert validate.quantity("2E") == 2e18
    assert validate.quantity("1E3") == validate.quantity("1e3") == 1000
    assert validate.quantity("1e400") == float("inf")
    with pytest.raises(ValueError):
        validate.quantity("8GB")
    assert validate.binary_quantity(64 * 2**30) == "64Gi"
    assert validate.binary_quantity(7957 * 2**20) == "7957Mi"
    assert validate.binary_quantity(1000) == "1000"


def test_job_and_model_record_round_trip_through_json():
    req = parse_request(json.dumps(GOOD))
    job = job_pb2.Job(id="j1", state=job_pb2.Job.RUNNING, request=req, owner="ana")
    job.result.metrics["auc"] = 0.91
    again = json_format.Parse(json_format.MessageToJson(job), job_pb2.Job())
    assert again == job
    record = model_pb2.ModelRecord(model_id="m1", git_sha="abc", request=req)
    record.data.files.add(path="s3://training/a.parquet", size=10, etag='"e"')
    assert json_format.Parse(json_format.MessageToJson(record), model_pb2.ModelRecord()) == record
