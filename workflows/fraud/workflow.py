"""The fraud workflow: an XGBoost classifier over card, merchant and IP velocity features."""

import xgboost

from roundhouse.platform.training.workflow import Workflow
from roundhouse.workflows.fraud import features

DEFAULT_PARAMS = {
    "n_estimators": 200,
    "max_depth": 6,
    "learning_rate": 0.1,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "random_state": 7,
    # Fixed thread count: XGBoost's histogram sums can differ in the last bit with another
    # number of threads, and the same commit and data must give the same model.
    "n_jobs": 2,
}


def train(train_df, holdout_df, params):
    model = xgboost.XGBClassifier(tree_method="hist", eval_metric="aucpr", **params)
    model.fit(train_df[list(features.FEATURES)], train_df[features.LABEL].astype(int))
    return model


WORKFLOW = Workflow(
    name="fraud",
    features=tuple(features.FEATURES),
    label=features.LABEL,
    train=train,
    default_params=DEFAULT_PARAMS,
    feature_definitions=features.DEFS,
)
