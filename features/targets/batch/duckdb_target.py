"""Batch target: a checked program -> one DuckDB SQL query over the events Parquet -> the
training table (one row per driver event, ordered by seq: seq, too_late, features, labels).
The query is built as a sqlglot tree (sql.py) and written out in DuckDB's dialect.

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
  contribution is combined as each aggregation's rule says (aggregates.py, `Merge`): counts
  and sums add, min/max take least/greatest, last compares seqs, and count_distinct adds the
  late values that no regular member already has (checked with an ASOF join for the latest
  regular event of that key and value).
* When the whole log is in order (`is_in_order`, checked by materialize) there are no late
  events and no too-late drivers, and the query leaves those parts out.
* Lifetime aggregations are plain cumulative frames in seq order; labels (forward windows) are
  a join on the key with the time range, since they have no arrival-order condition.
"""
from __future__ import annotations

import pathlib
import shutil
import tempfile
from typing import Callable

from sqlglot import exp

from roundhouse.features.language import syntax as ast
from roundhouse.features.plan.plan import field_base, field_columns, Group, make_plan, Plan, Slot
from roundhouse.features.targets.batch import aggregates
from roundhouse.features.targets.batch.sql import (
    alias, and_, base_cte, BIGINT, case, cast, coalesce, col, cte, final_select, frame, greatest, HUGEINT,
    is_null, join, named_window, not_, not_null, num, op, or_, over, quote, render, select,
    seqs_out_of_range, SHIFT, source, SqlExpr, stream_is, table, union_all)

_T, _G, _SEQ = (lambda: col("t")), (lambda: col("g")), (lambda: col("seq"))


def _m(slot: Slot) -> str:
    return f"m{slot.index}"


