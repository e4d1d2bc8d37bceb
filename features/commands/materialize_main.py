"""bazel run //features:materialize -- --defs F.feat --events E.parquet|DIR|s3://... --out O.parquet
                                      [--engine duckdb|spark] [--memory-limit 2GB]
                                      [--spark-master URL] [--spark-conf KEY=VALUE ...]

Writes the training table: one row per driver event, ordered by seq, with seq, too_late, one
column per feature and the labels. DuckDB writes one Parquet file, within --memory-limit
(spilling to a temporary folder beside the output). Spark writes a Parquet dataset: a
directory of part files in seq order (read it with pyarrow.dataset or any Parquet reader);
with --spark-master spark://HOST:PORT it runs on that cluster, whose executors read --events
and write --out themselves, so both must be on a filesystem every worker shares (local paths
do for a cluster on one machine).
"""
from __future__ import annotations

import argparse
import re
import sys
import time

from roundhouse.features.commands import cli
from roundhouse.features.language import loader
from roundhouse.features.language.errors import FeatureError
from roundhouse.features.transport.events import EventsError


def _memory(text: str) -> str:
    if text.lower() == "none" or re.fullmatch(r"\d+(\.\d+)?\s*([KMGT]i?B|B)", text, re.I):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: write a size like 2GB, 500MB or 'none'")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="materialize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--defs", required=True, help="definition file (.feat)")
    ap.add_argument("--events", required=True,
                    help="events Parquet file, or a directory of them (an archive); local or s3://")
    ap.add_argument("--out", required=True,
                    help="training table to write: a Parquet file (duckdb), a dataset "
                         "directory (spark)")
    ap.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb")
    ap.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all)")
    ap.add_argument("--memory-limit", default="2GB", type=_memory,
                    help="DuckDB memory_limit, e.g. 2GB or 500MB (past it DuckDB spills to a "
                         "temporary folder beside --out); 'none': DuckDB's default, 80%% of RAM")
    ap.add_argument("--spark-master", default=None,
                    help="Spark master URL, e.g. spark://HOST:7077 (default: local[2], or "
                         "ROUNDHOUSE_SPARK_MASTER)")
    ap.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                    help="a Spark setting (repeatable), e.g. spark.executor.memory=4g")
    args = ap.parse_args(argv)
    if any("=" not in kv for kv in args.spark_conf):
        ap.error("--spark-conf takes KEY=VALUE")
    conf = dict(kv.split("=", 1) for kv in args.spark_conf)
    try:
        program = loader.load(cli.path(args.defs))
    except FeatureError as exc:
        return cli.fail(str(exc))
    events = args.events if "://" in args.events else str(cli.path(args.events))
    start = time.monotonic()
    try:
        if args.engine == "duckdb":
            from roundhouse.features.targets.batch import duckdb_target
            limit = None if args.memory_limit.lower() == "none" else args.memory_limit
            duckdb_target.materialize(program, events, str(cli.path(args.out)),
                                      threads=args.threads, memory_limit=limit)
        else:
            from roundhouse.features.targets.batch import spark_target
            spark_target.materialize(program, events, str(cli.path(args.out)),
                                     master=args.spark_master, conf=conf)
    except (EventsError, OSError, MemoryError) as exc:
        return cli.fail(f"materialize: {exc}")
    print(f"materialize: wrote {cli.path(args.out)} with {args.engine} in "
          f"{time.monotonic() - start:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
