"""The consumer: tails an event log and keeps a state store current.

Each batch is applied and then committed together with the log position after it (memory
store: one atomic snapshot file holding both; Redis store: one MULTI/EXEC). A restart reads
the position from the store and continues there; events at or before the committed seq are
skipped as well, so a batch replayed after a crash is neither lost nor counted twice.
"""
from __future__ import annotations

import dataclasses
import time

from roundhouse.features.transport.eventlog import micros


@dataclasses.dataclass
class Progress:
    events: int = 0
    batches: int = 0


def run(store, log, batch: int = 500, follow: bool = False, poll: float = 0.5,
        max_batches: int | None = None, on_batch=None) -> Progress:
    online = store.online
    progress = Progress()
    position = store.position
    while max_batches is None or progress.batches < max_batches:
        events, new_position = log.read(position, batch)
        if not events:
            if not follow:
                break
            time.sleep(poll)
            continue
        rows = [online.row({**e, "t": micros(e["event_time"])}) for e in events]
        if hasattr(store, "process_and_commit"):
            store.process_and_commit(rows, new_position)
        else:
            store.process_batch(rows)
            store.commit(new_position)
        position = new_position
        progress.events += len(events)
        progress.batches += 1
        if on_batch is not None:
            on_batch(progress)
    return progress
