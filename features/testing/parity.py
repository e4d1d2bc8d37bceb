"""Run one definition program through both targets on a generated log and compare them."""
from __future__ import annotations

import dataclasses

import duckdb

from roundhouse.features.language import syntax as ast
from roundhouse.features.plan.plan import field_base, make_plan
from roundhouse.features.targets.batch import duckdb_target
from roundhouse.features.targets.online import replay, stores
from roundhouse.features.targets.online.pyexpr import PyExpr, RUNTIME
from roundhouse.features.targets.online.program import INDEX_FROM, OnlineProgram
from roundhouse.features.testing import gen, reference
from roundhouse.features.testing.compare import differences
from roundhouse.features.transport import events


@dataclasses.dataclass
class Report:
    differences: list[str]
    coverage: dict[str, int]
    unmatched: list[str] = dataclasses.field(default_factory=list)


def batch_rows(program: ast.Program, table, labels: bool = False) -> list[dict]:
    con = duckdb.connect()
    con.register("events_in", table)
    return con.sql(duckdb_target.BatchCompiler(program, labels).sql("events_in")) \
        .to_arrow_table().to_pylist()


def online_rows(program: ast.Program, table, index_from: int = INDEX_FROM) -> list[dict]:
    store = stores.MemoryStore(OnlineProgram(program, index_from))
    return replay.replay_table(program, table, store).to_pylist()


def exact_columns(program: ast.Program) -> set[str]:
    """Floats that must match exactly: aggregations whose value is exact (language/
    aggregates.py: e.g. averages of integer fields, money being integer; a min or a last)."""
    return {d.column for d in program.features + program.labels
            if isinstance(d.expr, ast.Agg) and d.expr.aggregate.exact(field_base(program, d.expr))}


def coverage(program: ast.Program, table, rows: list[dict]) -> dict[str, int]:
    """How many of the contract's corners the log actually exercises."""
    seqs = table.column("seq").to_pylist()
    ts = table.column("event_time").cast("int64").to_pylist()
    streams = table.column("stream").to_pylist()
    late_ok = late_too = ties = 0
    max_t = None
    seen_t = set()
    for s, t in zip(seqs, ts):
        if t in seen_t:
            ties += 1
        seen_t.add(t)
        if max_t is not None and t < max_t:
            if t < max_t - program.lateness_micros:
                late_too += 1
            else:
                late_ok += 1
        max_t = t if max_t is None else max(max_t, t)
    driver_keys = {k.driver_field for d in program.features for a in ast.aggregations(d.expr)
                   for k in a.keys}
    null_keys = 0
    for name in driver_keys:
        col = table.column(name).to_pylist()
        null_keys += sum(1 for v, st in zip(col, streams) if v is None and st == program.driver)
    windows = {a.window.micros for d in program.features for a in ast.aggregations(d.expr)
               if a.window.micros}
    on_edge = sum(1 for t in ts if any((t - w) in seen_t for w in windows))
    return {"events": len(seqs), "drivers": len(rows), "ties": ties, "late_within": late_ok,
            "late_beyond": late_too, "null_driver_keys": null_keys, "on_window_edge": on_edge,
            "too_late_drivers": sum(1 for r in rows if r["too_late"])}


# The corners of a window's members (see `member_coverage`).
MEMBER_CORNERS = ("several", "null_value", "out_of_order", "left_window")


