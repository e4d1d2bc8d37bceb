"""Meta-models: threshold, dispatch and combination specs over stored models.

A meta-model is stored in the model store like a model: its artifact is its spec as canonical
JSON (format "meta-json"), its record names its kind, the models it refers to and the feature
set they read together, and its ID is content-derived, so the same spec is the same model.
It refers to models by ID, never by tag: a meta-model never changes meaning. Specs compose
(a dispatch over thresholds of models) and are checked when created: every referenced model
exists, all of them read features of one definition file with the same definitions, and the
reference graph has no cycle. scoring/meta.py runs them.

  {"kind": "threshold", "model": ID, "threshold": 0.7, "above": "block", "below": "allow"}
  {"kind": "threshold", "model": ID, "bands": [{"below": 0.3, "decision": "allow"},
                                               {"below": 0.8, "decision": "review"},
                                               {"decision": "block"}]}
  {"kind": "dispatch", "rules": [{"field": "merchant_id", "equals": "mx1", "model": ID},
                                 {"field": "country", "in": ["DE", "AT"], "model": ID}],
   "default": ID}
  {"kind": "combination", "method": "mean" | "max" | "stack", "models": [ID, ...],
   "weights": [...],      # mean: weighted average (default equal); stack: coefficients on
   "intercept": 0.0}      # each model's log-odds, then the logistic function
"""

from __future__ import annotations

import dataclasses
import json
import math

from roundhouse.platform.api import model_pb2
from roundhouse.platform.registry import artifacts
from roundhouse.platform.registry.store import ModelNotFound, ModelStore

KINDS = ("threshold", "dispatch", "combination")
METHODS = ("mean", "max", "stack")


