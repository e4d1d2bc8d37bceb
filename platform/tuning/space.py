"""A hyperparameter search request: its search space, metric, direction, budget, parallelism.

    {"template": <a training request>, "space": {"C": {"type": "float", "low": 0.01, "high": 10,
     "log": true}, "max_depth": {"type": "int", "low": 2, "high": 8}, "booster": {"type":
     "categorical", "choices": ["gbtree", "dart"]}}, "metric": "roc_auc", "direction": "maximize",
     "budget": 20, "parallelism": 2, "seed": 0, "startup_trials": 10}

A parameter is an int (`low`, `high` inclusive, `step`?, `log`?), a float (`low`, `high`,
`log`?: log-scaled, low must be > 0) or a categorical (`choices`: strings, numbers, booleans).
`startup_trials` (default 10): how many finished trials TPE samples at random before it
models the history. Each error names its field (`space.C.low`, `metric`, `budget`...) as a training request's
do (platform/api/validate.FieldError); the template is checked by the training service
exactly as POST /v1/jobs checks a request, not here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from roundhouse.platform.api.validate import FieldError, RequestError

# The metrics every training result carries (platform/metrics.binary_classification).
METRICS = ("roc_auc", "pr_auc", "recall_at_1pct_fpr")
DIRECTIONS = ("maximize", "minimize")
KINDS = ("int", "float", "categorical")
MAX_BUDGET = 1000
MAX_PARALLELISM = 100
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")
_KEYS = {"template", "space", "metric", "direction", "budget", "parallelism", "seed", "startup_trials"}
_PARAM_KEYS = {"int": {"type", "low", "high", "step", "log"}, "float": {"type", "low", "high", "log"},
               "categorical": {"type", "choices"}}


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    kind: str  # one of KINDS
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: int = 1
    choices: tuple = ()

    def to_dict(self) -> dict:
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        out = {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}
        if self.kind == "int" and self.step != 1:
            out["step"] = self.step
        return out


@dataclasses.dataclass(frozen=True)
class SearchSpec:
    template: dict  # the training request, as JSON; checked by the service
    space: dict[str, Param]
    metric: str
    direction: str
    budget: int
    parallelism: int
    seed: int = 0
    startup_trials: int = 10  # TPE samples at random until this many trials finished

    def to_dict(self) -> dict:
        return {"template": self.template, "space": {k: p.to_dict() for k, p in self.space.items()},
                "metric": self.metric, "direction": self.direction, "budget": self.budget,
                "parallelism": self.parallelism, "seed": self.seed, "startup_trials": self.startup_trials}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_param(name: str, value: Any, field: str) -> Param:
    """One parameter of the space; RequestError naming `field` (or a key under it)."""
    if not isinstance(value, dict):
        raise RequestError([FieldError(field, "expected an object {\"type\": \"int\" | \"float\" | \"categorical\", ...}")])
    kind = value.get("type")
    if kind not in KINDS:
        raise RequestError([FieldError(f"{field}.type", f"unknown kind {kind!r}; one of {', '.join(KINDS)}")])
    unknown = sorted(set(value) - _PARAM_KEYS[kind])
    if unknown:
        raise RequestError([FieldError(f"{field}.{unknown[0]}", f"unknown field for a {kind} parameter; "
                                                                f"expected {', '.join(sorted(_PARAM_KEYS[kind]))}")])
    if kind == "categorical":
        choices = value.get("choices")
        if not isinstance(choices, list) or not choices:
            raise RequestError([FieldError(f"{field}.choices", "expected a non-empty list of choices")])
        for i, c in enumerate(choices):
            if not (isinstance(c, (str, bool)) or c is None or _is_number(c)):
                raise RequestError([FieldError(f"{field}.choices[{i}]", "a choice is a string, number, "
                                                                        "boolean or null")])
        if len({repr(c) for c in choices}) != len(choices):
            raise RequestError([FieldError(f"{field}.choices", "choices repeat")])
        return Param(name, kind, choices=tuple(choices))
    check = _is_int if kind == "int" else _is_number
    for key in ("low", "high"):
        if key not in value:
            raise RequestError([FieldError(f"{field}.{key}", "required")])
        if not check(value[key]):
            raise RequestError([FieldError(f"{field}.{key}", f"expected {'an integer' if kind == 'int' else 'a finite number'}")])
    low, high = value["low"], value["high"]
    if low >= high:
        raise RequestError([FieldError(f"{field}.low", f"low ({low}) must be below high ({high})")])
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise RequestError([FieldError(f"{field}.log", "expected true or false")])
    if log and low <= 0:
        raise RequestError([FieldError(f"{field}.low", f"a log-scaled parameter needs low > 0, not {low}")])
    step = value.get("step", 1)
    if kind == "int":
        if not _is_int(step) or step < 1:
            raise RequestError([FieldError(f"{field}.step", "expected an integer >= 1")])
        if log and step != 1:
            raise RequestError([FieldError(f"{field}.step", "a log-scaled int parameter has step 1")])
    return Param(name, kind, low=low if kind == "int" else float(low),
                 high=high if kind == "int" else float(high), log=log, step=step)


def parse_space(value: Any, field: str = "space") -> dict[str, Param]:
    if not isinstance(value, dict) or not value:
        raise RequestError([FieldError(field, "expected a non-empty object: parameter name -> its range")])
    out = {}
    for name, spec in value.items():
        if not _NAME.fullmatch(name):
            raise RequestError([FieldError(f"{field}.{name}", "a parameter name is 1-100 of A-Z a-z 0-9 _ . - "
                                                              "starting with a letter or _")])
        out[name] = parse_param(name, spec, f"{field}.{name}")
    return out


def parse(body: Any) -> SearchSpec:
    """A search request (a JSON object, already loaded); RequestError naming the bad field.
    The template is only checked to be an object here."""
    if not isinstance(body, dict):
        raise RequestError([FieldError("", "expected a JSON object with template, space, metric, "
                                           "direction, budget, parallelism")])
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise RequestError([FieldError(unknown[0], f"unknown field; expected {', '.join(sorted(_KEYS))}")])
    template = body.get("template")
    if not isinstance(template, dict):
        raise RequestError([FieldError("template", "expected a training request (a JSON object)")])
    space = parse_space(body.get("space"))
    metric = body.get("metric")
    if metric not in METRICS:
        raise RequestError([FieldError("metric", f"unknown metric {metric!r}; a training result's metrics are "
                                                 f"{', '.join(METRICS)}")])
    direction = body.get("direction", "maximize")
    if direction not in DIRECTIONS:
        raise RequestError([FieldError("direction", f"expected {' or '.join(DIRECTIONS)}, not {direction!r}")])
    numbers = {}
    for key, low, high, default in (("budget", 1, MAX_BUDGET, None), ("parallelism", 1, MAX_PARALLELISM, 1),
                                    ("seed", 0, 2**31 - 1, 0), ("startup_trials", 0, MAX_BUDGET, 10)):
        value = body.get(key, default)
        if value is None:
            raise RequestError([FieldError(key, "required")])
        if not _is_int(value) or not low <= value <= high:
            raise RequestError([FieldError(key, f"expected an integer from {low} to {high}, not {value!r}")])
        numbers[key] = value
    return SearchSpec(template=template, space=space, metric=metric, direction=direction, **numbers)


def from_dict(stored: dict) -> SearchSpec:
    """A spec as stored (SearchSpec.to_dict), read back."""
    return parse(stored)
