"""Events for an engine that reads the files itself (DuckDB's read_parquet, Spark's reader), so
that no process holds the whole log: the files, their schemas checked from the Parquet footers
(no rows read), and the row checks `events.read` makes, as one aggregate query the engine runs.

The errors are those of `events.read` (missing column, a type that does not convert, files of
a directory that overlap (from their seq statistics), null seq/event_time/stream, repeated seqs,
a null in a field declared non-null), naming the file.
One difference: `events.read` converts any type pyarrow can cast (a string column of digits to
int); the engines convert only without loss of meaning: integer to integer or float, float to
float, string to string, timestamp to timestamp, an all-null column to anything.
"""
from __future__ import annotations

import os
import pathlib
from typing import Callable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from roundhouse.features.language import syntax as ast
from roundhouse.features.transport import events as events_mod
from roundhouse.features.transport.events import EventsError


def is_local(path: str) -> bool:
    return "://" not in str(path)


def local_files(path: str) -> list[tuple[str, str]]:
    """(path, name shown in errors) of each events file at local `path`: the file itself, or
    the *.parquet files of a directory by name (events.part_files: hidden files skipped)."""
    p = pathlib.Path(path)
    if p.is_dir():
        root = os.path.abspath(p)
        files = events_mod.part_files(pafs.LocalFileSystem(), root)
        if not files:
            raise EventsError(f"{str(path).rstrip('/')}: no *.parquet events files in this "
                              "directory")
        return [(f.path, f"{str(path).rstrip('/')}/{f.base_name}") for f in files]
    if not p.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    return [(os.path.abspath(p), str(path))]


def file_schema(path: str, shown: str) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise EventsError(f"{shown}: not a readable Parquet file: {exc}") from None


def _converts(have: pa.DataType, want: pa.DataType) -> bool:
    t = pa.types
    if t.is_null(have):
        return True
    if t.is_integer(want):
        return t.is_integer(have)
    if t.is_floating(want):
        return t.is_integer(have) or t.is_floating(have)
    if t.is_string(want):
        return t.is_string(have) or t.is_large_string(have) or t.is_string_view(have)
    if t.is_timestamp(want):
        return t.is_timestamp(have)
    return False


def check_schema(schema: pa.Schema, program: ast.Program, where: str) -> None:
    """The schema errors of `events.read`, from a schema alone."""
    for f in events_mod.schema(program):
        if f.name not in schema.names:
            raise EventsError(f"{where}: missing column {f.name!r} ({f.type}); the events file "
                              f"needs seq, event_time, stream and every declared field")
        have = schema.field(f.name).type
        if have == f.type or _converts(have, f.type):
            continue
        try:
            pa.array([], have).cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise EventsError(f"{where}: column {f.name!r} is {have}, expected {f.type}: "
                              f"{exc}") from None
        raise EventsError(f"{where}: column {f.name!r} is {have}, expected {f.type}; the batch "
                          f"engines convert a column only without loss (integer widths, "
                          f"integer to float, timestamp units): write it as {f.type}")


def check_files(path: str, program: ast.Program) -> list[str]:
    """The local files of `path`, each schema checked, and (from the seq statistics of their
    footers, where every file has them) not overlapping, as `events.read` requires of a
    directory; returns their absolute paths."""
    files = local_files(path)
    for file, shown in files:
        check_schema(file_schema(file, shown), program, shown)
    if len(files) > 1:
        ranges = [_seq_range(file) for file, _ in files]
        if all(r is not None for r in ranges):
            parts = sorted((r[0], r[1], shown) for r, (_, shown) in zip(ranges, files)
                           if r != (None, None))
            for (_, last, a), (first, _, b) in zip(parts, parts[1:]):
                if first <= last:
                    raise EventsError(f"{b} overlaps {a}: its seqs start at {first}, at or "
                                      f"before {a}'s last seq {last}; each event must be in one "
                                      "file only")
    return [file for file, _ in files]


def _seq_range(file: str) -> tuple | None:
    """(min, max) of seq from the row-group statistics ((None, None): no rows), or None when
    a row group has none."""
    meta = pq.read_metadata(file)
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    i = names.index("seq")
    lo = hi = None
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        if rg.num_rows == 0:
            continue
        st = rg.column(i).statistics
        if st is None or not st.has_min_max:
            return None
        lo = st.min if lo is None else min(lo, st.min)
        hi = st.max if hi is None else max(hi, st.max)
    return lo, hi


def checks_sql(program: ast.Program, table: str, quote: Callable[[str], str]) -> str:
    """One aggregate over `table` (already in the program's columns) giving what
    `raise_for` needs. Standard SQL: DuckDB and Spark run it as it is."""
    cols = ["count(*) AS n",
            "sum(CASE WHEN seq IS NULL OR event_time IS NULL OR stream IS NULL THEN 1 ELSE 0 "
            "END) AS nulls",
            "count(DISTINCT seq) AS seqs", "min(seq) AS min_seq", "max(seq) AS max_seq"]
    for si, (st, name) in enumerate(_required(program)):
        stream = st.replace("'", "''")
        cols.append(f"sum(CASE WHEN stream = '{stream}' AND {quote(name)} IS NULL THEN 1 "
                    f"ELSE 0 END) AS r{si}")
    return f"SELECT {', '.join(cols)} FROM {table}"


def _required(program: ast.Program) -> list[tuple[str, str]]:
    return [(st.name, f.name) for st in program.streams.values() for f in st.fields
            if not f.type.nullable]


def raise_for(row: dict, program: ast.Program, where: str) -> None:
    """EventsError for what `checks_sql` found, worded as `events.read` words it."""
    if row["nulls"]:
        raise EventsError(f"{where}: seq, event_time and stream must not be null")
    if row["seqs"] != row["n"]:
        raise EventsError(f"{where}: seq values must be unique (arrival order)")
    for si, (st, name) in enumerate(_required(program)):
        nulls = row[f"r{si}"] or 0
        if nulls:
            raise EventsError(f"{where}: {nulls} {st} event(s) have a null {name!r}, "
                              f"declared non-null; declare `{name}: ...?` if it may be null")
