"""A deliberately naive evaluator of the contract, straight from its wording (quadratic time).

It is the oracle the tests hold both targets to on small logs: for each driver event it scans
every event, so there is no cleverness in it to be wrong.
"""
from __future__ import annotations

import pyarrow as pa

from roundhouse.features.language import aggregates as lang
from roundhouse.features.language import syntax as ast
from roundhouse.features.language.syntax import Base
from roundhouse.features.plan.plan import make_plan
from roundhouse.features.targets.online.pyexpr import PyExpr, RUNTIME

# The reference's rule for each aggregation: (members, field base) -> value, over the
# (seq, value) of the counted events, nulls already skipped (see `aggregate`).
RULES = {
    lang.COUNT: lambda vals, base: len(vals),
    lang.EXISTS: lambda vals, base: len(vals) > 0,
    lang.SUM: lambda vals, base: sum(v for _, v in vals) if base is Base.INT else
    float(sum(v for _, v in vals)),
    lang.AVG: lambda vals, base: float(sum(v for _, v in vals)) / len(vals) if vals else None,
    lang.MIN: lambda vals, base: min((v for _, v in vals), default=None),
    lang.MAX: lambda vals, base: max((v for _, v in vals), default=None),
    lang.COUNT_DISTINCT: lambda vals, base: len({v for _, v in vals}),
    lang.LAST: lambda vals, base: max(vals)[1] if vals else None,
    lang.FIRST: lambda vals, base: min(vals)[1] if vals else None,
}

lang.require_rules(RULES, "the reference (testing/reference.py)")


def aggregate(a: lang.Aggregate, members: list[tuple[int, object]], field_base):
    """members: (seq, value) of counted events, value None meaning 'null field' (skipped)."""
    vals = [(q, v) for q, v in members if v is not None] if a.skips_nulls else members
    return RULES[a](vals, field_base)


def evaluate(program: ast.Program, table: pa.Table, labels: bool = True) -> list[dict]:
    plan = make_plan(program, labels)
    rows = table.to_pylist()
    for r in rows:
        r["_t"] = _micros(r["event_time"])
    out = []
    max_t = None
    defs = program.features + (program.labels if labels else ())
    for j, e in enumerate(rows):
        if e["stream"] == program.driver:
            too_late = max_t is not None and e["_t"] < max_t - program.lateness_micros
            aggs = {}
            for g in plan.groups:
                key = tuple(e[k] for k in g.driver_keys)
                for s in g.slots:
                    agg = s.agg
                    if any(k is None for k in key) or (too_late and g.kind != "forward"):
                        aggs[s.name] = None
                        continue
                    members = []
                    for x in rows:
                        if x["stream"] != g.stream or tuple(x[k] for k in g.stream_keys) != key:
                            continue
                        w = agg.window.micros
                        if g.kind == "forward":
                            if x["seq"] == e["seq"] or not (e["_t"] <= x["_t"] <= e["_t"] + w):
                                continue
                        else:
                            if x["seq"] >= e["seq"]:
                                continue
                            if w is not None and x["_t"] < e["_t"] - w:
                                continue
                        if agg.where is not None and _eval(agg.where, x) is not True:
                            continue
                        members.append((x["seq"], 1 if agg.field is None else x[agg.field]))
                    base = None if agg.field is None else \
                        program.streams[agg.stream].field(agg.field).type.base
                    aggs[s.name] = aggregate(agg.aggregate, members, base)
            values = {}

            def ref(node):
                if isinstance(node, ast.FieldRef):
                    return f"E[{node.name!r}]"
                if isinstance(node, ast.Agg):
                    return f"A[{plan.slot(node).name!r}]"
                return f"V[{node.name!r}]"

            for d in defs:
                src = PyExpr(ref)(d.expr)
                v = eval(src, dict(RUNTIME), {"E": e, "A": aggs, "V": values})  # noqa: S307
                if v is not None and d.expr.type.base is Base.FLOAT:
                    v = float(v)
                values[d.column] = v
            out.append({"seq": e["seq"], "too_late": too_late, **values})
        max_t = e["_t"] if max_t is None else max(max_t, e["_t"])
    return out


def _micros(ts) -> int:
    import datetime
    delta = ts - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _eval(expr: ast.Expr, x: dict):
    src = PyExpr(lambda n: f"X[{n.name!r}]")(expr)
    return eval(src, dict(RUNTIME), {"X": x})  # noqa: S307
