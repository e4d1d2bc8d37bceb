"""Replay an events file through the online target: for every driver event, the values served
just before that event was ingested (the online half of the parity contract)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from roundhouse.features import events as events_mod
from roundhouse.features import syntax as ast
from roundhouse.features.online import OnlineProgram

BATCH = 2000


def rows_of(table: pa.Table, online: OnlineProgram):
    """Row tuples (seq, t micros, stream, *fields) from a conformed events table."""
    cols = [table.column("seq").to_pylist(),
            pc.cast(table.column("event_time"), pa.int64()).to_pylist(),
            table.column("stream").to_pylist()]
    cols += [table.column(f).to_pylist() for f in online.fields]
    return zip(*cols)


def replay_table(program: ast.Program, table: pa.Table, store) -> pa.Table:
    online = store.online
    out: list = []
    batch: list = []
    for row in rows_of(table, online):
        batch.append(row)
        if len(batch) >= BATCH:
            store.process_batch(batch, out)
            batch = []
    if batch:
        store.process_batch(batch, out)
    schema = events_mod.output_schema(program, labels=False)
    columns = list(zip(*out)) if out else [[] for _ in schema]
    return pa.Table.from_arrays([pa.array(list(c), type=f.type) for c, f in zip(columns, schema)],
                                schema=schema)


def replay(program: ast.Program, events_path: str, out_path: str, store) -> pa.Table:
    table = events_mod.read(events_path, program)
    result = replay_table(program, table, store)
    pq.write_table(result, out_path)
    return result
