"""Online target: a checked program -> generated Python that keeps per-key state and serves
feature values for a driver event as it arrives.

State lives in plain dicts, one per aggregation group: key -> state.
* window groups: `[ts, X, m1_0, m2_0, m1_1, m2_1, ...]`: ts the list of event_times in
  ascending order, X the key's index (below), then per stored event its member values,
  `stride` of them: the seq (only when a `last` needs it) and one value per distinct member
  (e.g. the amount, the merchant; None where the event does not count for that aggregation).
  A group of unfiltered counts has no members: its state is ts itself. One flat list per key
  rather than a list per member: fewer objects for the allocator and the cyclic garbage
  collector to visit. Everything stored arrived before the event being served, so the
  members of a window are exactly the suffix with event_time >= t - w (one bisect), and the
  aggregations are C-level builtins over (strided) slices (len, sum, max, set).
  That is linear in the window's events: a key with INDEX_FROM stored events gets an index X
  (None below; groups with nothing to index have no X slot) that answers the same suffix
  queries in O(log n): prefix sums and counts for int sums, averages and filtered counts;
  each distinct value's newest event_time, sorted, for count_distinct; the stack of suffix
  extremes for min and max. An in-order event extends it; a late one rebuilds it.
  Entries older than max_t - lateness - longest window can never count again (any driver that
  is not too late has t >= max_t - lateness). An insert drops them once they are half of the
  key's entries (so a key holds at most about twice what its windows can still count, at an
  amortized constant cost); `sweep` drops them all and removes keys left empty.
* lifetime groups: running accumulators per key (count, sum, min, max, last, distinct set).

The evaluator is generated as Python source and exec'd once: `run` takes a batch of events as
columns (one list per input column) and loops over it with straight-line code per stream (no
interpretation of the AST, no per-event calls; the driver's own groups are looked up once for
serving and ingesting), storing the served values into one list per output column. The same
generated code serves the memory store (dicts are the store) and the Redis store (dicts are a
per-batch cache that the store fills before and writes back after, together with the log
position).
"""
from __future__ import annotations

import bisect
import contextlib
import dataclasses
import gc
import re

from roundhouse.features.language import syntax as ast
from roundhouse.features.language.syntax import Base
from roundhouse.features.plan.plan import field_columns, Group, make_plan, Slot
from roundhouse.features.targets.online.pyexpr import PyExpr, RUNTIME

# The layout of the state above; stores refuse state written with another layout.
STATE_LAYOUT = 4
# Below every event_time: the max event_time before any event (no driver is too late).
_NO_TIME = -(1 << 62)
# Stored events from which a key's window state also keeps an index (see the module docstring).
INDEX_FROM = 64


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


def _flush(out: list, n: int, columns: tuple) -> None:
    """Appends the first n values of each batch column to the output columns."""
    for i, col in enumerate(columns):
        del col[n:]
        if out[i]:
            out[i] += col
        else:
            out[i] = col


def _last(seqs, col):
    """The non-null value of col with the greatest seq (late events sit mid-list)."""
    best, value = None, None
    for q, v in zip(seqs, col):
        if v is not None and (best is None or q > best):
            best, value = q, v
    return value


@dataclasses.dataclass
class Compiled:
    run: object  # fn(cols, states, meta, out columns) over a batch of events (memory store)
    run_dirty: object  # the same, also recording the (group, key) pairs it wrote (Redis)
    serve: object  # fn(row, states, meta) -> output tuple (no ingest)
    keys: dict  # stream -> fn(row) -> list of (gid, key) the event reads or writes
    keys_run: object  # fn(cols, pairs): adds the (gid, key) pairs a batch reads or writes
    build: dict  # window group id -> fn(state) -> the state's index (indexed groups only)
    trim: dict  # window group id -> fn(index, j, cut): drops its first j events (time < cut)
    source: str


