import json

import numpy as np
import pytest
import xgboost
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from roundhouse.platform.registry import artifacts
from roundhouse.platform.registry import tree_arrays


def data(n=3000, n_features=12, missing=0.1, positive_rate=None, seed=0):
    """Rows with interactions (so trees grow deep) and NaN in a share of the cells."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features))
    score = x[:, 0] * x[:, 1] + np.sin(2 * x[:, 2]) + 0.5 * x[:, 3] + 0.5 * rng.normal(size=n)
    cut = 0.3 if positive_rate is None else np.quantile(score, 1 - positive_rate)
    y = (score > cut).astype(int)
    x[rng.random(x.shape) < missing] = np.nan
    return x, y


def split(x, y, holdout=500):
    return x[:-holdout], y[:-holdout], x[-holdout:]


def xgb(depth, n_trees, **kw):
    return xgboost.XGBClassifier(n_estimators=n_trees, max_depth=depth, tree_method="hist",
                                 **{"n_jobs": 2, "random_state": 0, **kw})


def ensemble_of(model):
    return tree_arrays.from_xgboost_json(bytes(model.get_booster().save_raw(raw_format="json")))


def boundary_rows(features, thresholds, n_features, n=500, seed=0):
    """Rows whose values sit on split thresholds (as float32) or on their float32 neighbours,
    with some NaN: where a comparison's direction and precision decide the branch."""
    rng = np.random.default_rng(seed)
    t = np.asarray(thresholds, np.float32)
    features = np.asarray(features)
    columns = []
    for f in range(n_features):
        on = t[(features == f) & np.isfinite(t)]
        candidates = np.concatenate([on, np.nextafter(on, np.float32(np.inf)), np.nextafter(on, np.float32(-np.inf))])
        columns.append(rng.choice(candidates, n) if len(on) else rng.normal(size=n).astype(np.float32))
    x = np.column_stack(columns).astype(np.float64)
    x[rng.random(x.shape) < 0.1] = np.nan
    return x


def xgboost_splits(model):
    learner = json.loads(bytes(model.get_booster().save_raw(raw_format="json")))["learner"]
    trees = learner["gradient_booster"]["model"]["trees"]
    internal = [np.asarray(t["left_children"]) >= 0 for t in trees]
    return (np.concatenate([np.asarray(t["split_indices"])[i] for t, i in zip(trees, internal)]),
            np.concatenate([np.asarray(t["split_conditions"])[i] for t, i in zip(trees, internal)]))


def sklearn_splits(trees):
    internal = [t.tree_.children_left >= 0 for t in trees]
    return (np.concatenate([t.tree_.feature[i] for t, i in zip(trees, internal)]),
            np.concatenate([t.tree_.threshold[i] for t, i in zip(trees, internal)]))


