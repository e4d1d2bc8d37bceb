"""Which feature definitions a model reads: recorded at training, checked by the scorer.

A model's record names its definition file (by its name under features/defs, the lock's key),
its input columns in order, and each column's definition hash (the same hash the lock keeps).
The scorer computes features online from its own copy of that file and serves the model only
when every hash agrees: a model never sees a feature that means something else.
"""

from __future__ import annotations

import pathlib

from roundhouse.features.language import loader, printer, syntax as ast
from roundhouse.platform.api import model_pb2


class FeatureSetError(ValueError):
    pass


def describe(definitions: pathlib.Path, columns) -> model_pb2.FeatureSet:
    """The FeatureSet of a model whose input `columns` are features of `definitions`."""
    program = loader.load(definitions)
    known = {d.column for d in program.features}
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise FeatureSetError(
            f"{definitions.name} defines no feature {', '.join(map(repr, unknown))}; a "
            f"workflow's columns must be features of its definitions (it has {', '.join(sorted(known))})")
    return model_pb2.FeatureSet(
        definitions=definitions.name, columns=list(columns),
        hashes={c: printer.definition_hash(program, c) for c in columns})


def problems(feature_set: model_pb2.FeatureSet, program: ast.Program) -> list[str]:
    """Why `program` cannot serve a model with this FeatureSet (empty: it can)."""
    known = {d.column for d in program.features}
    out = []
    for column in feature_set.columns:
        if column not in known:
            out.append(f"feature {column!r} is not defined in {feature_set.definitions}")
        elif printer.definition_hash(program, column) != feature_set.hashes.get(column):
            out.append(f"feature {column!r} of {feature_set.definitions} has another definition "
                       "than the one the model was trained on")
    return out