class OnlineProgram:
    """Row layout everywhere: (seq, event_time_micros, stream, *fields) in `self.columns`; a
    batch in columns is one sequence per entry of `self.columns` (None for a column the
    program never reads: see `input_columns`)."""

    def __init__(self, program: ast.Program, index_from: int = INDEX_FROM):
        self.program = program
        self.index_from = index_from
        self.plan = make_plan(program, labels=False)
        self.fields = [name for name, _ in field_columns(program)]
        self.columns = ["seq", "t", "stream"] + self.fields
        self.pos = {name: i for i, name in enumerate(self.columns)}
        self.groups = [g for g in self.plan.groups if g.kind in ("window", "lifetime")]
        self.window_groups = [g for g in self.groups if g.kind == "window"]
        # Member values stored per event, by window group (0: the state is the times list).
        self._strides = {g.id: self._has_seq(g) + len(self._member_columns(g))
                         for g in self.window_groups}
        self._indexes = {g.id: self._index_layout(g) for g in self.window_groups}
        self.outputs = [d.column for d in program.features]
        self.compiled = self._compile()

    # ------------------------------------------------------------------ helpers for callers
    def new_states(self) -> dict:
        return {g.id: {} for g in self.groups}

    def row(self, event: dict) -> tuple:
        """An event dict (seq, t or event_time micros, stream, fields) -> row tuple."""
        t = event["t"] if "t" in event else event["event_time"]
        return (event["seq"], t, event["stream"]) + tuple(event.get(f) for f in self.fields)

    def new_outputs(self) -> list:
        """Empty output columns for `run`: seq, too_late, then one per feature."""
        return [[] for _ in range(2 + len(self.outputs))]

    def run(self, cols, states: dict, meta: list, out: list, dirty=None) -> None:
        """Process a batch of events given as columns (see `columns`), in order; appends the
        values served to each driver event to the output columns `out` (`new_outputs`).
        With a set `dirty`, records the (group id, key) pairs the batch wrote."""
        with paused_gc():
            if dirty is None:
                self.compiled.run(cols, states, meta, out)
            else:
                self.compiled.run_dirty(cols, states, meta, out, dirty)

    def process(self, row: tuple, states: dict, meta: list, dirty=None):
        """One event; returns the values served to it (a driver) or None."""
        out = self.new_outputs()
        self.run([(v,) for v in row], states, meta, out, dirty)
        return tuple(c[0] for c in out) if out[0] else None

    def sweep(self, states: dict, meta: list) -> int:
        """Drop window state no driver can count any more; returns the number of keys removed."""
        if meta[0] is None:
            return 0
        removed = 0
        for g in self.window_groups:
            cutoff = meta[0] - self.program.lateness_micros - g.max_window
            table = states.get(g.id)
            if not table:
                continue
            bare, stride, base = self._bare(g), self.stride(g), self.base(g)
            trim = self.compiled.trim.get(g.id)
            for k, st in [(k, st) for k, st in table.items()
                          if (st if bare else st[0])[0] < cutoff]:
                ts = st if bare else st[0]
                if ts[-1] < cutoff:
                    del table[k]
                    removed += 1
                else:
                    j = bisect.bisect_left(ts, cutoff)
                    del ts[:j]
                    if not bare:
                        del st[base:base + j * stride]
                        if trim is not None and st[1] is not None:
                            trim(st[1], j, cutoff)
        return removed

    def times(self, g: Group, st) -> list:
        """The event_times of a window group's state (ascending)."""
        return st if self._bare(g) else st[0]

    def stride(self, g: Group) -> int:
        """Member values stored per event in a window group's state."""
        return self._strides[g.id]

    def state_size(self, states: dict) -> int:
        return sum(len(self.times(g, st)) if g.kind == "window" else 1
                   for g in self.groups for st in states.get(g.id, {}).values())

    # ------------------------------------------------------------------ code generation
    # Generated code reads event fields from locals `v_<field>`, the event's time and seq from
    # `t` and `seq`, the max event_time of the events before it from `M`, and each group's
    # table from `tab<i>`; aggregations go to `a_<slot>` and features to `f_<column>`.
    @staticmethod
    def _key_src(fields) -> tuple[str, str]:
        """(expression for the key, condition that it has no null part)."""
        parts = [f"v_{f}" for f in fields]
        if len(parts) == 1:
            return parts[0], f"{parts[0]} is not None"
        return "(" + ", ".join(parts) + ")", " and ".join(f"{p} is not None" for p in parts)

    @staticmethod
    def _null_src(fields) -> str:
        """Condition that some part of the key is null."""
        return " or ".join(f"v_{f} is None" for f in fields)

    def _member_src(self, s: Slot) -> str:
        agg = s.agg
        value = "1" if agg.fn in ("count", "exists") else f"v_{agg.field}"
        if agg.where is None:
            return value
        cond = PyExpr(lambda n: f"v_{n.name}")(agg.where)
        return f"({value} if ({cond}) is True else None)"

    def _bare(self, g: Group) -> bool:
        """A window group of unfiltered counts only: its state is the list of event_times."""
        return g.kind == "window" and self._strides[g.id] == 0

    def _has_seq(self, g: Group) -> bool:
        return any(s.agg.fn == "last" for s in g.slots)

    def _member_columns(self, g: Group) -> list[str]:
        """Distinct stored member-value expressions of a window group; slots sharing one (e.g.
        sum and avg of the same field) share a list. An unfiltered count needs none: every
        stored event counts."""
        cols: list[str] = []
        for s in g.slots:
            src = self._member_src(s)
            if src != "1" and src not in cols:
                cols.append(src)
        return cols

    def base(self, g: Group) -> int:
        """Position of the first member value in a window group's state."""
        return 2 if self._indexes[g.id] else 1

    def _slice(self, g: Group, st: str, c: int, i: str) -> str:
        """Source of the list of member c's values from the i-th stored event on."""
        k, first = self.stride(g), self.base(g) - 1 + c
        return f"{st}[{first} + {i}:]" if k == 1 else f"{st}[{first} + {i} * {k}::{k}]"

    def _index_layout(self, g: Group) -> dict:
        """The index of a window group's key: (kind, member column) -> position in it. Kinds:
        'sum' and 'count' (prefix sums of an int member and prefix counts of its non-null
        values), 'distinct' (value -> its newest event_time, and those times sorted), 'max' and
        'min' (the suffix extremes: event_times and values). Float sums (prefix sums would
        round differently) and `last` are always computed from slices."""
        layout: dict = {}
        size = 0  # entries of X so far: prefix lists take one, the others two
        for s in g.slots:
            if self._member_src(s) == "1":
                continue
            fn, c = s.agg.fn, self._column_of(s)
            if fn in ("sum", "avg"):
                kinds = ["sum", "count"] if self._field_base(s) is Base.INT else []
            elif fn in ("count", "exists"):
                kinds = ["count"]
            elif fn == "count_distinct":
                kinds = ["distinct"]
            else:
                kinds = [fn] if fn in ("min", "max") else []
            for kind in kinds:
                if (kind, c) not in layout:
                    layout[(kind, c)] = size
                    size += 1 if kind in ("sum", "count") else 2
        return layout

    def _index_init(self, g: Group) -> str:
        parts = ["[0]" if kind in ("sum", "count") else "{}, []" if kind == "distinct"
                 else "[], []" for kind, _ in self._indexes[g.id]]
        return "[" + ", ".join(parts) + "]"

    def _index_add(self, g: Group, values: list[str], ind: str) -> list[str]:
        """Lines adding the newest stored event (time `t`, member values `values[c]`) to the
        index `X`."""
        lines = []
        for (kind, c), o in self._indexes[g.id].items():
            v = values[c]
            if kind == "sum":
                lines.append(f"{ind}X[{o}].append(X[{o}][-1] if {v} is None else "
                             f"X[{o}][-1] + {v})")
            elif kind == "count":
                lines.append(f"{ind}X[{o}].append(X[{o}][-1] + ({v} is not None))")
            elif kind == "distinct":  # the value's newest time moves to the end
                lines += [f"{ind}if {v} is not None:",
                          f"{ind}    xd, xt = X[{o}], X[{o + 1}]",
                          f"{ind}    if (xo := xd.get({v})) is not None:",
                          f"{ind}        del xt[bisect_left(xt, xo)]",
                          f"{ind}    xt.append(t)",
                          f"{ind}    xd[{v}] = t"]
            else:  # the values it dominates leave the stack of suffix extremes
                op = "<=" if kind == "max" else ">="
                lines += [f"{ind}if {v} is not None:",
                          f"{ind}    xt, xv = X[{o}], X[{o + 1}]",
                          f"{ind}    while xv and xv[-1] {op} {v}:",
                          f"{ind}        xt.pop()",
                          f"{ind}        xv.pop()",
                          f"{ind}    xt.append(t)",
                          f"{ind}    xv.append({v})"]
        return lines

    def _build_fn_lines(self, gi: int, g: Group) -> list[str]:
        """fn(state) -> its index, from the stored events (once the key has INDEX_FROM of
        them, and after a late insert)."""
        k, base = self.stride(g), self.base(g)
        cols = sorted({c for _, c in self._indexes[g.id]})
        values = {c: f"xm{c}" for c in cols}
        lines = [f"def build{gi}(st):", "    ts = st[0]", f"    X = {self._index_init(g)}",
                 "    for j in range(len(ts)):", "        t = ts[j]"]
        lines += [f"        xm{c} = st[{base - 1 + c} + j{'' if k == 1 else f' * {k}'}]"
                  for c in cols]
        lines += self._index_add(g, values, "        ")
        return lines + ["    return X"]

    def _trim_fn_lines(self, gi: int, g: Group) -> list[str]:
        """fn(X, j, cut): the index after its key's first j events, those with time < cut,
        are dropped (prefix sums keep their differences; a distinct value goes with its
        newest time)."""
        lines = [f"def trim{gi}(X, j, cut):"]
        for (kind, _), o in self._indexes[g.id].items():
            if kind in ("sum", "count"):
                lines.append(f"    del X[{o}][:j]")
            else:
                lines += [f"    if (k := bisect_left(X[{o + (kind == 'distinct')}], cut)):"]
                if kind == "distinct":
                    lines += [f"        del X[{o + 1}][:k]",
                              f"        for v in [v for v, q in X[{o}].items() if q < cut]:",
                              f"            del X[{o}][v]"]
                else:
                    lines += [f"        del X[{o}][:k]", f"        del X[{o + 1}][:k]"]
        return lines

    def _column_of(self, s: Slot) -> int:
        """Position (1-based) of the slot's member among an event's member values."""
        g = s.group
        return 1 + self._has_seq(g) + self._member_columns(g).index(self._member_src(s))

    def _field_base(self, s: Slot):
        return None if s.agg.field is None else \
            self.program.streams[s.agg.stream].field(s.agg.field).type.base

    def _empty(self, s: Slot) -> str:
        fn = s.agg.fn
        if fn in ("count", "count_distinct"):
            return "0"
        if fn == "exists":
            return "False"
        if fn == "sum":
            return "0.0" if self._field_base(s) is Base.FLOAT else "0"
        return "None"

    def _lifetime_layout(self, g: Group) -> tuple[list[int], list]:
        offsets, init = [], []
        for s in g.slots:
            offsets.append(len(init))
            fn = s.agg.fn
            if fn in ("count", "exists"):
                init += [0]
            elif fn == "sum":
                init += [0.0 if self._field_base(s) is Base.FLOAT else 0]
            elif fn == "avg":
                init += [0, 0]
            elif fn in ("min", "max"):
                init += [None]
            elif fn == "count_distinct":
                init += ["SET"]
            else:
                init += [None, None]
        return offsets, init

    def _lifetime_value(self, s: Slot, o: int) -> str:
        fn = s.agg.fn
        if fn == "exists":
            return f"(st[{o}] > 0)"
        if fn == "avg":
            return f"(st[{o}] / st[{o + 1}] if st[{o + 1}] else None)"
        if fn == "count_distinct":
            return f"len(st[{o}])"
        if fn == "last":
            return f"st[{o + 1}]"
        return f"st[{o}]"

    def _own(self, g: Group) -> bool:
        """A group of the driver's own stream read and written under the same key: the driver
        branch fetches its state once for both."""
        return g.stream == self.program.driver and g.driver_keys == g.stream_keys

    def _window_serve(self, g: Group, st: str, names: list[str], ind: str) -> list[str]:
        """Lines computing a group's slots from its state `st` (not None, and not empty in the
        longest window). Windows nest, longest first: each bisect starts where the last ended,
        and once a window is empty (its lower bound past the newest stored event, as it often
        is for short windows) the shorter ones are too and get their empty values directly."""
        lines = [f"{ind}ts = {st if self._bare(g) else st + '[0]'}", f"{ind}n = len(ts)"]
        if not self._indexes[g.id]:
            return lines + self._window_nest(g, st, names, ind, indexed=False)
        return lines + [f"{ind}if (X := {st}[1]) is None:",
                        *self._window_nest(g, st, names, ind + "    ", indexed=False),
                        f"{ind}else:",
                        *self._window_nest(g, st, names, ind + "    ", indexed=True)]

    def _window_nest(self, g: Group, st: str, names: list[str], ind: str,
                     indexed: bool) -> list[str]:
        lines: list[str] = []
        windows = sorted({s.agg.window.micros for s in g.slots}, reverse=True)
        prev = None
        for w in windows:
            slots = [(s, nm) for s, nm in zip(g.slots, names) if s.agg.window.micros == w]
            if prev is None:  # the whole list is often inside the longest window
                lines.append(f"{ind}i{w} = 0 if ts[0] >= lo{w} else bisect_left(ts, lo{w})")
            else:
                shorter = [(s, nm) for s, nm in zip(g.slots, names) if s.agg.window.micros <= w]
                lines.append(f"{ind}if ts[-1] < lo{w}:")
                lines += [f"{ind}    {nm} = {self._empty(s)}" for s, nm in shorter]
                lines.append(f"{ind}else:")
                ind += "    "
                lines.append(f"{ind}i{w} = bisect_left(ts, lo{w}, {prev})")
            prev = f"i{w}"
            lines += self._window_slots(g, st, w, slots, ind, indexed)
        return lines

    @staticmethod
    def _index_value(fn: str, c: int, i: str, w: int, index: dict) -> str | None:
        """Source of an aggregation of member c over window w (from the i-th stored event on)
        read from the key's index X; None where X does not hold its kind."""
        def part(kind: str) -> str:  # the window's share of a prefix list
            return f"X[{index[kind, c]}][n] - X[{index[kind, c]}][{i}]"

        if fn in ("count", "exists") and ("count", c) in index:
            return part("count") + (" > 0" if fn == "exists" else "")
        if fn == "sum" and ("sum", c) in index:
            return part("sum")
        if fn == "avg" and ("sum", c) in index:
            return f"({part('sum')}) / xc if (xc := {part('count')}) else None"
        if fn == "count_distinct" and ("distinct", c) in index:
            o = index["distinct", c] + 1
            return f"len(X[{o}]) - bisect_left(X[{o}], lo{w})"
        if fn in ("min", "max") and (fn, c) in index:
            o = index[fn, c]
            return f"X[{o + 1}][xk] if (xk := bisect_left(X[{o}], lo{w})) < len(X[{o}]) else None"
        return None

    def _window_slots(self, g: Group, st: str, w: int, slots: list, ind: str,
                      indexed: bool) -> list[str]:
        """Lines computing the slots of one window (not empty) from its first index i<w>,
        with `indexed` from the key's index X where it has the slot's kind."""
        lines: list[str] = []
        made: set[str] = set()
        i = f"i{w}"
        index = self._indexes[g.id] if indexed else {}

        def need(var: str, src: str) -> str:
            if var not in made:
                made.add(var)
                lines.append(f"{ind}{var} = {src}")
            return var

        for s, nm in slots:
            fn = s.agg.fn
            src = self._member_src(s)
            if src == "1":  # unfiltered count / exists: every stored event counts
                lines.append(f"{ind}{nm} = n - {i}" if fn == "count" else
                             f"{ind}{nm} = n > {i}")
                continue
            c = self._column_of(s)
            if (value := self._index_value(fn, c, i, w, index)) is not None:
                lines.append(f"{ind}{nm} = {value}")
                continue
            if fn == "last":
                lines.append(f"{ind}{nm} = _last({self._slice(g, st, 1, i)}, "
                             f"{self._slice(g, st, c, i)})")
                continue
            sl = need(f"sl{c}_{w}", self._slice(g, st, c, i))
            if fn == "count":
                lines.append(f"{ind}{nm} = len({sl}) - {sl}.count(None)")
            elif fn == "exists":
                lines.append(f"{ind}{nm} = len({sl}) > {sl}.count(None)")
            elif fn == "count_distinct":
                lines.append(f"{ind}{nm} = len(_s := set({sl})) - (None in _s)")
            else:
                vl = f"vl{c}_{w}"
                if vl not in made:
                    # The builtins raise TypeError on a None among the values (sum always,
                    # min/max unless the None is alone, which is then the right answer):
                    # filter the slice only then, instead of scanning it for None first.
                    made.add(vl)
                    sums = any(o.agg.fn in ("sum", "avg") and self._member_src(o) == src
                               for o, _ in slots)
                    if sums:  # the sum first; other slots use vl after
                        made.add(f"sm{c}_{w}")
                        first = f"sm{c}_{w} = sum({{v}})"
                    else:  # this slot (a min or max) first
                        first = f"{nm} = {fn}({{v}}) if {{v}} else None"
                    lines.append(f"{ind}try:")
                    lines.append(f"{ind}    {first.format(v=sl)}")
                    lines.append(f"{ind}    {vl} = {sl}")
                    lines.append(f"{ind}except TypeError:")
                    lines.append(f"{ind}    {vl} = [v for v in {sl} if v is not None]")
                    lines.append(f"{ind}    {first.format(v=vl)}")
                    if not sums:
                        continue
                if fn in ("sum", "avg"):
                    sm = need(f"sm{c}_{w}", f"sum({vl})")
                    if fn == "avg":
                        # a sum of ints below 2**53 (any realistic one) is exact as a
                        # float: int / int then equals float(sum) / n.
                        lines.append(f"{ind}{nm} = {sm} / len({vl}) if {vl} else None")
                    elif self._field_base(s) is Base.FLOAT:
                        lines.append(f"{ind}{nm} = float({sm})")
                    else:
                        lines.append(f"{ind}{nm} = {sm}")
                else:  # min / max
                    lines.append(f"{ind}{nm} = {fn}({vl}) if {vl} else None")
        return lines

    def _float_by_construction(self, e: ast.Expr) -> bool:
        if isinstance(e, ast.Agg):
            return e.fn == "avg" or (e.fn == "sum" and self._field_base(self.plan.slot(e))
                                     is Base.FLOAT)
        if isinstance(e, ast.Literal):
            return e.value is None or isinstance(e.value, float)
        if isinstance(e, ast.If):
            return self._float_by_construction(e.then) and self._float_by_construction(e.else_)
        return isinstance(e, ast.Binary) and e.op == "/"

    def _serve_lines(self, ind: str, fetched: bool) -> list[str]:
        """Lines computing too_late and f_<feature> for a driver event. With `fetched`, the
        states st<i> of the driver's own groups are left fetched for the ingest that follows
        (also for a driver that is too late)."""
        p = self.program
        lines = [f"{ind}too_late = t < cut{p.lateness_micros}"]
        all_names = [f"a_{s.name}" for g in self.groups for s in g.slots]
        if all_names:
            lines.append(f"{ind}if too_late:")
            lines.append(f"{ind}    {' = '.join(all_names)} = None")
            for gi, g in enumerate(self.groups):
                if fetched and self._own(g):
                    key, notnull = self._key_src(g.driver_keys)
                    lines.append(f"{ind}    st{gi} = tab{gi}.get({key}) if {notnull} else None")
            lines.append(f"{ind}else:")
            i2 = ind + "    "
            # Each window's lower bound once: event_times are multi-digit ints, slow to subtract.
            windows = sorted({s.agg.window.micros for g in self.window_groups for s in g.slots})
            lines += [f"{i2}lo{w} = t - {w}" for w in windows]
            for gi, g in enumerate(self.groups):
                key, notnull = self._key_src(g.driver_keys)
                names = [f"a_{s.name}" for s in g.slots]
                lines.append(f"{i2}if {self._null_src(g.driver_keys)}:")
                lines.append(f"{i2}    {' = '.join(names)} = None")
                if g.kind == "window":  # also empty: every stored event older than the windows
                    ts = f"st{gi}" if self._bare(g) else f"st{gi}[0]"
                    lines.append(f"{i2}elif (st{gi} := tab{gi}.get({key})) is None or "
                                 f"{ts}[-1] < lo{g.max_window}:")
                else:
                    lines.append(f"{i2}elif (st{gi} := tab{gi}.get({key})) is None:")
                for s, nm in zip(g.slots, names):
                    lines.append(f"{i2}    {nm} = {self._empty(s)}")
                lines.append(f"{i2}else:")
                if g.kind == "window":
                    lines += self._window_serve(g, f"st{gi}", names, i2 + "    ")
                else:
                    offsets, _ = self._lifetime_layout(g)
                    for s, nm, o in zip(g.slots, names, offsets):
                        v = self._lifetime_value(s, o).replace("st[", f"st{gi}[")
                        lines.append(f"{i2}    {nm} = {v}")

        compile_expr = PyExpr(self._ref)
        for d in p.features:
            f = self._out_name(d)
            if f != f"f_{d.column}":
                continue  # a bare aggregation or field: read where it is
            lines.append(f"{ind}{f} = {compile_expr(d.expr)}")
            if d.expr.type.base is Base.FLOAT and not self._float_by_construction(d.expr):
                lines.append(f"{ind}if {f} is not None and {f}.__class__ is not float:")
                lines.append(f"{ind}    {f} = float({f})")
        return lines

    def _ref(self, e) -> str:
        if isinstance(e, ast.FieldRef):
            return f"v_{e.name}"
        if isinstance(e, ast.Agg):
            return f"a_{self.plan.slot(e).name}"
        return self._out_name(next(d for d in self.program.features if d.column == e.name))

    def _out_name(self, d) -> str:
        """The local holding a feature's value."""
        e = d.expr
        if isinstance(e, (ast.Agg, ast.FieldRef, ast.FeatureRef)) and (
                e.type.base is not Base.FLOAT or self._float_by_construction(e)):
            return self._ref(e)
        return f"f_{d.column}"

    def _out_values(self) -> list[str]:
        return ["seq", "too_late"] + [self._out_name(d) for d in self.program.features]

    def _ingest_lines(self, stream: str, ind: str, dirty: bool, fetched: bool) -> list[str]:
        """Lines storing the event (time `t`, seq `seq`) into its groups; `M` already
        includes the event's own time. With `fetched`, st<i> of own groups is fetched."""
        p = self.program
        lines: list[str] = []
        for gi, g in enumerate(self.groups):
            if g.stream != stream:
                continue
            st, tab = f"st{gi}", f"tab{gi}"
            key, notnull = self._key_src(g.stream_keys)
            fetch = [] if fetched and self._own(g) else [f"{st} = {tab}.get({key})"]
            if g.kind == "window":
                # Plain fields are stored as they are; other member values (filtered ones)
                # are computed once into m<c>.
                pre, values = [], []
                for c, src_ in enumerate(self._member_columns(g)):
                    if re.fullmatch(r"v_\w+", src_):
                        values.append(src_)
                    else:
                        pre.append(f"m{c} = {src_}")
                        values.append(f"m{c}")
                lists = ["t"] + (["seq"] if self._has_seq(g) else []) + values
                # An event that counts for nothing, or is already too old, is not stored.
                cutoff = f"cut{p.lateness_micros + g.max_window}"
                cond = f"t >= {cutoff}"
                if not any(self._member_src(s) == "1" for s in g.slots):
                    cond += " and (" + " or ".join(f"{v} is not None" for v in values) + ")"
                if pre:
                    lines.append(f"{ind}if {notnull}:")
                    i2 = ind + "    "
                    lines += [i2 + line for line in pre]
                    lines.append(f"{i2}if {cond}:")
                else:
                    i2 = ind
                    lines.append(f"{i2}if {notnull} and {cond}:")
                i3 = i2 + "    "
                lines += [i3 + f for f in fetch]
                if self._bare(g):  # the state is the list of event_times itself
                    lines += [f"{i3}if {st} is None:",
                              f"{i3}    {tab}[{key}] = [t]",
                              f"{i3}else:",
                              f"{i3}    if t >= {st}[-1]:",
                              f"{i3}        {st}.append(t)",
                              f"{i3}    else:",
                              f"{i3}        {st}.insert(bisect_right({st}, t), t)",
                              f"{i3}    if {st}[len({st}) >> 1] < {cutoff}:",
                              f"{i3}        del {st}[:bisect_left({st}, {cutoff})]"]
                else:
                    lines += self._window_store(gi, g, lists, tab, key, st, cutoff, i3)
                if dirty:
                    lines.append(f"{i3}dirty_add(({g.id!r}, {key}))")
            else:
                offsets, init = self._lifetime_layout(g)
                init_src = "[" + ", ".join("set()" if v == "SET" else repr(v) for v in init) + "]"
                lines.append(f"{ind}if {notnull}:")
                i2 = ind + "    "
                lines += [i2 + f for f in fetch]
                lines.append(f"{i2}if {st} is None:")
                lines.append(f"{i2}    {st} = {tab}[{key}] = {init_src}")
                for s, o in zip(g.slots, offsets):
                    fn = s.agg.fn
                    lines.append(f"{i2}m = {self._member_src(s)}")
                    lines.append(f"{i2}if m is not None:")
                    i3 = i2 + "    "
                    if fn in ("count", "exists"):
                        lines.append(f"{i3}{st}[{o}] += 1")
                    elif fn == "sum":
                        lines.append(f"{i3}{st}[{o}] += m")
                    elif fn == "avg":
                        lines.append(f"{i3}{st}[{o}] += m")
                        lines.append(f"{i3}{st}[{o + 1}] += 1")
                    elif fn == "min":
                        lines.append(f"{i3}if {st}[{o}] is None or m < {st}[{o}]: {st}[{o}] = m")
                    elif fn == "max":
                        lines.append(f"{i3}if {st}[{o}] is None or m > {st}[{o}]: {st}[{o}] = m")
                    elif fn == "count_distinct":
                        lines.append(f"{i3}{st}[{o}].add(m)")
                    else:
                        lines.append(f"{i3}{st}[{o}] = seq")
                        lines.append(f"{i3}{st}[{o + 1}] = m")
                if dirty:
                    lines.append(f"{i2}dirty_add(({g.id!r}, {key}))")
        return lines

    def _window_store(self, gi: int, g: Group, lists: list[str], tab: str, key: str, st: str,
                      cutoff: str, ind: str) -> list[str]:
        """Lines storing the event into the state `st` of a (not bare) window group: appended
        when in order (and added to the key's index, built once the key has INDEX_FROM
        events), inserted in place when late (the index rebuilt); then the half-stale trim
        (of the index too)."""
        k, members, base = len(lists) - 1, ", ".join(lists[1:]), self.base(g)
        indexed = bool(self._indexes[g.id])
        at = f"{base} + j" if k == 1 else f"{base} + j * {k}"
        guard = f"{ind}        if {st}[1] is not None:"
        rebuild = [guard, f"{ind}            {st}[1] = build{gi}({st})"] if indexed else []
        trim = [guard, f"{ind}            trim{gi}({st}[1], j, {cutoff})"] if indexed else []
        lines = [f"{ind}if {st} is None:",
                 f"{ind}    {tab}[{key}] = [[t], {'None, ' if indexed else ''}{members}]",
                 f"{ind}else:",
                 f"{ind}    ts = {st}[0]",
                 f"{ind}    if t >= ts[-1]:",
                 f"{ind}        ts.append(t)",
                 f"{ind}        {st}.append({members})" if k == 1 else
                 f"{ind}        {st} += ({members})"]
        if indexed:
            lines += [f"{ind}        if (X := {st}[1]) is not None:",
                      *self._index_add(g, lists, ind + "            "),
                      f"{ind}        elif len(ts) >= {self.index_from}:",
                      f"{ind}            {st}[1] = build{gi}({st})"]
        lines += [f"{ind}    else:",
                  f"{ind}        j = bisect_right(ts, t)",
                  f"{ind}        ts.insert(j, t)",
                  f"{ind}        {st}.insert({at}, {members})" if k == 1 else
                  f"{ind}        {st}[{at}:{at}] = ({members})",
                  *rebuild,
                  f"{ind}    if ts[len(ts) >> 1] < {cutoff}:",
                  f"{ind}        j = bisect_left(ts, {cutoff})",
                  f"{ind}        del ts[:j]",
                  f"{ind}        del {st}[{base}:{at}]",
                  *trim]
        return lines

    @staticmethod
    def _fields_in(lines: list[str]) -> list[str]:
        return sorted({m[2:] for m in re.findall(r"\bv_\w+", "\n".join(lines))})

    def _table_loads(self, ind: str) -> list[str]:
        return [f"{ind}tab{gi} = states[{g.id!r}]" for gi, g in enumerate(self.groups)]

    def _run_lines(self, dirty: bool) -> list[str]:
        p = self.program
        ind = "            "
        loop: list[str] = []
        streams = sorted(p.streams, key=lambda s: s != p.driver)  # the driver first
        for si, stream in enumerate(streams):
            body: list[str] = []
            if stream == p.driver:
                body += self._serve_lines(ind, fetched=True)
                # Stores into preallocated columns: cheaper than an append (a call) per value.
                body += [f"{ind}o{i}[x] = {v}" for i, v in enumerate(self._out_values())]
                body.append(f"{ind}x += 1")
            body += [f"{ind}if t > M:", f"{ind}    M = t"] + self._cut_lines(ind + "    ")
            body += self._ingest_lines(stream, ind, dirty, fetched=True)
            loop.append(f"        {'if' if si == 0 else 'elif'} s == {stream!r}:")
            loop += body
        loop += ["        elif t > M:",  # a stream the program does not declare: the clock
                 "            M = t"] + self._cut_lines("            ")
        fields = self._fields_in(loop)
        names = ", ".join(["seq", "t", "s"] + [f"v_{f}" for f in fields])
        cols = ", ".join(["C[0]", "C[1]", "C[2]"] + [f"C[{self.pos[f]}]" for f in fields])
        lines = [f"def run{'_dirty' if dirty else ''}(C, states, meta, out"
                 f"{', dirty' if dirty else ''}):",
                 "    size = len(C[0])"]
        lines += [f"    o{i} = [None] * size" for i in range(2 + len(self.outputs))]
        lines.append("    x = 0")
        if dirty:
            lines.append("    dirty_add = dirty.add")
        lines += self._table_loads("    ")
        lines += ["    M = meta[0]", "    if M is None:", "        M = _NO_TIME"]
        lines += self._cut_lines("    ")
        lines.append(f"    for {names} in zip({cols}):")
        lines += loop
        outs = ", ".join(f"o{i}" for i in range(2 + len(self.outputs)))
        lines += [f"    _flush(out, x, ({outs},))",
                  "    if size:",
                  "        meta[0] = None if M == _NO_TIME else M",
                  "        meta[1] = C[0][-1]"]
        return lines

    def _cut_lines(self, ind: str) -> list[str]:
        """Lines setting cut<x> = M - x, recomputed whenever M moves: the lateness (too_late
        below it) and each window group's lateness + longest window (storing state below it
        is useless)."""
        p = self.program
        cuts = dict.fromkeys([p.lateness_micros] +
                             [p.lateness_micros + g.max_window for g in self.window_groups])
        return [f"{ind}cut{x} = M - {x}" for x in cuts]

    def _serve_fn_lines(self) -> list[str]:
        body = self._serve_lines("    ", fetched=False)
        lines = ["def serve(row, states, meta):", "    seq, t = row[0], row[1]",
                 "    M = meta[0]", "    if M is None:", "        M = _NO_TIME"]
        lines += self._cut_lines("    ")
        lines += self._table_loads("    ")
        lines += [f"    v_{f} = row[{self.pos[f]}]" for f in self._fields_in(body)]
        lines += body
        lines.append(f"    return ({', '.join(self._out_values())})")
        return lines

    def _keys_fn_lines(self, stream: str, i: int) -> list[str]:
        lines = [f"def keys_{i}(row):", "    out = []"]
        groups = [(g, g.driver_keys) for g in self.groups] if stream == self.program.driver \
            else []
        groups += [(g, g.stream_keys) for g in self.groups if g.stream == stream]
        # A driver's own groups are both read and written: one pair each.
        groups = list(dict.fromkeys((g.id, f) for g, f in groups))
        body = []
        for gid, fields in groups:
            key, notnull = self._key_src(fields)
            body.append(f"    if {notnull}:")
            body.append(f"        out.append(({gid!r}, {key}))")
        lines += [f"    v_{f} = row[{self.pos[f]}]"
                  for f in sorted(set(m[2:] for m in re.findall(r"\bv_\w+", "\n".join(body))))]
        return lines + body + ["    return out"]

    def _keys_run_lines(self) -> list[str]:
        p = self.program
        lines = ["def keys_run(C, pairs):", "    add = pairs.add", "    C_stream = C[2]"]
        loop = ["    for x in range(len(C_stream)):", "        s = C_stream[x]"]
        used: set[str] = set()
        for si, stream in enumerate(p.streams):
            groups = [(g, g.driver_keys) for g in self.groups] if stream == p.driver else []
            groups += [(g, g.stream_keys) for g in self.groups if g.stream == stream]
            groups = list(dict.fromkeys((g.id, f) for g, f in groups))
            if not groups:
                continue
            body = []
            for gid, fields in groups:
                key, notnull = self._key_src(fields)
                body.append(f"            if {notnull}:")
                body.append(f"                add(({gid!r}, {key}))")
            fields = sorted(set(m[2:] for m in re.findall(r"\bv_\w+", "\n".join(body))))
            used.update(fields)
            loop.append(f"        {'if' if len(loop) == 2 else 'elif'} s == {stream!r}:")
            loop += [f"            v_{f} = C_{f}[x]" for f in fields]
            loop += body
        if len(loop) == 2:
            return lines + ["    return None"]
        lines += [f"    C_{f} = C[{self.pos[f]}]" for f in sorted(used)]
        return lines + loop

    def _compile(self) -> Compiled:
        src: list[str] = []
        src += self._run_lines(dirty=False)
        src += self._run_lines(dirty=True)
        src += self._serve_fn_lines()
        src += self._keys_run_lines()
        names = list(self.program.streams)
        for i, stream in enumerate(names):
            src += self._keys_fn_lines(stream, i)
        indexed = {gi: g for gi, g in enumerate(self.groups)
                   if g.kind == "window" and self._indexes[g.id]}
        for gi, g in indexed.items():
            src += self._build_fn_lines(gi, g) + self._trim_fn_lines(gi, g)
        source = "\n".join(src) + "\n"
        env = dict(RUNTIME, bisect_left=bisect.bisect_left, bisect_right=bisect.bisect_right,
                   _last=_last, _flush=_flush, _NO_TIME=_NO_TIME)
        exec(compile(source, f"<online:{self.program.file}>", "exec"), env)  # noqa: S102
        # The input columns the generated code reads (the others may be passed as None).
        self.input_columns = ["seq", "t", "stream"] + [
            f for f in self.fields if re.search(rf"\bv_{f}\b", source)]
        return Compiled(run=env["run"], run_dirty=env["run_dirty"], serve=env["serve"],
                        keys={s: env[f"keys_{i}"] for i, s in enumerate(names)},
                        keys_run=env["keys_run"], source=source,
                        build={g.id: env[f"build{gi}"] for gi, g in indexed.items()},
                        trim={g.id: env[f"trim{gi}"] for gi, g in indexed.items()})
