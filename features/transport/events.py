"""The events log as Parquet: schema, reading (validated against the declarations) and writing.

Columns: seq int64, event_time timestamp[us, UTC], stream string, then one column per field
name across the declared streams (a name shared by two streams is one column).

Events are one file, or a directory of files (an archive written by the consumer, see
archive.py, or any set of *.parquet files): each file is checked like a single file (an error
names the file), the files are ordered by their seqs and must not overlap, and together they
are one table in seq order. Paths are local or s3:// (pyarrow's S3FileSystem, location.py).
"""
from __future__ import annotations

import pathlib

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from roundhouse.features.language import syntax as ast
from roundhouse.features.plan.plan import field_columns
from roundhouse.features.transport import location

ARROW = {ast.Base.INT: pa.int64(), ast.Base.FLOAT: pa.float64(), ast.Base.BOOL: pa.bool_(),
         ast.Base.STRING: pa.string()}
TIME = pa.timestamp("us", tz="UTC")


class EventsError(ValueError):
    pass


def schema(program: ast.Program) -> pa.Schema:
    return pa.schema([("seq", pa.int64()), ("event_time", TIME), ("stream", pa.string())]
                     + [(name, ARROW[base]) for name, base in field_columns(program)])


def read(path: str, program: ast.Program) -> pa.Table:
    """Read and validate an events file, or a directory of them (local or s3://); returns one
    table with the program's schema, sorted by seq."""
    path = str(path)
    if not location.is_s3(path) and not pathlib.Path(path).is_dir():
        return conform(pq.read_table(path), program, path)
    try:
        fs, where = location.resolve(path)
    except ValueError as exc:
        raise EventsError(str(exc)) from None
    info = fs.get_file_info(where)
    if info.type == pafs.FileType.Directory:
        return read_dir(fs, where, program, path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{path}: no such file or directory")
    return conform(pq.read_table(where, filesystem=fs), program, path)


def part_files(fs: pafs.FileSystem, root: str) -> list[pafs.FileInfo]:
    """The *.parquet files directly in `root`, without hidden ones (".x", "_x": temp files,
    markers), by name."""
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=False, allow_not_found=True))
    return sorted((i for i in infos if i.type == pafs.FileType.File
                   and i.base_name.endswith(".parquet")
                   and not i.base_name.startswith((".", "_"))), key=lambda i: i.base_name)


def read_dir(fs: pafs.FileSystem, root: str, program: ast.Program, shown: str | None = None
             ) -> pa.Table:
    """Every events file of a directory as one table in seq order; files must not overlap."""
    shown = (shown or location.display(fs, root)).rstrip("/")
    files = part_files(fs, root)
    if not files:
        raise EventsError(f"{shown}: no *.parquet events files in this directory")
    parts = []
    for info in files:
        name = f"{shown}/{info.base_name}"
        table = conform(pq.read_table(info.path, filesystem=fs), program, name)
        if table.num_rows:
            seq = table.column("seq")
            parts.append((seq[0].as_py(), seq[-1].as_py(), name, table))
    parts.sort(key=lambda p: p[0])
    for (_, last, a, _), (first, last_b, b, _) in zip(parts, parts[1:]):
        if first <= last:
            raise EventsError(f"{b} overlaps {a}: its seqs start at {first}, at or before "
                              f"{a}'s last seq {last}; each event must be in one file only")
    if not parts:
        return schema(program).empty_table()
    return pa.concat_tables([p[3] for p in parts])


def conform(table: pa.Table, program: ast.Program, where: str = "events") -> pa.Table:
    want = schema(program)
    columns = []
    for f in want:
        if f.name not in table.column_names:
            raise EventsError(f"{where}: missing column {f.name!r} ({f.type}); the events file "
                              f"needs seq, event_time, stream and every declared field")
        col = table.column(f.name)
        if col.type != f.type:
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise EventsError(f"{where}: column {f.name!r} is {col.type}, expected "
                                  f"{f.type}: {exc}") from None
        columns.append(col)
    out = pa.Table.from_arrays(columns, schema=want)
    seq = out.column("seq")
    if seq.null_count or out.column("event_time").null_count or out.column("stream").null_count:
        raise EventsError(f"{where}: seq, event_time and stream must not be null")
    if len(out) > 1:
        s = seq.combine_chunks()
        if not pc.all(pc.greater(s[1:], s[:-1])).as_py():
            out = out.sort_by("seq")
            s = out.column("seq").combine_chunks()
            if not pc.all(pc.greater(s[1:], s[:-1])).as_py():
                raise EventsError(f"{where}: seq values must be unique (arrival order)")
    _check_not_null(out, program, where)
    return out


def _check_not_null(table: pa.Table, program: ast.Program, where: str) -> None:
    """A field declared without `?` must not be null in that stream's events."""
    streams = table.column("stream")
    for st in program.streams.values():
        required = [f.name for f in st.fields if not f.type.nullable]
        if not required:
            continue
        mask = pc.equal(streams, st.name)
        for name in required:
            nulls = pc.sum(pc.and_(mask, pc.is_null(table.column(name)))).as_py() or 0
            if nulls:
                raise EventsError(f"{where}: {nulls} {st.name} event(s) have a null {name!r}, "
                                  f"declared non-null; declare `{name}: ...?` if it may be null")


def write(table: pa.Table, path: str) -> None:
    pq.write_table(table, path)


def output_schema(program: ast.Program, labels: bool) -> pa.Schema:
    defs = program.features + (program.labels if labels else ())
    return pa.schema([("seq", pa.int64()), ("too_late", pa.bool_())]
                     + [(d.column, ARROW[d.expr.type.base]) for d in defs])
