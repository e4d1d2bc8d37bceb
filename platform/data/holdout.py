"""Split a training table into train and holdout sets as the request's holdout spec says.

Three ways: a random fraction decided by a seed alone (the same request always gets the same
split), a time cutoff on a column (rows at or after it are held out, the way a model meets
the future), or an explicit holdout table read from its own source.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from roundhouse.platform.data.sources import DataError


@dataclasses.dataclass
class Split:
    train: pa.Table
    holdout: pa.Table


def random_split(table: pa.Table, fraction: float, seed: int,
                 field: str = "holdout.random") -> Split:
    """Hold out round(fraction * rows) rows chosen by `seed`; both sides keep the table's order."""
    n = table.num_rows
    k = round(n * fraction)
    if k == 0 or k == n:
        raise DataError(f"{field}.fraction", f"a fraction of {fraction} of {n} rows leaves "
                                             f"{'no holdout' if k == 0 else 'nothing to train on'}")
    # A fixed generator (PCG64) seeded by the request: numpy guarantees the stream for a seed
    # is stable across platforms, so the split is reproducible from the request alone.
    chosen = np.random.Generator(np.random.PCG64(seed)).permutation(n)[:k]
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return Split(train=table.filter(pa.array(~mask)), holdout=table.filter(pa.array(mask)))


def time_cutoff_split(table: pa.Table, column: str, cutoff: dt.datetime,
                      field: str = "holdout.time_cutoff") -> Split:
    """Rows with `column` >= cutoff are the holdout. `cutoff` is timezone-aware or UTC."""
    if column not in table.column_names:
        raise DataError(f"{field}.column", f"no column {column!r} in the training data; "
                                           f"it has: {', '.join(table.column_names)}")
    values = table.column(column)
    if values.null_count:
        raise DataError(f"{field}.column", f"{values.null_count} rows have a null {column!r}; "
                                           "they belong to neither side of a time cutoff "
                                           "(filter them out with a row filter IS_NOT_NULL)")
    times = _as_utc_timestamps(values, column, f"{field}.column")
    if cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=dt.timezone.utc)
    mask = pc.greater_equal(times, pa.scalar(cutoff, type=times.type))
    split = Split(train=table.filter(pc.invert(mask)), holdout=table.filter(mask))
    if split.holdout.num_rows == 0 or split.train.num_rows == 0:
        lo, hi = pc.min(times).as_py(), pc.max(times).as_py()
        side = "holdout" if split.holdout.num_rows == 0 else "training set"
        raise DataError(f"{field}.cutoff", f"cutoff {cutoff.isoformat()} leaves the {side} "
                                           f"empty: {column!r} runs from {lo} to {hi}")
    return split


def _as_utc_timestamps(values: pa.ChunkedArray, column: str, field: str) -> pa.ChunkedArray:
    t = values.type
    if pa.types.is_timestamp(t):
        # Naive timestamps are taken as UTC, the platform's convention for event_time; the
        # cast only relabels them (Arrow stores naive timestamps as UTC-like wall time).
        return values.cast(pa.timestamp(t.unit, tz="UTC"))
    if pa.types.is_date(t):
        return values.cast(pa.timestamp("s")).cast(pa.timestamp("s", tz="UTC"))
    raise DataError(field, f"column {column!r} has type {t}; a time cutoff needs a timestamp "
                           "or date column")


def align_holdout(train: pa.Table, holdout: pa.Table, field: str) -> pa.Table:
    """The holdout table with the training table's columns, in its order and types."""
    missing = [c for c in train.column_names if c not in holdout.column_names]
    if missing:
        raise DataError(field, f"the holdout has no column {', '.join(map(repr, missing))}, "
                               "which the training data has")
    holdout = holdout.select(train.column_names)
    try:
        return holdout.cast(train.schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise DataError(field, f"the holdout's column types do not match the training data's: "
                               f"{exc}") from None
