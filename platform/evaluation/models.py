"""Models to evaluate, loaded from the model store by ID or tag, scored the way training scores.

A model is loaded through platform/registry/artifacts (the artifact deserialized, as the
training runner and the workflows' own code use it) and scored with `predict_proba` on its
input columns, the second column being the positive class: the same path that computed its
metrics when it was trained, and no part of the scorer. Meta-models (threshold, dispatch,
combination specs) are refused in this version: evaluate the models they refer to.

A model's input columns, in order: its record's feature set, else the column names the model
was fitted with (scikit-learn's and XGBoost's `feature_names_in_`), else the features of the
workflow evaluating it when that workflow trained it, else the columns its training request
named. `input_columns` finds them without unpickling where it can (an XGBoost artifact is
JSON), for the service's check at submit.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from roundhouse.platform.api import model_pb2
from roundhouse.platform.registry import artifacts
from roundhouse.platform.registry import tags as tags_lib
from roundhouse.platform.registry.store import ModelStore

if TYPE_CHECKING:
    import pandas as pd

MODEL_ID = re.compile(r"m-[0-9a-f]{24}")


class ModelError(ValueError):
    """A model that cannot be evaluated; `field` is where the request named it."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


def resolve(store: ModelStore, ref: str, field: str = "") -> str:
    """The model ID `ref` names: a model ID in the store, or a tag (where it points now)."""
    if MODEL_ID.fullmatch(ref):
        if not store.exists(ref):
            raise ModelError(field, f"no model {ref!r} in the model store")
        return ref
    try:
        target = tags_lib.TagStore(store).get(ref)
    except tags_lib.TagError:
        target = None
    if target is None:
        raise ModelError(field, f"{ref!r} is neither a model ID in the model store nor a tag that "
                                "points at one")
    return target


def check_evaluable(record: model_pb2.ModelRecord, field: str = "") -> None:
    if record.meta.kind or record.artifact.format == artifacts.META_JSON:
        children = ", ".join(record.meta.children) or "none"
        kind = f"{record.meta.kind} meta-model" if record.meta.kind else "meta-model"
        raise ModelError(field, f"{record.model_id} is a {kind}; evaluations score plain models only in "
                                f"this version: evaluate the models it refers to ({children})")


def input_columns(store: ModelStore, record: model_pb2.ModelRecord,
                  workflow_features: Sequence[str] = ()) -> list[str] | None:
    """The model's input columns without loading it where possible; None when unknown."""
    if record.feature_set.columns:
        return list(record.feature_set.columns)
    if record.artifact.format == artifacts.XGBOOST_JSON:
        try:
            names = json.loads(store.artifact(record.model_id))["learner"].get("feature_names")
        except (ValueError, KeyError, TypeError):
            names = None
        if names:
            return list(names)
    elif record.artifact.format == artifacts.JOBLIB:
        try:
            model = artifacts.deserialize(store.artifact(record.model_id), record.artifact.format)
        except Exception:  # e.g. a class from workflow code this process cannot import
            model = None
        names = _fitted_names(model)
        if names:
            return names
    return _fallback_columns(record, workflow_features)


def _fitted_names(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None and len(names) else None


def _fallback_columns(record: model_pb2.ModelRecord, workflow_features: Sequence[str]) -> list[str] | None:
    if workflow_features:
        return list(workflow_features)
    if record.request.data.HasField("parquet") and record.request.data.parquet.columns:
        return list(record.request.data.parquet.columns)
    return None


@dataclasses.dataclass
class Model:
    """A stored model, loaded: `ref` is how the request named it (a tag or the ID)."""

    ref: str
    model_id: str
    record: model_pb2.ModelRecord
    estimator: Any
    features: tuple[str, ...]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Positive-class probabilities for each row of `frame`."""
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise ModelError("", f"model {self.model_id} reads column(s) {', '.join(missing)}, which the "
                                 f"data does not have (it has {', '.join(map(str, frame.columns))})")
        proba = np.asarray(self.estimator.predict_proba(frame[list(self.features)]))
        return proba[:, 1].astype(np.float64)


def load(store: ModelStore, ref: str, *, model_id: str = "", field: str = "",
         workflow: tuple[str, Sequence[str]] | None = None) -> Model:
    """Load `ref` (resolved already to `model_id`, or resolved now). `workflow`: (name,
    features) of the workflow evaluating, whose features are a model's input columns of last
    resort when it trained the model."""
    model_id = model_id or resolve(store, ref, field)
    record = store.get(model_id)
    check_evaluable(record, field)
    estimator = artifacts.deserialize(store.artifact(model_id), record.artifact.format)
    if not hasattr(estimator, "predict_proba"):
        raise ModelError(field, f"model {model_id} ({type(estimator).__name__}) has no predict_proba")
    same = workflow is not None and workflow[0] == record.request.workflow
    features = (list(record.feature_set.columns) or _fitted_names(estimator)
                or _fallback_columns(record, workflow[1] if same else ()))
    if not features:
        raise ModelError(field, f"cannot tell which columns model {model_id} reads: its record has no "
                                "feature set, the model no column names, its request no columns")
    return Model(ref=ref, model_id=model_id, record=record, estimator=estimator, features=tuple(features))