def assert_matches(ens, x, expected):
    np.testing.assert_allclose(ens.predict_proba(x), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose([ens.predict_one(row) for row in x], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("depth,n_trees", [(3, 200), (6, 120), (10, 50)])
def test_xgboost_matches_predict_proba_with_missing_values(depth, n_trees):
    x_train, y_train, x_test = split(*data())
    model = xgb(depth, n_trees).fit(x_train, y_train)
    ens = ensemble_of(model)
    assert ens.n_features == 12 and ens.n_trees == n_trees
    assert np.isnan(x_test).any(axis=1).mean() > 0.5  # most holdout rows miss something
    assert_matches(ens, x_test, model.predict_proba(x_test)[:, 1])


def test_xgboost_matches_on_the_split_thresholds_themselves():
    x_train, y_train, _ = split(*data())
    model = xgb(6, 80).fit(x_train, y_train)
    x_edge = boundary_rows(*xgboost_splits(model), 12)
    assert_matches(ensemble_of(model), x_edge, model.predict_proba(x_edge)[:, 1])


def test_xgboost_base_score_away_from_one_half():
    x_train, y_train, x_test = split(*data(positive_rate=0.05))
    model = xgb(4, 60).fit(x_train, y_train)
    params = json.loads(bytes(model.get_booster().save_raw(raw_format="json")))["learner"]["learner_model_param"]
    assert float(params["base_score"].strip("[]")) < 0.2
    assert_matches(ensemble_of(model), x_test, model.predict_proba(x_test)[:, 1])


def test_xgboost_early_stopping_predicts_with_the_best_iteration_like_xgbclassifier():
    x_train, y_train, x_test = split(*data(missing=0.0))
    model = xgb(6, 300, learning_rate=0.5, early_stopping_rounds=5).fit(
        x_train[:-500], y_train[:-500], eval_set=[(x_train[-500:], y_train[-500:])], verbose=False)
    assert model.best_iteration < 290  # it did stop early, so the tree count matters
    ens = ensemble_of(model)
    assert ens.n_trees == model.best_iteration + 1
    assert_matches(ens, x_test, model.predict_proba(x_test)[:, 1])


def test_xgboost_categorical_splits_are_refused_clearly():
    x, y = data(n=500, missing=0.0)
    x[:, 0] = np.abs(x[:, 0] * 3).astype(int)
    dm = xgboost.DMatrix(x, y, feature_types=["c"] + ["q"] * 11, enable_categorical=True)
    booster = xgboost.train({"objective": "binary:logistic", "tree_method": "hist", "max_cat_to_onehot": 1},
                            dm, num_boost_round=5)
    with pytest.raises(ValueError, match="categorical"):
        tree_arrays.from_xgboost_json(bytes(booster.save_raw(raw_format="json")))


def test_xgboost_other_objectives_have_no_serving_form():
    x, y = data(n=500)
    model = xgboost.XGBRegressor(n_estimators=3, max_depth=2).fit(x, y)
    blob, fmt = artifacts.serialize(model)
    with pytest.raises(tree_arrays.UnsupportedModel, match="reg:squarederror"):
        tree_arrays.from_xgboost_json(blob)
    assert tree_arrays.from_artifact(blob, fmt) is None


def test_not_an_xgboost_model_is_a_value_error():
    with pytest.raises(ValueError, match="not an XGBoost JSON model"):
        tree_arrays.from_xgboost_json(b'{"hello": 1}')


@pytest.mark.parametrize("make", [
    lambda: RandomForestClassifier(n_estimators=40, max_depth=10, random_state=0),
    lambda: ExtraTreesClassifier(n_estimators=40, max_depth=10, random_state=0),
], ids=["random_forest", "extra_trees"])
@pytest.mark.parametrize("train_missing", [0.0, 0.1], ids=["trained_without_nan", "trained_with_nan"])
def test_sklearn_forests_match_predict_proba(make, train_missing):
    x, y = data(missing=train_missing)
    x_test = data(missing=0.1, seed=1)[0][:400]  # NaN at prediction time in both cases
    model = make().fit(x, y)
    assert_matches(tree_arrays.from_sklearn(model), x_test, model.predict_proba(x_test)[:, 1])


@pytest.mark.parametrize("train_missing", [0.0, 0.1], ids=["trained_without_nan", "trained_with_nan"])
def test_sklearn_forest_matches_on_the_split_thresholds_themselves(train_missing):
    x, y = data(missing=train_missing)
    model = RandomForestClassifier(n_estimators=30, max_depth=10, random_state=0).fit(x, y)
    x_edge = boundary_rows(*sklearn_splits(model.estimators_), 12)
    assert_matches(tree_arrays.from_sklearn(model), x_edge, model.predict_proba(x_edge)[:, 1])


def test_sklearn_gradient_boosting_matches_predict_proba():
    x, y = data(missing=0.0, positive_rate=0.2)
    x_test = data(missing=0.0, seed=1)[0][:400]
    model = GradientBoostingClassifier(n_estimators=60, max_depth=4, learning_rate=0.2, random_state=0).fit(x, y)
    ens = tree_arrays.from_sklearn(model)
    assert ens.base_margin == pytest.approx(np.log(0.2 / 0.8), abs=1e-3)  # the prior's log-odds
    assert_matches(ens, x_test, model.predict_proba(x_test)[:, 1])
    x_edge = np.nan_to_num(boundary_rows(*sklearn_splits(model.estimators_[:, 0]), 12))
    assert_matches(ens, x_edge, model.predict_proba(x_edge)[:, 1])
    # scikit-learn refuses NaN for gradient boosting; so does its serving form.
    x_test[0, 3] = np.nan
    with pytest.raises(ValueError, match="missing values"):
        model.predict_proba(x_test)
    with pytest.raises(ValueError, match="missing values"):
        ens.predict_proba(x_test)
    with pytest.raises(ValueError, match="missing values"):
        ens.predict_one(x_test[0])


def test_sklearn_labels_other_than_zero_one_give_the_second_class():
    x, y = data(n=1000)
    model = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0).fit(x, np.where(y, "fraud", "ok"))
    assert list(model.classes_) == ["fraud", "ok"]
    assert_matches(tree_arrays.from_sklearn(model), x[:200], model.predict_proba(x[:200])[:, 1])


def test_from_sklearn_refuses_other_models_naming_them():
    x, y = data(n=300, missing=0.0)
    with pytest.raises(TypeError, match="LogisticRegression"):
        tree_arrays.from_sklearn(LogisticRegression().fit(x, y))
    with pytest.raises(TypeError, match="3 classes"):
        tree_arrays.from_sklearn(RandomForestClassifier(n_estimators=2, max_depth=3).fit(x, y + (x[:, 5] > 1)))
    with pytest.raises(TypeError, match="deeper than"):
        tree_arrays.from_sklearn(RandomForestClassifier(n_estimators=2, random_state=0).fit(*data(n=20000)))


def test_from_artifact_on_the_bytes_the_platform_stores():
    x, y = data(n=1500)
    model = xgb(5, 30).fit(x, y)
    blob, fmt = artifacts.serialize(model)
    assert fmt == artifacts.XGBOOST_JSON
    assert_matches(tree_arrays.from_artifact(blob, fmt), x[:300], model.predict_proba(x[:300])[:, 1])

    forest = RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0).fit(x, y)
    blob, fmt = artifacts.serialize(forest)
    assert fmt == artifacts.JOBLIB
    assert_matches(tree_arrays.from_artifact(blob, fmt), x[:300], forest.predict_proba(x[:300])[:, 1])

    assert tree_arrays.from_artifact(*artifacts.serialize(LogisticRegression().fit(np.nan_to_num(x), y))) is None


