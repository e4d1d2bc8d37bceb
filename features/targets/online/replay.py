"""Replay an events file through the online target: for every driver event, the values served
just before that event was ingested (the online half of the parity contract)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from roundhouse.features.language import syntax as ast
from roundhouse.features.targets.online.program import OnlineProgram
from roundhouse.features.targets.online.runtime import paused_gc
from roundhouse.features.transport import events as events_mod

CHUNK = 65_536  # events converted to Python objects at a time (bounds the replay's memory)


def columns_of(table: pa.Table, online: OnlineProgram, strings: dict | None = None) -> list:
    """Columns (seq, t micros, stream, *fields) of a conformed events table as Python lists;
    None for the fields the program never reads. `strings` (kept across calls by the caller)
    holds one str object per value of the string columns with few distinct values."""
    cols = []
    for name in online.columns:
        if name not in online.input_columns:
            cols.append(None)
        elif name == "t":
            cols.append(pc.cast(table.column("event_time"), pa.int64()).to_pylist())
        elif pa.types.is_string(table.schema.field(name).type):
            cols.append(_strings(table.column(name), {} if strings is None else strings))
        else:
            cols.append(table.column(name).to_pylist())
    return cols


def _strings(column: pa.ChunkedArray, strings: dict) -> list:
    """A string column as a list of str. A column with few distinct values (stream names,
    merchant ids) is converted through its dictionary, to one shared object per value: window
    state then refers to a few objects instead of holding a copy per event, and stays in the
    CPU's caches (a tenth of the fraud replay's time)."""
    encoded = pc.dictionary_encode(column.combine_chunks())
    if len(encoded.dictionary) * 4 > len(encoded):  # mostly distinct: nothing to share
        return column.to_pylist()
    values = [strings.setdefault(v, v) for v in encoded.dictionary.to_pylist()] + [None]
    indices = encoded.indices.fill_null(len(values) - 1).to_numpy()
    return np.array(values, dtype=object)[indices].tolist()


def rows_of(table: pa.Table, online: OnlineProgram):
    """Row tuples (seq, t micros, stream, *fields) from a conformed events table."""
    cols = [table.column("seq").to_pylist(),
            pc.cast(table.column("event_time"), pa.int64()).to_pylist(),
            table.column("stream").to_pylist()]
    cols += [table.column(f).to_pylist() for f in online.fields]
    return zip(*cols)


def replay_table(program: ast.Program, table: pa.Table, store) -> pa.Table:
    """The values served to every driver event, computed a chunk of columns at a time."""
    online = store.online
    schema = events_mod.output_schema(program, labels=False)
    chunks: list[list] = [[] for _ in schema]
    strings: dict = {}
    # Paused for the whole replay, not per batch: otherwise each chunk's input and output
    # columns (a million references) are scanned by the collections between batches.
    with paused_gc():
        for lo in range(0, table.num_rows, CHUNK):
            outs = online.new_outputs()
            store.process_columns(columns_of(table.slice(lo, CHUNK), online, strings), outs)
            for acc, col, f in zip(chunks, outs, schema):
                acc.append(pa.array(col, type=f.type))
    arrays = [pa.chunked_array(acc, type=f.type) for acc, f in zip(chunks, schema)]
    return pa.Table.from_arrays(arrays, schema=schema).combine_chunks()


def replay(program: ast.Program, events_path: str, out_path: str, store) -> pa.Table:
    table = events_mod.read(events_path, program)
    result = replay_table(program, table, store)
    pq.write_table(result, out_path)
    return result
