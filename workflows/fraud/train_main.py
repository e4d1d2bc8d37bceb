"""`bazel run //workflows/fraud:train`: generate payments, build features, train, store.

With no --request, the run makes its own data: a synthetic payments log, its training table
(features and label), and the request that trains on it. Data and models live under
$ROUNDHOUSE_HOME (default ~/.roundhouse), outside the checkout, so a run never makes the tree
it was built from dirty. Ends by printing one JSON line:
{"model_id", "git_sha", "git_dirty", "metrics", "model_path"}.
"""

import datetime as dt
import os
import pathlib
import sys

import pyarrow.parquet as pq

from roundhouse.platform import files
from roundhouse.platform.api import training_pb2
from roundhouse.platform.training import entry
from roundhouse.workflows.fraud import features, synth, workflow

BAZEL_TARGET = "//workflows/fraud:train"


def add_arguments(parser):
    parser.add_argument("--charges", type=int, default=synth.Config.charges)
    parser.add_argument("--days", type=int, default=synth.Config.days)
    parser.add_argument("--seed", type=int, default=synth.Config.seed)


def request_for(table_path: pathlib.Path, cfg: synth.Config) -> training_pb2.TrainingRequest:
    request = training_pb2.TrainingRequest(workflow="fraud")
    request.metadata.owner = os.environ.get("USER", "local")
    request.metadata.description = "fraud model on synthetic payments"
    request.data.parquet.uri = str(table_path)
    request.data.parquet.columns.extend(features.FEATURES)
    request.data.parquet.label_columns.append(features.LABEL)
    # Hold out the last fifth of the charge period; disputes for it keep arriving for 90
    # days after, so its labels are as mature as the training rows'.
    start = dt.datetime.fromtimestamp(synth.START_US / 1e6, dt.timezone.utc)
    request.holdout.time_cutoff.column = "event_time"
    request.holdout.time_cutoff.cutoff.FromDatetime(start + dt.timedelta(days=cfg.days * 0.8))
    return request


def default_request(args, home: pathlib.Path) -> training_pb2.TrainingRequest:
    cfg = synth.Config(charges=args.charges, days=args.days, seed=args.seed)
    print(f"[train] generating {cfg.charges:,} charges over {cfg.days} days (seed {cfg.seed})", file=sys.stderr)
    events = synth.generate(cfg)
    data_dir = home / "data" / "fraud"
    name = f"seed{cfg.seed}-n{cfg.charges}-d{cfg.days}.parquet"
    events_path = data_dir / f"events-{name}"
    files.write_atomically(events_path, lambda tmp: pq.write_table(events, tmp))
    print(f"[train] materializing features/defs/fraud.feat over {events.num_rows:,} events", file=sys.stderr)
    table_path = data_dir / f"table-{name}"
    table = features.training_table(events_path)
    files.write_atomically(table_path, lambda tmp: pq.write_table(table, tmp))
    return request_for(table_path, cfg)


if __name__ == "__main__":
    sys.exit(entry.main(workflow.WORKFLOW, BAZEL_TARGET, default_request, add_arguments,
                        description=__doc__.splitlines()[0]))
