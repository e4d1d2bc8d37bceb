"""Generated event logs for parity tests, driven only by a program's stream declarations.

The generator aims at the corners of the contract rather than at realism: ties on event_time,
events exactly on (and one microsecond either side of) window edges, late events within, at
and beyond the allowed lateness, null keys and values, keys seen once, long gaps. Values come
from small pools (plus the literals the program itself compares against) so keys collide and
filters match; floats are multiples of 1/4 so sums are exact in any order.
"""
from __future__ import annotations

import datetime
import random

import pyarrow as pa

from roundhouse.features.language import syntax as ast
from roundhouse.features.language.syntax import Base
from roundhouse.features.plan.plan import field_columns, make_plan
from roundhouse.features.transport import events as events_mod

T0 = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z in microseconds
SECOND = 1_000_000


def _literals(program: ast.Program) -> dict[Base, set]:
    found: dict[Base, set] = {b: set() for b in Base}

    def visit(e):
        for n in ast.walk(e):
            if isinstance(n, ast.Literal) and n.value is not None and n.type is not None:
                found[n.type.base].add(n.value)
            if isinstance(n, ast.Agg) and n.where is not None:
                visit(n.where)

    for d in program.features + program.labels:
        visit(d.expr)
    return found


def generate(program: ast.Program, n: int, seed: int, key_pool: int = 6) -> pa.Table:
    rnd = random.Random(seed)
    plan = make_plan(program)
    windows = sorted({s.agg.window.micros for g in plan.groups for s in g.slots
                      if s.agg.window.micros})
    late = program.lateness_micros
    span = max(windows + [late, 3600 * SECOND])
    literals = _literals(program)
    pools: dict[str, list] = {}
    for name, base in field_columns(program):
        if base is Base.STRING:
            # One pool for every string field, so keys joined across differently named
            # fields (`by page = shop`) meet.
            pool = [f"k{i}" for i in range(key_pool)] + sorted(literals[Base.STRING])
        elif base is Base.INT:
            pool = list(range(-2, key_pool * 20, 7)) + sorted(literals[Base.INT]) + [0]
        elif base is Base.FLOAT:
            pool = [i / 4 for i in range(-8, 400, 3)] + [0.0]
        else:
            pool = [True, False]
        pools[name] = pool
    streams = list(program.streams.values())
    weights = [3 if s.name == program.driver else 1 for s in streams]
    fresh = [0]

    def value(field: ast.Field):
        if field.type.nullable and rnd.random() < 0.08:
            return None
        if rnd.random() < 0.04 and field.type.base in (Base.STRING, Base.INT):
            fresh[0] += 1  # a key seen once
            return f"once{fresh[0]}" if field.type.base is Base.STRING else 10_000 + fresh[0]
        return rnd.choice(pools[field.name])

    times: list[int] = []
    max_t = T0
    rows = {"seq": [], "event_time": [], "stream": []}
    for name, _ in field_columns(program):
        rows[name] = []
    seq = rnd.randrange(0, 50)
    for i in range(n):
        r = rnd.random()
        if not times:
            t = T0
        elif r < 0.25:  # in order, small step
            t = max_t + rnd.choice([1, SECOND, 7 * SECOND, 60 * SECOND, span // 50 or 1])
        elif r < 0.35:  # tie with the newest
            t = max_t
        elif r < 0.45:  # tie with an older event
            t = rnd.choice(times[-10:])
        elif r < 0.65 and windows:  # on a window edge of an earlier event (or 1us off)
            t = rnd.choice(times[-30:]) + rnd.choice(windows) + rnd.choice([0, 0, -1, 1])
        elif r < 0.75:  # late, within the allowed lateness
            t = max_t - rnd.randrange(0, late + 1) if late else max_t
        elif r < 0.80:  # exactly at the lateness limit, or one microsecond past it
            t = max_t - late - rnd.choice([0, 1])
        elif r < 0.83:  # far too late
            t = max_t - late - rnd.randrange(1, span + 2)
        elif r < 0.84:  # a long gap
            t = max_t + span + late + rnd.randrange(1, span + 2)
        else:
            t = max_t + rnd.randrange(0, max(span // 20, 2))
        times.append(t)
        max_t = max(max_t, t)
        seq += rnd.choice([1, 1, 1, 2, 5])
        st = rnd.choices(streams, weights)[0]
        rows["seq"].append(seq)
        rows["event_time"].append(datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
                                  + datetime.timedelta(microseconds=t))
        rows["stream"].append(st.name)
        mine = {f.name: f for f in st.fields}
        for name, _ in field_columns(program):
            rows[name].append(value(mine[name]) if name in mine else None)
    return pa.Table.from_pydict(rows, schema=events_mod.schema(program))