def _rule(slot: Slot) -> aggregates.BatchRule:
    return aggregates.rule(slot.agg, "duckdb")


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
        self.where_sql = SqlExpr(lambda e: col(e.name))

    # ------------------------------------------------------------------ entry point
    def sql(self, events: str | exp.Expr) -> str:
        """`events` is a table name or SQL table expression, e.g. read_parquet('x.parquet')."""
        return render(self.query(events), "duckdb")

    def query(self, events: str | exp.Expr) -> exp.Select:
        """The query as a tree (see `sql`)."""
        p = self.program
        ctes = [
            cte("ev", select([_SEQ(), alias(exp.UnixMicros(this=col("event_time")), "t"),
                              col("stream"), *(col(n) for n, _ in field_columns(p))],
                             source(events, "duckdb"))),
            # g: the largest event_time of all earlier events (any stream). A driver more than
            # L behind it is too late; an event behind it is "late" (see module doc).
            cte("evg", select([exp.Star(), alias(
                over(exp.Max(this=_T()), order=[_SEQ()], spec=frame("ROWS", "UNBOUNDED", num(1)))
                if not self.in_order else cast(exp.Null(), BIGINT), "g")], "ev")),
            cte("drv", select([exp.Star(), alias(self._too_late(), "too_late")], "evg",
                              where=stream_is(self.driver))),
        ]
        joins = []
        agg_sql: dict[str, exp.Expr] = {}
        for gi, g in enumerate(self.plan.groups):
            name = f"g{gi}"
            if g.kind == "window":
                ctes += self._window_group(name, g)
                joins.append(join(table(f"{name}_w"), using=["seq"], side="LEFT"))
                if not self.in_order:
                    joins.append(join(table(f"{name}_la"), using=["seq"], side="LEFT"))
                for s in g.slots:
                    if _rule(s).late_distinct and not self.in_order:
                        joins.append(join(table(f"{name}_lx{s.name}"), using=["seq"],
                                          side="LEFT"))
                    agg_sql[s.name] = self._combine_window(s)
            elif g.kind == "lifetime":
                ctes += self._lifetime_group(name, g)
                joins.append(join(table(f"{name}_w"), using=["seq"], side="LEFT"))
                for s in g.slots:
                    agg_sql[s.name] = self._combine_simple(s)
            else:
                ctes += self._forward_group(name, g)
                joins.append(join(table(f"{name}_f"), using=["seq"], side="LEFT"))
                for s in g.slots:
                    agg_sql[s.name] = self._combine_simple(s)

        ctes.append(base_cte(p, self.plan, agg_sql, joins))
        return final_select(p, self.plan, ctes, self.labels)

    def _too_late(self) -> exp.Expr:
        """t more than the allowed lateness behind g (false when g is null)."""
        return coalesce(op(exp.LT, _T(), op(exp.Sub, _G(), self.program.lateness_micros)),
                        False)

    # ------------------------------------------------------------------ groups
    def _rows(self, name: str, g: Group) -> exp.CTE:
        """Member rows (the aggregated stream) and driver rows of one group, keys non-null."""
        ks = [f"k{i}" for i in range(len(g.stream_keys))]
        same = g.stream == self.driver and g.stream_keys == g.driver_keys
        sel = select(
            [_SEQ(), _T(), _G(), *(alias(col(f), k) for f, k in zip(g.stream_keys, ks)),
             alias(exp.true(), "is_s"), alias(exp.Boolean(this=same), "is_d"),
             alias(self._too_late() if same else exp.false(), "tl"),
             *(alias(aggregates.filtered_member_value(s.agg, self.where_sql), _m(s))
               for s in g.slots)],
            "evg", where=and_(stream_is(g.stream), *(not_null(col(f)) for f in g.stream_keys)))
        if not same:
            sel = union_all(sel, select(
                [_SEQ(), _T(), _G(), *(alias(col(f), k) for f, k in zip(g.driver_keys, ks)),
                 exp.false(), exp.true(), self._too_late(),
                 *(alias(exp.Null(), _m(s)) for s in g.slots)],
                "evg", where=and_(stream_is(self.driver),
                                  *(not_null(col(f)) for f in g.driver_keys))))
        return cte(f"{name}_rows", sel)

    def _window_group(self, name: str, g: Group) -> list[exp.CTE]:
        ks = [f"k{i}" for i in range(len(g.stream_keys))]
        ctes = [self._rows(name, g)]

        def place(t: exp.Expr) -> exp.Expr:  # t * 2^40 + seq
            return op(exp.Add, op(exp.Mul, cast(t, HUGEINT), SHIFT), _SEQ())

        if self.in_order:
            # Every event is regular and a driver's place is its own (event_time, seq).
            ctes.append(cte(f"{name}_c", select(
                [exp.Star(), alias(place(_T()), "o"),
                 *(alias(col(_m(s)), "r" + _m(s)) for s in g.slots)], f"{name}_rows")))
            return ctes + [self._frames(name, g, ks)]
        # Regular: not behind any earlier event (g). Regular events are monotone in
        # (event_time, seq) overall, hence within every key. Every row is placed at
        # o = max(g, t) * 2^40 + seq: after each regular event that arrived before it and
        # before each that arrived after it.
        def reg() -> exp.Expr:
            return and_(col("is_s"), or_(is_null(_G()), op(exp.GTE, _T(), _G())))

        ctes.append(cte(f"{name}_c", select(
            [exp.Star(), alias(reg(), "reg"), alias(place(greatest(coalesce(_G(), _T()), _T())),
                                                    "o"),
             *(alias(case(reg(), col(_m(s))), "r" + _m(s)) for s in g.slots)],
            f"{name}_rows")))
        ctes.append(self._frames(name, g, ks))
        windows = sorted({s.agg.window.micros for s in g.slots})
        # Late members, joined to the drivers of their key with the exact condition. Only
        # drivers that are not too late need them, and for those a counted late event lies in
        # [t(e) - w, t(e) + L]: a span of one bucket of width w + L, so at most two buckets,
        # which keeps the join to events near in time even on a hot key.
        maxw = max(windows)
        width = max(maxw + self.program.lateness_micros, 1)

        def bucket(t: exp.Expr) -> exp.Expr:
            return exp.Floor(this=op(exp.Div, t, width))

        ctes.append(cte(f"{name}_late", select(
            [exp.Star(), alias(bucket(_T()), "b")], f"{name}_c",
            where=and_(col("is_s"), not_(col("reg"))))))
        ctes.append(cte(f"{name}_ld", select(
            [_SEQ(), _T(), *(col(k) for k in ks),
             alias(exp.Explode(this=exp.Array(expressions=[
                 bucket(op(exp.Sub, _T(), maxw)),
                 op(exp.Add, bucket(op(exp.Sub, _T(), maxw)), 1)])), "b")],
            f"{name}_c", where=and_(col("is_d"), not_(col("tl"))))))
        on = and_(*(op(exp.EQ, col(k, "d"), col(k, "l")) for k in ks),
                  op(exp.EQ, col("b", "d"), col("b", "l")),
                  op(exp.LT, col("seq", "l"), col("seq", "d")),
                  op(exp.GTE, col("t", "l"), op(exp.Sub, col("t", "d"), maxw)))
        ctes.append(cte(f"{name}_lp", select(
            [alias(col("seq", "d"), "seq"), alias(col("t", "d"), "dt"),
             *(col(k, "d") for k in ks), alias(col("seq", "l"), "lseq"),
             alias(col("t", "l"), "lt"), *(col(_m(s), "l") for s in g.slots)],
            table(f"{name}_ld", "d"), joins=[join(table(f"{name}_late", "l"), on=on)])))
        lcols = []
        for s in g.slots:
            m, i, w = _m(s), s.name, s.agg.window.micros
            # Each part over the late members in the driver's window (the late share of a
            # DISTINCT part is the join below).
            for part in _rule(s).with_seqs():
                if part.merge is not aggregates.Merge.DISTINCT:
                    inw = op(exp.GTE, col("lt"), op(exp.Sub, col("dt"), w))
                    lcols.append(alias(part.sql(lambda m=m: col(m), lambda: col("lseq"), inw),
                                       f"l{part.name}{i}"))
        ctes.append(cte(f"{name}_la", select([_SEQ(), *lcols], f"{name}_lp", group=[_SEQ()])))
        for s in g.slots:
            if not _rule(s).late_distinct:
                continue
            m, i, w = _m(s), s.name, s.agg.window.micros
            ctes.append(cte(f"{name}_rv{i}", select(
                [alias(_SEQ(), "rseq"), alias(_T(), "rt"), *(col(k) for k in ks),
                 alias(col("r" + m), "v")], f"{name}_c", where=not_null(col("r" + m)))))
            ctes.append(cte(f"{name}_lv{i}", select(
                [_SEQ(), col("dt"), *(col(k) for k in ks), alias(col(m), "v")], f"{name}_lp",
                where=and_(op(exp.GTE, col("lt"), op(exp.Sub, col("dt"), w)), not_null(col(m))),
                distinct=True)))
            on2 = and_(*(op(exp.EQ, col(k, "p"), col(k, "q")) for k in ks),
                       op(exp.EQ, col("v", "p"), col("v", "q")),
                       op(exp.GT, col("seq", "p"), col("rseq", "q")))
            ctes.append(cte(f"{name}_lx{i}", select(
                [alias(col("seq", "p"), "seq"), alias(exp.Count(this=exp.Star()), f"lx{i}")],
                table(f"{name}_lv{i}", "p"),
                joins=[join(table(f"{name}_rv{i}", "q"), on=on2, side="LEFT", method="ASOF")],
                where=or_(is_null(col("rt", "q")),
                          op(exp.LT, col("rt", "q"), op(exp.Sub, col("dt", "p"), w))),
                group=[col("seq", "p")])))
        return ctes

    def _frames(self, name: str, g: Group, ks: list[str]) -> exp.CTE:
        """Regular members of each driver's windows: frames ordered by o (see module doc)."""
        windows = sorted({s.agg.window.micros for s in g.slots})
        wdefs = [named_window(f"w{w}", [col(k) for k in ks], [col("o")], frame(
            "RANGE", greatest(op(exp.Sub, col("o"), op(exp.Mul, cast(op(exp.Sub, _T(), w),
                                                                      HUGEINT), SHIFT)), num(0)),
            num(1))) for w in windows]
        cols = []
        for s in g.slots:
            m, w, i = "r" + _m(s), f"w{s.agg.window.micros}", s.name
            cols += [alias(over(part.sql(lambda m=m: col(m), _SEQ), w), f"r{part.name}{i}")
                     for part in _rule(s).with_seqs()]
        return cte(f"{name}_w", select([_SEQ(), *cols], f"{name}_c", windows=wdefs,
                                       qualify=col("is_d")))

    def _late(self, name: str) -> exp.Expr:
        """A column of the late side (l*__aN); with no late members (in_order) it is null."""
        return exp.Null() if self.in_order else col(name)

    def _combine_window(self, s: Slot) -> exp.Expr:
        """A window slot's value from its parts over the regular members (r<part><slot>) and
        the late ones (l<part><slot>, lx<slot>), merged (aggregates.Merge)."""
        i, rule = s.name, _rule(s)
        return rule.value(lambda name: rule.merged(
            name, lambda n: col(f"r{n}{i}"), lambda n: self._late(f"l{n}{i}"),
            lambda: self._late(f"lx{i}")), field_base(self.program, s.agg))

    def _simple_aggs(self, s: Slot, m: Callable[[], exp.Expr], seq: Callable[[], exp.Expr],
                     window: Callable[[exp.Expr], exp.Expr]) -> list[exp.Expr]:
        """The aggregates of one slot over member values m() (a new node per call), each
        through `window` (a frame, or none for a GROUP BY)."""
        return [alias(window(part.sql(m, seq)), f"{part.name}{s.name}")
                for part in _rule(s).parts]

    def _combine_simple(self, s: Slot) -> exp.Expr:
        return _rule(s).total(lambda n: col(f"{n}{s.name}"), field_base(self.program, s.agg))

    def _lifetime_group(self, name: str, g: Group) -> list[exp.CTE]:
        ks = [f"k{i}" for i in range(len(g.stream_keys))]

        def window(agg: exp.Expr) -> exp.Expr:
            return over(agg, partition=[col(k) for k in ks], order=[_SEQ(), col("is_s")],
                        spec=frame("ROWS", "UNBOUNDED", num(1)))

        cols = [c for s in g.slots
                for c in self._simple_aggs(s, lambda s=s: col(_m(s)), _SEQ, window)]
        return [self._rows(name, g),
                cte(f"{name}_w", select([_SEQ(), *cols], f"{name}_rows", qualify=col("is_d")))]

    def _forward_group(self, name: str, g: Group) -> list[exp.CTE]:
        # Labels: x counts when event_time(e) <= event_time(x) <= event_time(e) + w, x != e.
        keys_on = [op(exp.EQ, col(sf, "x"), col(df, "d"))
                   for sf, df in zip(g.stream_keys, g.driver_keys)]
        where_x = SqlExpr(lambda e: col(e.name, "x"))
        cols = []
        for s in g.slots:
            agg = s.agg

            def member(agg=agg) -> exp.Expr:
                value = aggregates.member_value(agg, lambda f: col(f, "x"))
                inw = op(exp.LTE, col("t", "x"), op(exp.Add, col("t", "d"), agg.window.micros))
                return case(inw if agg.where is None else and_(inw, where_x(agg.where)), value)

            cols += self._simple_aggs(s, member, lambda: col("seq", "x"), lambda a: a)
        maxw = g.max_window
        on = and_(stream_is(g.stream, "x"), *keys_on,
                  op(exp.GTE, col("t", "x"), col("t", "d")),
                  op(exp.LTE, col("t", "x"), op(exp.Add, col("t", "d"), maxw)),
                  op(exp.NEQ, col("seq", "x"), col("seq", "d")))
        return [cte(f"{name}_f", select(
            [alias(col("seq", "d"), "seq"), *cols], table("drv", "d"),
            joins=[join(table("ev", "x"), on=on)], group=[col("seq", "d")]))]


