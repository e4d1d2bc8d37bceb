"""Online target: a checked program -> generated Python functions that keep per-key state and
serve feature values for a driver event as it arrives.

State lives in plain dicts, one per aggregation group: key -> state.
* window groups: [ts, rows], ts the event_times in ascending order and rows the matching
  (seq, member values...) tuples. Everything stored arrived before the event being served, so
  the members of a window are exactly the suffix with event_time >= t - w (one bisect).
  Entries older than max_t - lateness - longest window can never count again (any driver that
  is not too late has t >= max_t - lateness) and are dropped on insert and by `sweep`.
* lifetime groups: running accumulators per key (count, sum, min, max, last, distinct set).

The evaluator is generated as Python source (one function per stream) and exec'd once: the
per-event path is then straight-line code with no interpretation of the AST. The same generated
code serves the memory store (dicts are the store) and the Redis store (dicts are a per-batch
cache that the store fills before and writes back after, together with the log position).
"""
from __future__ import annotations

import bisect
import dataclasses

from roundhouse.features import syntax as ast
from roundhouse.features.plan import Group, Slot, field_columns, make_plan
from roundhouse.features.pyexpr import RUNTIME, PyExpr
from roundhouse.features.syntax import Base


def _avg(vals):
    return float(sum(vals)) / len(vals) if vals else None


def _last(rs, i, c):
    best, value = -1, None
    for r in rs[i:]:
        v = r[c]
        if v is not None and r[0] > best:
            best, value = r[0], v
    return value


def _min(vals):
    return min(vals) if vals else None


def _max(vals):
    return max(vals) if vals else None


@dataclasses.dataclass
class Compiled:
    process: dict  # stream -> fn(row, states, meta, dirty) -> output tuple or None
    serve: object  # fn(row, states, meta) -> output tuple (no ingest)
    keys: dict  # stream -> fn(row) -> list of (gid, key) the event reads or writes
    source: str


