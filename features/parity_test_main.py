"""The parity test run for one definition file (generated per file by parity.bzl):

* generated event logs (ties on event_time, window edges, late events within and beyond the
  allowed lateness, null keys and values, keys seen once, long gaps) go through the batch target
  (DuckDB) and the online target (memory store); the outputs must agree per the contract;
* a smaller log is also held against the naive reference evaluator, so the two targets cannot
  agree on a shared mistake;
* the logs are checked to really contain the corners they are meant to cover.

Run as `parity_test_main.py --defs FILE.feat [--events N] [--seeds 1,2,3]`.
"""
from __future__ import annotations

import argparse
import os
import sys

import pytest

from roundhouse.features import parity


def _params():
    seeds = [int(s) for s in os.environ.get("PARITY_SEEDS", "1").split(",")]
    return seeds


@pytest.fixture(scope="module")
def program():
    from roundhouse.features import lang
    return lang.load(os.environ["PARITY_DEFS"])


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


def main(argv) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--defs", required=True)
    ap.add_argument("--events", default="3000")
    ap.add_argument("--seeds", default="1,2,3")
    args, rest = ap.parse_known_args(argv)
    os.environ["PARITY_DEFS"] = os.path.abspath(args.defs)
    os.environ["PARITY_EVENTS"] = args.events
    os.environ["PARITY_SEEDS"] = args.seeds
    return int(pytest.main(["-p", "no:cacheprovider", "--import-mode=importlib", "-q", "-ra",
                            "--rootdir", os.path.dirname(os.path.abspath(__file__)),
                            os.path.abspath(__file__)] + rest))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
