"""Batch target on Spark (pyspark; local mode in tests) for data past one machine.

The same plan as the DuckDB target (duckdb_target.py's doc has the window rule and the
regular/late split), in Spark SQL (a sqlglot tree, sql.py, written out in Spark's dialect),
formulated so that no step needs one machine: no window over the whole log, no join of a
driver to every event of its key.

* g, the largest event_time of all earlier events, in two stages: a running maximum within
  blocks of BLOCK seqs and one over the blocks' maxima.
* A window's regular members (event_time >= g) by window frames over
  o = max(g, t) * 2^40 + seq (DECIMAL(38, 0)). Spark's RANGE offsets are constants; for a
  driver e and a regular member x before it, o(e) - o(x) <= w * 2^40 + 2^40 - 1 is exactly
  event_time(x) >= G - w, G = max(g(e), t(e)) (regular events are monotone in (t, seq)). For a
  regular driver G is its own event_time: the frame is its regular members.
* The rest by one join per group, bucketed by time: the late members of every driver that
  is not too late, and, for a late driver (t < g), the regular members in [t - w, g - w) that
  its frame leaves out; all lie in [t - W, t + L] (W the longest window), two buckets of width
  W + L. Both sides merge as each aggregation's rule says (aggregates.py); a distinct count is
  a set of values (Spark's window functions take no DISTINCT), merged by union.
* When the log is in order (`is_in_order`, checked by materialize), the frames alone, as in
  the DuckDB target.
* Lifetime aggregations are cumulative frames in seq order; labels a join on the key within
  two buckets of the longest forward window.

A frame costs the rows in it: a hot key with a long window costs its drivers times its rows
in the window (no more: not every event of the key); the join costs the late events, and a
late driver the events of its key near it in time.

materialize reads the events with Spark's reader (schemas checked first from the Parquet
footers, transport/scan.py) and writes the table with Spark's writer as a Parquet dataset in
seq order, so no row passes through this process; `session` runs it in local mode or on a
cluster (`--spark-master`), whose executors need the paths on a filesystem they share.
"""
from __future__ import annotations

import functools
import os

import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

from roundhouse.features.language import syntax as ast
from roundhouse.features.plan.plan import field_base, field_columns, make_plan, Slot
from roundhouse.features.targets.batch import aggregates, sql
from roundhouse.features.plan.plan import Group
from roundhouse.features.targets.batch.sql import (
    alias, and_, BIGINT, case, cast, coalesce, col, cte, final_select, frame, greatest, is_null,
    join, named_window, not_, not_null, num, op, or_, over, select, SHIFT, SqlExpr, table,
    union_all)
from roundhouse.features.transport import events as events_mod
from roundhouse.features.transport import scan


quote = functools.partial(sql.quote, dialect="spark")


_current: dict = {}  # "key": (master, conf) of "session", the process's one session


def _loopback(master: str) -> bool:
    if master.startswith("local"):
        return True
    host = master.split("://", 1)[-1].split(":", 1)[0]
    return host in ("127.0.0.1", "localhost")


def session(master: str | None = None, conf: dict[str, str] | None = None):
    """The process's Spark session: no UI, UTC, on `master` (default: ROUNDHOUSE_SPARK_MASTER,
    else local[2]) with `conf` over the defaults below. A process has one SparkContext, so a
    call with another master or conf stops the current session and starts another.

    A master on this machine (local[...], spark://127.0.0.1:...) keeps the driver on loopback;
    for another master the driver listens where Spark chooses (set spark.driver.host in `conf`
    if executors must reach it by another name). On a standalone cluster executors get
    spark.executor.memory ROUNDHOUSE_SPARK_EXECUTOR_MEMORY (default 1g): a worker needs that
    much. spark.driver.memory (ROUNDHOUSE_SPARK_MEMORY, default 1g) applies when the first
    session of the process starts the JVM.
    """
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    master = master or os.environ.get("ROUNDHOUSE_SPARK_MASTER", "local[2]")
    conf = dict(conf or {})
    key = (master, tuple(sorted(conf.items())))
    current = _current.get("session")
    if current is not None and SparkContext._active_spark_context is not None:
        if _current["key"] == key:
            return current
        current.stop()
    settings = {
        "spark.driver.memory": os.environ.get("ROUNDHOUSE_SPARK_MEMORY", "1g"),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "4",
        # Division by zero is null, not an error: sql.SqlExpr relies on it.
        "spark.sql.ansi.enabled": "false",
        # Resolving a layer of features reading features (sql.final_select: up to
        # limits.MAX_FEATURE_CHAIN) takes analyzer passes; 100 is too few for 50.
        "spark.sql.analyzer.maxIterations": "1000",
    }
    if _loopback(master):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        settings.update({"spark.driver.host": "127.0.0.1",
                         "spark.driver.bindAddress": "127.0.0.1"})
    if master.startswith("spark://"):
        settings["spark.executor.memory"] = os.environ.get("ROUNDHOUSE_SPARK_EXECUTOR_MEMORY",
                                                           "1g")
    settings.update(conf)
    builder = SparkSession.builder.master(master).appName("roundhouse-features")
    for k, v in settings.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    _current.update(session=spark, key=key)
    return spark


