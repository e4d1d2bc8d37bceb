"""bazel run //features:materialize -- --defs F.feat --events E.parquet --out O.parquet
                                      [--engine duckdb|spark]

Writes the training table: one row per driver event, ordered by seq, with seq, too_late, one
column per feature and the labels.
"""
from __future__ import annotations

import argparse
import sys
import time

from roundhouse.features.commands import cli
from roundhouse.features.language import loader
from roundhouse.features.language.errors import FeatureError
from roundhouse.features.transport.events import EventsError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="materialize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--defs", required=True, help="definition file (.feat)")
    ap.add_argument("--events", required=True, help="events Parquet file")
    ap.add_argument("--out", required=True, help="training table Parquet file to write")
    ap.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb")
    ap.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all)")
    args = ap.parse_args(argv)
    try:
        program = loader.load(cli.path(args.defs))
    except FeatureError as exc:
        return cli.fail(str(exc))
    start = time.monotonic()
    try:
        if args.engine == "duckdb":
            from roundhouse.features.targets.batch import duckdb_target
            duckdb_target.materialize(program, str(cli.path(args.events)), str(cli.path(args.out)),
                                     threads=args.threads)
        else:
            from roundhouse.features.targets.batch import spark_target
            spark_target.materialize(program, str(cli.path(args.events)), str(cli.path(args.out)))
    except (EventsError, OSError) as exc:
        return cli.fail(f"materialize: {exc}")
    print(f"materialize: wrote {cli.path(args.out)} with {args.engine} in "
          f"{time.monotonic() - start:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
