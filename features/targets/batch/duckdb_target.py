"""Batch target: a checked program -> one DuckDB SQL query over the events Parquet -> the
training table (one row per driver event, ordered by seq: seq, too_late, features, labels).

How the window rule `seq(x) < seq(e) and event_time(x) >= event_time(e) - w` becomes fast SQL
when event_time is not monotone in seq (late events):

* g(x) is the largest event_time of all events before x (one window over the log; it also
  gives too_late). An event with event_time >= g is *regular*: regular events are monotone in
  (event_time, seq), so for a driver the regular members of a window are a contiguous range of
  them in that order: a window frame over o = max(g, event_time) * 2^40 + seq (HUGEINT), from
  (event_time(e) - w) * 2^40 up to just before the driver's own o, which places the driver
  after every regular event that arrived before it and before every later one. Frame offsets
  are per-row expressions, which DuckDB supports.
* The other (late) events are joined to the drivers of their key with the exact condition,
  only for drivers that are not too late, and bucketed by time (a counted late event lies in
  [t(e) - w, t(e) + L]) so a hot key does not pair every driver with every late event. Their
  contribution is combined: counts and sums add, min/max take least/greatest, last compares
  seqs, and count_distinct adds the late values that no regular member already has (checked
  with an ASOF join for the latest regular event of that key and value).
* When the whole log is in order (`is_in_order`, checked by materialize) there are no late
  events and no too-late drivers, and the query leaves those parts out.
* Lifetime aggregations are plain cumulative frames in seq order; labels (forward windows) are
  a join on the key with the time range, since they have no arrival-order condition.
"""
from __future__ import annotations

import pathlib
import re

from roundhouse.features.language import syntax as ast
from roundhouse.features.language.syntax import Base
from roundhouse.features.plan.plan import field_columns, Group, make_plan, Plan, Slot
from roundhouse.features.targets.batch.sql import final_select, literal, quote, SqlExpr

SHIFT = 1 << 40  # seq < 2^40 (a trillion events) keeps o unique and ordered


def _m(slot: Slot) -> str:
    return f"m{slot.index}"


def _member_value(slot: Slot, where_sql) -> str:
    """The value an aggregated event contributes; NULL means it does not count."""
    agg = slot.agg
    value = "1" if agg.fn in ("count", "exists") else quote(agg.field)
    if agg.where is None:
        return value
    return f"CASE WHEN {where_sql(agg.where)} THEN {value} END"


