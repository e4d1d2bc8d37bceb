"""Small hand-written event logs with known answers, shared by the batch and online tests."""
from __future__ import annotations

import datetime

import pyarrow as pa

from roundhouse.features.language import loader
from roundhouse.features.transport import events as events_mod

MIN = 60_000_000
T0 = datetime.datetime(2024, 3, 1, tzinfo=datetime.timezone.utc)

PROGRAM = """
lateness 10m
driver charge
stream charge { card: string? amount: int? }
feature c1h = count(charge) by card over 1h
feature s1h = sum(charge.amount) by card over 1h
feature last1h = last(charge.amount) by card over 1h
feature first1h = first(charge.amount) by card over 1h
feature avg1h = avg(charge.amount) by card over 1h
feature distinct_amounts = count_distinct(charge.amount) by card over lifetime
feature ratio = amount / avg1h
"""

# (seq, micros after T0, card, amount) and the expected row for each.
EVENTS = [
    (1, 0, "A", 10),
    (2, 0, "A", 20),              # tie on event_time: #1 arrived earlier and counts
    (3, 60 * MIN, "A", 30),       # exactly one hour later: #1 and #2 sit on the closed edge
    (4, 50 * MIN, "A", None),     # 10 minutes late: exactly the allowed lateness, not too late
    (5, 50 * MIN - 1, "A", 7),    # one microsecond beyond the lateness: too late
    (6, 61 * MIN, "A", 5),        # #1, #2 left the window; the late #4 and #5 count: by
                                  # seq, first is #3's (#4 is null), by time it would be #5's
    (7, 61 * MIN, None, 3),       # null key
    (8, 70 * MIN, "B", 1),        # a key seen once: empty window
]

EXPECTED = [
    # seq, too_late, c1h, s1h, last1h, first1h, avg1h, distinct, ratio
    (1, False, 0, 0, None, None, None, 0, None),
    (2, False, 1, 10, 10, 10, 10.0, 1, 2.0),
    (3, False, 2, 30, 20, 10, 15.0, 2, 2.0),
    (4, False, 3, 60, 30, 10, 20.0, 3, None),
    (5, True, None, None, None, None, None, None, None),
    (6, False, 3, 37, 7, 30, 18.5, 4, 5 / 18.5),
    (7, False, None, None, None, None, None, None, None),
    (8, False, 0, 0, None, None, None, 0, None),
]
COLUMNS = ["seq", "too_late", "c1h", "s1h", "last1h", "first1h", "avg1h", "distinct_amounts",
           "ratio"]


def program():
    return loader.loads(PROGRAM, "scenario.feat")


def table() -> pa.Table:
    p = program()
    return pa.Table.from_pydict({
        "seq": [e[0] for e in EVENTS],
        "event_time": [T0 + datetime.timedelta(microseconds=e[1]) for e in EVENTS],
        "stream": ["charge"] * len(EVENTS),
        "card": [e[2] for e in EVENTS],
        "amount": [e[3] for e in EVENTS],
    }, schema=events_mod.schema(p))


def expected_rows() -> list[dict]:
    return [dict(zip(COLUMNS, row)) for row in EXPECTED]
