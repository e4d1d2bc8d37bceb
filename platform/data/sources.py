"""Read a training request's data source into a pyarrow Table.

Parquet (a local path or s3://) goes through pyarrow datasets, so only the requested columns
are read and the row filters are pushed down: row groups whose statistics rule them out, and
hive partitions that cannot match, are never fetched. SQL runs in DuckDB against the
experimentation warehouse, a DuckDB database file opened read-only, on a connection that
cannot touch any other file.

`check_source` is what the training service checks at submit without reading any rows: local
paths lie under its data folders, the files exist and have the columns the request names.

Errors are DataErrors naming the request field at fault (`data.parquet.columns[1]`) and the
file, so the service can report them at submit or on the job.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pathlib
from typing import Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from roundhouse.platform.api import model_pb2, training_pb2
from roundhouse.platform.data import fingerprint, storage

Op = training_pb2.RowFilter.Op


class DataError(ValueError):
    """The data does not fit the request: a missing file or column, an impossible filter."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclasses.dataclass(frozen=True)
class DataAccess:
    """What a service lets its requests read from local disk (S3 is the bucket policy's job)."""

    # Folders a request's local paths must lie under, symlinks and ".." resolved.
    roots: tuple[pathlib.Path, ...]
    # The jobs see this process's files (the local executor), so they can be checked at
    # submit; a Kubernetes pod has its own filesystem, where only the paths can be checked.
    read_files: bool


@dataclasses.dataclass
class SourceData:
    table: pa.Table
    files: list[model_pb2.FileFingerprint]
    queries: list[model_pb2.QueryFingerprint] = dataclasses.field(default_factory=list)


def read_source(source: training_pb2.DataSource, field: str, *, role: str = "train",
                s3: storage.S3Options | None = None, warehouse: str | None = None,
                default_columns: Sequence[str] = (), extra_columns: Sequence[str] = (),
                filesystem: pafs.FileSystem | None = None) -> SourceData:
    """Read `source` (found at request path `field`, e.g. "data").

    default_columns: read these when a parquet source names no columns (a holdout dataset
    reads the training columns). extra_columns: also read these (e.g. the time column a
    holdout splits on) if the source has them.
    """
    kind = source.WhichOneof("kind")
    if kind == "parquet":
        return read_parquet(source.parquet, f"{field}.parquet", role=role, s3=s3,
                            default_columns=default_columns, extra_columns=extra_columns,
                            filesystem=filesystem)
    if kind == "sql":
        return read_sql(source.sql, f"{field}.sql", role=role, default_warehouse=warehouse)
    raise DataError(field, "no data source set")


def check_source(source: training_pb2.DataSource, field: str, access: DataAccess) -> None:
    """Check `source` (at request path `field`) as far as can be done without reading rows.

    S3 sources are left to the job: opening them here would need the jobs' credentials and a
    round trip per submit. A path outside the roots is refused before it is opened, so a
    request cannot learn what exists outside them either.
    """
    kind = source.WhichOneof("kind")
    if kind == "parquet":
        src, base = source.parquet, f"{field}.parquet"
        if storage.is_s3(src.uri):
            return
        _confine(src.uri, f"{base}.uri", access.roots)
        if access.read_files:
            dataset = open_dataset(src.uri, base)
            # A folder inside the roots may still hold links to files outside them.
            for path in dataset.files:
                _confine(path, f"{base}.uri", access.roots)
            _plan(src, dataset.schema, base)
    elif kind == "sql":
        base = f"{field}.sql"
        # The service passes its jobs no default warehouse, so a request must name one.
        warehouse = _warehouse(source.sql, base, default=None)
        _confine(warehouse, f"{base}.warehouse", access.roots)
        if access.read_files:
            _require_database(warehouse, base)


