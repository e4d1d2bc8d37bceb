"""The online target's code generator: a plan and its state layout (layout.py) -> the Python
source of one program (written with emitter.py; every line is decided before it is written).
What each aggregation stores and how its value is read is its rule's (aggregates.py); this
writes the program around those snippets.

The source defines, for a batch of events as columns (one list per input column):
* `run(C, states, meta, out)`: loops over the batch with straight-line code per stream (no
  interpretation of the AST, no per-event calls; the driver's own groups are looked up once for
  serving and ingesting), storing the values served to each driver into one list per output
  column; `run_dirty(..., dirty)` the same, also recording the (group id, key) pairs it wrote;
* `serve(row, states, meta)`: the values for one driver row, without ingesting it;
* `keys_<i>(row)` per stream and `keys_run(C, pairs)`: the (group id, key) pairs an event or
  a batch reads or writes (the Redis store fetches them before a batch);
* `build<i>(state)` and `trim<i>(X, j, cut)` per indexed window group: a key's index from its
  stored events, and the index after its first j events are dropped.

The generated code reads event fields from locals `v_<field>`, the event's time and seq from
`t` and `seq`, the max event_time of the events before it from `M`, and each group's table
from `tab<i>` (one key's state: `st<i>`); aggregations go to `a<n>` (the plan's slots) and
derived features to `f_<column>`. Names it does not define come from runtime.GLOBALS.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os

from roundhouse.features.language import syntax as ast
from roundhouse.features.language.printer import show
from roundhouse.features.language.syntax import Base
from roundhouse.features.plan.plan import Group, Plan, Slot
from roundhouse.features.targets.online import aggregates as rules
from roundhouse.features.targets.online.aggregates import (NEWEST_TIMES, PREFIX_COUNT,
                                                           PREFIX_SUM, SUFFIX_MAX, SUFFIX_MIN)
from roundhouse.features.targets.online.emitter import Emitter
from roundhouse.features.targets.online.layout import (field_base, LifetimeLayout, member, Member,
                                                       PREFIX_KINDS, STATE_LAYOUT, WindowLayout)
from roundhouse.features.targets.online.pyexpr import PyExpr


@dataclasses.dataclass
class Generated:
    """The source of one online program and the names of what it defines."""

    source: str
    keys: dict[str, str]  # stream -> its keys function
    build: dict[str, str]  # indexed window group id -> its index builder
    trim: dict[str, str]  # indexed window group id -> its index trimmer
    input_columns: list[str]  # the input columns the code reads (the others may be None)


def _key_src(fields) -> tuple[str, str]:
    """(expression for the key, condition that it has no null part)."""
    parts = [f"v_{f}" for f in fields]
    if len(parts) == 1:
        return parts[0], f"{parts[0]} is not None"
    return "(" + ", ".join(parts) + ")", " and ".join(f"{p} is not None" for p in parts)


def _null_src(fields) -> str:
    """Condition that some part of the key is null."""
    return " or ".join(f"v_{f} is None" for f in fields)


def _field_refs(e: ast.Expr | None) -> set[str]:
    """The fields an expression reads (not those inside its aggregations)."""
    return set() if e is None else {n.name for n in ast.walk(e) if isinstance(n, ast.FieldRef)}


@dataclasses.dataclass
class _Index:
    """rules.IndexValues: member c's entries of the key's index X over window w (from the
    i-th stored event on)."""

    index: dict
    c: int
    i: str
    lo: str

    def prefix(self, kind: str) -> str:  # the window's share of a prefix list
        return f"X[{self.index[kind, self.c]}][n] - X[{self.index[kind, self.c]}][{self.i}]"

    def at(self, kind: str) -> int:
        return self.index[kind, self.c]


class _Slices:
    """rules.WindowValues: a member's stored values over one window, from slices of the
    state. Values several aggregations read (the slice, the non-null values, their sum) are
    made once per window (`made`)."""

    def __init__(self, e: Emitter, lay: WindowLayout, st: str, c: int | None, w: int,
                 made: set[str], own: str, about: str):
        self.e, self.lay, self.st, self.c, self.w = e, lay, st, c, w
        self.made, self.own, self.about = made, own, about
        self.i = f"i{w}"
        self.unfiltered = c is None

    def _slice(self, c: int) -> str:
        """Source of the list of value c's values from the i-th stored event on."""
        k, first = self.lay.stride, self.lay.base - 1 + c
        return f"{self.st}[{first} + {self.i}:]" if k == 1 else \
            f"{self.st}[{first} + {self.i} * {k}::{k}]"

    def _need(self, var: str, src: str) -> str:
        if var not in self.made:
            self.made.add(var)
            self.e.line(f"{var} = {src}")
        return var

    def raw(self) -> str:
        return self._need(f"sl{self.c}_{self.w}", self._slice(self.c))

    def values_slice(self) -> str:
        return self._slice(self.c)

    def seqs_slice(self) -> str:
        return self._slice(1)

    def present(self, f, shared: str | None = None) -> str:
        name = f"{shared}{self.c}_{self.w}" if shared else self.own
        comment = None if shared else self.about
        if name in self.made:
            return name
        vl = f"vl{self.c}_{self.w}"
        if vl in self.made:
            self.e.line(f"{name} = {f(vl)}", comment=comment)
        else:
            # The builtins raise TypeError on a None among the values (sum always, min/max
            # unless the None is alone, which is then the right answer): filter the slice
            # only then, instead of scanning it for None first.
            self.made.add(vl)
            sl = self.raw()
            with self.e.block("try:"):
                self.e.line(f"{name} = {f(sl)}", comment=comment)
                self.e.line(f"{vl} = {sl}")
            with self.e.block("except TypeError:"):
                self.e.line(f"{vl} = [v for v in {sl} if v is not None]")
                self.e.line(f"{name} = {f(vl)}")
        if shared:
            self.made.add(name)
        return name

    def present_list(self) -> str:
        vl = f"vl{self.c}_{self.w}"
        return self._need(vl, f"[v for v in {self.raw()} if v is not None]")