class SparkCompiler:
    def __init__(self, program: ast.Program, labels: bool = True, in_order: bool = False):
        """in_order: the caller has checked that event_time never decreases with seq
        (`is_in_order`): then every event is regular and no driver is too late, and the query
        is the frames alone, as the DuckDB target's is (duckdb_target.BatchCompiler)."""
        self.program = program
        self.labels = labels
        self.in_order = in_order
        self.plan = make_plan(program, labels)
        self.where_sql = SqlExpr(lambda e: col(e.name))

    def sql(self, events: str | exp.Expr) -> str:
        """`events` is a table (or temporary view) name, or a table node."""
        return sql.render(self.query(events), "spark")

    def query(self, events: str | exp.Expr) -> exp.Select:
        """The query as a tree (see `sql`), written out in the Spark dialect."""
        p = self.program
        ctes = [cte("ev", select([_SEQ(), alias(exp.UnixMicros(this=col("event_time")), "t"),
                                  col("stream"), *(col(n) for n, _ in field_columns(p))],
                                 sql.source(events, "spark"))),
                *(self._running_max() if not self.in_order else [cte("evg", select(
                    [exp.Star(), alias(cast(exp.Null(), BIGINT), "g")], "ev"))]),
                cte("drv", select([exp.Star(), alias(self._too_late(), "too_late")], "evg",
                                  where=sql.stream_is(p.driver)))]
        joins, agg_sql = [], {}
        for gi, g in enumerate(self.plan.groups):
            name = f"g{gi}"
            if g.kind == "window":
                ctes += self._window_group(name, g)
                joins.append(join(table(f"{name}_w"), using=["seq"], side="LEFT"))
                if not self.in_order:
                    joins.append(join(table(f"{name}_la"), using=["seq"], side="LEFT"))
                for s in g.slots:
                    agg_sql[s.name] = self._combine_window(s)
            else:
                ctes += (self._lifetime_group(name, g) if g.kind == "lifetime"
                         else self._forward_group(name, g))
                joins.append(join(table(f"{name}_a"), using=["seq"], side="LEFT"))
                for s in g.slots:
                    agg_sql[s.name] = _rule(s).total(lambda n, s=s: col(f"{n}{s.name}"),
                                                     field_base(p, s.agg))
        ctes.append(sql.base_cte(p, self.plan, agg_sql, joins))
        return final_select(p, self.plan, ctes, self.labels)

    # ------------------------------------------------------------------ the running maximum
    def _running_max(self) -> list[exp.CTE]:
        """evg: ev with g, the largest event_time of all earlier events, in two stages so that
        no window holds the whole log in one partition: within blocks of BLOCK seqs, and over
        the blocks' maxima (one row a block)."""
        before = frame("ROWS", "UNBOUNDED", num(1))
        return [
            cte("evb", select([exp.Star(), _block()], "ev")),
            cte("blkg", select([col("blk"), alias(over(exp.Max(this=exp.Max(this=_T())),
                                                       order=[col("blk")], spec=before), "gp")],
                               "evb", group=[col("blk")])),
            cte("evg", select([exp.Star(), alias(greatest(
                over(exp.Max(this=_T()), partition=[col("blk")], order=[_SEQ()], spec=before),
                col("gp")), "g")], "evb", joins=[join(table("blkg"), using=["blk"],
                                                      side="LEFT")])),
        ]

    def _too_late(self) -> exp.Expr:
        """t more than the allowed lateness behind g (false when g is null)."""
        return coalesce(op(exp.LT, _T(), op(exp.Sub, _G(), self.program.lateness_micros)),
                        False)

    # ------------------------------------------------------------------ groups
    def _rows(self, name: str, g: Group) -> exp.CTE:
        """Member rows (the aggregated stream) and driver rows of one group, keys non-null,
        each with `reg`: not behind any earlier event (see the module doc)."""
        ks = [f"k{i}" for i in range(len(g.stream_keys))]
        same = g.stream == self.program.driver and g.stream_keys == g.driver_keys
        reg = alias(or_(is_null(_G()), op(exp.GTE, _T(), _G())), "reg")
        sel = select(
            [_SEQ(), _T(), _G(), reg, *(alias(col(f), k) for f, k in zip(g.stream_keys, ks)),
             alias(exp.true(), "is_s"), alias(exp.Boolean(this=same), "is_d"),
             alias(self._too_late() if same else exp.false(), "tl"),
             *(alias(aggregates.filtered_member_value(s.agg, self.where_sql), _m(s))
               for s in g.slots)],
            "evg", where=and_(sql.stream_is(g.stream), *(not_null(col(f)) for f in g.stream_keys)))
        if not same:
            sel = union_all(sel, select(
                [_SEQ(), _T(), _G(), reg.copy(),
                 *(alias(col(f), k) for f, k in zip(g.driver_keys, ks)),
                 exp.false(), exp.true(), self._too_late(),
                 *(alias(exp.Null(), _m(s)) for s in g.slots)],
                "evg", where=and_(sql.stream_is(self.program.driver),
                                  *(not_null(col(f)) for f in g.driver_keys))))
        return cte(f"{name}_rows", sel)

    def _window_group(self, name: str, g: Group) -> list[exp.CTE]:
        """A driver's members: the regular ones with event_time >= G - w, where G is the
        driver's max(g, t), by window frames; the others (late members, and for a late driver
        the regular ones in [t - w, G - w)) by joins bucketed by time (see the module doc)."""
        ks = [f"k{i}" for i in range(len(g.stream_keys))]
        windows = sorted({s.agg.window.micros for s in g.slots})
        # o = max(g, t) * 2^40 + seq, exactly (DECIMAL(38, 0)); regular members' m in rm*
        placed = op(exp.Add, op(exp.Mul, cast(greatest(coalesce(_G(), _T()), _T()), DECIMAL),
                                cast(num(SHIFT), DECIMAL)), _SEQ())
        ctes = [self._rows(name, g), cte(f"{name}_c", select(
            [exp.Star(), alias(placed, "o"),
             *(alias(case(and_(col("is_s"), col("reg")), col(_m(s))), "r" + _m(s))
               for s in g.slots)], f"{name}_rows"))]
        # Frames: RANGE offsets are constants in Spark, and o - (w * 2^40 + 2^40 - 1) is, for
        # a regular member before the driver, exactly event_time >= G - w (seq < 2^40).
        wdefs = [named_window(f"w{w}", [col(k) for k in ks], [col("o")], frame(
            "RANGE", cast(num(w * SHIFT + SHIFT - 1), DECIMAL), cast(num(1), DECIMAL)))
            for w in windows]
        cols = []
        for s in g.slots:
            m, w, i = "r" + _m(s), f"w{s.agg.window.micros}", s.name
            cols += [alias(over(part.sql(lambda m=m: col(m), _SEQ, filter=False), w),
                           f"r{part.name}{i}") for part in _rule(s).with_seqs()]
        ctes.append(cte(f"{name}_w", select(
            [_SEQ(), *(col(c.alias) for c in cols)],
            exp.Subquery(this=select([_SEQ(), col("is_d"), *cols], f"{name}_c", windows=wdefs)),
            where=col("is_d"))))
        if self.in_order:
            return ctes
        return ctes + self._joined(name, g, ks, windows)

    def _joined(self, name: str, g: Group, ks: list[str], windows: list[int]) -> list[exp.CTE]:
        """The members a frame leaves out, by one join bucketed by time, for drivers that are
        not too late: a regular driver's late members, a late driver's (t < g) late members and
        its regular members in [t - w, g - w). Every such member lies in [t - W, t + L] (W the
        longest window): two buckets of width W + L. The join key `wl` keeps regular drivers
        from meeting regular events at all: such a driver asks for late events only (wl true),
        a late driver for every event (wl false); a late event answers both, a regular one
        only the second."""
        wide = max(windows[-1] + self.program.lateness_micros, 1)
        drivers = select([_SEQ(), _T(), _G(), *(col(k) for k in ks), alias(col("reg"), "wl"),
                          alias(_buckets(op(exp.Sub, _T(), windows[-1]), wide), "b")],
                         f"{name}_c", where=and_(col("is_d"), not_(col("tl"))))
        members = select([_SEQ(), _T(), col("reg"), *(col(k) for k in ks),
                          *(col(_m(s)) for s in g.slots), alias(_bucket(_T(), wide), "b"),
                          alias(exp.Explode(this=case(col("reg"), exp.Array(expressions=[
                              exp.false()]), exp.Array(expressions=[exp.true(), exp.false()]))),
                                "wl")],
                         f"{name}_c", where=col("is_s"))
        on = and_(*(op(exp.EQ, col(k, "d"), col(k, "x")) for k in ks + ["b", "wl"]),
                  op(exp.LT, col("seq", "x"), col("seq", "d")),
                  op(exp.GTE, col("t", "x"), op(exp.Sub, col("t", "d"), windows[-1])))
        pairs = select(
            [alias(col("seq", "d"), "seq"), alias(col("t", "d"), "dt"), alias(col("g", "d"), "dg"),
             alias(col("seq", "x"), "xseq"), alias(col("t", "x"), "xt"),
             alias(col("reg", "x"), "xreg"), *(col(_m(s), "x") for s in g.slots)],
            exp.Subquery(this=drivers, alias=exp.TableAlias(this=sql.ident("d"))),
            joins=[join(exp.Subquery(this=members, alias=exp.TableAlias(this=sql.ident("x"))),
                        on=on)])
        cols = []
        for s in g.slots:
            m, i, w = _m(s), s.name, s.agg.window.micros
            # in the slot's window; a regular member below the late driver's frame only
            mine = and_(op(exp.GTE, col("xt"), op(exp.Sub, col("dt"), w)),
                        or_(not_(col("xreg")), op(exp.LT, col("xt"), op(exp.Sub, col("dg"), w))))
            cols += [alias(part.sql(lambda m=m: col(m), lambda: col("xseq"), mine.copy()),
                           f"l{part.name}{i}") for part in _rule(s).with_seqs()]
        return [cte(f"{name}_lp", pairs),
                cte(f"{name}_la", select([_SEQ(), *cols], f"{name}_lp", group=[_SEQ()]))]

    def _combine_window(self, s: Slot) -> exp.Expr:
        """A window slot's value from its parts over the frame's members (r<part><slot>) and
        the joined ones (l<part><slot>), merged (aggregates.Merge)."""
        i, rule = s.name, _rule(s)
        base = field_base(self.program, s.agg)
        if self.in_order:  # the frame holds every member
            return rule.total(lambda n: col(f"r{n}{i}"), base)
        return rule.value(lambda name: rule.merged(name, lambda n: col(f"r{n}{i}"),
                                                   lambda n: col(f"l{n}{i}"), None), base)

    def _lifetime_group(self, name: str, g: Group) -> list[exp.CTE]:
        """Every earlier member of the key: a cumulative frame in seq order (a member that is
        also the driver comes after itself: is_s orders it last among equal seqs)."""
        ks = [f"k{i}" for i in range(len(g.stream_keys))]
        cols = [alias(over(part.sql(lambda s=s: col(_m(s)), _SEQ, filter=False),
                           partition=[col(k) for k in ks], order=[_SEQ(), col("is_s")],
                           spec=frame("ROWS", "UNBOUNDED", num(1))), f"{part.name}{s.name}")
                for s in g.slots for part in _rule(s).parts]
        inner = select([_SEQ(), col("is_d"), *cols], f"{name}_rows")
        outer = [_SEQ(), *(col(c.alias) for c in cols)]
        return [self._rows(name, g),
                cte(f"{name}_a", select(outer, exp.Subquery(this=inner), where=col("is_d")))]

    def _forward_group(self, name: str, g: Group) -> list[exp.CTE]:
        """Labels: x counts when event_time(e) <= event_time(x) <= event_time(e) + w, x != e;
        joined by key within two buckets of width W (the longest window)."""
        width = max(g.max_window, 1)
        where_x = SqlExpr(lambda e: col(e.name, "x"))
        cols = []
        for s in g.slots:
            a = s.agg

            def member(a=a) -> exp.Expr:
                inw = op(exp.LTE, col("t", "x"), op(exp.Add, col("t", "d"), a.window.micros))
                return case(inw if a.where is None else and_(inw, where_x(a.where)),
                            aggregates.member_value(a, lambda f: col(f, "x")))

            cols += [alias(part.sql(member, lambda: col("seq", "x")), f"{part.name}{s.name}")
                     for part in _rule(s).parts]
        drivers = select([exp.Star(), alias(_buckets(_T(), width), "b")], "drv",
                         where=and_(*(not_null(col(k)) for k in g.driver_keys)))
        stream = select([exp.Star(), alias(_bucket(_T(), width), "b")], "ev",
                        where=sql.stream_is(g.stream))
        on = and_(*(op(exp.EQ, col(sf, "x"), col(df, "d"))
                    for sf, df in zip(g.stream_keys, g.driver_keys)),
                  op(exp.EQ, col("b", "x"), col("b", "d")),
                  op(exp.GTE, col("t", "x"), col("t", "d")),
                  op(exp.LTE, col("t", "x"), op(exp.Add, col("t", "d"), g.max_window)),
                  op(exp.NEQ, col("seq", "x"), col("seq", "d")))
        return [cte(f"{name}_a", select(
            [alias(col("seq", "d"), "seq"), *cols],
            exp.Subquery(this=drivers, alias=exp.TableAlias(this=sql.ident("d"))),
            joins=[join(exp.Subquery(this=stream, alias=exp.TableAlias(this=sql.ident("x"))),
                        on=on)], group=[col("seq", "d")]))]


