"""Test support for the scorer: models stored for features/defs/fraud.feat, and a real scorer
process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import xgboost

from roundhouse.platform.api import model_pb2
from roundhouse.platform.registry import artifacts, feature_set
from roundhouse.platform.registry.store import ModelStore
from roundhouse.testing.ports import free_port

HERE = pathlib.Path(__file__).parent
SERVER = HERE / "server"
DEFS = HERE.parent / "features" / "defs"
FRAUD = DEFS / "fraud.feat"
COLUMNS = ("amount", "card_charges_1h", "card_charges_24h", "card_amount_avg_30d",
           "card_distinct_merchants_24h", "merchant_charges_1h", "ip_distinct_cards_24h",
           "merchant_disputes_30d", "amount_to_card_avg_30d")


def store_model(store: ModelStore, seed: int, columns=COLUMNS, n_trees: int = 20, depth: int = 4) -> str:
    """Trains a small XGBoost model on random rows of `columns` (features of fraud.feat) and
    stores it as the training runner does: its record names the definitions, with its serving
    form beside it. Another seed gives another model."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, len(columns))) * 10
    x[rng.random(x.shape) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 0]) + rng.normal(size=400) * 5 > 0).astype(int)
    model = xgboost.XGBClassifier(n_estimators=n_trees, max_depth=depth, random_state=seed, n_jobs=1)
    model.fit(x, y)
    blob, fmt = artifacts.serialize(model)
    record = model_pb2.ModelRecord(bazel_target="//scoring:testlib")
    record.artifact.format = fmt
    record.metrics["seed"] = seed
    record.feature_set.CopyFrom(feature_set.describe(FRAUD, columns))
    return store.put(blob, record, derived=artifacts.serving_forms(blob, fmt)).record.model_id


def call(base: str, method: str, path: str, body=None, timeout: float = 30):
    """(status, JSON answer); bytes bodies are sent as they are."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Scorer:
    """A scorer process: `Scorer(tmp, store_dir, "--shard", ...).start()`."""

    def __init__(self, tmp: pathlib.Path, store: str, *flags: str, port: int | None = None):
        self.tmp = pathlib.Path(tmp)
        self.store = store
        self.flags = list(flags)
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = self.tmp / f"scorer-{self.port}.log"
        self.proc = None

    def start(self, ready: bool = True, timeout: float = 60):
        env = {**os.environ, "ROUNDHOUSE_HOME": str(self.tmp / "home")}
        self.proc = subprocess.Popen(
            [str(SERVER), "--port", str(self.port), "--store", self.store, "--poll", "0.2", *self.flags],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                status, _ = call(self.base, "GET", "/healthz", timeout=5)
                if status == 200 or (status == 503 and not ready):
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"scorer not ready in {timeout} s:\n{self.log.read_text()}")

    def score(self, tag: str, event: dict, explain: bool = True):
        return call(self.base, "POST", f"/v1/score/{tag}" + ("?explain=1" if explain else ""), event)

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

