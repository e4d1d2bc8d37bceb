"""The consumer: tails an event log and keeps a state store current, and an archive if given.

Each batch is applied and then committed together with the log position after it (memory
store: one atomic snapshot file holding both; Redis store: one MULTI/EXEC). A restart reads
the position from the store and continues there; events at or before the committed seq are
skipped as well, so a batch replayed after a crash is neither lost nor counted twice.

With an archive (archive.py) the same batches are also written out as Parquet files. The
archive keeps its own position (in its last file); reading starts at the earlier of the
store's and the archive's positions, and each skips the events it already holds (see the
archive's docstring). The store may be None: an archiver alone.
"""
from __future__ import annotations

import dataclasses
import time

from roundhouse.features.transport.eventlog import micros


@dataclasses.dataclass
class Progress:
    events: int = 0
    batches: int = 0
    archived: int = 0  # events this run gave the archive (all written when run returns)


def start_position(store, archive=None):
    """The earlier of the store's and the archive's positions (None: the log's beginning)."""
    sides = []
    if store is not None:
        sides.append((store.position, store.meta[1]))
    if archive is not None:
        sides.append((archive.position, archive.last_seq))
    if not sides or any(position is None for position, _ in sides):
        return None
    return min(sides, key=lambda s: float("-inf") if s[1] is None else s[1])[0]


def run(store, log, batch: int = 500, follow: bool = False, poll: float = 0.5,
        max_batches: int | None = None, on_batch=None, archive=None) -> Progress:
    if store is None and archive is None:
        raise ValueError("nothing to consume into: give a store, an archive or both")
    online = store.online if store is not None else None
    progress = Progress()
    position = start_position(store, archive)
    while max_batches is None or progress.batches < max_batches:
        limit = batch if archive is None else min(batch, archive.room())
        events, new_position = log.read(position, limit)
        if not events:
            if archive is not None:
                archive.maybe_flush()  # rotation by time while the log is quiet
            if not follow:
                break
            time.sleep(poll)
            continue
        if store is not None:
            rows = [online.row({**e, "t": micros(e["event_time"])}) for e in events]
            if hasattr(store, "process_and_commit"):
                store.process_and_commit(rows, new_position)
            else:
                store.process_batch(rows)
                store.commit(new_position)
        if archive is not None:
            progress.archived += archive.add(events, new_position)
        position = new_position
        progress.events += len(events)
        progress.batches += 1
        if on_batch is not None:
            on_batch(progress)
    if archive is not None:
        archive.flush()
    return progress