BLOCK = 1 << 20  # seqs per block of the running maximum and of the order check


def _block() -> exp.Expr:
    return alias(cast(exp.Floor(this=op(exp.Div, _SEQ(), BLOCK)), BIGINT), "blk")


def is_in_order(spark, view: str) -> bool:
    """True when event_time never decreases with seq: within each block of seqs, and from
    each block's last event (its largest event_time, then) to the next block's first."""
    t = lambda: exp.UnixMicros(this=col("event_time"))  # noqa: E731
    rows = select([col("blk"), alias(t(), "t"),
                   alias(over(exp.Lag(this=t()), partition=[col("blk")], order=[_SEQ()]), "p")],
                  exp.Subquery(this=select([exp.Star(), _block()], sql.source(view, "spark"))))
    blocks = select([col("blk"), alias(exp.Min(this=_T()), "lo"), alias(exp.Max(this=_T()), "hi"),
                     alias(exp.LogicalAnd(this=or_(is_null(col("p")),
                                                   op(exp.GTE, _T(), col("p")))), "ok")],
                    exp.Subquery(this=rows), group=[col("blk")])
    chained = select([col("ok"), col("lo"), alias(over(exp.Lag(this=col("hi")),
                                                       order=[col("blk")]), "before")],
                     exp.Subquery(this=blocks))
    query = select([coalesce(exp.LogicalAnd(this=and_(col("ok"), or_(
        is_null(col("before")), op(exp.GTE, col("lo"), col("before"))))), True)],
        exp.Subquery(this=chained))
    return bool(spark.sql(sql.render(query, "spark")).collect()[0][0])