def member_coverage(program: ast.Program, table) -> dict[str, dict[str, int]]:
    """Per aggregation of a field over a finite window (features only), how many drivers (not
    too late, key not null) have in that window: several counted values; a counted event whose
    value is null (skipped); values whose seq order is not their event_time order (a late
    member: an aggregation picking a value by seq, as `last` does, must go by seq); one fewer
    member than the key's previous driver counted (one left the window by time). Keyed by the
    aggregation's name, each corner the most any one of its aggregations (slots) reaches."""
    rows = table.to_pylist()
    ts = table.column("event_time").cast("int64").to_pylist()
    peak, most = [], None  # peak[j]: the largest event_time of events 0..j
    for t in ts:
        most = t if most is None else max(most, t)
        peak.append(most)
    out: dict[str, dict[str, int]] = {}
    for g in make_plan(program, labels=False).groups:
        if g.kind != "window":
            continue
        for s in g.slots:
            agg, w = s.agg, s.agg.window.micros
            if agg.field is None:
                continue
            where = None if agg.where is None else compile(
                PyExpr(lambda f: f"X[{f.name!r}]")(agg.where), "<where>", "eval")
            seen: dict[tuple, list[int]] = {}  # key -> positions of its events so far
            before: dict[tuple, set[int]] = {}  # key -> the members of its previous driver
            counts = dict.fromkeys(MEMBER_CORNERS, 0)
            for j, r in enumerate(rows):
                if r["stream"] == program.driver and not (
                        j and ts[j] < peak[j - 1] - program.lateness_micros):
                    key = tuple(r[k] for k in g.driver_keys)
                    if None not in key:
                        members = []
                        for x in reversed(seen.get(key, ())):
                            if peak[x] < ts[j] - w:  # neither it nor any before it counts
                                break
                            if ts[x] >= ts[j] - w and (where is None or eval(  # noqa: S307
                                    where, dict(RUNTIME), {"X": rows[x]}) is True):
                                members.append(x)
                        values = [x for x in members if rows[x][agg.field] is not None]
                        counts["several"] += len(values) >= 2
                        counts["null_value"] += len(values) < len(members)
                        by_time = sorted(values, key=lambda x: (ts[x], rows[x]["seq"]))
                        counts["out_of_order"] += by_time != sorted(values)
                        counts["left_window"] += bool(before.get(key, set()) - set(members))
                        before[key] = set(members)
                if r["stream"] == g.stream:
                    key = tuple(r[k] for k in g.stream_keys)
                    if None not in key:
                        seen.setdefault(key, []).append(j)
            mine = out.setdefault(agg.fn, dict.fromkeys(MEMBER_CORNERS, 0))
            for k, v in counts.items():
                mine[k] = max(mine[k], v)
    return out


def unmatched(program: ast.Program, table) -> list[str]:
    """What the log gives nothing to test: each `where` filter (labels' too) that no event of
    its stream passes, and each string literal that no string field of any event holds (gen
    draws string values from the program's literals, so filters and derived features that
    compare against hostile text meet it)."""
    rows = table.to_pylist()
    out = []
    strings = {v for r in rows for v in r.values() if isinstance(v, str)}
    for d in program.features + program.labels:
        todo = [d.expr]
        while todo:
            e = todo.pop()
            for node in ast.walk(e):
                if isinstance(node, ast.Literal) and isinstance(node.value, str) and \
                        node.value not in strings:
                    out.append(f"{d.column}: no event holds the string {node.value!r} "
                               f"(line {node.loc.line})")
                if isinstance(node, ast.Agg) and node.where is not None:
                    todo.append(node.where)
                    code = compile(PyExpr(lambda f: f"X[{f.name!r}]")(node.where), "<where>",
                                   "eval")
                    if not any(r["stream"] == node.stream and
                               eval(code, dict(RUNTIME), {"X": r}) is True  # noqa: S307
                               for r in rows):
                        out.append(f"{d.column}: no {node.stream} event passes the filter at "
                                   f"line {node.where.loc.line}, column {node.where.loc.column}")
    return out


def run(program: ast.Program, n: int, seed: int, reference: bool = False) -> Report:
    table = events.conform(gen.generate(program, n, seed), program)
    b = batch_rows(program, table)
    o = online_rows(program, table)
    exact = exact_columns(program)
    diffs = [f"batch vs online: {d}" for d in differences(o, b, exact)]
    # Again with every key's window state indexed from its first event (generated logs
    # rarely give a key INDEX_FROM events).
    diffs += [f"batch vs online, indexed: {d}"
              for d in differences(online_rows(program, table, index_from=1), b, exact)]
    if reference:
        want = _reference(program, table)
        diffs += [f"batch vs reference: {d}" for d in differences(b, want, exact)]
        diffs += [f"online vs reference: {d}" for d in differences(o, want, exact)]
    return Report(diffs, coverage(program, table, b), unmatched(program, table))


def _reference(program, table):
    return reference.evaluate(program, table, labels=False)


def assert_coverage(report: Report) -> None:
    c = report.coverage
    missing = [k for k in ("ties", "late_within", "late_beyond", "on_window_edge",
                           "too_late_drivers") if c[k] == 0]
    assert not missing, f"generated log does not cover {missing}: {c}"
    assert not report.unmatched, "generated log tests nothing of:\n" + "\n".join(report.unmatched)
