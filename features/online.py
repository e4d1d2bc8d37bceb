"""Online target: a checked program -> generated Python that keeps per-key state and serves
feature values for a driver event as it arrives.

State lives in plain dicts, one per aggregation group: key -> state.
* window groups: a list of parallel lists `[ts, (seqs,) col1, col2, ...]`: ts the event_times
  in ascending order, seqs the matching sequence numbers (only when a `last` needs them) and one
  list per distinct member value (e.g. the amount, the merchant; None where the event does not
  count for that aggregation). Everything stored arrived before the event being served, so the
  members of a window are exactly the suffix with event_time >= t - w (one bisect), and the
  aggregations are C-level builtins over slices of those lists (len, sum, max, set).
  Entries older than max_t - lateness - longest window can never count again (any driver that
  is not too late has t >= max_t - lateness) and are dropped on insert and by `sweep`.
* lifetime groups: running accumulators per key (count, sum, min, max, last, distinct set).

The evaluator is generated as Python source and exec'd once: `run` takes a batch of events as
columns (one list per input column) and loops over it with straight-line code per stream (no
interpretation of the AST, no per-event calls; the driver's own groups are looked up once for
serving and ingesting), appending the served values to one list per output column. The same generated code serves the memory store (dicts are the
store) and the Redis store (dicts are a per-batch cache that the store fills before and writes
back after, together with the log position).
"""
from __future__ import annotations

import bisect
import dataclasses
import gc
import re

from roundhouse.features import syntax as ast
from roundhouse.features.plan import Group, Slot, field_columns, make_plan
from roundhouse.features.pyexpr import RUNTIME, PyExpr
from roundhouse.features.syntax import Base

# The layout of the state above; stores refuse state written with another layout.
STATE_LAYOUT = 2
# Below every event_time: the max event_time before any event (no driver is too late).
_NO_TIME = -(1 << 62)


def _last(seqs, col, i):
    """The non-null value of col[i:] with the greatest seq (late events sit mid-list)."""
    best, value = None, None
    for j in range(i, len(col)):
        v = col[j]
        if v is not None and (best is None or seqs[j] > best):
            best, value = seqs[j], v
    return value


@dataclasses.dataclass
class Compiled:
    run: object  # fn(cols, states, meta, out columns) over a batch of events (memory store)
    run_dirty: object  # the same, also recording the (group, key) pairs it wrote (Redis)
    serve: object  # fn(row, states, meta) -> output tuple (no ingest)
    keys: dict  # stream -> fn(row) -> list of (gid, key) the event reads or writes
    keys_run: object  # fn(cols, pairs): adds the (gid, key) pairs a batch reads or writes
    source: str