_T, _G, _SEQ = (lambda: col("t")), (lambda: col("g")), (lambda: col("seq"))
DECIMAL = exp.DataType.build("DECIMAL(38, 0)")


def _m(slot: Slot) -> str:
    return f"m{slot.index}"


def _bucket(t: exp.Expr, width: int) -> exp.Expr:
    return cast(exp.Floor(this=op(exp.Div, t, width)), BIGINT)


def _buckets(start: exp.Expr, width: int) -> exp.Expr:
    """The two buckets an interval [start, start + width] can touch, one row each."""
    return exp.Explode(this=exp.Array(expressions=[_bucket(start, width),
                                                   op(exp.Add, _bucket(start.copy(), width), 1)]))


def _rule(s: Slot) -> aggregates.BatchRule:
    return aggregates.rule(s.agg, "spark")


def run(program: ast.Program, table: pa.Table, labels: bool = True) -> pa.Table:
    """Compute the training table of a conformed events table with Spark; returns Arrow."""
    spark = session()
    if not table.num_rows:
        return events_mod.output_schema(program, labels).empty_table()
    seqs = table.column("seq")
    wrong = sql.seqs_out_of_range(seqs[0].as_py(), seqs[-1].as_py())  # conformed: in seq order
    if wrong:
        raise events_mod.EventsError(wrong)
    df = spark.createDataFrame(table)  # Spark 4 takes Arrow tables directly
    view = f"events_{os.getpid()}"
    df.createOrReplaceTempView(view)
    compiler = SparkCompiler(program, labels, in_order=is_in_order(spark, view))
    result = spark.sql(compiler.sql(view)).toArrow()
    schema = events_mod.output_schema(program, labels)
    return pa.Table.from_arrays([result.column(f.name).cast(f.type) for f in schema],
                                schema=schema)