def _confine(path: str, field: str, roots: Sequence[pathlib.Path]) -> None:
    """DataError unless local `path` is absolute and, resolved, lies under one of `roots`."""
    expanded = os.path.expanduser(path)
    if not os.path.isabs(expanded):
        # Relative to what? A job runs in its own folder, not the service's.
        raise DataError(field, f"{path!r} is a relative path; write it absolute")
    real = pathlib.Path(os.path.realpath(expanded))
    if not any(real.is_relative_to(os.path.realpath(root)) for root in roots):
        shown = path if str(real) == path else f"{path} (that is {real})"
        raise DataError(field, f"{shown} is outside this service's data folders: "
                               f"{', '.join(str(r) for r in roots)}")


def open_dataset(uri: str, field: str, *, s3: storage.S3Options | None = None,
                 filesystem: pafs.FileSystem | None = None) -> ds.Dataset:
    """The Parquet dataset at `uri` (one file or a directory/prefix, hive partitions allowed).

    `filesystem` overrides the one the URI implies (tests wrap it to count bytes read).
    """
    try:
        fs, path = storage.resolve(uri, s3)
    except ValueError as exc:
        raise DataError(f"{field}.uri", str(exc)) from None
    if filesystem is not None:
        fs = filesystem
    try:
        info = fs.get_file_info(path)
    except OSError as exc:
        raise DataError(f"{field}.uri", f"cannot reach {uri}: {exc}") from None
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"{field}.uri", f"{uri}: no such file or directory")
    try:
        dataset = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{field}.uri", f"{uri} is not a readable Parquet dataset: {exc}") from None
    if not dataset.files:
        raise DataError(f"{field}.uri", f"{uri} holds no Parquet files")
    return dataset


def read_parquet(src: training_pb2.ParquetSource, field: str, *, role: str = "train",
                 s3: storage.S3Options | None = None, default_columns: Sequence[str] = (),
                 extra_columns: Sequence[str] = (),
                 filesystem: pafs.FileSystem | None = None) -> SourceData:
    dataset = open_dataset(src.uri, field, s3=s3, filesystem=filesystem)
    wanted, expression = _plan(src, dataset.schema, field, default_columns, extra_columns)
    try:
        table = dataset.to_table(columns=wanted, filter=expression)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise DataError(field, f"reading {src.uri} failed: {exc}") from None
    return SourceData(table=table, files=_fingerprint(src.uri, dataset.files, s3, role))


def _plan(src: training_pb2.ParquetSource, schema: pa.Schema, field: str,
          default_columns: Sequence[str] = (), extra_columns: Sequence[str] = (),
          ) -> tuple[list[str] | None, ds.Expression | None]:
    """The columns to read (None: all) and the row filter, checked against `schema`."""
    names = schema.names
    features = list(src.columns) or list(default_columns)
    _require_columns(features, names, f"{field}.columns", src.uri)
    _require_columns(src.label_columns, names, f"{field}.label_columns", src.uri)
    if features:
        wanted = features + [c for c in src.label_columns if c not in features]
        wanted += [c for c in extra_columns if c in names and c not in wanted]
    else:
        wanted = None  # every column
    return wanted, filter_expression(src.filters, schema, field, src.uri)


def _fingerprint(uri: str, files: list[str], s3, role: str) -> list[model_pb2.FileFingerprint]:
    if storage.is_s3(uri):
        return fingerprint.s3_objects([storage.display(uri, f) for f in files], s3, role)
    return fingerprint.local_files(files, role)


def _require_columns(wanted: Sequence[str], available: Sequence[str], field: str,
                     where: str) -> None:
    missing = [(i, c) for i, c in enumerate(wanted) if c not in available]
    if missing:
        raise DataError(f"{field}[{missing[0][0]}]",
                        f"no column {', '.join(repr(c) for _, c in missing)} in {where}; "
                        f"it has: {', '.join(available)}")


