"""The library against real stored models: two workflows train and store models the way the
platform's runner does (an sklearn pipeline pickled with joblib, an XGBoost model as JSON),
and an evaluation scores both on the holdout their training request held out."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from roundhouse.platform import build_info
from roundhouse.platform.api import model_pb2, validate
from roundhouse.platform.evaluation import models as models_lib
from roundhouse.platform.evaluation import runner, slices, spec as spec_lib
from roundhouse.platform.evaluation.evaluate import EvaluationError, EvaluationResult, evaluate
from roundhouse.platform.evaluation.settings import Settings
from roundhouse.platform.registry import tags as tags_lib
from roundhouse.platform.registry.store import open_store
from roundhouse.platform.training import runner as training_runner
from roundhouse.platform.training.workflow import Workflow


def per_sign_of_x3(holdout_df, scores):
    """The toy workflows' own evaluate: one metric and one slice."""
    return {"metrics": {"mean_score": float(np.mean(scores))},
            "slices": {"x3_sign": slices.by(np.where(holdout_df["x3"] > 0, "positive", "negative"),
                                            holdout_df["y"], scores)}}


# A weak model (a scaled logistic regression on a noise column and the weaker signal) and a
# strong one (XGBoost on both signals): same label, same data.
WEAK = Workflow(name="toy", features=("x1", "x3"), label="y", evaluate=per_sign_of_x3,
                train=lambda t, h, p: make_pipeline(StandardScaler(), LogisticRegression()).fit(
                    t[["x1", "x3"]], t["y"]))
STRONG = Workflow(name="toy", features=("x1", "x2"), label="y", evaluate=per_sign_of_x3,
                  train=lambda t, h, p: xgboost.XGBClassifier(n_estimators=40, max_depth=3, n_jobs=1,
                                                              random_state=0).fit(t[["x1", "x2"]], t["y"]))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(0)
    n = 6000
    x1, x2, x3 = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    y = (x1 + x2 + 0.7 * rng.normal(size=n) > 2.0).astype(int)
    pq.write_table(pa.table({"x1": x1, "x2": x2, "x3": x3, "y": y}), tmp / "toy.parquet")
    rows = {"metadata": {"owner": "ana", "team": "risk"},
            "data": {"parquet": {"uri": str(tmp / "toy.parquet"), "label_columns": ["y"]}},
            "holdout": {"random": {"fraction": 0.3, "seed": 5}}}
    store = open_store(str(tmp / "models"))
    trained = {}
    for name, workflow in (("weak", WEAK), ("strong", STRONG)):
        request = validate.parse_request({**rows, "workflow": "toy"})
        trained[name] = training_runner.run(request, workflow, store, build_info.current(),
                                            f"//toy:{name}").record
    tags_lib.TagStore(store).set("toy-prod", trained["weak"].model_id, by="ana")
    return {"tmp": tmp, "store": store, "rows": rows, **trained}


def spec(world, models, **extra):
    return spec_lib.parse({**world["rows"], "models": models, **extra})


def test_two_stored_models_on_the_rows_their_training_held_out(world):
    weak, strong = world["weak"], world["strong"]
    assert (weak.artifact.format, strong.artifact.format) == ("joblib", "xgboost-json")
    result = runner.run(spec(world, ["toy-prod", strong.model_id], bootstrap={"resamples": 400}),
                        world["store"], WEAK)
    assert [(m.ref, m.model_id) for m in result.models] == [("toy-prod", weak.model_id),
                                                           (strong.model_id, strong.model_id)]
    # The same rows as at training: the point estimates are the metrics training recorded.
    for model, record in zip(result.models, (weak, strong)):
        for name in ("roc_auc", "pr_auc", "recall_at_1pct_fpr"):
            e = model.metrics[name]
            assert e.value == record.metrics[name]
            assert e.low <= e.value <= e.high
    assert result.rows == weak.metrics["holdout_rows"] and result.positives == weak.metrics["holdout_positives"]
    assert result.label == "y" and result.settings == Settings(resamples=400)
    # The strong model is better, and the paired interval says so.
    d = result.difference("roc_auc", strong.model_id)
    assert d.baseline == weak.model_id and d.value > 0 and d.low > 0 and d.share_positive > 0.99


def test_the_workflows_own_evaluate_adds_its_metrics_and_slices(world):
    result = runner.run(spec(world, [world["weak"].model_id, world["strong"].model_id],
                             bootstrap={"resamples": 50}), world["store"], WEAK)
    for m in result.models:
        assert 0 < m.workflow_metrics["mean_score"] < 1
        x3 = m.slices["x3_sign"]
        assert set(x3) == {"negative", "positive"}
        assert x3["negative"]["rows"] + x3["positive"]["rows"] == result.rows
        assert x3["negative"]["positives"] + x3["positive"]["positives"] == result.positives
        assert 0.5 < x3["positive"]["roc_auc"] <= 1
    # Without a workflow (a scheduler calling the library), the platform's metrics alone.
    plain = runner.run(spec(world, [world["weak"].model_id]), world["store"])
    assert plain.models[0].slices == {} and plain.models[0].metrics["roc_auc"].value == \
        result.models[0].metrics["roc_auc"].value


def test_the_result_is_json_and_reads_back(world):
    result = runner.run(spec(world, [world["weak"].model_id, world["strong"].model_id],
                             bootstrap={"resamples": 50, "seed": 9}, compare="all"), world["store"], WEAK)
    text = json.dumps(result.to_dict(), allow_nan=False)
    back = EvaluationResult.from_dict(json.loads(text))
    assert back == result
    assert json.loads(text)["bootstrap"] == {"resamples": 50, "seed": 9, "confidence": 0.95,
                                             "stratified": True, "interval": "percentile"}


