"""Online target: a checked program -> generated Python that keeps per-key state and serves
feature values for a driver event as it arrives.

`OnlineProgram` compiles and runs one program. The parts, one module each:
* layout.py: how per-key state is arranged (STATE_LAYOUT, the index X, INDEX_FROM);
* codegen.py: the plan and layout -> the program's Python source (written with emitter.py);
* runtime.py: what that source runs with (its helpers, paused_gc).
The source is exec'd once (`OnlineProgram.source` prints it; so does `bazel run
//features:explain`). The same generated code serves the memory store (dicts are the store)
and the Redis store (dicts are a per-batch cache that the store fills before and writes back
after, together with the log position).
"""
from __future__ import annotations

import bisect
import dataclasses

from roundhouse.features.language import syntax as ast
from roundhouse.features.plan.plan import field_columns, Group, make_plan
from roundhouse.features.targets.online.codegen import Codegen
from roundhouse.features.targets.online.layout import INDEX_FROM, state_layouts, STATE_LAYOUT
from roundhouse.features.targets.online.runtime import GLOBALS, paused_gc

# Importers name these here: the program's defaults and the layout's version with it.
__all__ = ["Compiled", "INDEX_FROM", "OnlineProgram", "paused_gc", "STATE_LAYOUT"]


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
        self.layouts = state_layouts(program, self.groups)  # group id -> its state's layout
        self.outputs = [d.column for d in program.features]
        self.compiled = self._compile()

    @property
    def source(self) -> str:
        """The generated Python, for a person (comments say what each block computes)."""
        return self.compiled.source

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
            lay = self.layouts[g.id]
            bare, stride, base = lay.bare, lay.stride, lay.base
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
        return st if self.layouts[g.id].bare else st[0]

    def stride(self, g: Group) -> int:
        """Member values stored per event in a window group's state."""
        return self.layouts[g.id].stride

    def base(self, g: Group) -> int:
        """Position of the first member value in a window group's state."""
        return self.layouts[g.id].base

    def state_size(self, states: dict) -> int:
        return sum(len(self.times(g, st)) if g.kind == "window" else 1
                   for g in self.groups for st in states.get(g.id, {}).values())

    def _compile(self) -> Compiled:
        gen = Codegen(self.program, self.plan, self.groups, self.layouts, self.fields,
                      self.index_from).generate()
        env = dict(GLOBALS)
        exec(compile(gen.source, f"<online:{self.program.file}>", "exec"), env)  # noqa: S102
        # The input columns the generated code reads (the others may be passed as None).
        self.input_columns = gen.input_columns
        return Compiled(run=env["run"], run_dirty=env["run_dirty"], serve=env["serve"],
                        keys={s: env[name] for s, name in gen.keys.items()},
                        keys_run=env["keys_run"], source=gen.source,
                        build={gid: env[name] for gid, name in gen.build.items()},
                        trim={gid: env[name] for gid, name in gen.trim.items()})
