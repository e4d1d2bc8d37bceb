import numpy as np
import pytest

from roundhouse.platform import metrics


def test_perfect_ranking():
    m = metrics.binary_classification([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == 1.0 and m["recall_at_1pct_fpr"] == 1.0
    assert m["holdout_rows"] == 4 and m["holdout_positives"] == 2


def test_recall_at_fpr_counts_only_thresholds_within_budget():
    # 100 negatives, 10 positives; 5 positives outrank every negative, the other 5 sit
    # below two negatives: reaching them costs an FPR of 2%.
    y = np.array([0] * 100 + [1] * 10)
    s = np.concatenate([np.linspace(0, 0.5, 98), [0.95, 0.96], np.full(5, 0.99), np.full(5, 0.9)])
    assert metrics.recall_at_fpr(y, s, 0.0) == 0.5
    assert metrics.recall_at_fpr(y, s, 0.01) == 0.5
    assert metrics.recall_at_fpr(y, s, 0.02) == 1.0


def test_single_class_holdout_is_a_clear_error():
    with pytest.raises(ValueError, match="only label 0"):
        metrics.binary_classification([0, 0, 0], [0.1, 0.2, 0.3])