_SPARK_TYPES = {"int64": "bigint", "double": "double", "bool": "boolean", "string": "string",
                "timestamp[us, tz=UTC]": "timestamp"}


def materialize(program: ast.Program, events_path: str, out_path: str,
                master: str | None = None, conf: dict[str, str] | None = None) -> None:
    """Write the training table for `program` over `events_path` (a Parquet file or a
    directory of them) as a Parquet dataset at `out_path`: a directory of part files, ordered by
    seq within and across files (part-00000... in name order), written by the executors.

    The files' schemas are checked from their footers here (no rows read); Spark's reader reads
    the rows, the checks of events.read run as one Spark aggregate, and no row reaches this
    process. On a cluster every executor opens `events_path` and writes under `out_path`, so
    both must be on a filesystem they all share (on one machine, any local path).
    """
    from pyspark.sql import functions as F

    if not scan.is_local(events_path):
        raise events_mod.EventsError(f"{events_path}: the Spark engine reads local paths (on a "
                                     "filesystem every executor shares)")
    files = scan.check_files(events_path, program)
    for file in files:
        _check_spark_readable(file, program)
    out = os.path.abspath(out_path)
    _check_output(out)
    spark = session(master, conf)
    view = f"events_file_{os.getpid()}"
    events = spark.read.parquet(*files)
    events.select([F.col(quote(f.name)).cast(_SPARK_TYPES[str(f.type)]).alias(f.name)
                   for f in events_mod.schema(program)]).createOrReplaceTempView(view)
    try:
        row = spark.sql(scan.checks_sql(program, view, quote)).collect()[0].asDict()
        scan.raise_for(row, program, events_path)
        wrong = sql.seqs_out_of_range(row["min_seq"], row["max_seq"])
        if wrong:
            raise events_mod.EventsError(f"{events_path}: {wrong}")
        compiler = SparkCompiler(program, in_order=is_in_order(spark, view))
        result = spark.sql(compiler.sql(view))  # ends with ORDER BY seq
        schema = events_mod.output_schema(program, True)
        result = result.select([_nullable(result, f.name, F.col(quote(f.name)).cast(
            _SPARK_TYPES[str(f.type)])).alias(f.name) for f in schema])
        os.makedirs(os.path.dirname(out), exist_ok=True)
        # A global sort's partitions are ranges of seq in partition order, and each task writes
        # its partition, in order, to part-<partition>: the directory is in seq order.
        result.write.mode("overwrite").parquet(out)
    finally:
        spark.catalog.dropTempView(view)


