"""Holdout metrics the platform records for every binary classifier it trains."""

import numpy as np
from sklearn import metrics as skm


def recall_at_fpr(y_true, y_score, max_fpr: float) -> float:
    """Largest true-positive rate reachable with a false-positive rate <= max_fpr."""
    fpr, tpr, _ = skm.roc_curve(y_true, y_score)
    return float(tpr[fpr <= max_fpr].max())


def binary_classification(y_true, y_score) -> dict:
    y_true = np.asarray(y_true).astype(int)
    y_score = np.asarray(y_score, dtype=float)
    if y_true.min() == y_true.max():
        raise ValueError(
            f"holdout has only label {y_true[0]} in {len(y_true)} rows: metrics need both classes; "
            "widen the holdout or check the label column")
    return {
        "roc_auc": float(skm.roc_auc_score(y_true, y_score)),
        "pr_auc": float(skm.average_precision_score(y_true, y_score)),
        "recall_at_1pct_fpr": recall_at_fpr(y_true, y_score, 0.01),
        "holdout_rows": int(len(y_true)),
        "holdout_positives": int(y_true.sum()),
    }