class BatchCompiler:
    def __init__(self, program: ast.Program, labels: bool = True, in_order: bool = False):
        """in_order: the caller has checked that event_time never decreases with seq (see
        `is_in_order`). Then no driver is too late and every event is regular, so the running
        maximum, the late-event joins and the too_late window are left out. The answer is the
        one the general query gives on such data (tested), only cheaper."""
        self.program = program
        self.labels = labels
        self.in_order = in_order
        self.plan: Plan = make_plan(program, labels)
        self.driver = program.driver
        self.where_sql = SqlExpr(lambda e: quote(e.name))

    # ------------------------------------------------------------------ entry point
    def sql(self, events: str) -> str:
        """`events` is a SQL table expression, e.g. read_parquet('x.parquet')."""
        p = self.program
        cols = [quote(n) for n, _ in field_columns(p)]
        ctes = [
            f"ev AS (SELECT seq, epoch_us(event_time) AS t, stream, {', '.join(cols)} "
            f"FROM {events})",
            # g: the largest event_time of all earlier events (any stream). A driver more than
            # L behind it is too late; an event behind it is "late" (see module doc).
            "evg AS (SELECT *, max(t) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND "
            "1 PRECEDING) AS g FROM ev)" if not self.in_order else
            "evg AS (SELECT *, CAST(NULL AS BIGINT) AS g FROM ev)",
            f"drv AS (SELECT *, COALESCE(t < g - {p.lateness_micros}, FALSE) AS too_late "
            f"FROM evg WHERE stream = {literal(self.driver)})",
        ]
        joins = []
        agg_sql: dict[str, str] = {}
        for gi, g in enumerate(self.plan.groups):
            name = f"g{gi}"
            if g.kind == "window":
                ctes += self._window_group(name, g)
                joins.append(f"LEFT JOIN {name}_w USING (seq)")
                if not self.in_order:
                    joins.append(f"LEFT JOIN {name}_la USING (seq)")
                for s in g.slots:
                    if s.agg.fn == "count_distinct" and not self.in_order:
                        joins.append(f"LEFT JOIN {name}_lx{s.name} USING (seq)")
                    agg_sql[s.name] = self._combine_window(name, s)
            elif g.kind == "lifetime":
                ctes += self._lifetime_group(name, g)
                joins.append(f"LEFT JOIN {name}_w USING (seq)")
                for s in g.slots:
                    agg_sql[s.name] = self._combine_simple(s)
            else:
                ctes += self._forward_group(name, g)
                joins.append(f"LEFT JOIN {name}_f USING (seq)")
                for s in g.slots:
                    agg_sql[s.name] = self._combine_simple(s)
        null_key = {g.id: " OR ".join(f"drv.{quote(k)} IS NULL" for k in g.driver_keys)
                    for g in self.plan.groups}

        def guard(s: Slot) -> str:
            # Null key or too-late driver: the aggregation is null. Labels ignore lateness.
            cond = null_key[s.group.id]
            if s.group.kind != "forward":
                cond = f"drv.too_late OR {cond}"
            return f"CASE WHEN {cond} THEN NULL ELSE {agg_sql[s.name]} END"

        base_cols = ["drv.seq AS seq", "drv.too_late AS too_late"]
        base_cols += [f"drv.{quote(f.name)} AS {quote(f.name)}"
                      for f in p.driver_stream.fields]
        base_cols += [f"{guard(s)} AS {s.name}"
                      for g in self.plan.groups for s in g.slots]
        ctes.append("base AS (SELECT " + ", ".join(base_cols) + " FROM drv " +
                    " ".join(joins) + ")")
        return final_select(p, self.plan, ctes, self.labels)

    # ------------------------------------------------------------------ groups
    def _rows(self, name: str, g: Group) -> str:
        """Member rows (the aggregated stream) and driver rows of one group, keys non-null."""
        ks = [f"k{i}" for i in range(len(g.stream_keys))]
        members = [f"{_member_value(s, self.where_sql)} AS {_m(s)}" for s in g.slots]
        same = g.stream == self.driver and g.stream_keys == g.driver_keys
        sk = ", ".join(f"{quote(f)} AS {k}" for f, k in zip(g.stream_keys, ks))
        snn = " AND ".join(f"{quote(f)} IS NOT NULL" for f in g.stream_keys)
        tl = f"COALESCE(t < g - {self.program.lateness_micros}, FALSE)"
        sel = (f"SELECT seq, t, g, {sk}, TRUE AS is_s, {'TRUE' if same else 'FALSE'} AS is_d, "
               f"{tl if same else 'FALSE'} AS tl, {', '.join(members)} FROM evg "
               f"WHERE stream = {literal(g.stream)} AND {snn}")
        if not same:
            dk = ", ".join(f"{quote(f)} AS {k}" for f, k in zip(g.driver_keys, ks))
            dnn = " AND ".join(f"{quote(f)} IS NOT NULL" for f in g.driver_keys)
            nulls = ", ".join(f"NULL AS {_m(s)}" for s in g.slots)
            sel += (f" UNION ALL SELECT seq, t, g, {dk}, FALSE, TRUE, {tl}, {nulls} FROM evg "
                    f"WHERE stream = {literal(self.driver)} AND {dnn}")
        return f"{name}_rows AS ({sel})"

    def _window_group(self, name: str, g: Group) -> list[str]:
        ks = [f"k{i}" for i in range(len(g.stream_keys))]
        part = ", ".join(ks)
        ctes = [self._rows(name, g)]
        if self.in_order:
            # Every event is regular and a driver's place is its own (event_time, seq).
            ctes.append(f"{name}_c AS (SELECT *, CAST(t AS HUGEINT) * {SHIFT} + seq AS o, "
                        + ", ".join(f"{_m(s)} AS r{_m(s)}" for s in g.slots)
                        + f" FROM {name}_rows)")
            return ctes + [self._frames(name, g, part)]
        # Regular: not behind any earlier event (g). Regular events are monotone in
        # (event_time, seq) overall, hence within every key. Every row is placed at
        # o = max(g, t) * 2^40 + seq: after each regular event that arrived before it and
        # before each that arrived after it.
        reg = "(is_s AND (g IS NULL OR t >= g))"
        regm = ", ".join(f"CASE WHEN {reg} THEN {_m(s)} END AS r{_m(s)}" for s in g.slots)
        ctes.append(
            f"{name}_c AS (SELECT *, {reg} AS reg, CAST(greatest(COALESCE(g, t), t) AS HUGEINT) "
            f"* {SHIFT} + seq AS o, {regm} FROM {name}_rows)")
        ctes.append(self._frames(name, g, part))
        windows = sorted({s.agg.window.micros for s in g.slots})
        # Late members, joined to the drivers of their key with the exact condition. Only
        # drivers that are not too late need them, and for those a counted late event lies in
        # [t(e) - w, t(e) + L]: a span of one bucket of width w + L, so at most two buckets,
        # which keeps the join to events near in time even on a hot key.
        maxw = max(windows)
        width = max(maxw + self.program.lateness_micros, 1)
        on = " AND ".join(f"d.{k} = l.{k}" for k in ks)
        mcols = ", ".join(f"l.{_m(s)}" for s in g.slots)
        ctes.append(f"{name}_late AS (SELECT *, floor(t / {width}) AS b FROM {name}_c "
                    f"WHERE is_s AND NOT reg)")
        ctes.append(f"{name}_ld AS (SELECT seq, t, {', '.join(ks)}, unnest([floor((t - {maxw}) "
                    f"/ {width}), floor((t - {maxw}) / {width}) + 1]) AS b FROM {name}_c "
                    f"WHERE is_d AND NOT tl)")
        ctes.append(
            f"{name}_lp AS (SELECT d.seq AS seq, d.t AS dt, {', '.join('d.' + k for k in ks)}, "
            f"l.seq AS lseq, l.t AS lt, {mcols} FROM {name}_ld d JOIN {name}_late l ON {on} "
            f"AND d.b = l.b AND l.seq < d.seq AND l.t >= d.t - {maxw})")
        lcols = []
        for s in g.slots:
            m, i, fn = _m(s), s.name, s.agg.fn
            inw = f"lt >= dt - {s.agg.window.micros}"
            if fn in ("count", "exists", "count_distinct"):
                lcols.append(f"count({m}) FILTER (WHERE {inw}) AS lc{i}")
            if fn in ("sum", "avg"):
                lcols.append(f"sum({m}) FILTER (WHERE {inw}) AS ls{i}")
                lcols.append(f"count({m}) FILTER (WHERE {inw}) AS lc{i}")
            if fn in ("min", "max"):
                lcols.append(f"{fn}({m}) FILTER (WHERE {inw}) AS lv{i}")
            if fn == "last":
                lcols.append(f"arg_max({m}, lseq) FILTER (WHERE {inw} AND {m} IS NOT NULL) "
                             f"AS lv{i}")
                lcols.append(f"max(lseq) FILTER (WHERE {inw} AND {m} IS NOT NULL) AS lq{i}")
        ctes.append(f"{name}_la AS (SELECT seq, {', '.join(lcols)} FROM {name}_lp "
                    f"GROUP BY seq)")
        for s in g.slots:
            if s.agg.fn != "count_distinct":
                continue
            m, i, w = _m(s), s.name, s.agg.window.micros
            kk = ", ".join(ks)
            ctes.append(f"{name}_rv{i} AS (SELECT seq AS rseq, t AS rt, {kk}, r{m} AS v "
                        f"FROM {name}_c WHERE r{m} IS NOT NULL)")
            ctes.append(f"{name}_lv{i} AS (SELECT DISTINCT seq, dt, {kk}, {m} AS v "
                        f"FROM {name}_lp WHERE lt >= dt - {w} AND {m} IS NOT NULL)")
            on2 = " AND ".join(f"p.{k} = q.{k}" for k in ks)
            ctes.append(
                f"{name}_lx{i} AS (SELECT p.seq AS seq, count(*) AS lx{i} FROM {name}_lv{i} p "
                f"ASOF LEFT JOIN {name}_rv{i} q ON {on2} AND p.v = q.v AND p.seq > q.rseq "
                f"WHERE q.rt IS NULL OR q.rt < p.dt - {w} GROUP BY p.seq)")
        return ctes

    def _frames(self, name: str, g: Group, part: str) -> str:
        """Regular members of each driver's windows: frames ordered by o (see module doc)."""
        windows = sorted({s.agg.window.micros for s in g.slots})
        wdefs = ", ".join(
            f"w{w} AS (PARTITION BY {part} ORDER BY o RANGE BETWEEN greatest(o - "
            f"CAST(t - {w} AS HUGEINT) * {SHIFT}, 0) PRECEDING AND 1 PRECEDING)"
            for w in windows)
        cols = []
        for s in g.slots:
            m, w, i = "r" + _m(s), f"w{s.agg.window.micros}", s.name
            fn = s.agg.fn
            if fn in ("count", "exists"):
                cols.append(f"count({m}) OVER {w} AS rc{i}")
            elif fn in ("sum", "avg"):
                cols.append(f"sum({m}) OVER {w} AS rs{i}")
                cols.append(f"count({m}) OVER {w} AS rc{i}")
            elif fn in ("min", "max"):
                cols.append(f"{fn}({m}) OVER {w} AS rv{i}")
            elif fn == "count_distinct":
                cols.append(f"count(DISTINCT {m}) OVER {w} AS rc{i}")
            elif fn == "last":
                cols.append(f"arg_max({m}, seq) FILTER (WHERE {m} IS NOT NULL) OVER {w} "
                            f"AS rv{i}")
                cols.append(f"max(seq) FILTER (WHERE {m} IS NOT NULL) OVER {w} AS rq{i}")
        return (f"{name}_w AS (SELECT seq, {', '.join(cols)} FROM {name}_c "
                f"WINDOW {wdefs} QUALIFY is_d)")

    def _combine_window(self, name: str, s: Slot) -> str:
        i, fn = s.name, s.agg.fn
        field_type = self._field_base(s)
        if self.in_order:  # no late members: the late-side columns do not exist
            return self._late_free(self._combine_window_general(s))
        return self._combine_window_general(s)

    @staticmethod
    def _late_free(sql: str) -> str:
        return re.sub(r"\b(l[csvqx])(__a\d+)\b", "NULL", sql)

    def _combine_window_general(self, s: Slot) -> str:
        i, fn = s.name, s.agg.fn
        field_type = self._field_base(s)
        if fn == "count":
            return f"COALESCE(rc{i}, 0) + COALESCE(lc{i}, 0)"
        if fn == "exists":
            return f"(COALESCE(rc{i}, 0) + COALESCE(lc{i}, 0)) > 0"
        if fn == "count_distinct":
            return f"COALESCE(rc{i}, 0) + COALESCE(lx{i}, 0)"
        if fn == "sum":
            total = f"COALESCE(rs{i}, 0) + COALESCE(ls{i}, 0)"
            return f"CAST({total} AS {'BIGINT' if field_type is Base.INT else 'DOUBLE'})"
        if fn == "avg":
            total = f"CAST(COALESCE(rs{i}, 0) + COALESCE(ls{i}, 0) AS DOUBLE)"
            return (f"CASE WHEN COALESCE(rc{i}, 0) + COALESCE(lc{i}, 0) = 0 THEN NULL ELSE "
                    f"{total} / (COALESCE(rc{i}, 0) + COALESCE(lc{i}, 0)) END")
        if fn == "min":
            return f"least(rv{i}, lv{i})"
        if fn == "max":
            return f"greatest(rv{i}, lv{i})"
        # last: the member with the greatest seq, regular or late
        return f"CASE WHEN lq{i} IS NOT NULL AND (rq{i} IS NULL OR lq{i} > rq{i}) " \
               f"THEN lv{i} ELSE rv{i} END"

    def _field_base(self, s: Slot) -> Base | None:
        if s.agg.field is None:
            return None
        return self.program.streams[s.agg.stream].field(s.agg.field).type.base

    def _simple_aggs(self, s: Slot, m: str, seq: str = "seq") -> list[str]:
        i, fn = s.name, s.agg.fn
        if fn in ("count", "exists", "count_distinct"):
            d = "DISTINCT " if fn == "count_distinct" else ""
            return [f"count({d}{m}) {{over}} AS c{i}"]
        if fn in ("sum", "avg"):
            return [f"sum({m}) {{over}} AS s{i}", f"count({m}) {{over}} AS c{i}"]
        if fn in ("min", "max"):
            return [f"{fn}({m}) {{over}} AS v{i}"]
        return [f"arg_max({m}, {seq}) FILTER (WHERE {m} IS NOT NULL) {{over}} AS v{i}"]

    def _combine_simple(self, s: Slot) -> str:
        i, fn = s.name, s.agg.fn
        if fn in ("count", "count_distinct"):
            return f"COALESCE(c{i}, 0)"
        if fn == "exists":
            return f"COALESCE(c{i}, 0) > 0"
        if fn == "sum":
            t = "BIGINT" if self._field_base(s) is Base.INT else "DOUBLE"
            return f"CAST(COALESCE(s{i}, 0) AS {t})"
        if fn == "avg":
            return (f"CASE WHEN COALESCE(c{i}, 0) = 0 THEN NULL ELSE CAST(s{i} AS DOUBLE) / "
                    f"c{i} END")
        return f"v{i}"

    def _lifetime_group(self, name: str, g: Group) -> list[str]:
        ks = ", ".join(f"k{i}" for i in range(len(g.stream_keys)))
        over = (f"OVER (PARTITION BY {ks} ORDER BY seq, is_s ROWS BETWEEN UNBOUNDED PRECEDING "
                f"AND 1 PRECEDING)")
        cols = [c.format(over=over) for s in g.slots for c in self._simple_aggs(s, _m(s))]
        return [self._rows(name, g),
                f"{name}_w AS (SELECT seq, {', '.join(cols)} FROM {name}_rows QUALIFY is_d)"]

    def _forward_group(self, name: str, g: Group) -> list[str]:
        # Labels: x counts when event_time(e) <= event_time(x) <= event_time(e) + w, x != e.
        keys_on = " AND ".join(f"x.{quote(sf)} = d.{quote(df)}"
                               for sf, df in zip(g.stream_keys, g.driver_keys))
        where_x = SqlExpr(lambda e: f"x.{quote(e.name)}")
        cols = []
        for s in g.slots:
            agg = s.agg
            value = "1" if agg.fn in ("count", "exists") else f"x.{quote(agg.field)}"
            inw = f"x.t <= d.t + {agg.window.micros}"
            cond = inw if agg.where is None else f"{inw} AND ({where_x(agg.where)})"
            m = f"CASE WHEN {cond} THEN {value} END"
            cols += [c.format(over="") for c in self._simple_aggs(s, m, "x.seq")]
        maxw = g.max_window
        return [f"{name}_f AS (SELECT d.seq AS seq, {', '.join(cols)} "
                f"FROM drv d JOIN ev x ON x.stream = {literal(g.stream)} AND {keys_on} "
                f"AND x.t >= d.t AND x.t <= d.t + {maxw} AND x.seq <> d.seq GROUP BY d.seq)"]


