"""Load a training request's data: read the source, split off the holdout, fingerprint it all.

This is the one entry point the training runner needs; the parts live in sources.py,
holdout.py and fingerprint.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pyarrow as pa

from roundhouse.platform.api import model_pb2, training_pb2
from roundhouse.platform.data import fingerprint, holdout, storage
from roundhouse.platform.data.sources import DataError, read_source


@dataclasses.dataclass
class TrainingData:
    train: pa.Table
    holdout: pa.Table
    feature_columns: list[str]
    label_columns: list[str]
    fingerprint: model_pb2.DataFingerprint


def label_columns(source: training_pb2.DataSource) -> list[str]:
    kind = source.WhichOneof("kind")
    return list(getattr(source, kind).label_columns) if kind else []


def load(request: training_pb2.TrainingRequest, *, s3: storage.S3Options | None = None,
         warehouse: str | None = None) -> TrainingData:
    """Train and holdout tables for `request` (already checked by platform/api/validate)."""
    spec = request.holdout
    kind = spec.WhichOneof("kind")
    time_column = spec.time_cutoff.column if kind == "time_cutoff" else ""
    labels = label_columns(request.data)
    data = read_source(request.data, "data", role="train", s3=s3, warehouse=warehouse,
                       extra_columns=[time_column] if time_column else [])
    table = data.table
    files = list(data.files)
    queries = list(data.queries)

    if kind == "random":
        split = holdout.random_split(table, spec.random.fraction, spec.random.seed)
    elif kind == "time_cutoff":
        split = holdout.time_cutoff_split(table, time_column,
                                          spec.time_cutoff.cutoff.ToDatetime(
                                              tzinfo=dt.timezone.utc))
    elif kind == "dataset":
        held = read_source(spec.dataset.source, "holdout.dataset.source", role="holdout",
                           s3=s3, warehouse=warehouse, default_columns=table.column_names)
        aligned = holdout.align_holdout(table, held.table, "holdout.dataset.source")
        if aligned.num_rows == 0:
            raise DataError("holdout.dataset.source", "the holdout dataset has no rows")
        split = holdout.Split(train=table, holdout=aligned)
        files += held.files
        queries += held.queries
    else:
        raise DataError("holdout", "no holdout spec set")

    if split.train.num_rows == 0:
        raise DataError("data", "the data source returned no rows (check the row filters)")

    # Features: what the source names, else every column but the labels and the time column
    # a cutoff splits on (list that column explicitly to use it as a feature).
    named = list(request.data.parquet.columns) if request.data.HasField("parquet") else []
    features = named or [c for c in table.column_names if c not in labels and c != time_column]

    fp = model_pb2.DataFingerprint(files=files, queries=queries,
                                   rows=split.train.num_rows + split.holdout.num_rows)
    fp.digest = fingerprint.digest(fp)
    return TrainingData(train=split.train, holdout=split.holdout, feature_columns=features,
                        label_columns=labels, fingerprint=fp)

