"""An evaluation request: which models, on which rows, how to compare them.

    {"metadata": {"owner": "ana", "team": "risk", "description": "challenger vs prod"},
     "models": ["fraud-prod", "m-0123456789abcdef01234567"],     # tags or model IDs
     "data": {"parquet": {"uri": "...", "columns": [...], "label_columns": ["is_fraud"]}},
     "holdout": {"time_cutoff": {"column": "event_time", "cutoff": "2026-04-06T00:00:00Z"}},
     "label": "is_fraud",                                       # default: the workflow's label
     "workflow": "fraud",                                       # default: the first model's
     "bootstrap": {"resamples": 1000, "seed": 0, "confidence": 0.95},
     "compare": "first"}                                        # or "all": every pair

`metadata`, `data` and `holdout` are a TrainingRequest's, checked by the same code
(platform/api/validate.py) with the same field paths in its errors, and the rows evaluated are
the holdout rows a training request with them would hold out (platform/data/training_data),
so a model can be evaluated again on exactly the rows it was evaluated on when trained.

The service stores the spec resolved: each model as {"ref", "model_id"} (what a tag pointed
at when the evaluation was submitted), the workflow filled in. Errors are RequestErrors
naming the field, as for training requests.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

from google.protobuf import json_format

from roundhouse.platform.api import training_pb2, validate
from roundhouse.platform.api.validate import FieldError, RequestError
from roundhouse.platform.evaluation.settings import COMPARE, Settings

FIELDS = ("metadata", "models", "data", "holdout", "label", "workflow", "bootstrap", "compare")
MAX_MODELS = 10
MAX_RESAMPLES = 10_000
_WORKFLOW = re.compile(r"[a-z][a-z0-9_]*")
_STAND_IN = "unnamed"


@dataclasses.dataclass(frozen=True)
class ModelRef:
    ref: str            # as the request named it: a tag or a model ID
    model_id: str = ""  # what it named when the evaluation was submitted ("" until resolved)


@dataclasses.dataclass(frozen=True)
class EvaluationSpec:
    # metadata, data and holdout as a TrainingRequest (workflow set once known): the rows.
    rows: training_pb2.TrainingRequest
    models: tuple[ModelRef, ...]
    label: str = ""
    workflow: str = ""
    settings: Settings = Settings()
    compare: str = "first"

    @property
    def metadata(self) -> training_pb2.Metadata:
        return self.rows.metadata

    def training_request(self) -> training_pb2.TrainingRequest:
        """The training request whose holdout is the rows to evaluate."""
        request = training_pb2.TrainingRequest()
        request.CopyFrom(self.rows)
        request.workflow = self.workflow
        return request

    def resolved(self, model_ids: Sequence[str], workflow: str) -> "EvaluationSpec":
        models = tuple(ModelRef(m.ref, mid) for m, mid in zip(self.models, model_ids, strict=True))
        rows = training_pb2.TrainingRequest()
        rows.CopyFrom(self.rows)
        rows.workflow = workflow
        return dataclasses.replace(self, models=models, workflow=workflow, rows=rows)

    def to_dict(self) -> dict:
        as_dict = lambda m: json_format.MessageToDict(m, preserving_proto_field_name=True)  # noqa: E731
        out = {"metadata": as_dict(self.rows.metadata),
               "models": [dataclasses.asdict(m) for m in self.models],
               "data": as_dict(self.rows.data), "holdout": as_dict(self.rows.holdout),
               "bootstrap": dataclasses.asdict(self.settings), "compare": self.compare}
        if self.label:
            out["label"] = self.label
        if self.workflow:
            out["workflow"] = self.workflow
        return out


def parse(body: str | bytes | dict) -> EvaluationSpec:
    """Parse and check an evaluation request; raises RequestError naming the field at fault."""
    data = validate.load_json(body) if isinstance(body, (str, bytes)) else body
    if not isinstance(data, dict):
        raise RequestError([FieldError("", "the evaluation request must be a JSON object, got "
                                           f"{type(data).__name__}")])
    errors: list[FieldError] = []
    add = lambda field, message: errors.append(FieldError(field, message))  # noqa: E731
    for key in data:
        if key not in FIELDS:
            add(key, f"unknown field {key!r}; an evaluation request has: {', '.join(FIELDS)}")

    models = _models(data.get("models"), add)
    label = _string(data, "label", add)
    workflow = _string(data, "workflow", add)
    if workflow and not _WORKFLOW.fullmatch(workflow):
        add("workflow", f"{workflow!r} is not a workflow name (lower-case letters, digits and _)")
    settings = _settings(data.get("bootstrap"), add)
    compare = data.get("compare", "first")
    if compare not in COMPARE:
        add("compare", f"{compare!r}: expected one of {', '.join(map(repr, COMPARE))}")

    rows = training_pb2.TrainingRequest()
    part = {k: data[k] for k in ("metadata", "data", "holdout") if k in data}
    # The training request's checks, on the rows part: its workflow may come from the models
    # later (the service fills it in), so a stand-in satisfies them meanwhile.
    part["workflow"] = _STAND_IN
    try:
        rows = validate.parse_request(part)
        rows.workflow = workflow if workflow and _WORKFLOW.fullmatch(workflow) else ""
    except RequestError as e:
        errors.extend(e.errors)
    if label and not errors:
        labels = _label_columns(rows.data)
        if labels and label not in labels:
            add("label", f"{label!r} is not one of the data's label_columns ({', '.join(labels)})")
    if errors:
        raise RequestError(errors)
    return EvaluationSpec(rows=rows, models=tuple(models), label=label, workflow=workflow,
                          settings=settings, compare=compare)


def _label_columns(source: training_pb2.DataSource) -> list[str]:
    kind = source.WhichOneof("kind")
    return list(getattr(source, kind).label_columns) if kind else []


def _string(data: dict, key: str, add) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        add(key, f"expected a string, got {_kind(value)}")
        return ""
    return value


def _models(value: Any, add) -> list[ModelRef]:
    if value is None:
        add("models", "required: the models to evaluate, as model IDs or tags (the first is the "
                      "baseline the others are compared with)")
        return []
    if not isinstance(value, list) or not value:
        add("models", f"expected a non-empty list of model IDs or tags, got {_kind(value)}")
        return []
    if len(value) > MAX_MODELS:
        add("models", f"at most {MAX_MODELS} models per evaluation, got {len(value)}")
    refs: list[ModelRef] = []
    for i, item in enumerate(value):
        where = f"models[{i}]"
        if isinstance(item, dict):  # the stored, resolved form
            ref, model_id = item.get("ref"), item.get("model_id", "")
            if set(item) - {"ref", "model_id"} or not isinstance(ref, str) or not isinstance(model_id, str):
                add(where, "expected a model ID or tag (or {\"ref\", \"model_id\"})")
                continue
        elif isinstance(item, str):
            ref, model_id = item, ""
        else:
            add(where, f"expected a model ID or tag, got {_kind(item)}")
            continue
        if not ref.strip():
            add(where, "empty model ID or tag")
            continue
        if any(r.ref == ref for r in refs):
            add(where, f"{ref!r} is listed twice")
            continue
        refs.append(ModelRef(ref, model_id))
    return refs


def _settings(value: Any, add) -> Settings:
    if value is None:
        return Settings()
    if not isinstance(value, dict):
        add("bootstrap", f"expected an object, got {_kind(value)}")
        return Settings()
    defaults = Settings()
    for key in value:
        if key not in ("resamples", "seed", "confidence"):
            add(f"bootstrap.{key}", f"unknown field {key!r}; bootstrap has: resamples, seed, confidence")
    resamples = value.get("resamples", defaults.resamples)
    if not _whole(resamples) or not 1 <= resamples <= MAX_RESAMPLES:
        add("bootstrap.resamples", f"must be a whole number from 1 to {MAX_RESAMPLES}, got {resamples!r}")
        resamples = defaults.resamples
    seed = value.get("seed", defaults.seed)
    if not _whole(seed) or not 0 <= seed < 2**64:
        add("bootstrap.seed", f"must be a whole number from 0 to 2^64-1, got {seed!r}")
        seed = defaults.seed
    confidence = value.get("confidence", defaults.confidence)
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        add("bootstrap.confidence", f"must be a number between 0 and 1 (exclusive), got {confidence!r}")
        confidence = defaults.confidence
    return Settings(resamples=int(resamples), seed=int(seed), confidence=float(confidence))


def _whole(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