def is_in_order(con, events: str) -> bool:
    """True when event_time never decreases with seq: the fast path applies."""
    return bool(con.sql(
        f"SELECT coalesce(bool_and(t >= p), TRUE) FROM (SELECT epoch_us(event_time) AS t, "
        f"max(epoch_us(event_time)) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND "
        f"1 PRECEDING) AS p FROM {events})").fetchall()[0][0])


def materialize(program: ast.Program, events_path: str, out_path: str, threads: int | None = None,
                con=None) -> None:
    """Write the training table for `program` over `events_path` to `out_path` (Parquet)."""
    import duckdb  # imported here so parsing/type checking never needs DuckDB

    from roundhouse.features.transport import events as events_mod

    own = con is None
    con = con or duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    table = events_mod.read(events_path, program)  # validates the file against the program
    if table.num_rows and not (0 <= table.column("seq")[0].as_py() and
                               table.column("seq")[-1].as_py() < SHIFT):
        raise events_mod.EventsError(f"{events_path}: seq must lie in [0, 2^40) for the DuckDB "
                                     "target")
    con.register("events_in", table)
    query = BatchCompiler(program, in_order=is_in_order(con, "events_in")).sql("events_in")
    out = pathlib.Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({query}) TO '{_sql_path(out)}' (FORMAT parquet)")
    con.unregister("events_in")
    if own:
        con.close()


def _sql_path(p: pathlib.Path) -> str:
    return str(p).replace("'", "''")
