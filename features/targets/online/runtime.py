"""What the generated online code runs with: the helpers it calls (`GLOBALS`, its module
namespace) and `paused_gc`, the collector switch around a batch."""
from __future__ import annotations

import bisect
import contextlib
import gc

from roundhouse.features.targets.online.aggregates import RUNTIME as AGG_RUNTIME
from roundhouse.features.targets.online.pyexpr import RUNTIME as EXPR_RUNTIME

# Below every event_time: the max event_time before any event (no driver is too late).
NO_TIME = -(1 << 62)


@contextlib.contextmanager
def paused_gc():
    """Pauses the cyclic garbage collector. The evaluator makes no reference cycles, so the
    collector has nothing to find while it runs; left on, its passes over the growing state and
    the batch's columns cost a third of the time. It runs again as soon as the block ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def flush(out: list, n: int, columns: tuple) -> None:
    """Appends the first n values of each batch column to the output columns."""
    for i, col in enumerate(columns):
        del col[n:]
        if out[i]:
            out[i] += col
        else:
            out[i] = col


# The names the generated code reads besides its own: the expression helpers (pyexpr.py),
# the aggregations' (aggregates.py) and these. Each program gets a copy as its module namespace.
GLOBALS = dict(EXPR_RUNTIME, **AGG_RUNTIME, bisect_left=bisect.bisect_left,
               bisect_right=bisect.bisect_right, _flush=flush, _NO_TIME=NO_TIME)