def filter_expression(filters: Sequence[training_pb2.RowFilter], schema: pa.Schema, field: str,
                      where: str) -> ds.Expression | None:
    """AND of the request's row filters as a dataset expression (None when there are none).

    Values are cast to the column's type first: comparing an int64 column with a double
    literal, or a timestamp with a string, would otherwise fail or defeat statistics pruning.
    """
    expression = None
    for i, f in enumerate(filters):
        path = f"{field}.filters[{i}]"
        if f.column not in schema.names:
            raise DataError(f"{path}.column", f"no column {f.column!r} in {where}; "
                                              f"it has: {', '.join(schema.names)}")
        column_type = schema.field(f.column).type
        col = pc.field(f.column)
        if f.op == Op.IS_NULL:
            term = col.is_null()
        elif f.op == Op.IS_NOT_NULL:
            term = col.is_valid()
        elif f.op in (Op.IN, Op.NOT_IN):
            values = [_python_value(v) for v in f.value.list_value.values]
            array = _cast_values(values, column_type, f"{path}.value", f.column)
            term = col.isin(array)
            if f.op == Op.NOT_IN:
                # SQL semantics: a null is neither in nor not in a list, so it is dropped.
                term = ~term & col.is_valid()
        else:
            value = _cast_values([_python_value(f.value)], column_type, f"{path}.value",
                                 f.column)[0]
            term = {
                Op.EQ: col == value,
                Op.NE: col != value,
                Op.LT: col < value,
                Op.LE: col <= value,
                Op.GT: col > value,
                Op.GE: col >= value,
            }.get(f.op)
            if term is None:
                raise DataError(f"{path}.op", f"unsupported operator {Op.Name(f.op)}")
        expression = term if expression is None else expression & term
    return expression


def _python_value(value) -> object:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        # JSON has one number type; keep integral values integral so int columns stay exact.
        return int(number) if number.is_integer() else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def _cast_values(values: list, column_type: pa.DataType, field: str, column: str) -> pa.Array:
    if pa.types.is_timestamp(column_type):
        values = [_timestamp(v, column_type) if isinstance(v, str) else v for v in values]
    try:
        return pa.array(values).cast(column_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise DataError(field, f"{values if len(values) > 1 else values[0]!r} cannot be compared "
                               f"with column {column!r} of type {column_type}: {exc}") from None


def _timestamp(text: str, column_type: pa.TimestampType) -> object:
    """An ISO 8601 string as a datetime comparable with the column, with or without zone.

    Arrow's own cast insists that the string's zone matches the column's (none for a naive
    column, one for a zoned one); a request should not have to know which it is. Naive
    values and naive columns are both taken as UTC.
    """
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return text  # let the cast report it
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    if column_type.tz is None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def read_sql(src: training_pb2.SqlSource, field: str, *, role: str = "train",
             default_warehouse: str | None = None) -> SourceData:
    warehouse = _warehouse(src, field, default_warehouse)
    _require_database(warehouse, field)
    try:
        # read_only: a training job must never change the warehouse, and several jobs may
        # read it at once. No external access: the query reads the warehouse's own tables
        # and no other file (read_parquet, COPY, ATTACH, extensions), so a request cannot
        # reach past the service's data folders through SQL. It cannot be turned back on.
        with duckdb.connect(warehouse, read_only=True,
                            config={"enable_external_access": False}) as con:
            relation = con.sql(src.query)
            if relation is None:
                raise DataError(f"{field}.query", "the query returns no rows; it must be a SELECT")
            table = relation.to_arrow_table()
    except duckdb.PermissionException as exc:
        raise DataError(f"{field}.query", f"{exc}; a query may read only the warehouse's own "
                                          "tables") from None
    except duckdb.Error as exc:
        raise DataError(f"{field}.query", f"{type(exc).__name__}: {exc}") from None
    _require_columns(src.label_columns, table.column_names, f"{field}.label_columns",
                     "the query's result")
    return SourceData(
        table=table,
        files=fingerprint.local_files([warehouse], role),
        queries=[model_pb2.QueryFingerprint(query=src.query, warehouse=os.path.abspath(warehouse),
                                            role=role)],
    )


def _warehouse(src: training_pb2.SqlSource, field: str, default: str | None) -> str:
    warehouse = src.warehouse or default
    if not warehouse:
        raise DataError(f"{field}.warehouse", "no warehouse given and no default configured")
    return warehouse


def _require_database(warehouse: str, field: str) -> None:
    if not os.path.isfile(warehouse):
        raise DataError(f"{field}.warehouse", f"{warehouse}: no such DuckDB database file")
