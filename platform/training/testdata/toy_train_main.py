"""A tiny workflow for the training service's tests: logistic regression on x1, x2 -> y.

Param `sleep_seconds` keeps it busy, to test cancel, time limits and service restarts. Its
`evaluate` adds a metric and a slice to evaluations (`toy_train --evaluate`).
"""

import sys
import time

from sklearn.linear_model import LogisticRegression

from roundhouse.platform.evaluation import slices
from roundhouse.platform.training import entry
from roundhouse.platform.training.workflow import Workflow


def train(train_df, holdout_df, params):
    print(f"[toy] training on {len(train_df)} rows", file=sys.stderr, flush=True)
    deadline = time.monotonic() + float(params.get("sleep_seconds", 0))
    while time.monotonic() < deadline:  # print while busy, so log copying can be seen
        print("[toy] still training", file=sys.stderr, flush=True)
        time.sleep(0.5)
    return LogisticRegression(C=float(params.get("C", 1.0))).fit(train_df[["x1", "x2"]], train_df["y"])


def evaluate(holdout_df, scores):
    """A workflow's own evaluation: one extra metric and one slice, for the service's tests."""
    return {"metrics": {"mean_score": float(scores.mean())},
            "slices": {"x2_sign": slices.by((holdout_df["x2"] > 0).map({True: "positive", False: "negative"}),
                                            holdout_df["y"], scores)}}


WORKFLOW = Workflow(name="toy", features=("x1", "x2"), label="y", train=train, evaluate=evaluate)


def no_default_request(args, home):
    sys.exit("toy_train: pass --request")


if __name__ == "__main__":
    sys.exit(entry.main(WORKFLOW, "//platform/training/testdata:toy_train", no_default_request))
