"""Parquet (local and S3) and SQL sources: projection, push-down, fingerprints, errors."""

import datetime as dt
import hashlib
import os

import boto3
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from roundhouse.platform.api import training_pb2
from roundhouse.platform.data import storage
from roundhouse.platform.data.sources import (DataAccess, DataError, check_source, read_parquet,
                                              read_sql)
from roundhouse.testing import s3_server

ROWS = 200_000
ROW_GROUP = 10_000
BUCKET = "training-data"


def make_table() -> pa.Table:
    ids = pa.array(range(ROWS), pa.int64())
    start = dt.datetime(2024, 1, 1)
    return pa.table({
        "id": ids,  # sorted, so row-group statistics can prune on it
        "amount": pc.multiply(pc.cast(ids, pa.float64()), 0.5),
        "country": pa.array(["DE", "FR", "US", "GB"] * (ROWS // 4)),
        # A wide column that must never be read unless asked for.
        "payload": pa.array([hashlib.sha256(str(i).encode()).hexdigest()
                             for i in range(ROWS)]),
        "event_time": pa.array([start + dt.timedelta(minutes=i) for i in range(ROWS)],
                               pa.timestamp("us")),
        "is_fraud": pa.array([i % 7 == 0 for i in range(ROWS)]),
    })


class CountingHandler(pafs.FileSystemHandler):
    """Wraps a filesystem and counts the bytes read from it and the files opened."""

    def __init__(self, inner: pafs.FileSystem):
        self.inner = inner
        self.bytes_read = 0
        self.opened: list[str] = []

    def reset(self):
        self.bytes_read = 0
        self.opened = []

    # reads, counted
    def open_input_file(self, path):
        self.opened.append(path)
        return pa.PythonFile(_CountingReader(self, self.inner.open_input_file(path)), mode="r")

    def open_input_stream(self, path):
        self.opened.append(path)
        return pa.PythonFile(_CountingReader(self, self.inner.open_input_stream(path)), mode="r")

    # everything else, passed through
    def get_type_name(self):
        return "counting+" + self.inner.type_name

    def get_file_info(self, paths):
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.inner.get_file_info(selector)

    def normalize_path(self, path):
        return self.inner.normalize_path(path)

    def create_dir(self, path, recursive):
        self.inner.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.inner.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.inner.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        self.inner.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path):
        self.inner.delete_file(path)

    def move(self, src, dest):
        self.inner.move(src, dest)

    def copy_file(self, src, dest):
        self.inner.copy_file(src, dest)

    def open_output_stream(self, path, metadata):
        return self.inner.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        return self.inner.open_append_stream(path, metadata=metadata)

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other


class _CountingReader:
    def __init__(self, handler, f):
        self.handler, self.f = handler, f
        self.closed = False

    def read(self, nbytes=None):
        data = self.f.read() if nbytes is None else self.f.read(nbytes)
        self.handler.bytes_read += len(data)
        return data

    def seek(self, pos, whence=0):
        return self.f.seek(pos, whence)

    def tell(self):
        return self.f.tell()

    def size(self):
        return self.f.size()

    def seekable(self):
        return True

    def close(self):
        self.closed = True
        self.f.close()


def write_dataset(fs: pafs.FileSystem, root: str, table: pa.Table) -> None:
    fs.create_dir(root, recursive=True)
    # Two files of ten small row groups each, so both file- and row-group pruning show up.
    half = table.num_rows // 2
    for i, part in enumerate([table.slice(0, half), table.slice(half)]):
        with fs.open_output_stream(f"{root}/part-{i}.parquet") as out:
            pq.write_table(part, out, row_group_size=ROW_GROUP)


@pytest.fixture(scope="module")
def s3_endpoint():
    with s3_server.s3_server() as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def dataset(request, tmp_path):
    """(uri, S3Options, filesystem) of the same dataset on local disk or on the S3 server."""
    table = make_table()
    if request.param == "local":
        root = str(tmp_path / "events")
        write_dataset(pafs.LocalFileSystem(), root, table)
        yield root, None, pafs.LocalFileSystem()
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        s3_server.reset(endpoint)
        options = storage.S3Options(endpoint_url=endpoint, region=s3_server.REGION,
                                    access_key=s3_server.ACCESS_KEY,
                                    secret_key=s3_server.SECRET_KEY)
        options.boto3_client().create_bucket(Bucket=BUCKET)
        fs = options.filesystem()
        write_dataset(fs, f"{BUCKET}/events", table)
        yield f"s3://{BUCKET}/events/", options, fs


def source(uri, columns=(), labels=("is_fraud",), filters=()):
    src = training_pb2.ParquetSource(uri=uri, columns=list(columns), label_columns=list(labels))
    for column, op, value in filters:
        f = src.filters.add(column=column, op=training_pb2.RowFilter.Op.Value(op))
        if isinstance(value, list):
            f.value.list_value.extend(value)
        elif value is not None:
            if isinstance(value, bool):
                f.value.bool_value = value
            elif isinstance(value, (int, float)):
                f.value.number_value = value
            else:
                f.value.string_value = value
    return src


def test_reads_only_requested_columns_and_filtered_rows(dataset):
    uri, s3, _ = dataset
    data = read_parquet(source(uri, ["amount", "country"],
                               filters=[("id", "GE", 190_000), ("country", "IN", ["DE", "FR"])]),
                        "data.parquet", s3=s3)
    assert data.table.column_names == ["amount", "country", "is_fraud"]
    assert data.table.num_rows == 5_000
    assert set(data.table.column("country").to_pylist()) == {"DE", "FR"}
    assert pc.min(data.table.column("amount")).as_py() == 190_000 * 0.5


def test_projection_and_filter_push_down_cut_bytes_read(dataset):
    uri, s3, inner = dataset
    counting = CountingHandler(inner)
    fs = pafs.PyFileSystem(counting)

    def bytes_for(src):
        counting.reset()
        table = read_parquet(src, "data.parquet", s3=s3, filesystem=fs).table
        return counting.bytes_read, table

    everything, all_table = bytes_for(source(uri))
    projected, _ = bytes_for(source(uri, ["amount"]))
    filtered, few = bytes_for(source(uri, ["amount"], filters=[("id", "GE", 195_000)]))

    assert all_table.num_rows == ROWS and "payload" in all_table.column_names
    print(f"bytes read: all columns {everything}, one column {projected}, "
          f"one column + filter {filtered}")
    # The payload column is ~90% of the data: leaving it out must show in the bytes.
    assert projected * 5 < everything
    # id >= 195000 lives in the last row group of the second file: the first file's row
    # groups and nine of the second's are ruled out by statistics and never fetched.
    assert few.num_rows == 5_000
    assert filtered * 3 < projected


def test_hive_partitions_are_pruned_by_filters(tmp_path):
    table = make_table()
    root = tmp_path / "by_country"
    pq.write_to_dataset(table, root, partition_cols=["country"])
    counting = CountingHandler(pafs.LocalFileSystem())
    data = read_parquet(source(str(root), ["amount"], filters=[("country", "EQ", "DE")]),
                        "data.parquet", filesystem=pafs.PyFileSystem(counting))
    assert data.table.num_rows == ROWS // 4
    assert counting.opened and all("country=DE" in p for p in counting.opened)
    # Every file of the dataset is in the fingerprint, not only the ones read.
    assert len(data.files) == 4


def test_fingerprint_local_files_have_checksums(tmp_path):
    root = tmp_path / "one"
    write_dataset(pafs.LocalFileSystem(), str(root), make_table())
    files = read_parquet(source(str(root)), "data.parquet").files
    assert [f.path for f in files] == [str(root / "part-0.parquet"), str(root / "part-1.parquet")]
    for f in files:
        content = open(f.path, "rb").read()
        assert f.size == len(content)
        assert f.sha256 == hashlib.sha256(content).hexdigest()
        assert f.role == "train"


def write_spark_style_dataset(root, table: pa.Table, parts: int = 12) -> list[str]:
    """The layout Spark's writer leaves (materialize --engine spark): part-NNNNN-<uuid>-c000
    files holding consecutive ranges, a _SUCCESS marker, hidden .crc checksums, and here a
    leftover _temporary folder of an aborted attempt. Files are created out of name order, so
    the directory's listing order is not the answer."""
    root.mkdir()
    step = -(-table.num_rows // parts)
    names = [f"part-{i:05d}-1b2c3d4e-c000.snappy.parquet" for i in range(parts)]
    for i in reversed(range(parts)):
        pq.write_table(table.slice(i * step, step), root / names[i], row_group_size=ROW_GROUP)
        (root / f".{names[i]}.crc").write_bytes(b"crc")
    (root / "_SUCCESS").write_bytes(b"")
    (root / "._SUCCESS.crc").write_bytes(b"crc")
    (root / "_temporary" / "0").mkdir(parents=True)
    pq.write_table(table.slice(0, 10), root / "_temporary" / "0" / "part-00000.parquet")
    return [str(root / n) for n in names]


def test_a_spark_dataset_directory_reads_as_one_table_in_part_order(tmp_path):
    table = make_table()
    names = write_spark_style_dataset(tmp_path / "train", table)
    data = read_parquet(source(str(tmp_path / "train"), ["id", "amount"],
                               filters=[("country", "EQ", "DE")]), "data.parquet")
    ids = data.table.column("id").to_pylist()
    assert len(ids) == ROWS // 4 and ids == sorted(ids)  # part files in name order
    full = read_parquet(source(str(tmp_path / "train")), "data.parquet").table
    assert full.equals(table)
    # Only the part files are data (and fingerprinted); markers, checksums and _temporary not.
    assert [f.path for f in data.files] == names
    # The submit-time checks read the directory's footers too.
    access = DataAccess(roots=(tmp_path,), read_files=True)
    check_source(parquet(str(tmp_path / "train"), columns=["amount"]), "data", access)
    err = check_error(parquet(str(tmp_path / "train"), columns=["amout"]), access)
    assert err.field == "data.parquet.columns[0]" and "it has: id, amount" in str(err)


def test_fingerprint_s3_objects_carry_etags(s3_endpoint, dataset):
    uri, s3, _ = dataset
    if s3 is None:
        return  # the local case is covered above; this one is about S3
    files = read_parquet(source(uri), "data.parquet", s3=s3).files
    client = boto3.client("s3", endpoint_url=s3_endpoint, **s3_server.S3_CLIENT_ARGS)
    assert [f.path for f in files] == [f"s3://{BUCKET}/events/part-0.parquet",
                                       f"s3://{BUCKET}/events/part-1.parquet"]
    for f in files:
        head = client.head_object(Bucket=BUCKET, Key=f.path.split(f"{BUCKET}/", 1)[1])
        assert f.etag == head["ETag"].strip('"') and f.etag
        assert f.size == head["ContentLength"]


@pytest.mark.parametrize("src_kwargs, field, words", [
    (dict(columns=["amount", "amout"]), "data.parquet.columns[1]", "'amout'"),
    (dict(labels=["fraud"]), "data.parquet.label_columns[0]", "'fraud'"),
    (dict(filters=[("cuntry", "EQ", "DE")]), "data.parquet.filters[0].column", "'cuntry'"),
    (dict(filters=[("id", "GT", 1), ("id", "LT", "soon")]), "data.parquet.filters[1].value",
     "cannot be compared with column 'id' of type int64"),
])
def test_errors_name_the_field_and_column(tmp_path, src_kwargs, field, words):
    root = tmp_path / "d"
    write_dataset(pafs.LocalFileSystem(), str(root), make_table())
    with pytest.raises(DataError) as info:
        read_parquet(source(str(root), **src_kwargs), "data.parquet")
    assert info.value.field == field
    assert words in str(info.value)
    assert "it has: id, amount" in str(info.value) or "cannot be compared" in words


def test_missing_files_are_named(tmp_path, s3_endpoint):
    with pytest.raises(DataError) as info:
        read_parquet(source(str(tmp_path / "nope")), "data.parquet")
    assert info.value.field == "data.parquet.uri"
    assert str(tmp_path / "nope") in str(info.value) and "no such file" in str(info.value)

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no Parquet files"):
        read_parquet(source(str(tmp_path / "empty")), "data.parquet")

    s3 = storage.S3Options(endpoint_url=s3_endpoint, access_key="testing", secret_key="testing")
    s3.boto3_client().create_bucket(Bucket="empty-bucket")
    with pytest.raises(DataError, match="s3://empty-bucket/missing/: no such file"):
        read_parquet(source("s3://empty-bucket/missing/"), "data.parquet", s3=s3)


def test_filter_values_are_cast_to_the_column_type(tmp_path):
    root = tmp_path / "d"
    write_dataset(pafs.LocalFileSystem(), str(root), make_table())
    data = read_parquet(source(str(root), ["id"], filters=[
        ("event_time", "LT", "2024-01-01T00:10:00"),
        ("is_fraud", "EQ", True),
        ("amount", "NOT_IN", [0.0]),
    ]), "data.parquet")
    # Minutes 0..9, multiples of 7, minus the one whose amount is 0.
    assert data.table.column("id").to_pylist() == [7]
    # A zone in the value, a naive column (taken as UTC): 01:10+01:00 is 00:10 UTC.
    zoned = read_parquet(source(str(root), ["id"], filters=[
        ("event_time", "LT", "2024-01-01T01:10:00+01:00")]), "data.parquet")
    assert zoned.table.num_rows == 10


@pytest.fixture
def warehouse(tmp_path):
    path = str(tmp_path / "warehouse.duckdb")
    with duckdb.connect(path) as con:
        con.execute("create table charges as select range as id, range % 3 = 0 as is_fraud, "
                    "range * 1.5 as amount from range(100)")
    return path


def test_sql_source_reads_the_warehouse(warehouse):
    src = training_pb2.SqlSource(query="select id, amount, is_fraud from charges where id < 10",
                                 warehouse=warehouse, label_columns=["is_fraud"])
    data = read_sql(src, "data.sql")
    assert data.table.num_rows == 10
    assert data.table.column_names == ["id", "amount", "is_fraud"]
    assert data.files[0].path == warehouse
    assert data.files[0].sha256 == hashlib.sha256(open(warehouse, "rb").read()).hexdigest()
    assert data.queries[0].query == src.query


def test_sql_uses_default_warehouse_and_names_errors(warehouse, tmp_path):
    ok = training_pb2.SqlSource(query="select * from charges", label_columns=["is_fraud"])
    assert read_sql(ok, "data.sql", default_warehouse=warehouse).table.num_rows == 100

    cases = [
        (training_pb2.SqlSource(query="select * from charges", label_columns=["is_fraud"],
                                warehouse=str(tmp_path / "missing.duckdb")),
         "data.sql.warehouse", "no such DuckDB database file"),
        (training_pb2.SqlSource(query="select * from chargez", label_columns=["is_fraud"],
                                warehouse=warehouse), "data.sql.query", "chargez"),
        (training_pb2.SqlSource(query="select id from charges", label_columns=["is_fraud"],
                                warehouse=warehouse), "data.sql.label_columns[0]", "'is_fraud'"),
        (training_pb2.SqlSource(query="delete from charges", label_columns=["is_fraud"],
                                warehouse=warehouse), "data.sql.query", "read-only"),
    ]
    for src, field, words in cases:
        with pytest.raises(DataError) as info:
            read_sql(src, "data.sql")
        assert info.value.field == field
        assert words in str(info.value)
    # The failed delete changed nothing.
    with duckdb.connect(warehouse, read_only=True) as con:
        assert con.execute("select count(*) from charges").fetchone() == (100,)


@pytest.mark.parametrize("query", [
    "copy charges to '{outside}/out.csv'",
    "select * from read_csv('{outside}/other.csv')",
    "select * from read_parquet('{outside}/other.parquet')",
    "select * from '{outside}/other.parquet'",
    "attach '{outside}/other.duckdb' as other",
    "select * from read_text('/etc/hostname')",
    "set enable_external_access = true",
])
def test_sql_cannot_reach_files_outside_the_warehouse(warehouse, tmp_path, query):
    outside = tmp_path / "outside"
    outside.mkdir()
    with duckdb.connect(str(outside / "other.duckdb")) as con:
        con.execute("create table secrets as select 42 as x")
        con.execute(f"copy secrets to '{outside}/other.csv'")
        con.execute(f"copy secrets to '{outside}/other.parquet' (format parquet)")
    src = training_pb2.SqlSource(query=query.format(outside=outside), warehouse=warehouse,
                                 label_columns=["x"])
    with pytest.raises(DataError) as info:
        read_sql(src, "data.sql")
    assert info.value.field == "data.sql.query"
    assert ("disabled by configuration" in str(info.value)
            or "Cannot enable external access" in str(info.value)), str(info.value)
    assert not (outside / "out.csv").exists()
    # The warehouse's own tables still read, in the same process.
    ok = training_pb2.SqlSource(query="select * from charges where id < 5",
                                warehouse=warehouse, label_columns=["is_fraud"])
    assert read_sql(ok, "data.sql").table.num_rows == 5


@pytest.fixture
def roots(tmp_path):
    """A data folder holding a dataset and a warehouse, and a folder outside it."""
    inside, outside = tmp_path / "data", tmp_path / "outside"
    write_dataset(pafs.LocalFileSystem(), str(inside / "events"), make_table().slice(0, 1000))
    with duckdb.connect(str(inside / "wh.duckdb")) as con:
        con.execute("create table t as select 1 as y")
    write_dataset(pafs.LocalFileSystem(), str(outside / "events"), make_table().slice(0, 1000))
    return inside, outside


def parquet(uri, **kwargs):
    return training_pb2.DataSource(parquet=source(uri, **kwargs))


def sql(warehouse):
    return training_pb2.DataSource(sql=training_pb2.SqlSource(
        query="select * from t", warehouse=warehouse, label_columns=["y"]))


def test_check_source_accepts_what_is_there(roots):
    inside, _ = roots
    access = DataAccess(roots=(inside,), read_files=True)
    check_source(parquet(str(inside / "events"), columns=["amount"],
                         filters=[("country", "IN", ["DE"])]), "data", access)
    check_source(parquet(str(inside / "events" / "part-0.parquet")), "data", access)
    check_source(sql(str(inside / "wh.duckdb")), "data", access)
    # S3 is the job's to read, with its credentials.
    check_source(parquet("s3://bucket/nowhere/"), "data", access)


def check_error(source, access, field="data"):
    with pytest.raises(DataError) as info:
        check_source(source, field, access)
    return info.value


def test_check_source_names_unknown_columns_and_missing_files(roots):
    inside, _ = roots
    access = DataAccess(roots=(inside,), read_files=True)
    events = str(inside / "events")
    err = check_error(parquet(events, columns=["amount", "amout"]), access)
    assert err.field == "data.parquet.columns[1]"
    assert "'amout'" in str(err) and "it has: id, amount, country, payload" in str(err)
    err = check_error(parquet(events, labels=["fraud"]), access, "holdout.dataset.source")
    assert err.field == "holdout.dataset.source.parquet.label_columns[0]"
    err = check_error(parquet(events, filters=[("cuntry", "EQ", "DE")]), access)
    assert err.field == "data.parquet.filters[0].column"
    err = check_error(parquet(str(inside / "nope.parquet")), access)
    assert err.field == "data.parquet.uri" and "no such file" in str(err)
    err = check_error(sql(str(inside / "nope.duckdb")), access)
    assert err.field == "data.sql.warehouse" and "no such DuckDB database file" in str(err)
    err = check_error(sql(""), access)
    assert err.field == "data.sql.warehouse" and "no warehouse given" in str(err)


def test_check_source_confines_local_paths_to_the_roots(roots):
    inside, outside = roots
    access = DataAccess(roots=(inside,), read_files=True)
    for uri in (str(outside / "events"), f"{inside}/../outside/events", "/etc/passwd"):
        err = check_error(parquet(uri), access)
        assert err.field == "data.parquet.uri" and "outside this service's data folders" in str(err)
        assert str(inside) in str(err)
    # Outside is refused before it is opened: a missing file there is "outside" too.
    assert "outside" in str(check_error(parquet(str(outside / "nope")), access))
    err = check_error(sql(str(outside / "wh.duckdb")), access)
    assert err.field == "data.sql.warehouse" and "outside" in str(err)
    err = check_error(parquet("data/events"), access)
    assert err.field == "data.parquet.uri" and "relative path" in str(err)

    # A link inside the roots to data outside them, as the path or as a file of a folder.
    os.symlink(outside / "events", inside / "link")
    err = check_error(parquet(str(inside / "link")), access)
    assert f"(that is {outside / 'events'})" in str(err)
    (inside / "mixed").mkdir()
    os.symlink(outside / "events" / "part-0.parquet", inside / "mixed" / "part-0.parquet")
    err = check_error(parquet(str(inside / "mixed")), access)
    assert err.field == "data.parquet.uri" and "outside" in str(err)

    # Several roots; and with read_files off, paths are checked but files are not opened.
    both = DataAccess(roots=(inside, outside), read_files=True)
    check_source(parquet(str(outside / "events")), "data", both)
    paths_only = DataAccess(roots=(inside,), read_files=False)
    check_source(parquet(str(inside / "not-here-but-on-the-pod")), "data", paths_only)
    assert "outside" in str(check_error(parquet(str(outside / "events")), paths_only))