def _nullable(df, name: str, column):
    """The column, declared nullable as every column of the output schema is (Spark writes a
    non-nullable column, e.g. a COALESCE, as a required Parquet field). seq is never null, but
    Spark cannot know that of a column read from Parquet, so the guard keeps the column."""
    from pyspark.sql import functions as F

    if name == "seq" or df.schema[name].nullable:
        return column
    return F.when(F.col("seq").isNotNull(), column)


def _check_spark_readable(file: str, program: ast.Program) -> None:
    """Spark refuses INT64 nanosecond timestamps (pyarrow's default for timestamp[ns])."""
    meta = pq.read_metadata(file)
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    column = meta.schema.column(names.index("event_time"))
    if column.physical_type == "INT64" and "nanos" in str(column.logical_type).lower():
        raise events_mod.EventsError(
            f"{file}: column 'event_time' holds nanosecond timestamps, which Spark does not "
            f"read; write it as {events_mod.TIME} (e.g. table.cast(events.schema(program)))")


_SPARK_OUTPUT = ("part-", "_SUCCESS", "_committed_", "_started_", ".part-", "._SUCCESS")


def _check_output(out: str) -> None:
    """Spark's overwrite deletes the whole directory first: refuse one that holds anything but
    an earlier output (part files, markers, checksums)."""
    if not os.path.isdir(out):
        return
    foreign = [n for n in sorted(os.listdir(out)) if not n.startswith(_SPARK_OUTPUT)]
    if foreign:
        raise FileExistsError(f"{out}: the folder exists and holds more than a training table "
                              f"dataset (e.g. {foreign[0]!r}); Spark would delete it all to "
                              "write there: choose another --out")
