"""The shape both targets share: which aggregations a program needs and how they group.

Aggregations over the same stream joined on the same keys share state (online) and one pass
over the data (batch); the plan names each one with a stable column/slot name so both targets
address the same thing.
"""
from __future__ import annotations

import dataclasses

from roundhouse.features.language import syntax as ast


@dataclasses.dataclass
class Slot:
    name: str  # internal column name, e.g. "__a3"
    agg: ast.Agg
    group: "Group"
    index: int  # position inside its group


@dataclasses.dataclass
class Group:
    id: str  # stable: used in state store keys
    kind: str  # "window" (backward, finite), "lifetime" or "forward" (labels)
    stream: str
    stream_keys: tuple[str, ...]
    driver_keys: tuple[str, ...]
    slots: list[Slot] = dataclasses.field(default_factory=list)

    @property
    def max_window(self) -> int:
        return max(s.agg.window.micros or 0 for s in self.slots)


@dataclasses.dataclass
class Plan:
    program: ast.Program
    groups: list[Group]
    slots: dict[int, Slot]  # id(ast.Agg node) -> slot

    def slot(self, agg: ast.Agg) -> Slot:
        return self.slots[id(agg)]


def make_plan(program: ast.Program, labels: bool = True) -> Plan:
    groups: dict[str, Group] = {}
    slots: dict[int, Slot] = {}
    defs = program.features + (program.labels if labels else ())
    n = 0
    for d in defs:
        for agg in ast.aggregations(d.expr):
            if agg.window.forward:
                kind = "forward"
            elif agg.window.micros is None:
                kind = "lifetime"
            else:
                kind = "window"
            sk = tuple(k.stream_field for k in agg.keys)
            dk = tuple(k.driver_field for k in agg.keys)
            gid = f"{kind}:{agg.stream}:" + ",".join(
                a if a == b else f"{a}={b}" for a, b in zip(sk, dk))
            g = groups.setdefault(gid, Group(gid, kind, agg.stream, sk, dk))
            slot = Slot(f"__a{n}", agg, g, len(g.slots))
            n += 1
            g.slots.append(slot)
            slots[id(agg)] = slot
    return Plan(program, list(groups.values()), slots)


def field_base(program: ast.Program, agg: ast.Agg) -> ast.Base | None:
    """The base type of the field an aggregation reads (None for an event count)."""
    return None if agg.field is None else program.streams[agg.stream].field(agg.field).type.base


def field_columns(program: ast.Program) -> list[tuple[str, ast.Base]]:
    """Every field column of the events file, in declaration order, one per distinct name."""
    out: dict[str, ast.Base] = {}
    for st in program.streams.values():
        for f in st.fields:
            out.setdefault(f.name, f.type.base)
    return list(out.items())
