"""Bootstrap distributions of the platform's metrics, paired across models.

One resample is one draw of holdout rows with replacement, stratified by label: as many
positives as the holdout has, drawn among its positives, and likewise for negatives, so every
resample has both classes (a plain bootstrap of a holdout with a few dozen frauds would
sometimes have none, and no AUC). The draws come from numpy's PCG64 generator seeded by
`seed` alone, so a seed always gives the same resamples, and every model is scored on the
same resampled rows: the difference between two models on one resample is a paired
difference, and its spread is the spread of the difference, not of each model.

A resample is a vector of counts (how often each row was drawn), and the metrics are computed
on the counts as weights over the rows sorted once per model, which makes a resample cost a
few linear passes instead of a sort. The weighted computation follows scikit-learn's curve
code step for step (the same thresholds, the same dropped ROC points, the same sums), so on
a resample it gives exactly what platform/metrics.py gives on the resampled rows
(bootstrap_test checks that).
"""

from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np
from sklearn import metrics as skm

from roundhouse.platform.evaluation.settings import Settings

# The platform's metrics (platform/metrics.binary_classification) that get intervals.
METRICS = ("roc_auc", "pr_auc", "recall_at_1pct_fpr")
MAX_FPR = 0.01


def labels(y) -> np.ndarray:
    """A 0/1 label vector as bool; ValueError unless it has only 0/1 (or booleans) and both."""
    y = np.asarray(y)
    if y.dtype != bool:
        numeric = y.dtype.kind in "iuf"
        other = ~np.isin(y, (0, 1)) if numeric else None
        if not numeric or other.any():
            shown = (", ".join(map(str, np.unique(y[other])[:3])) if numeric
                     else f"values of type {y.dtype}")
            raise ValueError(f"the label must be 0/1 or boolean; it has {shown}")
        y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError(f"the holdout has only label {int(y[0]) if len(y) else '-'} in {len(y)} rows: "
                         "metrics need both classes; widen the holdout or check the label column")
    return y


def resample_indices(y, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The row indices of each stratified resample, in order, determined by `seed` alone."""
    y = labels(y)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    rng = np.random.Generator(np.random.PCG64(seed))
    for _ in range(resamples):
        yield np.concatenate([pos[rng.integers(0, len(pos), len(pos))],
                              neg[rng.integers(0, len(neg), len(neg))]])


class Ranked:
    """One model's scores sorted once; metrics for any row weights (bootstrap counts)."""

    def __init__(self, y, scores):
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 1 or len(s) != len(y):
            raise ValueError(f"expected {len(y)} scores, got an array of shape {s.shape}")
        if not np.isfinite(s).all():
            raise ValueError(f"{int((~np.isfinite(s)).sum())} scores are not finite numbers")
        self.order = np.argsort(-s, kind="stable")
        ranked = s[self.order]
        self.y = np.asarray(y, dtype=np.int64)[self.order]
        # Where each run of equal scores starts: one threshold per distinct score.
        self.starts = np.r_[0, np.flatnonzero(np.diff(ranked)) + 1]

    def metrics(self, counts: np.ndarray | None = None) -> dict[str, float]:
        """METRICS with row i counted counts[i] times (None: once each)."""
        c = np.ones(len(self.y), dtype=np.int64) if counts is None else counts[self.order]
        total = np.add.reduceat(c, self.starts)
        positive = np.add.reduceat(c * self.y, self.starts)
        drawn = total > 0  # scikit-learn drops rows of weight 0 before finding thresholds
        tps = np.cumsum(positive[drawn]).astype(np.float64)
        fps = np.cumsum(total[drawn] - positive[drawn]).astype(np.float64)
        fpr, tpr = _roc(fps, tps)
        return {
            "roc_auc": float(skm.auc(fpr, tpr)),
            "pr_auc": _average_precision(fps, tps),
            "recall_at_1pct_fpr": float(tpr[fpr <= MAX_FPR].max()),
        }


def _roc(fps: np.ndarray, tps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # sklearn.metrics.roc_curve(drop_intermediate=True): drop points where neither count turns.
    if len(fps) > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps = fps[keep], tps[keep]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    return fps / fps[-1], tps / tps[-1]


def _average_precision(fps: np.ndarray, tps: np.ndarray) -> float:
    # sklearn.metrics.average_precision_score: the step integral of precision_recall_curve.
    ps = tps + fps
    precision = np.r_[(tps / ps)[::-1], 1.0]
    recall = np.r_[(tps / tps[-1])[::-1], 0.0]
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def distributions(y, scores: Mapping[str, np.ndarray], settings: Settings = Settings()
                  ) -> dict[str, dict[str, np.ndarray]]:
    """name -> metric -> its value on each resample (length settings.resamples), with every
    model scored on the same resamples."""
    y = labels(y)
    ranked = {name: Ranked(y, s) for name, s in scores.items()}
    out = {name: {m: np.empty(settings.resamples) for m in METRICS} for name in scores}
    for b, idx in enumerate(resample_indices(y, settings.resamples, settings.seed)):
        counts = np.bincount(idx, minlength=len(y))
        for name, r in ranked.items():
            for metric, value in r.metrics(counts).items():
                out[name][metric][b] = value
    return out


def interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The two-sided percentile interval holding `confidence` of the resampled values."""
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)
