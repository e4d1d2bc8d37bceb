"""The fraud workflow: an XGBoost classifier over card, merchant and IP velocity features."""

import numpy as np
import pandas as pd
import xgboost

from roundhouse.platform.evaluation import slices
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


# Charge amounts are integer minor units (cents): bands of 0-10, 10-100, 100-1000, 1000+.
AMOUNT_BANDS = (0, 1_000, 10_000, 100_000, np.inf)
AMOUNT_BAND_NAMES = ("0-10", "10-100", "100-1000", "1000+")
MAX_FPR = 0.01


def flagged_at_fpr(y, scores, max_fpr=MAX_FPR):
    """Which charges a threshold flags that flags at most max_fpr of the legitimate ones."""
    negatives = np.sort(scores[~y])[::-1]
    allowed = int(np.floor(max_fpr * len(negatives)))
    if allowed >= len(negatives):
        return np.ones(len(scores), dtype=bool)
    return scores > negatives[allowed]  # strictly above the first legitimate charge not allowed


def evaluate(holdout_df, scores):
    """What fraud losses depend on, beside the platform's metrics: the share of the fraudulent
    amount caught at 1% false positives, and the platform's metrics per amount band."""
    y = holdout_df[features.LABEL].to_numpy().astype(bool)
    amount = holdout_df["amount"].to_numpy(dtype=float)
    flagged = flagged_at_fpr(y, scores)
    fraud_amount = amount[y].sum()
    bands = pd.cut(holdout_df["amount"], AMOUNT_BANDS, right=False, labels=AMOUNT_BAND_NAMES)
    return {
        "metrics": {"fraud_amount_caught_at_1pct_fpr":
                    float(amount[y & flagged].sum() / fraud_amount) if fraud_amount > 0 else None},
        "slices": {"amount_band": slices.by(bands.astype(object), y, scores)},
    }


WORKFLOW = Workflow(
    name="fraud",
    features=tuple(features.FEATURES),
    label=features.LABEL,
    train=train,
    default_params=DEFAULT_PARAMS,
    feature_definitions=features.DEFS,
    evaluate=evaluate,
)
