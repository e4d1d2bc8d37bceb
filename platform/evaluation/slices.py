"""Per-slice metrics for a workflow's own `evaluate`: the platform's metrics on each group.

    def evaluate(holdout_df, scores):
        return {"slices": {"country": slices.by(holdout_df["country"], holdout_df["is_fraud"], scores)}}

A slice with only one class has no AUC: it gets its rows and positives and null metrics,
rather than an error, since small slices are the ones worth seeing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from roundhouse.platform import metrics as platform_metrics

METRICS = ("roc_auc", "pr_auc", "recall_at_1pct_fpr")


def by(groups, y, scores, *, min_rows: int = 1) -> dict[str, dict[str, float | int | None]]:
    """str(group value) -> {rows, positives, roc_auc, pr_auc, recall_at_1pct_fpr}, for each
    value of `groups` (one per row, like `y` and `scores`) with at least `min_rows` rows.
    Rows whose group is null form no slice."""
    groups = pd.Series(np.asarray(groups, dtype=object)).reset_index(drop=True)
    y = np.asarray(y).astype(int)
    scores = np.asarray(scores, dtype=float)
    out = {}
    for value, index in groups.groupby(groups, sort=True, dropna=True).groups.items():
        rows = np.asarray(index)
        if len(rows) < min_rows:
            continue
        labels = y[rows]
        entry = {"rows": int(len(rows)), "positives": int(labels.sum())}
        if 0 < labels.sum() < len(labels):
            measured = platform_metrics.binary_classification(labels, scores[rows])
            entry.update({m: measured[m] for m in METRICS})
        else:
            entry.update({m: None for m in METRICS})
        out[str(value)] = entry
    return out
