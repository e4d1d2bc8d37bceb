"""The scorer: tags resolved to loaded models, events scored with their online features.

A watcher thread polls the tag store; when a served tag moves (or a rollback moves it back),
the new model is loaded and warmed with a request before it replaces the old one in one
reference swap, so requests already running finish on the old model and no request waits
for a load. The last few models a process stopped serving stay loaded, so a rollback (or a
move back) is a warm-up and a swap, not a load. A tag whose new model cannot be loaded keeps serving its previous model, and
/healthz and the metrics say so. Models are served only with the features they were trained
on: their record names the definition file and each feature's hash, checked against this
scorer's definitions; tags whose models read the same definitions share one online state.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import threading
import time
from typing import Callable

from roundhouse.features.language import loader, syntax as ast
from roundhouse.features.language.errors import FeatureError
from roundhouse.platform.registry import feature_set
from roundhouse.platform.registry.store import ModelNotFound, ModelStore
from roundhouse.platform.registry.tags import TagStore
from roundhouse.scoring import events, meta
from roundhouse.scoring.feature_state import FeatureState, StateError
from roundhouse.scoring.metrics import Metrics
from roundhouse.scoring.models import LoadError, Scorable
from roundhouse.scoring.shards import Routing, Shard

log = logging.getLogger("roundhouse.scoring")


class ScoringError(Exception):
    """An answer other than a score: HTTP status, message and extra JSON fields."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.extra = status, extra


def _bad_fields(errors: list[events.FieldError]) -> ScoringError:
    return ScoringError(400, "; ".join(f"{e.field}: {e.message}" for e in errors),
                        fields=[e.to_dict() for e in errors])


@dataclasses.dataclass(frozen=True)
class Serving:
    tag: str
    model: Scorable
    definitions: str
    loaded_at: float  # unix time
    load_seconds: float


def load_definitions(folder: pathlib.Path) -> dict[str, ast.Program]:
    """Every definition file of a folder (features/defs), by file name, checked."""
    programs = {}
    for path in sorted(pathlib.Path(folder).glob("*.feat")):
        try:
            programs[path.name] = loader.load(path)
        except FeatureError as e:
            raise SystemExit(f"scorer: cannot load the feature definitions {path}:\n{e}") from None
    return programs


