"""The workflow contract: what a model family hands the platform.

A workflow names its features and label and gives a `train(train, holdout, params)` that
returns a fitted model with `predict_proba` (scikit-learn's estimator convention), and the
feature definitions its columns come from, so the scorer can serve the model. The
platform loads and splits the data, calls train, computes the metrics, stores the model
and stamps its record; the workflow never does those itself.

A workflow may also give an `evaluate(holdout_df, scores)`, which an evaluation
(platform/evaluation, `POST /v1/evaluations`) calls once per model with the holdout rows and
that model's positive-class scores, one per row. It returns what the workflow wants measured
besides the platform's metrics, which are computed anyway:
    {"metrics": {name: number}, "slices": {slice: {value: {name: number}}}}
(both keys optional; a number may be None where it is undefined, e.g. AUC on a one-class
slice). platform/evaluation/slices.py computes the platform's metrics per slice.
"""

import dataclasses
import pathlib
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd


@dataclasses.dataclass(frozen=True)
class Workflow:
    name: str
    features: tuple[str, ...]
    label: str
    train: Callable[[pd.DataFrame, pd.DataFrame, Mapping[str, Any]], Any]
    default_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # The definition file (features/defs/*.feat) whose features are the model's input
    # columns: recorded with the model so that the scorer computes the same features online.
    feature_definitions: pathlib.Path | None = None
    # Extra metrics and slices for evaluations (see above); None: the platform's metrics only.
    evaluate: Callable[[pd.DataFrame, np.ndarray], Mapping[str, Any]] | None = None
