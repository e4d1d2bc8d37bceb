"""The bootstrap: determined by its seed, the platform's metrics exactly, paired across models."""

import numpy as np
import pytest

from roundhouse.platform import metrics
from roundhouse.platform.evaluation import bootstrap
from roundhouse.platform.evaluation.evaluate import EvaluationError, evaluate_scores
from roundhouse.platform.evaluation.settings import Settings


def synthetic(n=3000, rate=0.05, seed=0):
    """Labels, a weak model's scores and a clearly better model's, on the same rows."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (signal + rng.normal(size=n) > np.quantile(signal, 1 - rate) + 0.5).astype(int)
    weak = signal + 2.0 * rng.normal(size=n)
    strong = signal + 0.3 * rng.normal(size=n)
    return y, weak, strong


def test_resamples_are_determined_by_the_seed_and_stratified():
    y, _, _ = synthetic()
    first = list(bootstrap.resample_indices(y, 5, seed=11))
    again = list(bootstrap.resample_indices(y, 5, seed=11))
    other = list(bootstrap.resample_indices(y, 5, seed=12))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    for idx in first:  # as many rows, positives and negatives as the holdout has
        assert len(idx) == len(y) and y[idx].sum() == y.sum()


def test_on_a_resample_the_weighted_metrics_are_the_platform_metrics_on_the_resampled_rows():
    y, weak, _ = synthetic(n=2000)
    # Float32 scores rounded to 2 decimals: many ties, the case where the thresholds matter.
    scores = np.round(weak, 1).astype(np.float32)
    ranked = bootstrap.Ranked(y, scores)
    expected = metrics.binary_classification(y, scores)
    assert ranked.metrics() == {k: expected[k] for k in bootstrap.METRICS}
    for idx in bootstrap.resample_indices(y, 25, seed=3):
        counts = np.bincount(idx, minlength=len(y))
        expected = metrics.binary_classification(y[idx], scores[idx])
        assert ranked.metrics(counts) == {k: expected[k] for k in bootstrap.METRICS}


def test_the_same_seed_gives_the_same_result_and_intervals_hold_the_point_estimates():
    y, weak, strong = synthetic()
    settings = Settings(resamples=300, seed=5)
    result = evaluate_scores({"m-weak": weak, "m-strong": strong}, y, settings=settings)
    assert result == evaluate_scores({"m-weak": weak, "m-strong": strong}, y, settings=settings)
    assert result != evaluate_scores({"m-weak": weak, "m-strong": strong}, y,
                                     settings=Settings(resamples=300, seed=6))
    for model in result.models:
        for name in bootstrap.METRICS:
            e = model.metrics[name]
            assert e.low <= e.value <= e.high and e.low < e.high, (model.model_id, name, e)
    assert result.rows == len(y) and result.positives == int(y.sum())


def test_a_clearly_better_model_has_a_positive_paired_difference_whose_interval_excludes_zero():
    y, weak, strong = synthetic()
    result = evaluate_scores({"m-weak": weak, "m-strong": strong}, y,
                             settings=Settings(resamples=500, seed=0))
    for name in ("roc_auc", "pr_auc"):
        d = result.difference(name, "m-strong")
        assert d.baseline == "m-weak" and d.value > 0
        assert 0 < d.low <= d.value <= d.high
        assert d.share_positive == 1.0
    # The other way round, the difference is negative by as much.
    reverse = evaluate_scores({"m-strong": strong, "m-weak": weak}, y,
                              settings=Settings(resamples=500, seed=0))
    assert reverse.difference("roc_auc", "m-weak").value == pytest.approx(
        -result.difference("roc_auc", "m-strong").value)
    assert reverse.difference("roc_auc", "m-weak").high < 0


def test_differences_are_paired():
    y, weak, _ = synthetic()
    # The same scores under two names differ by exactly 0 on every resample: an unpaired
    # bootstrap would give an interval as wide as each model's own.
    result = evaluate_scores({"m-a": weak, "m-b": weak.copy()}, y, settings=Settings(resamples=200))
    for d in result.differences:
        assert (d.value, d.low, d.high, d.share_positive) == (0.0, 0.0, 0.0, 0.0)
    # Nearly the same model: the paired interval is far narrower than either model's.
    rng = np.random.default_rng(1)
    close = weak + 0.05 * rng.normal(size=len(weak))
    result = evaluate_scores({"m-a": weak, "m-b": close}, y, settings=Settings(resamples=200))
    d = result.difference("roc_auc", "m-b")
    own = result.model("m-a").metrics["roc_auc"]
    assert (d.high - d.low) < (own.high - own.low) / 3


def test_every_pair_or_each_against_the_first():
    y, weak, strong = synthetic()
    scores = {"m-a": weak, "m-b": strong, "m-c": (weak + strong) / 2}
    first = evaluate_scores(scores, y, settings=Settings(resamples=50))
    assert {(d.baseline, d.model) for d in first.differences} == {("m-a", "m-b"), ("m-a", "m-c")}
    every = evaluate_scores(scores, y, settings=Settings(resamples=50), compare="all")
    assert {(d.baseline, d.model) for d in every.differences} == {
        ("m-a", "m-b"), ("m-a", "m-c"), ("m-b", "m-c")}
    assert len(every.differences) == 3 * len(bootstrap.METRICS)


@pytest.mark.parametrize("y, words", [
    ([0, 0, 0, 0], "only label 0"),
    ([0, 1, 2, 1], "0/1 or boolean; it has 2"),
    ([0.0, 1.0, float("nan"), 1.0], "0/1 or boolean; it has nan"),
    (["a", "b", "a", "b"], "values of type"),
])
def test_labels_must_be_binary_with_both_classes(y, words):
    with pytest.raises(EvaluationError, match=words):
        evaluate_scores({"m-a": np.array([0.1, 0.2, 0.3, 0.4])}, np.array(y))


def test_non_finite_scores_are_refused():
    with pytest.raises(EvaluationError, match="model m-a: 1 of its 4 scores are not finite"):
        evaluate_scores({"m-a": np.array([0.1, np.nan, 0.3, 0.4])}, np.array([0, 1, 0, 1]))
