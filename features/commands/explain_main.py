"""bazel run //features:explain -- FILE.feat [--target online|batch|all] [--events TABLE]

Prints what a definition file compiles to, for a person to read:
* online: the Python program the online target generates and runs (features/targets/online/
  codegen.py): per-key state, one branch per stream, comments naming the feature and the
  aggregation each block computes;
* batch: the DuckDB query the batch target runs over the events table (`--events`, a SQL
  table expression; default `events`), labels included, pretty-printed (a clause or
  expression per line; the query that runs is the same, on one line).
Each part starts with a header line that is a comment in its language (`#`, `--`). The path is
relative to where bazel was run. An error in the file prints with its file, line and column;
exit status 1.
"""
from __future__ import annotations

import argparse
import sys

from roundhouse.features.commands import cli
from roundhouse.features.language import loader
from roundhouse.features.language.errors import FeatureError
from roundhouse.features.targets.batch import duckdb_target, sql
from roundhouse.features.targets.online.program import OnlineProgram

ONLINE_HEADER = "# ==== online program (Python)"
BATCH_HEADER = "-- ==== batch query (DuckDB SQL)"


def online_source(program) -> str:
    """The online target's generated program."""
    return OnlineProgram(program).source


def batch_sql(program, events: str) -> str:
    """The batch target's DuckDB query (labels included) over the table expression `events`,
    pretty-printed."""
    query = duckdb_target.BatchCompiler(program).query(events)
    return sql.render(query, "duckdb", pretty=True).rstrip().rstrip(";")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="explain", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("defs", help="definition file (.feat)")
    ap.add_argument("--target", choices=["online", "batch", "all"], default="all")
    ap.add_argument("--events", default="events",
                    help="the SQL table expression the batch query reads (default: events)")
    args = ap.parse_args(argv)
    try:
        program = loader.load(cli.path(args.defs))
    except FeatureError as exc:
        return cli.fail(str(exc))
    parts = []
    if args.target in ("online", "all"):
        parts.append(f"{ONLINE_HEADER}: {args.defs} ====\n{online_source(program).rstrip()}\n")
    if args.target in ("batch", "all"):
        parts.append(f"{BATCH_HEADER} over {args.events}: {args.defs} ====\n"
                     f"{batch_sql(program, args.events)};\n")
    sys.stdout.write("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
