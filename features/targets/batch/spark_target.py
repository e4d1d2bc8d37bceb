"""Batch target on Spark (pyspark; local mode in tests) for data past one machine.

The same plan as the DuckDB target, in Spark SQL. Spark's RANGE frames only take constant
offsets, so the per-row frames of the DuckDB formulation are not available; each group is
instead a join of driver events to the aggregated events of the same key with the exact
membership condition (seq(x) < seq(e) and event_time(x) >= event_time(e) - w), aggregated per
driver. Spark distributes the join by key; a hot key with a long window costs
drivers x events of that key.
"""
from __future__ import annotations

import functools
import os

import pyarrow as pa
import pyarrow.parquet as pq

from roundhouse.features.language import syntax as ast
from roundhouse.features.language.syntax import Base
from roundhouse.features.plan.plan import field_columns, make_plan, Slot
from roundhouse.features.targets.batch import sql
from roundhouse.features.targets.batch.sql import final_select, literal, SqlExpr
from roundhouse.features.transport import events as events_mod


quote = functools.partial(sql.quote, dialect="spark")


@functools.lru_cache(maxsize=1)
def session():
    """One local Spark session per process: loopback only, no UI, UTC."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(os.environ.get("ROUNDHOUSE_SPARK_MASTER", "local[2]"))
             .appName("roundhouse-features")
             .config("spark.driver.memory", os.environ.get("ROUNDHOUSE_SPARK_MEMORY", "1g"))
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.shuffle.partitions", "4")
             # Division by zero is null, not an error: sql.SqlExpr relies on it.
             .config("spark.sql.ansi.enabled", "false")
             # Resolving a layer of features reading features (sql.final_select: up to
             # limits.MAX_FEATURE_CHAIN) takes analyzer passes; 100 is too few for 50.
             .config("spark.sql.analyzer.maxIterations", "1000")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


class SparkCompiler:
    def __init__(self, program: ast.Program, labels: bool = True):
        self.program = program
        self.labels = labels
        self.plan = make_plan(program, labels)

    def sql(self, events: str) -> str:
        p = self.program
        cols = ", ".join(quote(n) for n, _ in field_columns(p))
        ctes = [
            f"ev AS (SELECT seq, unix_micros(event_time) AS t, stream, {cols} FROM {events})",
            "drv AS (SELECT * FROM (SELECT *, COALESCE(t < max(t) OVER (ORDER BY seq ROWS "
            "BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) - "
            f"{p.lateness_micros}, FALSE) AS too_late FROM ev) "
            f"WHERE stream = {literal(p.driver, 'spark')})",
        ]
        joins, agg_sql = [], {}
        for gi, g in enumerate(self.plan.groups):
            name = f"g{gi}"
            on = " AND ".join(f"x.{quote(sf)} = d.{quote(df)}"
                              for sf, df in zip(g.stream_keys, g.driver_keys))
            where_x = SqlExpr(lambda e: f"x.{quote(e.name)}", "spark")
            if g.kind == "forward":
                time_on = f"x.t >= d.t AND x.t <= d.t + {g.max_window} AND x.seq <> d.seq"
            elif g.kind == "lifetime":
                time_on = "x.seq < d.seq"
            else:
                time_on = f"x.seq < d.seq AND x.t >= d.t - {g.max_window}"
            aggs = []
            for s in g.slots:
                a = s.agg
                conds = []
                if g.kind == "window":
                    conds.append(f"x.t >= d.t - {a.window.micros}")
                if g.kind == "forward":
                    conds.append(f"x.t <= d.t + {a.window.micros}")
                if a.where is not None:
                    conds.append(f"({where_x(a.where)})")
                cond = " AND ".join(conds) or "TRUE"
                v = "1" if a.fn in ("count", "exists") else f"x.{quote(a.field)}"
                m = f"CASE WHEN {cond} THEN {v} END"
                n = s.name
                if a.fn in ("count", "exists"):
                    aggs.append(f"count({m}) AS {n}_c")
                elif a.fn == "count_distinct":
                    aggs.append(f"count(DISTINCT {m}) AS {n}_c")
                elif a.fn in ("sum", "avg"):
                    aggs += [f"sum({m}) AS {n}_s", f"count({m}) AS {n}_c"]
                elif a.fn in ("min", "max"):
                    aggs.append(f"{a.fn}({m}) AS {n}_v")
                else:
                    aggs.append(f"max_by({m}, CASE WHEN {cond} AND {v} IS NOT NULL THEN x.seq "
                                f"END) AS {n}_v")
                agg_sql[n] = self._combine(s)
            ctes.append(f"{name} AS (SELECT d.seq AS seq, {', '.join(aggs)} FROM drv d JOIN ev x "
                        f"ON x.stream = {literal(g.stream, 'spark')} AND {on} AND {time_on} "
                        f"GROUP BY d.seq)")
            joins.append(f"LEFT JOIN {name} ON {name}.seq = drv.seq")
        base = ["drv.seq AS seq", "drv.too_late AS too_late"]
        base += [f"drv.{quote(f.name)} AS {quote(f.name)}" for f in p.driver_stream.fields]
        for g in self.plan.groups:
            null_key = " OR ".join(f"drv.{quote(k)} IS NULL" for k in g.driver_keys)
            cond = null_key if g.kind == "forward" else f"drv.too_late OR {null_key}"
            base += [f"CASE WHEN {cond} THEN NULL ELSE {agg_sql[s.name]} END AS {s.name}"
                     for s in g.slots]
        ctes.append("base AS (SELECT " + ", ".join(base) + " FROM drv " + " ".join(joins) + ")")
        return final_select(p, self.plan, ctes, self.labels, "spark")

    def _combine(self, s: Slot) -> str:
        n, fn = s.name, s.agg.fn
        if fn in ("count", "count_distinct"):
            return f"COALESCE({n}_c, 0)"
        if fn == "exists":
            return f"COALESCE({n}_c, 0) > 0"
        if fn == "sum":
            base = self.program.streams[s.agg.stream].field(s.agg.field).type.base
            return f"CAST(COALESCE({n}_s, 0) AS {'BIGINT' if base is Base.INT else 'DOUBLE'})"
        if fn == "avg":
            return (f"CASE WHEN COALESCE({n}_c, 0) = 0 THEN NULL ELSE "
                    f"CAST({n}_s AS DOUBLE) / {n}_c END")
        return f"{n}_v"


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


def materialize(program: ast.Program, events_path: str, out_path: str) -> None:
    spark = session()
    events_mod.read(events_path, program)  # validate against the declarations first
    view = f"events_file_{os.getpid()}"
    spark.read.parquet(events_path).createOrReplaceTempView(view)
    result = spark.sql(SparkCompiler(program).sql(view)).toArrow()
    schema = events_mod.output_schema(program, True)
    table = pa.Table.from_arrays([result.column(f.name).cast(f.type) for f in schema],
                                 schema=schema)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    pq.write_table(table, out_path)
