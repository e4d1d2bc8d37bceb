"""How the model store turns fitted models into bytes and back.

XGBoost models are saved in XGBoost's own JSON format (portable across versions and
byte-stable for the same model); other scikit-learn estimators are pickled with joblib.
"""

import io

import joblib

XGBOOST_JSON = "xgboost-json"
JOBLIB = "joblib"


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
