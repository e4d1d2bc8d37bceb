"""A retraining schedule: which tag, when, what to train on which rows, and when to ship.

    {"tag": "fraud-prod",                       # the tag a promoted challenger moves
     "cron": "0 3 * * *",                       # five-field cron, in UTC
     "template": {...},                         # a TrainingRequest without `holdout`
     "window": {"column": "event_time", "days": 90, "holdout_days": 7},
     "gate": {"metric": "roc_auc", "min_improvement": 0.002,
              "bootstrap": {"resamples": 1000, "seed": 0, "confidence": 0.95}},
     "description": "nightly fraud retrain"}    # optional

A run at time T (its cron slot, or the moment of a "run now") trains on the template with the
window filled in relative to T: the Parquet source's rows with `column` >= T - days and < T
(two row filters appended to the template's own), held out from T - holdout_days on (a time
cutoff holdout). The challenger and the model the tag points at are then evaluated on that
same fresh holdout (platform/evaluation), and the tag moves to the challenger only when
challenger[metric] - champion[metric] >= min_improvement (a tag with no model yet takes the
challenger once its job succeeded).

The template is checked exactly as POST /v1/jobs checks a request (rendered at the time it
is submitted), with `template.` before its field paths. Errors are RequestErrors naming the
field.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
from typing import Any

from croniter import croniter

from roundhouse.platform.api import validate
from roundhouse.platform.api.validate import FieldError, RequestError
from roundhouse.platform.evaluation.settings import Settings

FIELDS = ("tag", "cron", "template", "window", "gate", "description")
WINDOW_FIELDS = ("column", "days", "holdout_days")
GATE_FIELDS = ("metric", "min_improvement", "bootstrap")
METRICS = ("roc_auc", "pr_auc", "recall_at_1pct_fpr")  # platform/metrics.py's
MAX_DAYS = 3660


@dataclasses.dataclass(frozen=True)
class Window:
    column: str
    days: float
    holdout_days: float


@dataclasses.dataclass(frozen=True)
class Gate:
    metric: str
    min_improvement: float
    settings: Settings = Settings()


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
    tag: str
    cron: str
    template: dict       # a TrainingRequest as JSON, without holdout
    window: Window
    gate: Gate
    description: str = ""

    def to_dict(self) -> dict:
        out = {"tag": self.tag, "cron": self.cron, "template": self.template,
               "window": dataclasses.asdict(self.window),
               "gate": {"metric": self.gate.metric, "min_improvement": self.gate.min_improvement,
                        "bootstrap": dataclasses.asdict(self.gate.settings)}}
        if self.description:
            out["description"] = self.description
        return out

    def render(self, at: float, *, team: str = "", description: str = "") -> dict:
        """The training request (JSON) of a run at `at` (epoch seconds)."""
        return render(self.template, self.window, at, team=team, description=description)


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def render(template: dict, window: Window, at: float, *, team: str = "", description: str = "") -> dict:
    request = copy.deepcopy(template)
    start = at - window.days * 86400
    cutoff = at - window.holdout_days * 86400
    parquet = request.setdefault("data", {}).setdefault("parquet", {})
    parquet["filters"] = list(parquet.get("filters") or []) + [
        {"column": window.column, "op": "GE", "value": iso(start)},
        {"column": window.column, "op": "LT", "value": iso(at)}]
    request["holdout"] = {"time_cutoff": {"column": window.column, "cutoff": iso(cutoff)}}
    metadata = request.setdefault("metadata", {})
    if team:
        metadata["team"] = team
    if description:
        metadata["description"] = description
    return request


# ---- cron ----

def check_cron(expression: Any) -> str | None:
    """None when `expression` is a valid five-field cron expression, else why not."""
    if not isinstance(expression, str) or not expression.strip():
        return "expected a cron expression such as \"0 3 * * *\" (minute hour day month weekday, UTC)"
    if len(expression.split()) != 5:
        return f"{expression!r}: expected five fields (minute hour day month weekday, UTC)"
    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression"
    return None


def latest_slot(expression: str, now: float) -> float:
    """The latest cron slot at or before `now` (epoch seconds, UTC)."""
    base = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    it = croniter(expression, base)
    if croniter.match(expression, base.replace(second=0, microsecond=0)) and base.second == 0 \
            and base.microsecond == 0:
        return base.timestamp()
    return it.get_prev(dt.datetime).timestamp()


def next_slot(expression: str, after: float) -> float:
    """The first cron slot strictly after `after`."""
    base = dt.datetime.fromtimestamp(after, dt.timezone.utc)
    return croniter(expression, base).get_next(dt.datetime).timestamp()


def due_slot(expression: str, now: float, since: float) -> float | None:
    """The one slot to run now: the latest slot in (since, now], or None. However many slots
    were missed (downtime), only the latest is run."""
    slot = latest_slot(expression, now)
    return slot if slot > since else None


# ---- parsing ----

def parse(data: Any, *, limits: validate.ResourceLimits | None = None, now: float = 0.0) -> ScheduleSpec:
    """Check a schedule; raises RequestError naming every field at fault. The template is
    rendered at `now` and checked by validate.parse_request (with `limits`)."""
    from roundhouse.platform.registry.tags import TAG_NAME

    if isinstance(data, (str, bytes)):
        data = validate.load_json(data)
    if not isinstance(data, dict):
        raise RequestError([FieldError("", f"a schedule must be a JSON object, got {type(data).__name__}")])
    errors: list[FieldError] = []
    add = lambda field, message: errors.append(FieldError(field, message))  # noqa: E731
    for key in data:
        if key not in FIELDS:
            add(key, f"unknown field {key!r}; a schedule has: {', '.join(FIELDS)}")

    tag = data.get("tag")
    if not isinstance(tag, str) or not TAG_NAME.fullmatch(tag):
        add("tag", f"{tag!r}: required, 1-63 of a-z 0-9 . _ - starting with a letter or digit")
    cron = data.get("cron")
    problem = check_cron(cron)
    if problem:
        add("cron", problem)
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > 500:
        add("description", "expected a string of at most 500 characters")

    window = _window(data.get("window"), add)
    gate = _gate(data.get("gate"), add)

    template = data.get("template")
    if not isinstance(template, dict):
        add("template", "required: a training request (as for POST /v1/jobs) without holdout")
    else:
        if "holdout" in template:
            add("template.holdout", "set by the schedule's window (holdout_days): leave it out")
        source = template.get("data")
        if not (isinstance(source, dict) and "parquet" in source):
            add("template.data", "a schedule's window filters a Parquet source: use data.parquet")
        if window is not None and not any(e.field.startswith("template") for e in errors):
            try:
                validate.parse_request(render(template, window, now or 0.0), limits)
            except RequestError as e:
                for fe in e.errors:
                    add(f"template.{fe.field}" if fe.field else "template", fe.message)
    if errors:
        raise RequestError(errors)
    return ScheduleSpec(tag=tag, cron=" ".join(cron.split()), template=template, window=window,
                        gate=gate, description=description)


def _number(value, field, add, *, low, high, low_open=False) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        add(field, f"expected a number, got {value!r}")
        return None
    if value < low or value > high or (low_open and value == low):
        add(field, f"{value!r} is out of range: expected {'>' if low_open else '>='} {low} and <= {high}")
        return None
    return float(value)


def _window(value, add) -> Window | None:
    if not isinstance(value, dict):
        add("window", "required: {\"column\", \"days\", \"holdout_days\"}")
        return None
    ok = True
    for key in value:
        if key not in WINDOW_FIELDS:
            add(f"window.{key}", f"unknown field; a window has: {', '.join(WINDOW_FIELDS)}")
            ok = False
    column = value.get("column")
    if not isinstance(column, str) or not column:
        add("window.column", "required: the timestamp column the window and the holdout cut on")
        ok = False
    days = _number(value.get("days"), "window.days", add, low=0, high=MAX_DAYS, low_open=True)
    holdout = _number(value.get("holdout_days"), "window.holdout_days", add, low=0, high=MAX_DAYS,
                      low_open=True)
    if days is not None and holdout is not None and holdout >= days:
        add("window.holdout_days", f"{holdout:g} must be less than window.days ({days:g}): some rows must train")
        ok = False
    if not ok or days is None or holdout is None:
        return None
    return Window(column=column, days=days, holdout_days=holdout)


def _gate(value, add) -> Gate | None:
    if not isinstance(value, dict):
        add("gate", "required: {\"metric\", \"min_improvement\", \"bootstrap\"?}")
        return None
    for key in value:
        if key not in GATE_FIELDS:
            add(f"gate.{key}", f"unknown field; a gate has: {', '.join(GATE_FIELDS)}")
    metric = value.get("metric")
    if metric not in METRICS:
        add("gate.metric", f"{metric!r}: expected one of {', '.join(METRICS)}")
    improvement = _number(value.get("min_improvement"), "gate.min_improvement", add, low=-1.0, high=1.0)
    settings = Settings()
    bootstrap = value.get("bootstrap")
    if bootstrap is not None:
        if not isinstance(bootstrap, dict) or set(bootstrap) - {"resamples", "seed", "confidence"}:
            add("gate.bootstrap", "expected {\"resamples\"?, \"seed\"?, \"confidence\"?}")
        else:
            resamples = bootstrap.get("resamples", settings.resamples)
            seed = bootstrap.get("seed", settings.seed)
            confidence = bootstrap.get("confidence", settings.confidence)
            if isinstance(resamples, bool) or not isinstance(resamples, int) or not 0 <= resamples <= 10_000:
                add("gate.bootstrap.resamples", f"{resamples!r}: expected an integer from 0 to 10000")
            elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                add("gate.bootstrap.seed", f"{seed!r}: expected a non-negative integer")
            elif isinstance(confidence, bool) or not isinstance(confidence, (int, float)) \
                    or not 0 < confidence < 1:
                add("gate.bootstrap.confidence", f"{confidence!r}: expected a number between 0 and 1")
            else:
                settings = Settings(resamples=resamples, seed=seed, confidence=float(confidence))
    if metric not in METRICS or improvement is None:
        return None
    return Gate(metric=metric, min_improvement=improvement, settings=settings)


def from_dict(d: dict) -> ScheduleSpec:
    """A stored (already checked) spec."""
    g = d["gate"]
    return ScheduleSpec(tag=d["tag"], cron=d["cron"], template=d["template"],
                        window=Window(**d["window"]),
                        gate=Gate(metric=g["metric"], min_improvement=g["min_improvement"],
                                  settings=Settings(**g["bootstrap"])),
                        description=d.get("description", ""))
