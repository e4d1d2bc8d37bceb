"""Runs one training request in this process: data -> workflow.train -> metrics -> store."""

import datetime as dt
import importlib.metadata
import sys
import time

from google.protobuf import json_format, struct_pb2

from roundhouse.platform import build_info as build_info_lib
from roundhouse.platform import metrics
from roundhouse.platform.api import model_pb2, training_pb2
from roundhouse.platform.data import training_data
from roundhouse.platform.registry import artifacts, feature_set, store as store_lib
from roundhouse.platform.training.workflow import Workflow

# Libraries whose versions every model record carries (those installed in this binary).
RECORDED_LIBRARIES = ("numpy", "pandas", "pyarrow", "scikit-learn", "xgboost-cpu", "duckdb", "protobuf")


class InputError(ValueError):
    """The request's data does not fit the workflow."""


def library_versions() -> dict[str, str]:
    versions = {"python": ".".join(map(str, sys.version_info[:3]))}
    for name in RECORDED_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def _progress(message: str) -> None:
    print(f"[train] {message}", file=sys.stderr, flush=True)


def run(request: training_pb2.TrainingRequest, workflow: Workflow, store: store_lib.ModelStore,
        build: build_info_lib.BuildInfo, bazel_target: str, job_id: str = "",
        image: str = "") -> store_lib.StoredModel:
    """Trains, evaluates and stores the model for an already validated request. `image` is
    the container image this runs in, by digest ("" outside one), for the record."""
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    # The wall-clock start lets tools/bench/training_overhead.py measure the service's overhead.
    _progress(f"run started at unix time {time.time():.3f}; loading data for workflow {workflow.name}")
    data = training_data.load(request)
    params = {**workflow.default_params, **_ints(json_format.MessageToDict(request.params))}
    label = workflow.label
    missing = [c for c in (*workflow.features, label) if c not in data.train.column_names]
    if missing:
        raise InputError(f"data: the {workflow.name} workflow needs column(s) {', '.join(missing)}, "
                         f"which the request's data does not provide (it has {', '.join(data.train.column_names)})")
    train_df = data.train.to_pandas()
    holdout_df = data.holdout.to_pandas()
    t1 = time.perf_counter()
    _progress(f"training on {len(train_df):,} rows, holding out {len(holdout_df):,} rows")
    model = workflow.train(train_df, holdout_df, params)
    t2 = time.perf_counter()
    scores = model.predict_proba(holdout_df[list(workflow.features)])[:, 1]
    measured = metrics.binary_classification(holdout_df[label].to_numpy(), scores)
    t3 = time.perf_counter()
    _progress("metrics: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in measured.items()))

    blob, fmt = artifacts.serialize(model)
    record = model_pb2.ModelRecord(
        git_sha=build.git_sha or "", git_dirty=bool(build.git_dirty), bazel_target=bazel_target,
        request=request, data=data.fingerprint, library_versions=library_versions(), job_id=job_id,
        image=image)
    record.metrics.update(measured)
    record.params.CopyFrom(_struct(params))
    record.seeds.update({k: int(v) for k, v in params.items() if k.endswith("seed") or k == "random_state"})
    record.artifact.format = fmt
    if workflow.feature_definitions is not None:
        try:
            record.feature_set.CopyFrom(feature_set.describe(workflow.feature_definitions, workflow.features))
        except feature_set.FeatureSetError as e:
            raise InputError(f"workflow {workflow.name}: {e}") from None
    stored = store.put(blob, _with_timings(record, started, t0, t1, t2, t3),
                       derived=artifacts.serving_forms(blob, fmt))
    _progress(f"stored model {stored.record.model_id}" + ("" if stored.created else " (already in the store)"))
    return stored


def _ints(value):
    """Request params arrive as a protobuf Struct, whose numbers are all doubles: give
    whole numbers back their int type (n_estimators=200, not 200.0)."""
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _struct(values) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


def _with_timings(record, started, t0, t1, t2, t3):
    record.timings.started_at.FromDatetime(started)
    record.timings.finished_at.FromDatetime(dt.datetime.now(dt.timezone.utc))
    record.timings.load_seconds = t1 - t0
    record.timings.train_seconds = t2 - t1
    record.timings.eval_seconds = t3 - t2
    return record


def summary(stored: store_lib.StoredModel) -> dict:
    """The one JSON line a training run ends with."""
    r = stored.record
    return {
        "model_id": r.model_id,
        "git_sha": r.git_sha or None,
        "git_dirty": r.git_dirty if r.git_sha else None,
        "metrics": dict(sorted(r.metrics.items())),
        "model_path": str(stored.artifact_path),
    }