class OnlineProgram:
    """Row layout everywhere: (seq, event_time_micros, stream, *fields) in `self.columns`."""

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

    def process(self, row: tuple, states: dict, meta: list, dirty=None):
        fn = self.compiled.process.get(row[2])
        if fn is None:  # a stream the program does not declare still moves the clock
            if meta[0] is None or row[1] > meta[0]:
                meta[0] = row[1]
            meta[1] = row[0]
            return None
        return fn(row, states, meta, dirty)

    def sweep(self, states: dict, meta: list) -> int:
        """Drop window state no driver can count any more; returns the number of keys removed."""
        if meta[0] is None:
            return 0
        removed = 0
        for g in self.window_groups:
            cutoff = meta[0] - self.program.lateness_micros - g.max_window
            table = states.get(g.id, {})
            for k in list(table):
                ts, rs = table[k]
                if ts[-1] < cutoff:
                    del table[k]
                    removed += 1
                elif ts[0] < cutoff:
                    j = bisect.bisect_left(ts, cutoff)
                    del ts[:j]
                    del rs[:j]
        return removed

    def state_size(self, states: dict) -> int:
        return sum(len(st[0]) if g.kind == "window" else 1
                   for g in self.groups for st in states.get(g.id, {}).values())

    # ------------------------------------------------------------------ code generation
    def _key_src(self, fields) -> tuple[str, str]:
        """(expression for the key, condition that it has no null part)."""
        parts = [f"row[{self.pos[f]}]" for f in fields]
        if len(parts) == 1:
            return parts[0], f"{parts[0]} is not None"
        return "(" + ", ".join(parts) + ")", " and ".join(f"{p} is not None" for p in parts)

    def _member_src(self, s: Slot) -> str:
        agg = s.agg
        value = "1" if agg.fn in ("count", "exists") else f"row[{self.pos[agg.field]}]"
        if agg.where is None:
            return value
        cond = PyExpr(lambda n: f"row[{self.pos[n.name]}]")(agg.where)
        return f"({value} if ({cond}) is True else None)"

    def _member_columns(self, g: Group) -> list[str]:
        """Distinct member-value expressions of a window group; slots sharing one (e.g. sum and
        avg of the same field) share a column of the stored rows."""
        cols: list[str] = []
        for s in g.slots:
            src = self._member_src(s)
            if src not in cols:
                cols.append(src)
        return cols

    def _column_of(self, s: Slot) -> int:
        return 1 + self._member_columns(s.group).index(self._member_src(s))

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

    def _window_value(self, s: Slot, c: int, i: str) -> str:
        fn = s.agg.fn
        vals = f"[v for r in rs[{i}:] if (v := r[{c}]) is not None]"
        if fn == "count":
            return f"(n - {i})" if s.agg.where is None else \
                f"sum(1 for r in rs[{i}:] if r[{c}] is not None)"
        if fn == "exists":
            return f"(n > {i})" if s.agg.where is None else \
                f"any(r[{c}] is not None for r in rs[{i}:])"
        if fn == "sum":
            return f"float(sum({vals}))" if self._field_base(s) is Base.FLOAT else \
                f"sum({vals})"
        if fn == "avg":
            return f"_avg({vals})"
        if fn in ("min", "max"):
            return f"_{fn}({vals})"
        if fn == "count_distinct":
            return f"len({{v for r in rs[{i}:] if (v := r[{c}]) is not None}})"
        return f"_last(rs, {i}, {c})"

    def _from_values(self, s: Slot, vl: str) -> str:
        fn = s.agg.fn
        if fn == "sum":
            return f"float(sum({vl}))" if self._field_base(s) is Base.FLOAT else f"sum({vl})"
        if fn == "avg":
            return f"(float(sum({vl})) / len({vl}) if {vl} else None)"
        return f"({fn}({vl}) if {vl} else None)"

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

    def _serve_lines(self) -> list[str]:
        """Body computing a0.. and the features into `out`; expects row, states, meta."""
        p = self.program
        lines = ["    t = row[1]", "    M = meta[0]",
                 f"    too_late = M is not None and t < M - {p.lateness_micros}"]
        for gi, g in enumerate(self.groups):
            key, notnull = self._key_src(g.driver_keys)
            names = [f"a_{s.name}" for s in g.slots]
            lines.append(f"    k = {key}")
            lines.append(f"    if too_late or not ({notnull}):")
            lines.append(f"        {' = '.join(names)} = None")
            lines.append("    else:")
            lines.append(f"        st = states[{g.id!r}].get(k)")
            lines.append("        if st is None:")
            for s, nm in zip(g.slots, names):
                lines.append(f"            {nm} = {self._empty(s)}")
            lines.append("        else:")
            if g.kind == "window":
                lines.append("            ts, rs = st")
                lines.append("            n = len(ts)")
                windows = sorted({s.agg.window.micros for s in g.slots}, reverse=True)
                prev = "0"
                for w in windows:  # longest first: each bisect starts where the last ended
                    lines.append(f"            i{w} = bisect_left(ts, t - {w}, {prev})")
                    prev = f"i{w}"
                made: set[str] = set()
                for s, nm in zip(g.slots, names):
                    c, i = self._column_of(s), f"i{s.agg.window.micros}"
                    if s.agg.fn in ("sum", "avg", "min", "max"):
                        # One list of non-null values per (column, window), shared by slots.
                        vl = f"v{c}_{s.agg.window.micros}"
                        if vl not in made:
                            made.add(vl)
                            lines.append(f"            {vl} = [v for r in rs[{i}:] "
                                         f"if (v := r[{c}]) is not None]")
                        lines.append(f"            {nm} = {self._from_values(s, vl)}")
                    else:
                        lines.append(f"            {nm} = {self._window_value(s, c, i)}")
            else:
                offsets, _ = self._lifetime_layout(g)
                for s, nm, o in zip(g.slots, names, offsets):
                    lines.append(f"            {nm} = {self._lifetime_value(s, o)}")
        def ref(e):
            if isinstance(e, ast.FieldRef):
                return f"row[{self.pos[e.name]}]"
            if isinstance(e, ast.Agg):
                return f"a_{self.plan.slot(e).name}"
            return f"f_{e.name}"

        compile_expr = PyExpr(ref)
        for d in p.features:
            src = compile_expr(d.expr)
            if d.expr.type.base is Base.FLOAT:
                src = f"_f({src})"
            lines.append(f"    f_{d.column} = {src}")
        outs = ", ".join(["too_late"] + [f"f_{d.column}" for d in p.features])
        lines.append(f"    out = (row[0], {outs})")
        return lines

    def _ingest_lines(self, stream: str) -> list[str]:
        p = self.program
        lines = ["    t = row[1]", "    seq = row[0]",
                 "    M2 = t if meta[0] is None or t > meta[0] else meta[0]"]
        for g in self.groups:
            if g.stream != stream:
                continue
            key, notnull = self._key_src(g.stream_keys)
            lines.append(f"    k = {key}")
            lines.append(f"    if {notnull}:")
            ms = [self._member_src(s) for s in g.slots]
            if g.kind == "window":
                cutoff = f"M2 - {p.lateness_micros + g.max_window}"
                lines.append(f"        cutoff = {cutoff}")
                cols = self._member_columns(g)
                names = [f"m{c}" for c in range(len(cols))]
                for nm, src_ in zip(names, cols):
                    lines.append(f"        {nm} = {src_}")
                lines.append("        rec = (seq, " + ", ".join(names) + ",)")
                # An event that counts for nothing, or is already too old, is not stored.
                always = any(src_ == "1" for src_ in cols)
                stores_any = "True" if always else \
                    " or ".join(f"{nm} is not None" for nm in names)
                lines.append(f"        if t >= cutoff and ({stores_any}):")
                lines.append(f"            table = states[{g.id!r}]")
                lines.append("            st = table.get(k)")
                lines.append("            if st is None:")
                lines.append("                table[k] = [[t], [rec]]")
                lines.append("            else:")
                lines.append("                ts, rs = st")
                lines.append("                if t >= ts[-1]:")
                lines.append("                    ts.append(t)")
                lines.append("                    rs.append(rec)")
                lines.append("                else:")
                lines.append("                    j = bisect_right(ts, t)")
                lines.append("                    ts.insert(j, t)")
                lines.append("                    rs.insert(j, rec)")
                lines.append("                if ts[0] < cutoff:")
                lines.append("                    j = bisect_left(ts, cutoff)")
                lines.append("                    del ts[:j]")
                lines.append("                    del rs[:j]")
                lines.append("            if dirty is not None:")
                lines.append(f"                dirty.add(({g.id!r}, k))")
            else:
                offsets, init = self._lifetime_layout(g)
                init_src = "[" + ", ".join("set()" if v == "SET" else repr(v) for v in init) + "]"
                lines.append(f"        table = states[{g.id!r}]")
                lines.append("        st = table.get(k)")
                lines.append("        if st is None:")
                lines.append(f"            st = table[k] = {init_src}")
                for s, o, m in zip(g.slots, offsets, ms):
                    fn = s.agg.fn
                    lines.append(f"        m = {m}")
                    lines.append("        if m is not None:")
                    if fn in ("count", "exists"):
                        lines.append(f"            st[{o}] += 1")
                    elif fn == "sum":
                        lines.append(f"            st[{o}] += m")
                    elif fn == "avg":
                        lines.append(f"            st[{o}] += m")
                        lines.append(f"            st[{o + 1}] += 1")
                    elif fn == "min":
                        lines.append(f"            if st[{o}] is None or m < st[{o}]: st[{o}] = m")
                    elif fn == "max":
                        lines.append(f"            if st[{o}] is None or m > st[{o}]: st[{o}] = m")
                    elif fn == "count_distinct":
                        lines.append(f"            st[{o}].add(m)")
                    else:
                        lines.append(f"            st[{o}] = seq")
                        lines.append(f"            st[{o + 1}] = m")
                lines.append("        if dirty is not None:")
                lines.append(f"            dirty.add(({g.id!r}, k))")
        lines.append("    meta[0] = M2")
        lines.append("    meta[1] = seq")
        return lines

    def _keys_lines(self, stream: str) -> list[str]:
        lines = ["    out = []"]
        groups = [(g, g.driver_keys) for g in self.groups] if stream == self.program.driver \
            else []
        groups += [(g, g.stream_keys) for g in self.groups if g.stream == stream]
        for g, fields in groups:
            key, notnull = self._key_src(fields)
            lines.append(f"    if {notnull}:")
            lines.append(f"        out.append(({g.id!r}, {key}))")
        lines.append("    return out")
        return lines

    def _compile(self) -> Compiled:
        src: list[str] = []
        serve = self._serve_lines()
        src.append("def serve(row, states, meta):")
        src += serve
        src.append("    return out")
        for i, stream in enumerate(self.program.streams):
            src.append(f"def process_{i}(row, states, meta, dirty):")
            if stream == self.program.driver:
                src += serve
            else:
                src.append("    out = None")
            src += self._ingest_lines(stream)
            src.append("    return out")
            src.append(f"def keys_{i}(row):")
            src += self._keys_lines(stream)
        source = "\n".join(src) + "\n"
        env = dict(RUNTIME, bisect_left=bisect.bisect_left, bisect_right=bisect.bisect_right,
                   _avg=_avg, _last=_last, _min=_min, _max=_max)
        exec(compile(source, f"<online:{self.program.file}>", "exec"), env)  # noqa: S102
        names = list(self.program.streams)
        return Compiled(process={s: env[f"process_{i}"] for i, s in enumerate(names)},
                        serve=env["serve"],
                        keys={s: env[f"keys_{i}"] for i, s in enumerate(names)},
                        source=source)
