"""How the model store turns fitted models into bytes and back.

XGBoost models are saved in XGBoost's own JSON format (portable across versions and
byte-stable for the same model); other scikit-learn estimators are pickled with joblib.
Tree ensembles also get a serving form (flat node arrays) that the scorer loads fast.
"""

import io

import joblib

from roundhouse.platform.registry import tree_arrays

XGBOOST_JSON = "xgboost-json"
JOBLIB = "joblib"
META_JSON = "meta-json"  # a meta-model's spec (scoring/meta.py); no fitted model inside


def serialize(model) -> tuple[bytes, str]:
    """(artifact bytes, format) for a fitted model."""
    try:
        import xgboost
    except ImportError:  # a workflow without xgboost cannot hand us an xgboost model
        xgboost = None
    if xgboost is not None and isinstance(model, (xgboost.XGBModel, xgboost.Booster)):
        booster = model.get_booster() if isinstance(model, xgboost.XGBModel) else model
        return bytes(booster.save_raw(raw_format="json")), XGBOOST_JSON
    buf = io.BytesIO()
    joblib.dump(model, buf)
    return buf.getvalue(), JOBLIB


def deserialize(data: bytes, fmt: str):
    """The model back: an xgboost.XGBClassifier for xgboost-json, the object for joblib."""
    if fmt == XGBOOST_JSON:
        import xgboost
        model = xgboost.XGBClassifier()
        model.load_model(bytearray(data))
        return model
    if fmt == JOBLIB:
        return joblib.load(io.BytesIO(data))
    raise ValueError(f"unknown artifact format {fmt!r}; known: {XGBOOST_JSON}, {JOBLIB}")


def serving_forms(data: bytes, fmt: str) -> dict[str, bytes]:
    """Files the scorer loads instead of the artifact, made once when the model is stored:
    tree ensembles as flat node arrays (tree_arrays); nothing for other models."""
    if fmt == META_JSON:
        return {}
    ensemble = tree_arrays.from_artifact(data, fmt)
    return {} if ensemble is None else {tree_arrays.FILE: tree_arrays.dumps(ensemble)}
