"""Batch target on Spark (pyspark; local mode in tests) for data past one machine.

The same plan as the DuckDB target, in Spark SQL (a sqlglot tree, sql.py, written out in
Spark's dialect). Spark's RANGE frames only take constant offsets, so the per-row frames of
the DuckDB formulation are not available; each group is instead a join of driver events to
the aggregated events of the same key with the exact membership condition (seq(x) < seq(e)
and event_time(x) >= event_time(e) - w), aggregated per driver. Spark distributes the join by
key; a hot key with a long window costs drivers x events of that key.

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
from roundhouse.features.targets.batch.sql import (
    alias, and_, case, coalesce, col, cte, final_select, frame, is_null, join, num, op, or_, over,
    select, SqlExpr, table)
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
    def __init__(self, program: ast.Program, labels: bool = True):
        self.program = program
        self.labels = labels
        self.plan = make_plan(program, labels)

    def sql(self, events: str | exp.Expr) -> str:
        """`events` is a table (or temporary view) name, or a table node."""
        return sql.render(self.query(events), "spark")

    def query(self, events: str | exp.Expr) -> exp.Select:
        """The query as a tree (see `sql`), written out in the Spark dialect."""
        p = self.program
        seq, t = (lambda: col("seq")), (lambda: col("t"))
        before = over(exp.Max(this=t()), order=[seq()], spec=frame("ROWS", "UNBOUNDED", num(1)))
        too_late = coalesce(op(exp.LT, t(), op(exp.Sub, before, p.lateness_micros)), False)
        ctes = [
            cte("ev", select([seq(), alias(exp.UnixMicros(this=col("event_time")), "t"),
                              col("stream"), *(col(n) for n, _ in field_columns(p))],
                             sql.source(events, "spark"))),
            cte("drv", select([exp.Star()], exp.Subquery(this=select(
                [exp.Star(), alias(too_late, "too_late")], "ev")), where=_stream_is(p.driver))),
        ]
        joins, agg_sql = [], {}
        where_x = SqlExpr(lambda e: col(e.name, "x"))
        xt, dt = (lambda: col("t", "x")), (lambda: col("t", "d"))
        for gi, g in enumerate(self.plan.groups):
            name = f"g{gi}"
            on = [op(exp.EQ, col(sf, "x"), col(df, "d"))
                  for sf, df in zip(g.stream_keys, g.driver_keys)]
            if g.kind == "forward":
                time_on = [op(exp.GTE, xt(), dt()),
                           op(exp.LTE, xt(), op(exp.Add, dt(), g.max_window)),
                           op(exp.NEQ, col("seq", "x"), col("seq", "d"))]
            elif g.kind == "lifetime":
                time_on = [op(exp.LT, col("seq", "x"), col("seq", "d"))]
            else:
                time_on = [op(exp.LT, col("seq", "x"), col("seq", "d")),
                           op(exp.GTE, xt(), op(exp.Sub, dt(), g.max_window))]
            aggs = []
            for s in g.slots:
                a = s.agg

                def cond(a=a, g=g) -> exp.Expr:
                    conds = []
                    if g.kind == "window":
                        conds.append(op(exp.GTE, xt(), op(exp.Sub, dt(), a.window.micros)))
                    if g.kind == "forward":
                        conds.append(op(exp.LTE, xt(), op(exp.Add, dt(), a.window.micros)))
                    if a.where is not None:
                        conds.append(where_x(a.where))
                    return and_(*conds) if conds else exp.true()

                def m(a=a, cond=cond) -> exp.Expr:
                    return case(cond(), aggregates.member_value(a, lambda f: col(f, "x")))

                n = s.name
                aggs += [alias(part.sql(m, lambda: col("seq", "x")), f"{n}_{part.name}")
                         for part in _rule(s).parts]
                agg_sql[n] = self._combine(s)
            ctes.append(cte(name, select(
                [alias(col("seq", "d"), "seq"), *aggs], table("drv", "d"),
                joins=[join(table("ev", "x"), on=and_(_stream_is(g.stream, "x"), *on,
                                                      *time_on))],
                group=[col("seq", "d")])))
            joins.append(join(table(name), on=op(exp.EQ, col("seq", name), col("seq", "drv")),
                              side="LEFT"))
        base = [alias(col("seq", "drv"), "seq"), alias(col("too_late", "drv"), "too_late")]
        base += [alias(col(f.name, "drv"), f.name) for f in p.driver_stream.fields]
        for g in self.plan.groups:
            for s in g.slots:
                conds = [is_null(col(k, "drv")) for k in g.driver_keys]
                if g.kind != "forward":
                    conds.insert(0, col("too_late", "drv"))
                base.append(alias(case(or_(*conds), exp.Null(), agg_sql[s.name]), s.name))
        ctes.append(cte("base", select(base, "drv", joins=joins)))
        return final_select(p, self.plan, ctes, self.labels)

    def _combine(self, s: Slot) -> exp.Expr:
        """The slot's value from its parts' columns (<slot>_<part>)."""
        return _rule(s).total(lambda part: col(f"{s.name}_{part}"),
                              field_base(self.program, s.agg))


def _rule(s: Slot) -> aggregates.BatchRule:
    return aggregates.rule(s.agg, "spark")


def _stream_is(name: str, table_alias: str | None = None) -> exp.Expr:
    return exp.EQ(this=col("stream", table_alias), expression=exp.Literal.string(name))


def run(program: ast.Program, table: pa.Table, labels: bool = True) -> pa.Table:
    """Compute the training table of a conformed events table with Spark; returns Arrow."""
    spark = session()
    if not table.num_rows:
        return events_mod.output_schema(program, labels).empty_table()
    df = spark.createDataFrame(table)  # Spark 4 takes Arrow tables directly
    view = f"events_{os.getpid()}"
    df.createOrReplaceTempView(view)
    result = spark.sql(SparkCompiler(program, labels).sql(view)).toArrow()
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
        result = spark.sql(SparkCompiler(program).sql(view))  # ends with ORDER BY seq
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