class Scorer:
    def __init__(self, store: ModelStore, definitions: dict[str, ast.Program],
                 open_state: Callable[[ast.Program], FeatureState], routing: Routing,
                 shard: Shard | None = None, poll_seconds: float = 0.5, metrics: Metrics | None = None):
        self.store = store
        self.tags = TagStore(store)
        self.definitions = definitions
        self.open_state = open_state
        self.routing = routing
        self.shard = shard
        self.poll_seconds = poll_seconds
        self.metrics = metrics or Metrics()
        self.serving: dict[str, Serving] = {}
        self.errors: dict[str, str] = {}  # tag -> why its current target is not what it serves
        self.states: dict[str, FeatureState] = {}
        self._failed: dict[str, str] = {}  # model ID -> load error, not retried every poll
        self._recent: dict[str, Scorable] = {}  # model ID -> a model no longer served, oldest first
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.wanted: list[str] | None = None  # the tags of the last refresh; None before the first

    # ------------------------------------------------------------------ tags and models
    def _targets(self) -> dict[str, str | None]:
        """Each tag this process serves -> the model it points at now (one read per tag)."""
        if self.shard:
            return {tag: self.tags.get(tag) for tag in self.shard.tags}
        return self.tags.list()

    def refresh(self) -> None:
        """One pass over the served tags: load, warm and switch to any model a tag now names."""
        targets = self._targets()
        for tag, target in targets.items():
            current = self.serving.get(tag)
            if target is None:
                self.errors[tag] = f"tag {tag!r} points at no model"
                continue
            if current is not None and current.model.model_id == target:
                self.errors.pop(tag, None)
                continue
            if target in self._failed:
                self.errors[tag] = self._failed[target]
                continue
            try:
                serving = self._load(tag, target)
            except (LoadError, StateError, ModelNotFound, ValueError, OSError) as e:
                message = f"model {target} failed to load: {e}"
                log.error("tag %s: %s%s", tag, message,
                          f"; still serving {current.model.model_id}" if current else "")
                self._failed[target] = self.errors[tag] = message
                self.metrics.load_failures.labels(tag).inc()
                self.metrics.degraded.labels(tag).set(1)
                continue
            self.serving[tag] = serving  # one reference swap: requests running keep the old model
            self.errors.pop(tag, None)
            self.metrics.degraded.labels(tag).set(0)
            if current is not None:
                self._keep(current.model)
                self.metrics.serving.remove(tag, current.model.model_id)
                self.metrics.moves.labels(tag).inc()
            self.metrics.serving.labels(tag, target).set(1)
            log.info("tag %s: serving %s (loaded and warmed in %.1f ms)%s", tag, target,
                     serving.load_seconds * 1000, f", was {current.model.model_id}" if current else "")
        for tag in set(self.serving) - set(targets):
            self.errors[tag] = f"tag {tag!r} no longer exists"
        self.wanted = list(targets)

    def _load(self, tag: str, model_id: str) -> Serving:
        t0 = time.perf_counter()
        record = self.store.get(model_id)
        fs = record.feature_set
        if not fs.definitions:
            raise LoadError("its record names no feature definitions, so the scorer cannot compute its "
                            "features (retrain it with a workflow that sets feature_definitions)")
        program = self.definitions.get(fs.definitions)
        if program is None:
            raise LoadError(f"it reads features of {fs.definitions}, which this scorer does not have "
                            f"(it has {', '.join(sorted(self.definitions)) or 'none'})")
        problems = feature_set.problems(fs, program)
        if problems:
            raise LoadError("; ".join(problems))
        driver = {f.name for f in program.driver_stream.fields}
        model = self._recent.pop(model_id, None) or meta.load(self.store, model_id, driver)
        if fs.definitions not in self.states:
            self.states[fs.definitions] = self.open_state(program)
        # Warm-up: one prediction on an event with every field and feature missing.
        model.score({name: None for name in driver}, {c: None for c in fs.columns})
        seconds = time.perf_counter() - t0
        self.metrics.load.labels(model_id).set(seconds)
        return Serving(tag, model, fs.definitions, time.time(), seconds)

    RECENT = 4  # models kept loaded after they stop being served

    def _keep(self, model: Scorable) -> None:
        self._recent.pop(model.model_id, None)
        self._recent[model.model_id] = model
        while len(self._recent) > self.RECENT:
            self._recent.pop(next(iter(self._recent)))

    def start(self) -> None:
        self.refresh()
        self._watcher = threading.Thread(target=self._watch, name="tag-watcher", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # a store outage must not end the watcher; the next poll retries
                log.exception("tag refresh failed")

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        for state in self.states.values():
            state.close()

    # ------------------------------------------------------------------ answers
    def serving_for(self, tag: str) -> Serving:
        serving = self.serving.get(tag)
        if serving is not None:
            return serving
        owner = self.routing.shard_of(tag)
        if self.shard is not None and tag not in self.shard.tags:
            if owner is not None:
                raise ScoringError(421, f"tag {tag!r} is served by shard {owner.name!r}, not {self.shard.name!r}",
                                   shard=owner.name, url=owner.url)
            raise ScoringError(404, f"unknown tag {tag!r}: no shard serves it")
        if tag in self.errors:
            raise ScoringError(503, f"tag {tag!r} is not ready: {self.errors[tag]}")
        raise ScoringError(404, f"unknown tag {tag!r}")

    def parse(self, tag: str, bodies: list, where_prefix: bool) -> tuple[Serving, list[events.Event]]:
        serving = self.serving_for(tag)
        program = self.states[serving.definitions].program
        parsed, errors = [], []
        for i, body in enumerate(bodies):
            try:
                parsed.append(events.parse_event(body, program, program.driver,
                                                 f"events[{i}]." if where_prefix else ""))
            except events.EventError as e:
                errors += e.errors
        if errors:
            raise _bad_fields(errors)
        return serving, parsed

    def score(self, serving: Serving, event: events.Event, explain: bool) -> dict:
        t0 = time.perf_counter()
        state = self.states[serving.definitions]
        seq, features = state.apply(event)
        t1 = time.perf_counter()
        scored = serving.model.score(event.fields, features)
        t2 = time.perf_counter()
        self.metrics.feature_serve.labels(serving.definitions).observe(t1 - t0)
        self.metrics.predict.labels(serving.tag).observe(t2 - t1)
        out = {"score": scored.score, "model_id": serving.model.model_id, "tag": serving.tag,
               "leaves": list(scored.leaves), "seq": seq}
        if scored.decision is not None:
            out["decision"] = scored.decision
        if explain:
            out["features"] = {k: v for k, v in features.items() if k != "seq"}
        return out

    def ingest(self, bodies: list) -> dict:
        """Events of any declared stream, without scoring, into every state whose definitions
        declare their stream; all are checked before any is applied."""
        states = list(self.states.items())
        if not states:
            raise ScoringError(503, "no model is loaded yet, so no feature state is open")
        plan, errors = [], []
        for i, body in enumerate(bodies):
            where = f"events[{i}]." if len(bodies) > 1 else ""
            stream = body.get("stream") if isinstance(body, dict) else None
            targets = [(n, s) for n, s in states if stream in s.program.streams] or states[:1]
            for name, state in targets:
                try:
                    plan.append((name, state, events.parse_event(body, state.program, None, where)))
                except events.EventError as e:
                    errors += e.errors
                    break
        if errors:
            raise _bad_fields(errors)
        seqs: dict[str, list[int]] = {}
        for name, state, event in plan:
            seqs.setdefault(name, []).append(state.apply(event)[0])
        return {"accepted": len(bodies), "seqs": seqs}

    def health(self) -> tuple[bool, dict]:
        synced = self.wanted is not None
        missing = [t for t in self.wanted or () if t not in self.serving]
        ready = synced and not missing and bool(self.wanted or not self.shard)
        return ready, {
            "status": "ok" if ready and not self.errors else ("degraded" if ready else "starting"),
            "shard": self.shard.name if self.shard else None,
            "serving": {t: s.model.model_id for t, s in sorted(self.serving.items())},
            "errors": dict(sorted(self.errors.items())),
        }

    def models(self) -> dict:
        return {"shard": self.shard.name if self.shard else None,
                "tags": {t: {"model_id": s.model.model_id, "kind": s.model.record.meta.kind or "model",
                             "definitions": s.definitions, "loaded_at": s.loaded_at,
                             "load_ms": round(s.load_seconds * 1000, 3),
                             **({"error": self.errors[t]} if t in self.errors else {})}
                         for t, s in sorted(self.serving.items())}}
