"""load(): one request -> train and holdout tables, feature/label columns, fingerprint."""

import datetime as dt
import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roundhouse.platform.api.validate import parse_request
from roundhouse.platform.data import training_data
from roundhouse.platform.data.sources import DataError


def write(path, n, start_id=0):
    start = dt.datetime(2024, 1, 1)
    pq.write_table(pa.table({
        "id": pa.array(range(start_id, start_id + n), pa.int64()),
        "amount": pa.array([float(i) for i in range(n)]),
        "event_time": pa.array([start + dt.timedelta(days=i) for i in range(n)],
                               pa.timestamp("us")),
        "is_fraud": pa.array([i % 3 == 0 for i in range(n)]),
    }), path)
    return str(path)


def request(data, holdout, **extra):
    return parse_request(json.dumps({
        "metadata": {"owner": "ana"}, "workflow": "fraud", "data": data, "holdout": holdout,
        **extra}))


def test_parquet_with_time_cutoff_reads_the_time_column_but_not_as_a_feature(tmp_path):
    path = write(tmp_path / "train.parquet", 100)
    req = request({"parquet": {"uri": path, "columns": ["amount"], "label_columns": ["is_fraud"]}},
                  {"time_cutoff": {"column": "event_time", "cutoff": "2024-03-01T00:00:00Z"}})
    data = training_data.load(req)
    assert data.feature_columns == ["amount"]
    assert data.label_columns == ["is_fraud"]
    assert data.train.column_names == ["amount", "is_fraud", "event_time"]
    assert data.train.num_rows == 60 and data.holdout.num_rows == 40
    assert data.fingerprint.rows == 100
    assert [f.role for f in data.fingerprint.files] == ["train"]
    assert len(data.fingerprint.digest) == 64


def test_explicit_holdout_dataset_reads_the_training_columns(tmp_path):
    train = write(tmp_path / "train.parquet", 50)
    held = write(tmp_path / "holdout.parquet", 10, start_id=1000)
    req = request({"parquet": {"uri": train, "columns": ["id", "amount"],
                               "label_columns": ["is_fraud"]}},
                  {"dataset": {"source": {"parquet": {"uri": held}}}})
    data = training_data.load(req)
    assert data.train.num_rows == 50 and data.holdout.num_rows == 10
    assert data.holdout.column_names == ["id", "amount", "is_fraud"]
    assert data.holdout.column("id").to_pylist()[0] == 1000
    assert [(f.role, f.path) for f in data.fingerprint.files] == [("train", train),
                                                                 ("holdout", held)]


def test_sql_source_with_random_holdout_and_a_stable_digest(tmp_path):
    wh = str(tmp_path / "wh.duckdb")
    with duckdb.connect(wh) as con:
        con.execute("create table t as select range as id, range % 2 = 0 as y from range(40)")
    req = request({"sql": {"query": "select * from t", "label_columns": ["y"]}},
                  {"random": {"fraction": 0.25, "seed": 1}})
    first = training_data.load(req, warehouse=wh)
    again = training_data.load(req, warehouse=wh)
    assert first.feature_columns == ["id"]
    assert (first.train.num_rows, first.holdout.num_rows) == (30, 10)
    assert first.holdout.equals(again.holdout)
    assert first.fingerprint.digest == again.fingerprint.digest
    assert first.fingerprint.queries[0].query == "select * from t"

    with duckdb.connect(wh) as con:
        con.execute("insert into t values (99, true)")
    assert training_data.load(req, warehouse=wh).fingerprint.digest != first.fingerprint.digest


def test_filters_that_leave_nothing_are_reported(tmp_path):
    path = write(tmp_path / "train.parquet", 10)
    req = request({"parquet": {"uri": path, "label_columns": ["is_fraud"],
                               "filters": [{"column": "id", "op": "GT", "value": 100}]}},
                  {"dataset": {"source": {"parquet": {"uri": path}}}})
    with pytest.raises(DataError) as info:
        training_data.load(req)
    assert info.value.field == "data" and "no rows" in str(info.value)
