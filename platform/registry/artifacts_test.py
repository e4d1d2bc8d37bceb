import numpy as np
import xgboost
from sklearn.linear_model import LogisticRegression

from roundhouse.platform.registry import artifacts


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    return x, (x[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(int)


def test_xgboost_round_trip_predicts_the_same_and_bytes_are_stable():
    x, y = data()
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1, random_state=0).fit(x, y)
    blob, fmt = artifacts.serialize(model)
    assert fmt == artifacts.XGBOOST_JSON
    back = artifacts.deserialize(blob, fmt)
    np.testing.assert_array_equal(back.predict_proba(x), model.predict_proba(x))
    assert artifacts.serialize(back)[0] == blob


def test_sklearn_round_trip():
    x, y = data()
    model = LogisticRegression().fit(x, y)
    blob, fmt = artifacts.serialize(model)
    assert fmt == artifacts.JOBLIB
    np.testing.assert_array_equal(artifacts.deserialize(blob, fmt).predict_proba(x), model.predict_proba(x))
