"""The events log as Parquet: schema, reading (validated against the declarations) and writing.

Columns: seq int64, event_time timestamp[us, UTC], stream string, then one column per field
name across the declared streams (a name shared by two streams is one column).
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from roundhouse.features.language import syntax as ast
from roundhouse.features.plan.plan import field_columns

ARROW = {ast.Base.INT: pa.int64(), ast.Base.FLOAT: pa.float64(), ast.Base.BOOL: pa.bool_(),
         ast.Base.STRING: pa.string()}
TIME = pa.timestamp("us", tz="UTC")


class EventsError(ValueError):
    pass


def schema(program: ast.Program) -> pa.Schema:
    return pa.schema([("seq", pa.int64()), ("event_time", TIME), ("stream", pa.string())]
                     + [(name, ARROW[base]) for name, base in field_columns(program)])


def read(path: str, program: ast.Program) -> pa.Table:
    """Read and validate an events file; returns it with the program's schema, sorted by seq."""
    table = pq.read_table(path)
    return conform(table, program, path)


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
