"""Meta-models as scorables: threshold, dispatch and combination nodes over loaded models.

The specs and their checks live with the model store (platform/registry/meta_models.py);
this module runs them. A node's `leaves` are the trained models whose predictions produced
its score, so every response can name them.
"""

from __future__ import annotations

import dataclasses
import math

from roundhouse.platform.api import model_pb2
from roundhouse.platform.registry import meta_models
from roundhouse.platform.registry.store import ModelStore
from roundhouse.scoring import models
from roundhouse.scoring.models import LoadError, Scorable, Scored

MAX_DEPTH = 16  # nested meta-models; far more than any real composition


@dataclasses.dataclass(frozen=True)
class ThresholdNode:
    model_id: str
    record: model_pb2.ModelRecord
    spec: meta_models.Threshold
    child: Scorable

    def score(self, fields, features):
        s = self.child.score(fields, features)
        return Scored(s.score, self.spec.decide(s.score), s.leaves)


@dataclasses.dataclass(frozen=True)
class DispatchNode:
    model_id: str
    record: model_pb2.ModelRecord
    spec: meta_models.Dispatch
    children: dict  # model ID -> Scorable

    def score(self, fields, features):
        for rule in self.spec.rules:
            if fields.get(rule.field) in rule.values:
                return self.children[rule.model].score(fields, features)
        return self.children[self.spec.default].score(fields, features)


def _logit(p: float) -> float:
    p = min(max(p, 1e-15), 1 - 1e-15)
    return math.log(p / (1 - p))


@dataclasses.dataclass(frozen=True)
class CombinationNode:
    model_id: str
    record: model_pb2.ModelRecord
    spec: meta_models.Combination
    children: dict

    def score(self, fields, features):
        parts = [self.children[m].score(fields, features) for m in self.spec.models]
        scores = [p.score for p in parts]
        if self.spec.method == "max":
            value = max(scores)
        elif self.spec.method == "mean":
            value = sum(w * s for w, s in zip(self.spec.weights, scores)) / sum(self.spec.weights)
        else:  # stack: a logistic model over the models' log-odds
            z = self.spec.intercept + sum(w * _logit(s) for w, s in zip(self.spec.weights, scores))
            value = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
        leaves = tuple(dict.fromkeys(leaf for p in parts for leaf in p.leaves))
        return Scored(value, None, leaves)


def load(store: ModelStore, model_id: str, driver_fields=None, _path=()) -> Scorable:
    """A stored model or meta-model, with everything it refers to, ready to score.
    `driver_fields`: the fields a dispatch rule may read (the driver stream's)."""
    if model_id in _path:
        raise LoadError("meta-model cycle: " + " -> ".join(_path + (model_id,)))
    if len(_path) >= MAX_DEPTH:
        raise LoadError(f"meta-models nested more than {MAX_DEPTH} deep at {model_id}")
    record = store.get(model_id)
    if not record.meta.kind:
        return models.load_leaf(store, record)
    try:
        spec = meta_models.load(store, record)
    except meta_models.SpecError as e:
        raise LoadError(f"meta-model {model_id}: {e}") from None
    children = {c: load(store, c, driver_fields, _path + (model_id,)) for c in spec.children()}
    if isinstance(spec, meta_models.Threshold):
        return ThresholdNode(model_id, record, spec, children[spec.model])
    if isinstance(spec, meta_models.Dispatch):
        for rule in spec.rules:
            if driver_fields is not None and rule.field not in driver_fields:
                raise LoadError(f"meta-model {model_id}: dispatch rule reads {rule.field!r}, which is not "
                                f"a field of the scored events ({', '.join(sorted(driver_fields))})")
        return DispatchNode(model_id, record, spec, children)
    return CombinationNode(model_id, record, spec, children)
