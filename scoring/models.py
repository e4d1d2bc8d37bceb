"""Models as the scorer runs them: loaded from the model store, scoring one event's features.

Every servable thing is a `Scorable`: a leaf model (a tree ensemble from its serving form, or
any other stored model through its own predict_proba) or a meta-model over other scorables
(scoring/meta.py). A scorable reads the features it needs by column name from the features
served for the event, and the event's own fields (a dispatch rule reads those).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Protocol

import numpy as np

from roundhouse.platform.api import model_pb2
from roundhouse.platform.registry import artifacts, tree_arrays
from roundhouse.platform.registry.store import ModelStore


@dataclasses.dataclass(frozen=True)
class Scored:
    score: float
    decision: str | None
    leaves: tuple[str, ...]  # the leaf models whose predictions produced the score


class Scorable(Protocol):
    model_id: str
    record: model_pb2.ModelRecord

    def score(self, fields: Mapping, features: Mapping) -> Scored:
        ...


class LoadError(RuntimeError):
    """A model that cannot be served, and why."""


def vector(columns, features: Mapping) -> np.ndarray:
    """The model's input row: its columns in training order, null as NaN (missing)."""
    return np.array([np.nan if (v := features[c]) is None else v for c in columns], dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class TreeModel:
    """A tree ensemble predicted from its flat node arrays (platform/registry/tree_arrays)."""

    model_id: str
    record: model_pb2.ModelRecord
    ensemble: tree_arrays.TreeEnsemble

    def score(self, fields, features):
        x = vector(self.record.feature_set.columns, features)
        return Scored(float(self.ensemble.predict_one(x)), None, (self.model_id,))


@dataclasses.dataclass(frozen=True)
class EstimatorModel:
    """Any other stored model, through its own predict_proba (scikit-learn's convention)."""

    model_id: str
    record: model_pb2.ModelRecord
    estimator: object

    def score(self, fields, features):
        x = vector(self.record.feature_set.columns, features).reshape(1, -1).astype(np.float64)
        return Scored(float(self.estimator.predict_proba(x)[0, 1]), None, (self.model_id,))


def load_leaf(store: ModelStore, record: model_pb2.ModelRecord) -> Scorable:
    """A trained model: its serving form when the store has one, else converted now (models
    stored before serving forms existed), else the deserialized estimator."""
    mid, fmt = record.model_id, record.artifact.format
    form = store.derived(mid, tree_arrays.FILE)
    if form is not None:
        return TreeModel(mid, record, tree_arrays.loads(form))
    data = store.artifact(mid)
    if data is None:
        raise LoadError(f"model {mid}: its artifact is missing from the model store")
    ensemble = tree_arrays.from_artifact(data, fmt)
    if ensemble is not None:
        return TreeModel(mid, record, ensemble)
    return EstimatorModel(mid, record, artifacts.deserialize(data, fmt))

