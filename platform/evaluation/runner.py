"""Runs one evaluation request in this process: rows -> models -> evaluate -> result.

The rows are the holdout that platform/data/training_data selects for the spec's data and
holdout, exactly as for a training request; the models come from the model store. With
`workflow` (a workflow binary's `train --evaluate SPEC`, which is how the training service
runs evaluations), that workflow's `evaluate` adds its metrics and slices, its label is the
default label, and its features are the input columns of last resort of the models it
trained.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

from roundhouse.platform.data import training_data
from roundhouse.platform.evaluation import models as models_lib
from roundhouse.platform.evaluation.evaluate import EvaluationError, EvaluationResult, evaluate
from roundhouse.platform.evaluation.spec import EvaluationSpec
from roundhouse.platform.registry.store import ModelStore
from roundhouse.platform.training.workflow import Workflow

def _progress(message: str) -> None:
    print(f"[evaluate] {message}", file=sys.stderr, flush=True)


def label_for(spec: EvaluationSpec, workflow: Workflow | None) -> str:
    if spec.label:
        return spec.label
    if workflow is not None:
        return workflow.label
    labels = training_data.label_columns(spec.rows.data)
    if len(labels) != 1:
        raise EvaluationError(f"label: the data has label columns {', '.join(labels)}; say which one "
                              "to evaluate against")
    return labels[0]


def run(spec: EvaluationSpec, store: ModelStore, workflow: Workflow | None = None, *,
        progress: Callable[[str], None] = _progress) -> EvaluationResult:
    """Evaluates an already checked spec. Raises DataError (platform/data), ModelError
    (naming the model's field) or EvaluationError."""
    if workflow is not None and spec.workflow and spec.workflow != workflow.name:
        raise EvaluationError(f"workflow: this is the {workflow.name} workflow; the evaluation asks "
                              f"for {spec.workflow!r}")
    t0 = time.perf_counter()
    label = label_for(spec, workflow)
    known = (workflow.name, tuple(workflow.features)) if workflow is not None else None
    loaded = [models_lib.load(store, ref.ref, model_id=ref.model_id, field=f"models[{i}]", workflow=known)
              for i, ref in enumerate(spec.models)]
    progress("loading the holdout for " + ", ".join(
        m.ref if m.ref == m.model_id else f"{m.ref} ({m.model_id})" for m in loaded))
    data = training_data.load(spec.training_request())
    frame = data.holdout.to_pandas()
    for i, model in enumerate(loaded):
        missing = [c for c in model.features if c not in frame.columns]
        if missing:
            raise models_lib.ModelError(
                f"models[{i}]", f"model {model.model_id} reads column(s) {', '.join(missing)}, which "
                                f"the data does not provide (it has {', '.join(map(str, frame.columns))})")
    t1 = time.perf_counter()
    progress(f"scoring {len(loaded)} model(s) on {len(frame):,} holdout rows; "
             f"{spec.settings.resamples} bootstrap resamples (seed {spec.settings.seed})")
    result = evaluate(loaded, frame, label, settings=spec.settings, compare=spec.compare,
                      workflow_evaluate=workflow.evaluate if workflow is not None else None,
                      workflow_name=f"workflow {workflow.name}" if workflow is not None else "")
    progress(f"done in {time.perf_counter() - t0:.1f}s (loading {t1 - t0:.1f}s): " + "; ".join(
        f"{m.ref} roc_auc={m.metrics['roc_auc'].value:.4f} "
        f"[{m.metrics['roc_auc'].low:.4f}, {m.metrics['roc_auc'].high:.4f}]" for m in result.models))
    return result
