"""The parity test run for one definition file (generated per file by parity.bzl):

* generated event logs (ties on event_time, window edges, late events within and beyond the
  allowed lateness, null keys and values, keys seen once, long gaps) go through the batch target
  (DuckDB) and the online target (memory store); the outputs must agree per the contract;
* a smaller log is also held against the naive reference evaluator, so the two targets cannot
  agree on a shared mistake;
* with --spark-events N, the Spark target (labels included) must give DuckDB's table;
* the logs are checked to really contain the corners they are meant to cover.

Run as `parity_test_main.py --defs FILE.feat [--events N] [--seeds 1,2,3]`.
"""
from __future__ import annotations

import argparse
import os
import sys

import pytest

from roundhouse.features.testing import parity


def _params():
    seeds = [int(s) for s in os.environ.get("PARITY_SEEDS", "1").split(",")]
    return seeds


@pytest.fixture(scope="module")
def program():
    from roundhouse.features.language import loader
    return loader.load(os.environ["PARITY_DEFS"])


@pytest.mark.parametrize("seed", _params())
def test_batch_and_online_agree(program, seed):
    n = int(os.environ.get("PARITY_EVENTS", "3000"))
    report = parity.run(program, n, seed)
    assert not report.differences, "\n".join(report.differences)
    parity.assert_coverage(report)


@pytest.mark.parametrize("seed", _params())
def test_both_targets_match_the_reference_on_a_small_log(program, seed):
    report = parity.run(program, 250, seed + 1000, reference=True)
    assert not report.differences, "\n".join(report.differences)


if os.environ.get("PARITY_SPARK") == "1":  # defined only when asked for: never skipped
    @pytest.mark.parametrize("seed", _params()[:1])
    def test_spark_agrees_with_duckdb_labels_included(program, seed):
        from roundhouse.features.targets.batch import spark_target
        from roundhouse.features.transport import events
        from roundhouse.features.testing import gen
        from roundhouse.features.testing.compare import differences

        n = int(os.environ["PARITY_SPARK_EVENTS"])
        table = events.conform(gen.generate(program, n, seed), program)
        got = spark_target.run(program, table, labels=True).to_pylist()
        want = parity.batch_rows(program, table, labels=True)
        diffs = differences(got, want, parity.exact_columns(program))
        assert not diffs, "\n".join(diffs)


def main(argv) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--defs", required=True)
    ap.add_argument("--events", default="3000")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--spark-events", type=int, default=0,
                    help="also run the Spark target on a log of this many events (0: no)")
    args, rest = ap.parse_known_args(argv)
    os.environ["PARITY_SPARK"] = "1" if args.spark_events else "0"
    os.environ["PARITY_SPARK_EVENTS"] = str(args.spark_events)
    os.environ["PARITY_DEFS"] = os.path.abspath(args.defs)
    os.environ["PARITY_EVENTS"] = args.events
    os.environ["PARITY_SEEDS"] = args.seeds
    return int(pytest.main(["-p", "no:cacheprovider", "--import-mode=importlib", "-q", "-ra",
                            "--rootdir", os.path.dirname(os.path.abspath(__file__)),
                            os.path.abspath(__file__)] + rest))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
