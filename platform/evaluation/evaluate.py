"""Score models on the same holdout rows and compare them, with bootstrap intervals.

    result = evaluate([challenger, champion], holdout_df, "is_fraud")
    result.difference("roc_auc", challenger.model_id)   # vs the first model

For each model: the platform's metrics (platform/metrics.binary_classification, the numbers
training records) with a percentile bootstrap interval each; for each pair of models, the
difference of each metric (the later model minus the earlier) with its interval and the share
of resamples in which it is above 0. The resamples are the same for every model
(bootstrap.py), so the differences are paired. `compare="first"` pairs every model with the
first (the baseline: the tagged model, say), `compare="all"` pairs every two.

A workflow's own `evaluate(holdout_df, scores)` (platform/training/workflow.py) adds metrics
and slices per model; the platform's metrics are computed regardless. Everything in an
EvaluationResult is JSON-serializable through to_dict() and back through from_dict().
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from roundhouse.platform import metrics as platform_metrics
from roundhouse.platform.evaluation import bootstrap
from roundhouse.platform.evaluation.settings import COMPARE, Settings

COUNTS = ("holdout_rows", "holdout_positives")  # the same for every model: kept once, not per model

WorkflowEvaluate = Callable[[pd.DataFrame, np.ndarray], Mapping[str, Any]]


class EvaluationError(ValueError):
    """The models, data or settings cannot be evaluated as asked."""


class Scorable(Protocol):
    ref: str
    model_id: str

    def predict(self, frame: pd.DataFrame) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class Estimate:
    value: float
    low: float | None = None   # the bootstrap interval; None for a metric without one
    high: float | None = None


@dataclasses.dataclass(frozen=True)
class ModelResult:
    ref: str
    model_id: str
    metrics: dict[str, Estimate]
    # From the workflow's evaluate: name -> value, and slice -> value -> name -> value.
    workflow_metrics: dict[str, float | None] = dataclasses.field(default_factory=dict)
    slices: dict[str, dict[str, dict[str, float | None]]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Difference:
    metric: str
    model: str      # model ID
    baseline: str   # model ID; value = metric(model) - metric(baseline)
    value: float
    low: float
    high: float
    share_positive: float  # share of resamples where the difference is > 0


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    label: str
    rows: int
    positives: int
    settings: Settings
    compare: str
    models: list[ModelResult]
    differences: list[Difference]

    def model(self, ref_or_id: str) -> ModelResult:
        for m in self.models:
            if ref_or_id in (m.ref, m.model_id):
                return m
        raise KeyError(ref_or_id)

    def difference(self, metric: str, model: str, baseline: str | None = None) -> Difference:
        """metric(model) - metric(baseline), baseline by default the first model."""
        model_id = self.model(model).model_id
        baseline_id = self.model(baseline).model_id if baseline else self.models[0].model_id
        for d in self.differences:
            if (d.metric, d.model, d.baseline) == (metric, model_id, baseline_id):
                return d
        raise KeyError((metric, model, baseline))

    def to_dict(self) -> dict:
        return {
            "label": self.label, "rows": self.rows, "positives": self.positives,
            "bootstrap": {**dataclasses.asdict(self.settings), "stratified": True,
                          "interval": "percentile"},
            "compare": self.compare,
            "models": [{"ref": m.ref, "model_id": m.model_id,
                        "metrics": {k: dataclasses.asdict(v) for k, v in m.metrics.items()},
                        "workflow_metrics": m.workflow_metrics, "slices": m.slices}
                       for m in self.models],
            "differences": [dataclasses.asdict(d) for d in self.differences],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EvaluationResult":
        b = d["bootstrap"]
        return cls(
            label=d["label"], rows=d["rows"], positives=d["positives"],
            settings=Settings(resamples=b["resamples"], seed=b["seed"], confidence=b["confidence"]),
            compare=d["compare"],
            models=[ModelResult(ref=m["ref"], model_id=m["model_id"],
                                metrics={k: Estimate(**v) for k, v in m["metrics"].items()},
                                workflow_metrics=m.get("workflow_metrics") or {},
                                slices=m.get("slices") or {}) for m in d["models"]],
            differences=[Difference(**x) for x in d["differences"]])


def evaluate(models: Sequence[Scorable], frame: pd.DataFrame, label: str, *,
             settings: Settings = Settings(), compare: str = "first",
             workflow_evaluate: WorkflowEvaluate | None = None,
             workflow_name: str = "the workflow") -> EvaluationResult:
    """Score each model on every row of `frame` and evaluate them against `frame[label]`."""
    if label not in frame.columns:
        raise EvaluationError(f"label: no column {label!r} in the data; it has "
                              f"{', '.join(map(str, frame.columns))}")
    ids = [m.model_id for m in models]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise EvaluationError(f"models: {', '.join(twice)} listed more than once")
    scores = {m.model_id: m.predict(frame) for m in models}
    refs = {m.model_id: m.ref for m in models}
    result = evaluate_scores(scores, frame[label].to_numpy(), label=label, settings=settings,
                             compare=compare, refs=refs)
    if workflow_evaluate is None:
        return result
    extended = []
    for m in result.models:
        try:
            out = workflow_evaluate(frame, scores[m.model_id])
        except Exception as e:
            raise EvaluationError(f"{workflow_name}'s evaluate failed on model {m.model_id}: "
                                  f"{type(e).__name__}: {e}") from e
        extra, slices = _workflow_output(out, workflow_name)
        extended.append(dataclasses.replace(m, workflow_metrics=extra, slices=slices))
    return dataclasses.replace(result, models=extended)


def evaluate_scores(scores: Mapping[str, np.ndarray], y, *, label: str = "", settings: Settings = Settings(),
                    compare: str = "first", refs: Mapping[str, str] | None = None) -> EvaluationResult:
    """The same, from scores already computed: model ID -> one score per row, in order (the
    first is the baseline of compare="first")."""
    _check_settings(settings, compare)
    if not scores:
        raise EvaluationError("models: name at least one model")
    try:
        y = bootstrap.labels(y)
    except ValueError as e:
        raise EvaluationError(str(e)) from None
    scores = {name: np.asarray(s, dtype=np.float64) for name, s in scores.items()}
    for name, s in scores.items():
        if s.shape != y.shape:
            raise EvaluationError(f"model {name}: {s.shape[0] if s.ndim else 0} scores for {len(y)} rows")
        if not np.isfinite(s).all():
            raise EvaluationError(f"model {name}: {int((~np.isfinite(s)).sum())} of its {len(s)} scores are "
                                  "not finite numbers")
    try:
        points = {name: platform_metrics.binary_classification(y, s) for name, s in scores.items()}
        resampled = bootstrap.distributions(y, scores, settings)
    except ValueError as e:
        raise EvaluationError(str(e)) from None
    names = list(scores)
    models = []
    for name in names:
        estimates = {}
        for metric, value in points[name].items():
            if metric in COUNTS:
                continue
            if metric in resampled[name]:
                low, high = bootstrap.interval(resampled[name][metric], settings.confidence)
                estimates[metric] = Estimate(float(value), low, high)
            else:
                estimates[metric] = Estimate(float(value))
        models.append(ModelResult(ref=(refs or {}).get(name, name), model_id=name, metrics=estimates))
    pairs = ([(names[0], other) for other in names[1:]] if compare == "first" else
             [(a, b) for i, a in enumerate(names) for b in names[i + 1:]])
    differences = []
    for baseline, model in pairs:
        for metric in bootstrap.METRICS:
            delta = resampled[model][metric] - resampled[baseline][metric]
            low, high = bootstrap.interval(delta, settings.confidence)
            differences.append(Difference(
                metric=metric, model=model, baseline=baseline,
                value=float(points[model][metric] - points[baseline][metric]), low=low, high=high,
                share_positive=float(np.mean(delta > 0))))
    return EvaluationResult(label=label, rows=int(len(y)), positives=int(y.sum()), settings=settings,
                            compare=compare, models=models, differences=differences)


def _check_settings(settings: Settings, compare: str) -> None:
    if compare not in COMPARE:
        raise EvaluationError(f"compare: {compare!r} is not one of {', '.join(COMPARE)}")
    if not (isinstance(settings.resamples, int) and settings.resamples >= 1):
        raise EvaluationError(f"bootstrap.resamples: must be a positive whole number, got {settings.resamples!r}")
    if not (0.0 < settings.confidence < 1.0):
        raise EvaluationError(f"bootstrap.confidence: must be between 0 and 1, got {settings.confidence!r}")


def _number(value: Any, where: str) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise EvaluationError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)  # a count stays a whole number
    value = float(value)
    return value if math.isfinite(value) else None  # JSON has no NaN: an undefined metric is null


def _workflow_output(out: Any, name: str) -> tuple[dict, dict]:
    """A workflow's evaluate result, checked: {"metrics": {name: number}, "slices": {slice:
    {value: {name: number}}}}, both optional; numbers may be null (undefined on a slice)."""
    where = f"{name}'s evaluate"
    if not isinstance(out, Mapping) or set(out) - {"metrics", "slices"}:
        raise EvaluationError(f"{where} must return a mapping with keys 'metrics' and/or 'slices', "
                              f"got {out!r:.200}")
    extra = {str(k): _number(v, f"{where}: metrics[{k!r}]") for k, v in (out.get("metrics") or {}).items()}
    slices = {}
    for dimension, groups in (out.get("slices") or {}).items():
        if not isinstance(groups, Mapping):
            raise EvaluationError(f"{where}: slices[{dimension!r}] must map slice values to metrics")
        slices[str(dimension)] = {}
        for value, values in groups.items():
            if not isinstance(values, Mapping):
                raise EvaluationError(f"{where}: slices[{dimension!r}][{value!r}] must map metric names "
                                      "to numbers")
            slices[str(dimension)][str(value)] = {
                str(k): _number(v, f"{where}: slices[{dimension!r}][{value!r}][{k!r}]")
                for k, v in values.items()}
    return extra, slices