def test_the_library_takes_loaded_models_and_any_frame(world):
    store = world["store"]
    loaded = [models_lib.load(store, "toy-prod"), models_lib.load(store, world["strong"].model_id)]
    assert loaded[0].features == ("x1", "x3") and loaded[1].features == ("x1", "x2")
    frame = pq.read_table(world["tmp"] / "toy.parquet").to_pandas()  # every row, not a holdout
    result = evaluate(loaded, frame, "y", settings=Settings(resamples=20))
    assert result.rows == len(frame) and result.difference("pr_auc", world["strong"].model_id).value > 0
    with pytest.raises(EvaluationError, match="listed more than once"):
        evaluate([loaded[0], loaded[0]], frame, "y")
    with pytest.raises(EvaluationError, match="label: no column 'nope'"):
        evaluate(loaded, frame, "nope")


def test_unknown_models_meta_models_and_missing_columns_are_named(world):
    store = world["store"]
    with pytest.raises(models_lib.ModelError, match=r"models\[0\]: 'no-such-tag' is neither"):
        runner.run(spec(world, ["no-such-tag"]), store)
    with pytest.raises(models_lib.ModelError, match="no model 'm-000000000000000000000000'"):
        runner.run(spec(world, ["m-000000000000000000000000"]), store)
    record = model_pb2.ModelRecord()  # stored as platform/registry/meta_models stores one
    record.meta.kind, record.artifact.format = "threshold", "meta-json"
    record.meta.children.append(world["weak"].model_id)
    meta = store.put(b'{"kind": "threshold"}', record).record
    with pytest.raises(models_lib.ModelError, match=r"models\[1\]: .* is a threshold meta-model"):
        runner.run(spec(world, [world["weak"].model_id, meta.model_id]), store)
    only_x1_x2 = {**world["rows"], "data": {"parquet": {**world["rows"]["data"]["parquet"],
                                                        "columns": ["x1", "x2"]}}}
    with pytest.raises(models_lib.ModelError, match=r"models\[1\]: model m-\w+ reads column\(s\) x3"):
        runner.run(spec_lib.parse({**only_x1_x2, "models": [world["strong"].model_id, "toy-prod"]}), store)


def test_a_workflow_whose_evaluate_returns_nonsense_is_told_so(world):
    bad = Workflow(name="toy", features=("x1",), label="y", train=lambda *a: None,
                   evaluate=lambda df, s: {"metrics": {"x": "high"}})
    with pytest.raises(EvaluationError, match=r"workflow toy's evaluate: metrics\['x'\]: expected a number"):
        runner.run(spec(world, [world["weak"].model_id], bootstrap={"resamples": 5}), world["store"], bad)
    other = Workflow(name="churn", features=("x1",), label="y", train=lambda *a: None)
    with pytest.raises(EvaluationError, match="this is the churn workflow"):
        runner.run(spec(world, [world["weak"].model_id], workflow="toy"), world["store"], other)


@pytest.mark.parametrize("change, field", [
    ({"models": []}, "models"),
    ({"models": ["a", "a"]}, "models[1]"),
    ({"models": [3]}, "models[0]"),
    ({"colour": "red"}, "colour"),
    ({"params": {}}, "params"),
    ({"compare": "some"}, "compare"),
    ({"bootstrap": {"resamples": 0}}, "bootstrap.resamples"),
    ({"bootstrap": {"confidence": 1.5}}, "bootstrap.confidence"),
    ({"bootstrap": {"seed": True}}, "bootstrap.seed"),
    ({"label": "z"}, "label"),
    ({"workflow": "Toy!"}, "workflow"),
    ({"holdout": {"random": {"fraction": 2}}}, "holdout.random.fraction"),
    ({"data": {"parquet": {"uri": "/x.parquet"}}}, "data.parquet.label_columns"),
    ({"metadata": {"team": "risk"}}, "metadata.owner"),
])
def test_bad_specs_name_the_field(world, change, field):
    body = {**world["rows"], "models": ["toy-prod"], **change}
    with pytest.raises(validate.RequestError) as e:
        spec_lib.parse(json.dumps(body))
    assert e.value.field == field, e.value


def test_a_spec_round_trips_resolved(world):
    parsed = spec(world, ["toy-prod"], label="y", bootstrap={"seed": 3})
    resolved = parsed.resolved([world["weak"].model_id], "toy")
    again = spec_lib.parse(json.dumps(resolved.to_dict()))
    assert again == resolved and again.models[0] == spec_lib.ModelRef("toy-prod", world["weak"].model_id)
    assert again.training_request().workflow == "toy" and again.settings == Settings(seed=3)


def test_input_columns_are_known_without_loading_xgboost_and_from_a_pickle(world):
    store = world["store"]
    assert models_lib.input_columns(store, world["strong"]) == ["x1", "x2"]
    assert models_lib.input_columns(store, world["weak"]) == ["x1", "x3"]


def test_an_explicit_holdout_dataset_is_the_rows_evaluated(world, tmp_path):
    # As in training: a fresh dataset (what a retraining scheduler evaluates a challenger on).
    rng = np.random.default_rng(4)
    n = 800
    x1, x2, x3 = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    pq.write_table(pa.table({"x1": x1, "x2": x2, "x3": x3, "y": (x1 + x2 > 1.5).astype(int)}),
                   tmp_path / "fresh.parquet")
    body = {**world["rows"], "holdout": {"dataset": {"source": {"parquet": {"uri": str(tmp_path / "fresh.parquet")}}}},
            "models": ["toy-prod", world["strong"].model_id], "bootstrap": {"resamples": 30}}
    result = runner.run(spec_lib.parse(body), world["store"], WEAK)
    assert result.rows == n and result.positives == int((x1 + x2 > 1.5).sum())