class SpecError(ValueError):
    """A spec that cannot be a meta-model; `field` says where (a JSON path)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclasses.dataclass(frozen=True)
class Band:
    below: float | None  # None: the last band, everything above the others
    decision: str


@dataclasses.dataclass(frozen=True)
class Threshold:
    model: str
    bands: tuple[Band, ...]

    def children(self):
        return (self.model,)

    def decide(self, score: float) -> str:
        for band in self.bands:
            if band.below is None or score < band.below:
                return band.decision
        raise AssertionError("the last band has no upper bound")


@dataclasses.dataclass(frozen=True)
class Rule:
    field: str
    values: tuple  # the rule matches when the event's field is one of these
    model: str


@dataclasses.dataclass(frozen=True)
class Dispatch:
    rules: tuple[Rule, ...]
    default: str

    def children(self):
        return tuple(dict.fromkeys([r.model for r in self.rules] + [self.default]))


@dataclasses.dataclass(frozen=True)
class Combination:
    method: str
    models: tuple[str, ...]
    weights: tuple[float, ...]
    intercept: float = 0.0

    def children(self):
        return tuple(dict.fromkeys(self.models))


Spec = Threshold | Dispatch | Combination


def _get(body: dict, key: str, where: str, kind, required=True, default=None):
    if key not in body:
        if required:
            raise SpecError(f"{where}{key}", "missing")
        return default
    value = body[key]
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
    if not ok:
        names = {str: "a string", list: "a list", dict: "an object", (int, float): "a number"}
        raise SpecError(f"{where}{key}", f"expected {names.get(kind, kind)}, got {json.dumps(value)[:40]}")
    return value


def _model_id(body, key, where) -> str:
    value = _get(body, key, where, str)
    if not value.startswith("m-"):
        raise SpecError(f"{where}{key}", f"expected a model ID (m-...), got {value!r}; "
                        "meta-models refer to models by ID, not by tag")
    return value


def _number(body, key, where, required=True, default=None) -> float:
    value = _get(body, key, where, (int, float), required, default)
    if value is not None and not math.isfinite(value):
        raise SpecError(f"{where}{key}", "expected a finite number")
    return None if value is None else float(value)


def _only(body: dict, allowed: set, where: str) -> None:
    for key in body:
        if key not in allowed:
            raise SpecError(f"{where}{key}", f"unknown field; expected one of {', '.join(sorted(allowed))}")


def parse(body) -> Spec:
    """A spec's JSON value -> Threshold | Dispatch | Combination, or SpecError naming the field."""
    if not isinstance(body, dict):
        raise SpecError("(spec)", "expected a JSON object")
    kind = _get(body, "kind", "", str)
    if kind == "threshold":
        _only(body, {"kind", "model", "threshold", "above", "below", "bands", "description"}, "")
        model = _model_id(body, "model", "")
        if "bands" in body:
            if "threshold" in body:
                raise SpecError("threshold", "give either threshold or bands, not both")
            items = _get(body, "bands", "", list)
            if not items:
                raise SpecError("bands", "needs at least one band")
            bands = []
            for i, item in enumerate(items):
                where = f"bands[{i}]."
                if not isinstance(item, dict):
                    raise SpecError(f"bands[{i}]", "expected an object {below, decision}")
                _only(item, {"below", "decision"}, where)
                last = i == len(items) - 1
                below = _number(item, "below", where, required=not last)
                if last and below is not None:
                    raise SpecError(f"{where}below", "the last band takes every score above the others: leave out below")
                if bands and below is not None and below <= bands[-1].below:
                    raise SpecError(f"{where}below", "bands must be in increasing order of below")
                bands.append(Band(below, _get(item, "decision", where, str)))
            return Threshold(model, tuple(bands))
        t = _number(body, "threshold", "")
        if not 0.0 <= t <= 1.0:
            raise SpecError("threshold", f"expected a score between 0 and 1, got {t}")
        return Threshold(model, (Band(t, _get(body, "below", "", str, False, "allow")),
                                 Band(None, _get(body, "above", "", str, False, "block"))))
    if kind == "dispatch":
        _only(body, {"kind", "rules", "default", "description"}, "")
        rules = []
        for i, item in enumerate(_get(body, "rules", "", list)):
            where = f"rules[{i}]."
            if not isinstance(item, dict):
                raise SpecError(f"rules[{i}]", "expected an object {field, equals | in, model}")
            _only(item, {"field", "equals", "in", "model"}, where)
            if ("equals" in item) == ("in" in item):
                raise SpecError(f"rules[{i}]", "give exactly one of equals and in")
            values = (item["equals"],) if "equals" in item else tuple(_get(item, "in", where, list))
            if any(isinstance(v, (dict, list)) for v in values):
                raise SpecError(f"{where}{'equals' if 'equals' in item else 'in'}", "expected plain values")
            rules.append(Rule(_get(item, "field", where, str), values, _model_id(item, "model", where)))
        return Dispatch(tuple(rules), _model_id(body, "default", ""))
    if kind == "combination":
        _only(body, {"kind", "method", "models", "weights", "intercept", "description"}, "")
        method = _get(body, "method", "", str)
        if method not in METHODS:
            raise SpecError("method", f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
        items = _get(body, "models", "", list)
        if len(items) < 2:
            raise SpecError("models", "a combination needs at least two models")
        models = tuple(_model_id({f"models[{i}]": m}, f"models[{i}]", "") for i, m in enumerate(items))
        weights = body.get("weights")
        if weights is None:
            weights = [1.0 / len(models)] * len(models) if method != "max" else []
        elif method == "max":
            raise SpecError("weights", "max takes no weights")
        elif not isinstance(weights, list) or len(weights) != len(models) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) for w in weights):
            raise SpecError("weights", f"expected {len(models)} finite numbers, one per model")
        if method == "mean" and (any(w < 0 for w in weights) or sum(weights) <= 0):
            raise SpecError("weights", "a weighted average needs non-negative weights with a positive sum")
        intercept = _number(body, "intercept", "", required=False, default=0.0)
        if intercept and method != "stack":
            raise SpecError("intercept", "only a stack has an intercept")
        return Combination(method, models, tuple(float(w) for w in weights), intercept)
    raise SpecError("kind", f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def canonical(body: dict) -> bytes:
    return (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode()


def create(store: ModelStore, body) -> model_pb2.ModelRecord:
    """Checks a spec against the store and stores it as a meta-model; returns its record."""
    spec = parse(body)
    records = {}
    for i, mid in enumerate(spec.children()):
        try:
            records[mid] = store.get(mid)
        except ModelNotFound:
            raise SpecError(_where(body, mid), f"no model {mid} in the model store") from None
    record = model_pb2.ModelRecord()
    record.meta.kind = type(spec).__name__.lower()
    record.meta.children.extend(spec.children())
    record.feature_set.CopyFrom(_union({mid: r.feature_set for mid, r in records.items()}, body))
    record.artifact.format = artifacts.META_JSON
    # Children exist before their parent and IDs hash the children's IDs, so a stored graph
    # cannot have a cycle; scoring/meta.py still refuses one (a store edited by hand).
    return store.put(canonical(body), record).record


def _union(sets: dict[str, model_pb2.FeatureSet], body) -> model_pb2.FeatureSet:
    out = model_pb2.FeatureSet()
    for mid, fs in sets.items():
        if not fs.definitions:
            raise SpecError(_where(body, mid), f"model {mid} records no feature definitions: the scorer cannot serve it")
        if out.definitions and fs.definitions != out.definitions:
            raise SpecError(_where(body, mid), f"model {mid} reads features of {fs.definitions}, the others of "
                            f"{out.definitions}; a meta-model's models read one definition file")
        out.definitions = fs.definitions
        for column in fs.columns:
            if column in out.hashes and out.hashes[column] != fs.hashes[column]:
                raise SpecError(_where(body, mid), f"model {mid} was trained on another definition of "
                                f"feature {column!r} than the other models")
            if column not in out.hashes:
                out.columns.append(column)
                out.hashes[column] = fs.hashes[column]
    return out


def _where(body: dict, mid: str) -> str:
    """The JSON path of the first place a spec names `mid`, for error messages."""
    for key in ("model", "default"):
        if body.get(key) == mid:
            return key
    for i, item in enumerate(body.get("rules") or []):
        if isinstance(item, dict) and item.get("model") == mid:
            return f"rules[{i}].model"
    for i, m in enumerate(body.get("models") or []):
        if m == mid:
            return f"models[{i}]"
    return "(spec)"


def load(store: ModelStore, record: model_pb2.ModelRecord) -> Spec:
    return parse(json.loads(store.artifact(record.model_id)))