class OnlineProgram:
    """Row layout everywhere: (seq, event_time_micros, stream, *fields) in `self.columns`; a
    batch in columns is one sequence per entry of `self.columns` (None for a column the
    program never reads: see `input_columns`)."""

    def __init__(self, program: ast.Program):
        self.program = program
        self.plan = make_plan(program, labels=False)
        self.fields = [name for name, _ in field_columns(program)]
        self.columns = ["seq", "t", "stream"] + self.fields
        self.pos = {name: i for i, name in enumerate(self.columns)}
        self.groups = [g for g in self.plan.groups if g.kind in ("window", "lifetime")]
        self.window_groups = [g for g in self.groups if g.kind == "window"]
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
        # The generated code makes no reference cycles, so the cyclic collector has nothing to
        # find during a batch; left on, its passes over the growing state cost a third of the
        # time. It runs again (and sees the batch's new objects) as soon as the batch is done.
        enabled = gc.isenabled()
        gc.disable()
        try:
            if dirty is None:
                self.compiled.run(cols, states, meta, out)
            else:
                self.compiled.run_dirty(cols, states, meta, out, dirty)
        finally:
            if enabled:
                gc.enable()

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
            for k in [k for k, st in table.items() if st[0][0] < cutoff]:
                st = table[k]
                ts = st[0]
                if ts[-1] < cutoff:
                    del table[k]
                    removed += 1
                else:
                    j = bisect.bisect_left(ts, cutoff)
                    for col in st:
                        del col[:j]
        return removed

    def state_size(self, states: dict) -> int:
        return sum(len(st[0]) if g.kind == "window" else 1
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

    def _member_src(self, s: Slot) -> str:
        agg = s.agg
        value = "1" if agg.fn in ("count", "exists") else f"v_{agg.field}"
        if agg.where is None:
            return value
        cond = PyExpr(lambda n: f"v_{n.name}")(agg.where)
        return f"({value} if ({cond}) is True else None)"

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

    def _column_of(self, s: Slot) -> int:
        """Index in the window state of the slot's member list."""
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
            return f"(float(st[{o}]) / st[{o + 1}] if st[{o + 1}] else None)"
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
        """Lines computing a group's slots from its state `st` (not None)."""
        lines = [f"{ind}ts = {st}[0]", f"{ind}n = len(ts)"]
        windows = sorted({s.agg.window.micros for s in g.slots}, reverse=True)
        prev = None
        for w in windows:  # longest first: each bisect starts where the last ended
            if prev is None:  # the whole list is often inside the longest window ...
                lines.append(f"{ind}i{w} = 0 if ts[0] >= t - {w} else bisect_left(ts, t - {w})")
            else:  # ... and the shorter ones often empty
                lines.append(f"{ind}i{w} = n if ts[-1] < t - {w} else "
                             f"bisect_left(ts, t - {w}, {prev})")
            prev = f"i{w}"
        made: set[str] = set()

        def need(var: str, src: str) -> str:
            if var not in made:
                made.add(var)
                lines.append(f"{ind}{var} = {src}")
            return var

        for s, nm in zip(g.slots, names):
            fn, w = s.agg.fn, s.agg.window.micros
            i = f"i{w}"
            src = self._member_src(s)
            if src == "1":  # unfiltered count / exists: every stored event counts
                lines.append(f"{ind}{nm} = n - {i}" if fn == "count" else
                             f"{ind}{nm} = n > {i}")
                continue
            c = self._column_of(s)
            if fn == "last":
                lines.append(f"{ind}{nm} = _last({st}[1], {st}[{c}], {i})")
                continue
            sl = need(f"sl{c}_{w}", f"{st}[{c}][{i}:]")
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
                    sums = any(o.agg.fn in ("sum", "avg") and o.agg.window.micros == w and
                               self._member_src(o) == src for o in g.slots)
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
                        lines.append(f"{ind}{nm} = float({sm}) / len({vl}) if {vl} else None")
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
        """Lines computing too_late and f_<feature> for a driver event; with `fetched`, the
        states st<i> of the driver's own groups are already fetched."""
        p = self.program
        lines = [f"{ind}too_late = t < M - {p.lateness_micros}"]
        all_names = [f"a_{s.name}" for g in self.groups for s in g.slots]
        if all_names:
            lines.append(f"{ind}if too_late:")
            lines.append(f"{ind}    {' = '.join(all_names)} = None")
            lines.append(f"{ind}else:")
            i2 = ind + "    "
            for gi, g in enumerate(self.groups):
                key, notnull = self._key_src(g.driver_keys)
                names = [f"a_{s.name}" for s in g.slots]
                lines.append(f"{i2}if not ({notnull}):")
                lines.append(f"{i2}    {' = '.join(names)} = None")
                if fetched and self._own(g):
                    lines.append(f"{i2}elif st{gi} is None:")
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

    def _out_tuple(self) -> str:
        return ", ".join(["seq", "too_late"] + [self._out_name(d) for d in self.program.features])

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
            lines.append(f"{ind}if {notnull}:")
            i2 = ind + "    "
            lines.append(f"{i2}k = {key}")
            fetch = [] if fetched and self._own(g) else [f"{st} = {tab}.get(k)"]
            if g.kind == "window":
                cols = self._member_columns(g)
                names = [f"m{c}" for c in range(len(cols))]
                for nm, src_ in zip(names, cols):
                    lines.append(f"{i2}{nm} = {src_}")
                lists = ["t"] + (["seq"] if self._has_seq(g) else []) + names
                # An event that counts for nothing, or is already too old, is not stored.
                always = any(self._member_src(s) == "1" for s in g.slots)
                stores_any = "" if always else \
                    " and (" + " or ".join(f"{nm} is not None" for nm in names) + ")"
                cutoff = f"M - {p.lateness_micros + g.max_window}"
                lines.append(f"{i2}if t >= {cutoff}{stores_any}:")
                i3 = i2 + "    "
                lines += [i3 + f for f in fetch]
                lines.append(f"{i3}if {st} is None:")
                lines.append(f"{i3}    {tab}[k] = [" + ", ".join(f"[{v}]" for v in lists) + "]")
                lines.append(f"{i3}else:")
                lines.append(f"{i3}    ts = {st}[0]")
                lines.append(f"{i3}    if t >= ts[-1]:")
                lines.append(f"{i3}        ts.append(t)")
                for c, v in enumerate(lists[1:], 1):
                    lines.append(f"{i3}        {st}[{c}].append({v})")
                lines.append(f"{i3}    else:")
                lines.append(f"{i3}        j = bisect_right(ts, t)")
                lines.append(f"{i3}        ts.insert(j, t)")
                for c, v in enumerate(lists[1:], 1):
                    lines.append(f"{i3}        {st}[{c}].insert(j, {v})")
                lines.append(f"{i3}    if ts[0] < {cutoff}:")
                lines.append(f"{i3}        j = bisect_left(ts, {cutoff})")
                lines.append(f"{i3}        del ts[:j]")
                for c in range(1, len(lists)):
                    lines.append(f"{i3}        del {st}[{c}][:j]")
                if dirty:
                    lines.append(f"{i3}dirty_add(({g.id!r}, k))")
            else:
                offsets, init = self._lifetime_layout(g)
                init_src = "[" + ", ".join("set()" if v == "SET" else repr(v) for v in init) + "]"
                lines += [i2 + f for f in fetch]
                lines.append(f"{i2}if {st} is None:")
                lines.append(f"{i2}    {st} = {tab}[k] = {init_src}")
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
                    lines.append(f"{i2}dirty_add(({g.id!r}, k))")
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
                for gi, g in enumerate(self.groups):
                    if self._own(g):
                        key, notnull = self._key_src(g.driver_keys)
                        body.append(f"{ind}st{gi} = tab{gi}.get({key}) if {notnull} else None")
                body += self._serve_lines(ind, fetched=True)
                body += [f"{ind}o{i}({v})" for i, v in enumerate(self._out_tuple().split(", "))]
            body += [f"{ind}if t > M:", f"{ind}    M = t"]
            body += self._ingest_lines(stream, ind, dirty, fetched=True)
            loop.append(f"        {'if' if si == 0 else 'elif'} s == {stream!r}:")
            loop += body
        loop += ["        elif t > M:",  # a stream the program does not declare: the clock
                 "            M = t"]
        fields = self._fields_in(loop)
        names = ", ".join(["seq", "t", "s"] + [f"v_{f}" for f in fields])
        cols = ", ".join(["C[0]", "C[1]", "C[2]"] + [f"C[{self.pos[f]}]" for f in fields])
        lines = [f"def run{'_dirty' if dirty else ''}(C, states, meta, out"
                 f"{', dirty' if dirty else ''}):",
                 ] + [f"    o{i} = out[{i}].append" for i in range(2 + len(self.outputs))]
        if dirty:
            lines.append("    dirty_add = dirty.add")
        lines += self._table_loads("    ")
        lines += ["    M = meta[0]", "    if M is None:", "        M = _NO_TIME",
                  f"    for {names} in zip({cols}):"]
        lines += loop
        lines += ["    if len(C[0]):",
                  "        meta[0] = None if M == _NO_TIME else M",
                  "        meta[1] = C[0][-1]"]
        return lines

    def _serve_fn_lines(self) -> list[str]:
        body = self._serve_lines("    ", fetched=False)
        lines = ["def serve(row, states, meta):", "    seq, t = row[0], row[1]",
                 "    M = meta[0]", "    if M is None:", "        M = _NO_TIME"]
        lines += self._table_loads("    ")
        lines += [f"    v_{f} = row[{self.pos[f]}]" for f in self._fields_in(body)]
        lines += body
        lines.append(f"    return ({self._out_tuple()})")
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
        source = "\n".join(src) + "\n"
        env = dict(RUNTIME, bisect_left=bisect.bisect_left, bisect_right=bisect.bisect_right,
                   _last=_last, _NO_TIME=_NO_TIME)
        exec(compile(source, f"<online:{self.program.file}>", "exec"), env)  # noqa: S102
        # The input columns the generated code reads (the others may be passed as None).
        self.input_columns = ["seq", "t", "stream"] + [
            f for f in self.fields if re.search(rf"\bv_{f}\b", source)]
        return Compiled(run=env["run"], run_dirty=env["run_dirty"], serve=env["serve"],
                        keys={s: env[f"keys_{i}"] for i, s in enumerate(names)},
                        keys_run=env["keys_run"], source=source)