_INDEX_KINDS = {
    PREFIX_SUM: "prefix sums of",
    PREFIX_COUNT: "prefix counts of the non-null",
    NEWEST_TIMES: "each value's newest event_time, and those times sorted, of",
    SUFFIX_MAX: "the suffix maxima (event_times, values) of",
    SUFFIX_MIN: "the suffix minima (event_times, values) of",
}


class Codegen:
    """Generates the source of one online program (`generate`)."""

    def __init__(self, program: ast.Program, plan: Plan, groups: list[Group], layouts: dict,
                 fields: list[str], index_from: int):
        self.program = program
        self.plan = plan
        self.groups = groups  # the groups the online target keeps (window and lifetime)
        self.layouts = layouts  # group id -> WindowLayout | LifetimeLayout
        self.fields = fields  # field columns in input order (after seq, t, stream)
        self.pos = {f: 3 + i for i, f in enumerate(fields)}  # input column of each field
        self.index_from = index_from
        self.window_groups = [g for g in groups if g.kind == "window"]
        self.features = {d.column: d for d in program.features}
        # Which feature each aggregation belongs to (for the comments).
        self.feature_of = {id(a): d.column for d in program.features
                           for a in ast.aggregations(d.expr)}
        self.n_out = 2 + len(program.features)

    # ------------------------------------------------------------------ names and facts
    @staticmethod
    def agg_name(s: Slot) -> str:
        """The local holding an aggregation's value: a<n> for the plan's slot __a<n>."""
        return "a" + s.name.removeprefix("__a")

    def _describe(self, s: Slot) -> str:
        """What a slot computes and for which feature (the header's list)."""
        return f"{show(s.agg)}  ({self.feature_of[id(s.agg)]})"

    def _for(self, s: Slot) -> str:
        """The trailing comment of the line computing a slot: its feature."""
        return self.feature_of[id(s.agg)]

    def _own(self, g: Group) -> bool:
        """A group of the driver's own stream read and written under the same key: the driver
        branch fetches its state once for both."""
        return g.stream == self.program.driver and g.driver_keys == g.stream_keys

    def _member_src(self, m: Member | None) -> str:
        """Source of a member's value for the event in the locals (None: every event counts)."""
        if m is None:
            return "1"
        value = "1" if m.field is None else f"v_{m.field}"
        if m.where is None:
            return value
        cond = PyExpr(lambda n: f"v_{n.name}")(m.where)
        return f"({value} if ({cond}) is True else None)"

    def _empty(self, s: Slot) -> str:
        """Source of the slot's value over an empty window."""
        return repr(s.agg.aggregate.empty_value(field_base(self.program, s)))

    def _float_by_construction(self, e: ast.Expr) -> bool:
        if isinstance(e, ast.Agg):
            return rules.rule(e).computed and e.type.base is Base.FLOAT
        if isinstance(e, ast.Literal):
            return e.value is None or isinstance(e.value, float)
        if isinstance(e, ast.If):
            return self._float_by_construction(e.then) and self._float_by_construction(e.else_)
        return isinstance(e, ast.Binary) and e.op == "/"

    def _ref(self, e) -> str:
        if isinstance(e, ast.FieldRef):
            return f"v_{e.name}"
        if isinstance(e, ast.Agg):
            return self.agg_name(self.plan.slot(e))
        return self._out_name(self.features[e.name])

    def _out_name(self, d: ast.Definition) -> str:
        """The local holding a feature's value: the aggregation or field itself when the
        feature is one (and needs no conversion to float), else f_<column>."""
        e = d.expr
        if isinstance(e, (ast.Agg, ast.FieldRef, ast.FeatureRef)) and (
                e.type.base is not Base.FLOAT or self._float_by_construction(e)):
            return self._ref(e)
        return f"f_{d.column}"

    def _out_values(self) -> list[str]:
        return ["seq", "too_late"] + [self._out_name(d) for d in self.program.features]

    def _driver_fields(self) -> set[str]:
        """The fields serving a driver reads: every group's driver key, the features' fields."""
        fields = {f for g in self.groups for f in g.driver_keys}
        for d in self.program.features:
            fields |= _field_refs(d.expr)
        return fields

    def _ingest_fields(self, stream: str) -> set[str]:
        """The fields storing an event of `stream` reads: its groups' keys and members."""
        fields: set[str] = set()
        for g in self.groups:
            if g.stream == stream:
                fields.update(g.stream_keys)
                for s in g.slots:
                    if (m := member(s)) is not None:
                        fields |= ({m.field} - {None}) | _field_refs(m.where)
        return fields

    def _run_fields(self) -> list[str]:
        """The fields the batch loop reads, sorted."""
        fields = self._driver_fields()
        for stream in self.program.streams:
            fields |= self._ingest_fields(stream)
        return sorted(fields)

    def _key_pairs(self, stream: str) -> list[tuple[str, tuple[str, ...]]]:
        """(group id, key fields) an event of `stream` reads or writes; a driver's own groups
        are both read and written: one pair each."""
        pairs = [(g.id, g.driver_keys) for g in self.groups] \
            if stream == self.program.driver else []
        pairs += [(g.id, g.stream_keys) for g in self.groups if g.stream == stream]
        return list(dict.fromkeys(pairs))

    # ------------------------------------------------------------------ the whole source
    def generate(self) -> Generated:
        e = Emitter()
        self._header(e)
        self._run(e, dirty=False)
        self._run(e, dirty=True)
        self._serve_fn(e)
        self._keys_run(e)
        keys = {}
        for i, stream in enumerate(self.program.streams):
            keys[stream] = f"keys_{i}"
            self._keys_fn(e, stream, keys[stream])
        build, trim = {}, {}
        for gi, g in enumerate(self.groups):
            if g.kind == "window" and self.layouts[g.id].index:
                build[g.id], trim[g.id] = f"build{gi}", f"trim{gi}"
                self._build_fn(e, gi, g)
                self._trim_fn(e, gi, g)
        run_fields = set(self._run_fields())
        inputs = ["seq", "t", "stream"] + [f for f in self.fields if f in run_fields]
        return Generated(e.source(), keys, build, trim, inputs)

    def _header(self, e: Emitter) -> None:
        p = self.program
        e.comment(f"The online program of {os.path.basename(p.file)}, generated by "
                  "features/targets/online/codegen.py")
        e.comment("(its docstring says what each function does and names the locals).")
        e.comment(f"Driver stream {p.driver!r}; allowed lateness {p.lateness_micros} us.")
        e.comment(f"State per key (features/targets/online/layout.py, layout {STATE_LAYOUT}):")
        for gi, g in enumerate(self.groups):
            lay = self.layouts[g.id]
            e.comment(f"  tab{gi} = states[{g.id!r}]: {g.kind} group of {g.stream!r} events by "
                      f"{', '.join(g.stream_keys)}")
            if isinstance(lay, WindowLayout):
                if lay.bare:
                    e.comment("    state: the sorted list of event_times (unfiltered counts only)")
                else:
                    values = (["seq"] if lay.has_seq else []) + [m.describe() for m in lay.members]
                    e.comment(f"    state: [ts, {'X, ' if lay.index else ''}then per event: "
                              f"{', '.join(values)}]")
                    if lay.index:
                        e.comment(f"    X, the index (from {self.index_from} events on, "
                                  "else None):")
                    for (kind, c), o in lay.index.items():
                        at = f"X[{o}]" if kind in PREFIX_KINDS else f"X[{o}], X[{o + 1}]"
                        e.comment(f"      {at}: {_INDEX_KINDS[kind]} {values[c - 1]}")
            else:
                assert isinstance(lay, LifetimeLayout)
                e.comment("    state: [" + ", ".join(
                    f"{o}: {s.agg.fn}" for s, o in zip(g.slots, lay.offsets)) + "]")
            for s in g.slots:
                e.comment(f"    {self.agg_name(s)} = {self._describe(s)}")
        e.blank()

    # ------------------------------------------------------------------ run, run_dirty
    def _table_loads(self, e: Emitter) -> None:
        for gi, g in enumerate(self.groups):
            e.line(f"tab{gi} = states[{g.id!r}]")

    def _cuts(self, e: Emitter) -> None:
        """cut<x> = M - x, recomputed whenever M moves: the lateness (too_late below it) and
        each window group's lateness + longest window (storing state below it is useless)."""
        p = self.program
        cuts = dict.fromkeys([p.lateness_micros] +
                             [p.lateness_micros + g.max_window for g in self.window_groups])
        for x in cuts:
            e.line(f"cut{x} = M - {x}")

    def _run(self, e: Emitter, dirty: bool) -> None:
        p = self.program
        fields = self._run_fields()
        names = ", ".join(["seq", "t", "s"] + [f"v_{f}" for f in fields])
        cols = ", ".join(["C[0]", "C[1]", "C[2]"] + [f"C[{self.pos[f]}]" for f in fields])
        outs = ", ".join(f"o{i}" for i in range(self.n_out))
        if dirty:
            e.comment("run, also adding each (group id, key) it writes to `dirty` (Redis store).")
            header = "def run_dirty(C, states, meta, out, dirty):"
        else:
            e.comment("Serve and ingest a batch of events (columns C); the values served to "
                      "drivers")
            e.comment("are appended to the output columns `out`.")
            header = "def run(C, states, meta, out):"
        with e.block(header):
            e.line("size = len(C[0])")
            # One preallocated list per output column.
            columns = ["seq", "too_late"] + [d.column for d in p.features]
            for i, c in enumerate(columns):
                e.line(f"o{i} = [None] * size", comment=c)
            e.line("x = 0")
            if dirty:
                e.line("dirty_add = dirty.add")
            self._table_loads(e)
            e.line("M = meta[0]")
            with e.block("if M is None:"):
                e.line("M = _NO_TIME")
            self._cuts(e)
            with e.block(f"for {names} in zip({cols}):"):
                streams = sorted(p.streams, key=lambda s: s != p.driver)  # the driver first
                for si, stream in enumerate(streams):
                    with e.block(f"{'if' if si == 0 else 'elif'} s == {stream!r}:"):
                        if stream == p.driver:
                            e.comment(f"a {stream} event, the driver: serve the features, "
                                      "then ingest it")
                            self._serve(e, fetched=True)
                            # Stores into preallocated columns: cheaper than an append (a call)
                            # per value.
                            for i, (v, c) in enumerate(zip(self._out_values(), columns)):
                                e.line(f"o{i}[x] = {v}", comment=None if v == c else c)
                            e.line("x += 1")
                        else:
                            e.comment(f"a {stream} event: ingest it")
                        with e.block("if t > M:"):
                            e.line("M = t")
                            self._cuts(e)
                        self._ingest(e, stream, dirty, fetched=True)
                with e.block("elif t > M:"):
                    e.comment("a stream the program does not declare: it only moves the clock")
                    e.line("M = t")
                    self._cuts(e)
            e.line(f"_flush(out, x, ({outs},))")
            with e.block("if size:"):
                e.line("meta[0] = None if M == _NO_TIME else M")
                e.line("meta[1] = C[0][-1]")
        e.blank()

    # ------------------------------------------------------------------ serving a driver
    def _serve_fn(self, e: Emitter) -> None:
        e.comment("The values for one driver row, without ingesting it.")
        with e.block("def serve(row, states, meta):"):
            e.line("seq, t = row[0], row[1]")
            e.line("M = meta[0]")
            with e.block("if M is None:"):
                e.line("M = _NO_TIME")
            self._cuts(e)
            self._table_loads(e)
            for f in sorted(self._driver_fields()):
                e.line(f"v_{f} = row[{self.pos[f]}]")
            self._serve(e, fetched=False)
            e.line(f"return ({', '.join(self._out_values())})")
        e.blank()

    def _serve(self, e: Emitter, fetched: bool) -> None:
        """too_late, every aggregation and the derived features for a driver event. With
        `fetched`, the states st<i> of the driver's own groups are left fetched for the ingest
        that follows (also for a driver that is too late)."""
        p = self.program
        e.line(f"too_late = t < cut{p.lateness_micros}")
        all_names = [self.agg_name(s) for g in self.groups for s in g.slots]
        if all_names:
            with e.block("if too_late:"):
                e.line(f"{' = '.join(all_names)} = None")
                for gi, g in enumerate(self.groups):
                    if fetched and self._own(g):
                        key, notnull = _key_src(g.driver_keys)
                        e.line(f"st{gi} = tab{gi}.get({key}) if {notnull} else None")
            with e.block("else:"):
                # Each window's lower bound once: event_times are multi-digit ints, slow to
                # subtract.
                windows = sorted({s.agg.window.micros for g in self.window_groups
                                  for s in g.slots})
                for w in windows:
                    e.line(f"lo{w} = t - {w}")
                for gi, g in enumerate(self.groups):
                    self._serve_group(e, gi, g)
        compile_expr = PyExpr(self._ref)
        for d in p.features:
            f = self._out_name(d)
            if f != f"f_{d.column}":
                continue  # a bare aggregation or field: read where it is
            e.comment(f"feature {d.name} v{d.version} = {show(d.expr)}")
            e.line(f"{f} = {compile_expr(d.expr)}")
            if d.expr.type.base is Base.FLOAT and not self._float_by_construction(d.expr):
                with e.block(f"if {f} is not None and {f}.__class__ is not float:"):
                    e.line(f"{f} = float({f})")

    def _serve_group(self, e: Emitter, gi: int, g: Group) -> None:
        """The group's aggregations at the driver from its key's state."""
        key, _ = _key_src(g.driver_keys)
        names = [self.agg_name(s) for s in g.slots]
        e.comment(f"tab{gi} ({g.id}): {', '.join(names)}")
        with e.block(f"if {_null_src(g.driver_keys)}:"):
            e.line(f"{' = '.join(names)} = None")
        if g.kind == "window":  # also empty: every stored event older than the windows
            ts = f"st{gi}" if self.layouts[g.id].bare else f"st{gi}[0]"
            header = (f"elif (st{gi} := tab{gi}.get({key})) is None or "
                      f"{ts}[-1] < lo{g.max_window}:")
        else:
            header = f"elif (st{gi} := tab{gi}.get({key})) is None:"
        with e.block(header):
            for s, nm in zip(g.slots, names):
                e.line(f"{nm} = {self._empty(s)}")
        with e.block("else:"):
            if g.kind == "window":
                self._window_serve(e, g, f"st{gi}", names)
            else:
                lay = self.layouts[g.id]
                for s, nm, o in zip(g.slots, names, lay.offsets):
                    e.line(f"{nm} = {self._lifetime_value(s, o, f'st{gi}')}",
                           comment=self._for(s))

    @staticmethod
    def _lifetime_value(s: Slot, o: int, st: str) -> str:
        return rules.rule(s.agg).lifetime(st, o)

    def _window_serve(self, e: Emitter, g: Group, st: str, names: list[str]) -> None:
        """A window group's aggregations from its state `st` (not None, and not empty in the
        longest window): from the key's index X once it has one, else from slices."""
        lay = self.layouts[g.id]
        e.line(f"ts = {st if lay.bare else st + '[0]'}")
        e.line("n = len(ts)")
        if not lay.index:
            self._window_nest(e, g, st, names, indexed=False)
            return
        with e.block(f"if (X := {st}[1]) is None:"):
            e.comment("fewer than the index's events: from slices of the stored values")
            self._window_nest(e, g, st, names, indexed=False)
        with e.block("else:"):
            e.comment("from the key's index X")
            self._window_nest(e, g, st, names, indexed=True)

    def _window_nest(self, e: Emitter, g: Group, st: str, names: list[str],
                     indexed: bool) -> None:
        """Windows nest, longest first: each bisect starts where the last ended, and once a
        window is empty (its lower bound past the newest stored event, as it often is for
        short windows) the shorter ones are too and get their empty values directly."""
        windows = sorted({s.agg.window.micros for s in g.slots}, reverse=True)
        prev = None
        with contextlib.ExitStack() as nested:
            for w in windows:
                slots = [(s, nm) for s, nm in zip(g.slots, names) if s.agg.window.micros == w]
                e.comment(f"over {slots[0][0].agg.window.text}: "
                          f"{', '.join(nm for _, nm in slots)}")
                if prev is None:  # the whole list is often inside the longest window
                    e.line(f"i{w} = 0 if ts[0] >= lo{w} else bisect_left(ts, lo{w})")
                else:
                    shorter = [(s, nm) for s, nm in zip(g.slots, names)
                               if s.agg.window.micros <= w]
                    with e.block(f"if ts[-1] < lo{w}:"):
                        for s, nm in shorter:
                            e.line(f"{nm} = {self._empty(s)}")
                    nested.enter_context(e.block("else:"))
                    e.line(f"i{w} = bisect_left(ts, lo{w}, {prev})")
                prev = f"i{w}"
                self._window_slots(e, g, st, w, slots, indexed)

    def _window_slots(self, e: Emitter, g: Group, st: str, w: int, slots: list,
                      indexed: bool) -> None:
        """The slots of one window (not empty) from its first index i<w>, each by its rule
        (online/aggregates.py): from the key's index X when `indexed` and X holds what the
        rule reads, else from the stored values."""
        lay = self.layouts[g.id]
        made: set[str] = set()  # the locals made so far that several slots read
        for s, nm in slots:
            rule, about, base = rules.rule(s.agg), self._for(s), field_base(self.program, s)
            c = None if member(s) is None else lay.column(s)  # None: every stored event counts
            kinds = rule.index(base) if c is not None else ()
            if indexed and kinds and all((kind, c) in lay.index for kind in kinds):
                value = rule.from_index(_Index(lay.index, c, f"i{w}", f"lo{w}"))
            else:
                value = rule.window(_Slices(e, lay, st, c, w, made, nm, about), base)
            if value != nm:  # else the rule's line already set it
                e.line(f"{nm} = {value}", comment=about)

    # ------------------------------------------------------------------ ingesting an event
    def _ingest(self, e: Emitter, stream: str, dirty: bool, fetched: bool) -> None:
        """Stores the event (time `t`, seq `seq`) into its groups; `M` already includes the
        event's own time. With `fetched`, st<i> of own groups is already fetched."""
        for gi, g in enumerate(self.groups):
            if g.stream != stream:
                continue
            st, tab = f"st{gi}", f"tab{gi}"
            key, notnull = _key_src(g.stream_keys)
            fetch = None if fetched and self._own(g) else f"{st} = {tab}.get({key})"
            e.comment(f"store into tab{gi} ({g.id})")
            # With `dirty`, each also records the (group id, key) it writes.
            if g.kind == "window":
                self._ingest_window(e, gi, g, st, tab, key, notnull, fetch, dirty)
            else:
                self._ingest_lifetime(e, g, st, tab, key, notnull, fetch, dirty)

    def _ingest_window(self, e: Emitter, gi: int, g: Group, st: str, tab: str, key: str,
                       notnull: str, fetch: str | None, dirty: bool) -> None:
        lay = self.layouts[g.id]
        # Plain fields are stored as they are; filtered member values are computed once into
        # m<c>.
        pre, values = [], []
        for c, m in enumerate(lay.members):
            if m.where is None:
                values.append(f"v_{m.field}")
            else:
                pre.append(f"m{c} = {self._member_src(m)}")
                values.append(f"m{c}")
        stored = ["t"] + (["seq"] if lay.has_seq else []) + values
        # An event that counts for nothing, or is already too old, is not stored.
        cutoff = f"cut{self.program.lateness_micros + g.max_window}"
        cond = f"t >= {cutoff}"
        if not any(member(s) is None for s in g.slots):
            cond += " and (" + " or ".join(f"{v} is not None" for v in values) + ")"
        with contextlib.ExitStack() as nested:
            if pre:
                nested.enter_context(e.block(f"if {notnull}:"))
                e.lines(*pre)
                nested.enter_context(e.block(f"if {cond}:"))
            else:
                nested.enter_context(e.block(f"if {notnull} and {cond}:"))
            if fetch is not None:
                e.line(fetch)
            if lay.bare:  # the state is the list of event_times itself
                with e.block(f"if {st} is None:"):
                    e.line(f"{tab}[{key}] = [t]")
                with e.block("else:"):
                    with e.block(f"if t >= {st}[-1]:"):
                        e.line(f"{st}.append(t)")
                    with e.block("else:"):
                        e.line(f"{st}.insert(bisect_right({st}, t), t)")
                    with e.block(f"if {st}[len({st}) >> 1] < {cutoff}:"):
                        e.line(f"del {st}[:bisect_left({st}, {cutoff})]")
            else:
                self._window_store(e, gi, lay, stored, tab, key, st, cutoff)
            if dirty:
                e.line(f"dirty_add(({g.id!r}, {key}))")

    def _window_store(self, e: Emitter, gi: int, lay: WindowLayout, stored: list[str], tab: str,
                      key: str, st: str, cutoff: str) -> None:
        """Stores the event into the state `st` of a (not bare) window group: appended when in
        order (and added to the key's index, built once the key has index_from events),
        inserted in place when late (the index rebuilt); then the half-stale trim (of the
        index too)."""
        k, members, base = len(stored) - 1, ", ".join(stored[1:]), lay.base
        indexed = bool(lay.index)
        at = f"{base} + j" if k == 1 else f"{base} + j * {k}"
        with e.block(f"if {st} is None:"):
            e.line(f"{tab}[{key}] = [[t], {'None, ' if indexed else ''}{members}]")
        with e.block("else:"):
            e.line(f"ts = {st}[0]")
            with e.block("if t >= ts[-1]:"):
                e.comment("in order: appended")
                e.line("ts.append(t)")
                e.line(f"{st}.append({members})" if k == 1 else f"{st} += ({members})")
                if indexed:
                    with e.block(f"if (X := {st}[1]) is not None:"):
                        self._index_add(e, lay, stored)
                    with e.block(f"elif len(ts) >= {self.index_from}:"):
                        e.line(f"{st}[1] = build{gi}({st})")
            with e.block("else:"):
                e.comment("late: inserted in place")
                e.line("j = bisect_right(ts, t)")
                e.line("ts.insert(j, t)")
                e.line(f"{st}.insert({at}, {members})" if k == 1 else
                       f"{st}[{at}:{at}] = ({members})")
                if indexed:
                    with e.block(f"if {st}[1] is not None:"):
                        e.line(f"{st}[1] = build{gi}({st})")
            with e.block(f"if ts[len(ts) >> 1] < {cutoff}:"):
                e.comment("half the key's events can never count again: drop them")
                e.line(f"j = bisect_left(ts, {cutoff})")
                e.line("del ts[:j]")
                e.line(f"del {st}[{base}:{at}]")
                if indexed:
                    with e.block(f"if {st}[1] is not None:"):
                        e.line(f"trim{gi}({st}[1], j, {cutoff})")

    def _index_add(self, e: Emitter, lay: WindowLayout, values) -> None:
        """Adds the newest stored event (time `t`, stored values `values[c]`) to the index
        `X`."""
        for (kind, c), o in lay.index.items():
            v = values[c]
            if kind == PREFIX_SUM:
                e.line(f"X[{o}].append(X[{o}][-1] if {v} is None else X[{o}][-1] + {v})")
            elif kind == PREFIX_COUNT:
                e.line(f"X[{o}].append(X[{o}][-1] + ({v} is not None))")
            elif kind == NEWEST_TIMES:  # the value's newest time moves to the end
                with e.block(f"if {v} is not None:"):
                    e.line(f"xd, xt = X[{o}], X[{o + 1}]")
                    with e.block(f"if (xo := xd.get({v})) is not None:"):
                        e.line("del xt[bisect_left(xt, xo)]")
                    e.line("xt.append(t)")
                    e.line(f"xd[{v}] = t")
            else:  # the values it dominates leave the stack of suffix extremes
                op = "<=" if kind == SUFFIX_MAX else ">="
                with e.block(f"if {v} is not None:"):
                    e.line(f"xt, xv = X[{o}], X[{o + 1}]")
                    with e.block(f"while xv and xv[-1] {op} {v}:"):
                        e.line("xt.pop()")
                        e.line("xv.pop()")
                    e.line("xt.append(t)")
                    e.line(f"xv.append({v})")

    def _ingest_lifetime(self, e: Emitter, g: Group, st: str, tab: str, key: str,
                         notnull: str, fetch: str | None, dirty: bool) -> None:
        lay = self.layouts[g.id]
        init = "[" + ", ".join(repr(v) for v in lay.init) + "]"
        with e.block(f"if {notnull}:"):
            if fetch is not None:
                e.line(fetch)
            with e.block(f"if {st} is None:"):
                e.line(f"{st} = {tab}[{key}] = {init}")
            for s, o in zip(g.slots, lay.offsets):
                e.line(f"m = {self._member_src(member(s))}", comment=self.agg_name(s))
                with e.block("if m is not None:"):
                    e.lines(*rules.rule(s.agg).add(st, o))
            if dirty:
                e.line(f"dirty_add(({g.id!r}, {key}))")

    # ------------------------------------------------------------------ keys, index upkeep
    def _keys_fn(self, e: Emitter, stream: str, name: str) -> None:
        pairs = self._key_pairs(stream)
        e.comment(f"The (group id, key) pairs a {stream} event reads or writes.")
        with e.block(f"def {name}(row):"):
            e.line("out = []")
            for f in sorted({f for _, fields in pairs for f in fields}):
                e.line(f"v_{f} = row[{self.pos[f]}]")
            for gid, fields in pairs:
                key, notnull = _key_src(fields)
                with e.block(f"if {notnull}:"):
                    e.line(f"out.append(({gid!r}, {key}))")
            e.line("return out")
        e.blank()

    def _keys_run(self, e: Emitter) -> None:
        p = self.program
        pairs = {stream: self._key_pairs(stream) for stream in p.streams}
        pairs = {stream: ps for stream, ps in pairs.items() if ps}
        used = sorted({f for ps in pairs.values() for _, fields in ps for f in fields})
        e.comment("Adds the (group id, key) pairs a batch (columns C) reads or writes to `pairs`.")
        with e.block("def keys_run(C, pairs):"):
            e.line("add = pairs.add")
            e.line("C_stream = C[2]")
            if not pairs:
                e.line("return None")
            else:
                for f in used:
                    e.line(f"C_{f} = C[{self.pos[f]}]")
                with e.block("for x in range(len(C_stream)):"):
                    e.line("s = C_stream[x]")
                    for si, (stream, ps) in enumerate(pairs.items()):
                        with e.block(f"{'if' if si == 0 else 'elif'} s == {stream!r}:"):
                            for f in sorted({f for _, fields in ps for f in fields}):
                                e.line(f"v_{f} = C_{f}[x]")
                            for gid, fields in ps:
                                key, notnull = _key_src(fields)
                                with e.block(f"if {notnull}:"):
                                    e.line(f"add(({gid!r}, {key}))")
        e.blank()

    def _index_init(self, lay: WindowLayout) -> str:
        parts = ["[0]" if kind in PREFIX_KINDS else "{}, []" if kind == NEWEST_TIMES
                 else "[], []" for kind, _ in lay.index]
        return "[" + ", ".join(parts) + "]"

    def _build_fn(self, e: Emitter, gi: int, g: Group) -> None:
        """fn(state) -> its index, from the stored events (once the key has index_from of
        them, and after a late insert)."""
        lay = self.layouts[g.id]
        k, base = lay.stride, lay.base
        cols = sorted({c for _, c in lay.index})
        e.comment(f"The index of a key of tab{gi} ({g.id}) from its stored events.")
        with e.block(f"def build{gi}(st):"):
            e.line("ts = st[0]")
            e.line(f"X = {self._index_init(lay)}")
            with e.block("for j in range(len(ts)):"):
                e.line("t = ts[j]")
                for c in cols:
                    e.line(f"xm{c} = st[{base - 1 + c} + j{'' if k == 1 else f' * {k}'}]")
                self._index_add(e, lay, {c: f"xm{c}" for c in cols})
            e.line("return X")
        e.blank()

    def _trim_fn(self, e: Emitter, gi: int, g: Group) -> None:
        """fn(X, j, cut): the index after its key's first j events, those with time < cut,
        are dropped (prefix sums keep their differences; a distinct value goes with its
        newest time)."""
        lay = self.layouts[g.id]
        e.comment(f"The index of a key of tab{gi} after its first j events (time < cut) are "
                  "dropped.")
        with e.block(f"def trim{gi}(X, j, cut):"):
            for (kind, _), o in lay.index.items():
                if kind in PREFIX_KINDS:
                    e.line(f"del X[{o}][:j]")
                    continue
                with e.block(f"if (k := bisect_left(X[{o + (kind == NEWEST_TIMES)}], cut)):"):
                    if kind == NEWEST_TIMES:
                        e.line(f"del X[{o + 1}][:k]")
                        with e.block(f"for v in [v for v, q in X[{o}].items() if q < cut]:"):
                            e.line(f"del X[{o}][v]")
                    else:
                        e.line(f"del X[{o}][:k]")
                        e.line(f"del X[{o + 1}][:k]")
        e.blank()
