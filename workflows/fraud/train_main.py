"""`bazel run //workflows/fraud:train`: generate payments, build features, train, store.

Ends by printing one JSON line: {"model_id", "git_sha", "git_dirty", "metrics", "model_path"}.
Data and models live under $ROUNDHOUSE_HOME (default ~/.roundhouse), outside the checkout,
so a run never makes the tree it was built from dirty.
"""

import argparse
import datetime as dt
import json
import os
import pathlib
import sys
import tempfile

import pyarrow.parquet as pq

from roundhouse.platform import build_info
from roundhouse.platform.api import training_pb2
from roundhouse.platform.registry import store as store_lib
from roundhouse.platform.training import runner
from roundhouse.workflows.fraud import features, synth, workflow

BAZEL_TARGET = "//workflows/fraud:train"


def default_home() -> pathlib.Path:
    return pathlib.Path(os.environ.get("ROUNDHOUSE_HOME") or pathlib.Path.home() / ".roundhouse")


def write_parquet_atomically(table, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def build_request(table_path: pathlib.Path, cfg: synth.Config) -> training_pb2.TrainingRequest:
    request = training_pb2.TrainingRequest(workflow="fraud")
    request.metadata.owner = os.environ.get("USER", "local")
    request.metadata.description = "fraud model on synthetic payments"
    request.data.parquet.uri = str(table_path)
    request.data.parquet.columns.extend(features.FEATURES)
    request.data.parquet.label_columns.append(features.LABEL)
    # Hold out the last fifth of the charge period; disputes for it keep arriving for 90
    # days after, so its labels are as mature as the training rows'.
    cutoff = dt.datetime.fromtimestamp(synth.START_US / 1e6, dt.timezone.utc) + dt.timedelta(days=cfg.days * 0.8)
    request.holdout.time_cutoff.column = "event_time"
    request.holdout.time_cutoff.cutoff.FromDatetime(cutoff)
    return request


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charges", type=int, default=synth.Config.charges)
    parser.add_argument("--days", type=int, default=synth.Config.days)
    parser.add_argument("--seed", type=int, default=synth.Config.seed)
    parser.add_argument("--home", type=pathlib.Path, default=None, help="data and model store root")
    parser.add_argument("--params", default="{}", help="JSON object overriding the workflow's params")
    args = parser.parse_args(argv)
    try:
        params = json.loads(args.params)
        if not isinstance(params, dict):
            raise ValueError("not an object")
    except ValueError as e:
        parser.error(f"--params must be a JSON object: {e}")
    home = args.home or default_home()
    cfg = synth.Config(charges=args.charges, days=args.days, seed=args.seed)

    print(f"[train] generating {cfg.charges:,} charges over {cfg.days} days (seed {cfg.seed})", file=sys.stderr)
    events = synth.generate(cfg)
    data_dir = home / "data" / "fraud"
    write_parquet_atomically(events, data_dir / f"events-seed{cfg.seed}-n{cfg.charges}-d{cfg.days}.parquet")
    print(f"[train] computing features for {events.num_rows:,} events", file=sys.stderr)
    table_path = data_dir / f"table-seed{cfg.seed}-n{cfg.charges}-d{cfg.days}.parquet"
    write_parquet_atomically(features.training_table(events), table_path)

    request = build_request(table_path, cfg)
    request.params.update(params)
    stored = runner.run(request, workflow.WORKFLOW, store_lib.open_store(str(home)),
                        build_info.current(), BAZEL_TARGET)
    print(json.dumps(runner.summary(stored)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