def test_dumps_is_deterministic_and_loads_and_load_predict_identically(tmp_path):
    x, y = data(n=2000)
    first = ensemble_of(xgb(6, 40).fit(x, y))
    blob = tree_arrays.dumps(first)
    assert tree_arrays.dumps(first) == blob
    assert tree_arrays.dumps(ensemble_of(xgb(6, 40).fit(x, y))) == blob  # trained again, same seed
    assert tree_arrays.dumps(ensemble_of(xgb(6, 40, random_state=1, subsample=0.8).fit(x, y))) != blob

    path = tmp_path / tree_arrays.FILE
    path.write_bytes(blob)
    expected = first.predict_proba(x)
    for back in (tree_arrays.loads(blob), tree_arrays.loads(memoryview(blob)), tree_arrays.load(str(path))):
        np.testing.assert_array_equal(back.predict_proba(x), expected)
        assert back.predict_one(x[7]) == first.predict_one(x[7])
        assert tree_arrays.dumps(back) == blob
    loaded = tree_arrays.load(str(path))
    assert not loaded.thresholds.flags.writeable and not loaded.thresholds.flags.owndata  # a view of the map


def test_corrupt_or_truncated_data_is_a_clear_value_error(tmp_path):
    x, y = data(n=1000)
    blob = tree_arrays.dumps(ensemble_of(xgb(4, 10).fit(x, y)))
    cases = {
        "truncated": (blob[:-1], "truncated"),
        "cut inside the header": (blob[:40], "truncated"),
        "cut inside the magic": (blob[:5], "bad magic"),
        "foreign file": (b'{"learner": {}}' + blob, "bad magic"),
        "garbled header": (blob[:20] + b"\xff" + blob[21:], "corrupt"),
        "padded": (blob + b"\0" * 64, "padded"),
    }
    for name, (bad, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            tree_arrays.loads(bad)
    path = tmp_path / "cut.trees"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="cut.trees: truncated"):
        tree_arrays.load(str(path))
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        tree_arrays.load(str(path))


def test_inputs_of_the_wrong_shape_are_refused():
    x, y = data(n=500)
    ens = ensemble_of(xgb(3, 5).fit(x, y))
    with pytest.raises(ValueError, match="12 features"):
        ens.predict_one(x[0, :11])
    with pytest.raises(ValueError, match="12 features"):
        ens.predict_proba(x[:, :11])
    assert ens.predict_proba(x[:0]).shape == (0,)


def test_single_leaf_trees_predict_the_base_margin_and_leaves():
    x = np.zeros((50, 3))
    y = np.r_[np.zeros(40), np.ones(10)].astype(int)  # no feature separates anything: root leaves
    model = xgb(3, 4).fit(x, y)
    ens = ensemble_of(model)
    assert_matches(ens, x[:5], model.predict_proba(x[:5])[:, 1])