def is_in_order(con, events: str | exp.Expr) -> bool:
    """True when event_time never decreases with seq: the fast path applies."""
    t = lambda: exp.UnixMicros(this=col("event_time"))  # noqa: E731
    inner = select([alias(t(), "t"), alias(over(exp.Max(this=t()), order=[_SEQ()],
                                                spec=frame("ROWS", "UNBOUNDED", num(1))), "p")],
                   source(events, "duckdb"))
    query = select([coalesce(exp.LogicalAnd(this=op(exp.GTE, _T(), col("p"))), True)],
                   exp.Subquery(this=inner))
    return bool(con.sql(render(query, "duckdb")).fetchall()[0][0])


DEFAULT_MEMORY_LIMIT = "2GB"  # materialize --memory-limit


def materialize(program: ast.Program, events_path: str, out_path: str, threads: int | None = None,
                con=None, memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
                temp_dir: str | None = None) -> None:
    """Write the training table for `program` over `events_path` (a file or a directory of
    them) to `out_path` (one Parquet file).

    DuckDB reads the files itself (read_parquet) after their schemas are checked from the
    footers, so memory is DuckDB's, bounded by `memory_limit` (None: DuckDB's default, 80% of
    RAM): past it, sorts, joins and windows spill to a temporary folder made under `temp_dir`
    (default: the output's folder) and removed afterwards. An s3:// path is read into memory
    with pyarrow (events.read), as DuckDB here has no S3 access.
    """
    import duckdb  # imported here so parsing/type checking never needs DuckDB

    from roundhouse.features.transport import events as events_mod
    from roundhouse.features.transport import scan

    out = pathlib.Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    own = con is None
    con = con or duckdb.connect()
    spill = tempfile.mkdtemp(prefix=".materialize-spill-", dir=temp_dir or out.parent)
    registered = False
    try:
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        if memory_limit:
            con.execute(f"SET memory_limit = '{_sql_str(memory_limit)}'")
        con.execute(f"SET temp_directory = '{_sql_str(spill)}'")
        con.execute("SET TimeZone = 'UTC'")
        # The final ORDER BY seq still orders the output; nothing else needs input order.
        con.execute("SET preserve_insertion_order = false")
        if scan.is_local(events_path):
            files = scan.check_files(events_path, program)
            con.execute("CREATE OR REPLACE TEMP VIEW events_in AS SELECT "
                        + ", ".join(_cast(f) for f in events_mod.schema(program))
                        + f" FROM read_parquet([{', '.join(_lit(f) for f in files)}], "
                        "union_by_name = true)")
            checks = con.sql(scan.checks_sql(program, "events_in", quote))
            row = dict(zip(checks.columns, checks.fetchall()[0]))
            scan.raise_for(row, program, events_path)
            lo, hi = row["min_seq"], row["max_seq"]
        else:
            table = events_mod.read(events_path, program)  # validates the file
            con.register("events_in", table)
            registered = True
            lo = table.column("seq")[0].as_py() if table.num_rows else None
            hi = table.column("seq")[-1].as_py() if table.num_rows else None
        wrong = seqs_out_of_range(lo, hi)
        if wrong:
            raise events_mod.EventsError(f"{events_path}: {wrong}")
        query = BatchCompiler(program, in_order=is_in_order(con, "events_in")).sql("events_in")
        con.execute(f"COPY ({query}) TO '{_sql_path(out)}' (FORMAT parquet)")
    except duckdb.OutOfMemoryException as exc:
        raise MemoryError(f"DuckDB ran out of memory within memory_limit "
                          f"{memory_limit or 'default'}: {str(exc).splitlines()[0]}; raise "
                          "--memory-limit") from None
    finally:
        if registered:
            con.unregister("events_in")
        else:
            con.execute("DROP VIEW IF EXISTS events_in")
        if own:
            con.close()
        shutil.rmtree(spill, ignore_errors=True)


_DUCK_TYPES = {"int64": "BIGINT", "double": "DOUBLE", "bool": "BOOLEAN", "string": "VARCHAR",
               "timestamp[us, tz=UTC]": "TIMESTAMPTZ"}


def _cast(f) -> str:
    """A column of the view over the files, in the program's type (TimeZone is UTC, so a
    timestamp without a time zone is read as UTC, as pyarrow's cast in events.read does)."""
    return f"CAST({quote(f.name)} AS {_DUCK_TYPES[str(f.type)]}) AS {quote(f.name)}"


def _lit(s: str) -> str:
    return "'" + _sql_str(s) + "'"


def _sql_str(s: str) -> str:
    return str(s).replace("'", "''")


def _sql_path(p: pathlib.Path) -> str:
    return str(p).replace("'", "''")
