"""The scorer as a process on loopback: scoring by tag, explain, meta-models, bad input,
health, metrics, shards, and a restart that resumes the in-process state."""

import signal
import socket

import numpy as np
import pytest

from roundhouse.platform.api import model_pb2
from roundhouse.platform.registry import artifacts, meta_models
from roundhouse.platform.registry.store import open_store
from roundhouse.platform.registry.tags import TagStore
from roundhouse.scoring import client as client_lib
from roundhouse.scoring import testlib
from roundhouse.scoring.testlib import call

T0 = 1_704_067_200_000_000
MINUTE = 60_000_000


def charge(i, card="card-1", merchant="mx-1", amount=1000, **extra):
    return {"event_time": T0 + i * MINUTE, "charge_id": f"c{i}", "card_id": card, "merchant_id": merchant,
            "ip": "10.0.0.1", "amount": amount, "currency": "EUR", "country": "DE", **extra}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scoring")
    store = open_store(str(tmp / "models"))
    a = testlib.store_model(store, seed=1)
    b = testlib.store_model(store, seed=2, columns=testlib.COLUMNS[:4])
    tags = TagStore(store)
    tags.set("fraud-prod", a)
    tags.set("fraud-dev", b)
    gate = meta_models.create(store, {"kind": "threshold", "model": a, "bands": [
        {"below": 0.3, "decision": "allow"}, {"below": 0.7, "decision": "review"}, {"decision": "block"}]})
    dispatch = meta_models.create(store, {"kind": "dispatch", "default": gate.model_id,
                                          "rules": [{"field": "merchant_id", "equals": "mx-big", "model": b}]})
    mean = meta_models.create(store, {"kind": "combination", "method": "mean", "models": [a, b]})
    tags.set("fraud-gate", dispatch.model_id)
    tags.set("fraud-mean", mean.model_id)
    scorer = testlib.Scorer(tmp, str(tmp / "models")).start()
    yield {"tmp": tmp, "store": store, "a": a, "b": b, "gate": gate.model_id, "dispatch": dispatch.model_id,
           "mean": mean.model_id, "scorer": scorer}
    scorer.stop()


def expected(store, model_id, features):
    """The stored model's own prediction through xgboost, on the features the scorer used."""
    record = store.get(model_id)
    model = artifacts.deserialize(store.artifact(model_id), record.artifact.format)
    x = np.array([[np.nan if features[c] is None else features[c] for c in record.feature_set.columns]])
    return float(model.predict_proba(x)[0, 1])


def test_scores_with_the_features_the_model_was_trained_on(world):
    s, store = world["scorer"], world["store"]
    status, first = s.score("fraud-prod", charge(0))
    assert status == 200, first
    assert first["model_id"] == world["a"] and first["tag"] == "fraud-prod" and first["leaves"] == [world["a"]]
    feats = first["features"]
    assert set(feats) == {"too_late", *(d for d in store_columns())}
    assert feats["card_charges_1h"] == 0 and feats["amount"] == 1000 and feats["too_late"] is False
    status, second = s.score("fraud-prod", charge(1, amount=3000))
    assert second["features"]["card_charges_1h"] == 1 and second["features"]["card_amount_avg_30d"] == 1000.0
    assert second["seq"] > first["seq"]
    assert second["score"] == pytest.approx(expected(store, world["a"], second["features"]), abs=1e-5)
    assert "features" not in s.score("fraud-prod", charge(2), explain=False)[1]


def store_columns():
    from roundhouse.features.language import loader
    return [d.column for d in loader.load(testlib.FRAUD).features]


def test_meta_models_decide_dispatch_and_combine(world):
    s, store = world["scorer"], world["store"]
    status, out = s.score("fraud-gate", charge(10, card="card-g"))
    assert status == 200, out
    assert out["model_id"] == world["dispatch"] and out["leaves"] == [world["a"]]
    want = "allow" if out["score"] < 0.3 else "review" if out["score"] < 0.7 else "block"
    assert out["decision"] == want
    status, big = s.score("fraud-gate", charge(11, card="card-g", merchant="mx-big"))
    assert big["leaves"] == [world["b"]] and "decision" not in big  # b is not behind a threshold
    status, mean = s.score("fraud-mean", charge(12, card="card-m"))
    assert mean["leaves"] == [world["a"], world["b"]]
    f = mean["features"]
    assert mean["score"] == pytest.approx((expected(store, world["a"], f) + expected(store, world["b"], f)) / 2,
                                          abs=1e-5)


def test_meta_model_specs_are_checked_when_created(world):
    store, a, b = world["store"], world["a"], world["b"]
    again = meta_models.create(store, {"kind": "combination", "method": "mean", "models": [a, b]})
    assert again.model_id == world["mean"]  # same spec, same content-derived ID
    cases = [
        ({"kind": "threshold", "model": "m-000000000000000000000000", "threshold": 0.5}, "model", "no model"),
        ({"kind": "threshold", "model": "fraud-prod", "threshold": 0.5}, "model", "not by tag"),
        ({"kind": "threshold", "model": a, "threshold": 1.5}, "threshold", "between 0 and 1"),
        ({"kind": "combination", "method": "median", "models": [a, b]}, "method", "unknown method"),
        ({"kind": "combination", "method": "mean", "models": [a, b], "weights": [1]}, "weights", "2 finite"),
        ({"kind": "dispatch", "rules": [{"field": "x", "model": a}], "default": b}, "rules[0]", "exactly one"),
        ({"kind": "vote"}, "kind", "unknown kind"),
    ]
    for spec, field, message in cases:
        with pytest.raises(meta_models.SpecError, match=message) as info:
            meta_models.create(store, spec)
        assert info.value.field == field
    bare = model_pb2.ModelRecord(bazel_target="//x")
    bare.artifact.format = "joblib"
    no_defs = store.put(b"not a model", bare).record.model_id
    with pytest.raises(meta_models.SpecError, match="records no feature definitions"):
        meta_models.create(store, {"kind": "combination", "method": "max", "models": [a, no_defs]})


def test_batch_answers_each_event_in_order(world):
    s = world["scorer"]
    batch = {"events": [charge(20 + i, card="card-b") for i in range(5)]}
    status, out = call(s.base, "POST", "/v1/score/fraud-prod/batch?explain=1", batch)
    assert status == 200, out
    assert [r["features"]["card_charges_1h"] for r in out["results"]] == [0, 1, 2, 3, 4]
    bad = {"events": [charge(30, card="card-b"), {**charge(31), "amount": "x"}]}
    status, out = call(s.base, "POST", "/v1/score/fraud-prod/batch", bad)
    assert status == 400 and out["fields"][0]["field"] == "events[1].amount"
    # Nothing of a refused batch was ingested.
    status, out = s.score("fraud-prod", charge(32, card="card-b"))
    assert out["features"]["card_charges_1h"] == 5


def test_events_endpoint_ingests_streams_that_are_not_scored(world):
    s = world["scorer"]
    for i in range(3):
        status, out = call(s.base, "POST", "/v1/events", {"stream": "dispute", "event_time": T0 + (40 + i) * MINUTE,
                                                          "merchant_id": "mx-d", "reason": "fraudulent"})
        assert status == 200 and out["accepted"] == 1, out
    status, out = s.score("fraud-prod", charge(45, card="card-d", merchant="mx-d"))
    assert out["features"]["merchant_disputes_30d"] == 3
    status, out = call(s.base, "POST", "/v1/events", {"stream": "refund", "event_time": 1})
    assert status == 400 and out["fields"][0]["field"] == "stream"


@pytest.mark.parametrize("body, status, field", [
    (b"not json", 400, "(body)"),
    (b"\xff\xfe\x00", 400, "(body)"),
    (b"[" * 50_000 + b"]" * 50_000, 400, "(body)"),
    (b"[1, 2]", 400, "(body)"),
    (b'{"event_time": "2024-01-01T00:00:00Z"}', 400, "charge_id"),
    (b'{"event_time": "2024-01-01T00:00:00Z", "charge_id": "c", "amount": 1e400}', 400, "amount"),
    (b'{"event_time": "2024-01-01T00:00:00Z", "charge_id": "c", "evil": {"a": [1]}}', 400, "evil"),
    (b'{"event_time": "noon", "charge_id": "c"}', 400, "event_time"),
    (b'{"event_time": NaN, "charge_id": "c"}', 400, "(body)"),
])
def test_bad_bodies_get_a_400_naming_the_field(world, body, status, field):
    got, out = call(world["scorer"].base, "POST", "/v1/score/fraud-prod", body)
    assert got == status, out
    assert field in [f["field"] for f in out["fields"]], out


def _send_raw(port: int, raw: bytes) -> bytes:
    """What the server answers to raw bytes; b"" when it closes the connection, which it may
    do before the client has finished sending."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            return sock.recv(4096)
        except OSError:  # reset, or no longer connected
            return b""


def test_unknown_tags_oversized_bodies_and_raw_garbage_leave_the_server_answering(world):
    s = world["scorer"]
    assert call(s.base, "POST", "/v1/score/nope", charge(50))[0] == 404
    status, out = call(s.base, "POST", "/v1/score/fraud-prod", b"{" + b" " * (2 << 20) + b"}")
    assert status == 413, out
    for raw in (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", b"\x00" * 5000,
                b"POST /v1/score/fraud-prod HTTP/1.1\r\nContent-Length: 10\r\n\r\n{"):
        answer = _send_raw(s.port, raw)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), (raw[:40], answer[:200])
    status, out = s.score("fraud-prod", charge(51, card="card-after"))
    assert status == 200 and out["features"]["card_charges_1h"] == 0


def test_models_health_and_metrics(world):
    s = world["scorer"]
    status, health = call(s.base, "GET", "/healthz")
    assert status == 200 and health["serving"]["fraud-prod"] == world["a"], health
    status, models = call(s.base, "GET", "/v1/models")
    assert models["tags"]["fraud-gate"]["kind"] == "dispatch" and models["tags"]["fraud-prod"]["load_ms"] > 0
    import urllib.request
    text = urllib.request.urlopen(s.base + "/metrics").read().decode()
    assert f'scoring_requests_total{{code="200",model_id="{world["a"]}",tag="fraud-prod"}}' in text
    assert 'scoring_requests_total{code="404",model_id="",tag="nope"}' in text
    assert "scoring_feature_serve_seconds_bucket" in text and "scoring_predict_seconds_bucket" in text
    assert f'scoring_model_load_seconds{{model_id="{world["a"]}"}}' in text


def test_a_model_trained_on_other_definitions_is_refused_by_name(world, tmp_path):
    store = open_store(str(tmp_path / "models"))
    mid = testlib.store_model(store, seed=3)
    record = store.get(mid)
    record.feature_set.definitions = "payments.feat"
    foreign = store.put(store.artifact(mid), record).record.model_id
    TagStore(store).set("fraud-prod", foreign)
    s = testlib.Scorer(tmp_path, str(tmp_path / "models")).start(ready=False)
    try:
        status, health = call(s.base, "GET", "/healthz")
        assert status == 503 and "payments.feat" in health["errors"]["fraud-prod"], health
        status, out = s.score("fraud-prod", charge(0))
        assert status == 503 and "payments.feat" in out["error"]
    finally:
        s.stop()


def test_a_shard_serves_its_tags_and_names_the_shard_of_others(world, tmp_path):
    s = testlib.Scorer(tmp_path, str(world["tmp"] / "models"), "--shard", "payments-critical",
                       "--state-dir", str(tmp_path / "state")).start()
    try:
        assert call(s.base, "GET", "/v1/models")[1]["tags"].keys() == {"fraud-prod"}
        status, out = s.score("fraud-dev", charge(0))
        assert status == 421 and out["shard"] == "development", out
        status, routing = call(s.base, "GET", "/v1/routing")
        assert routing["tags"]["fraud-dev"] == "development"
        # The client routes by tag through the table, here with the critical shard on loopback.
        shards = {name: (s.base if name == "payments-critical" else "http://127.0.0.1:9")
                  for name in routing["shards"]}
        client = client_lib.ScoringClient(s.base, urls=shards)
        assert client.score("fraud-prod", charge(1))["model_id"] == world["a"]
        with pytest.raises(client_lib.ScoringUnavailable, match="development"):
            client.score("fraud-dev", charge(2))
    finally:
        s.stop()


def test_a_killed_scorer_resumes_its_state(tmp_path, world):
    flags = ("--state-dir", str(tmp_path / "state"))
    s = testlib.Scorer(tmp_path, str(world["tmp"] / "models"), *flags).start()
    for i in range(3):
        s.score("fraud-prod", charge(i, card="card-r"))
    s.stop(signal.SIGKILL)
    s = testlib.Scorer(tmp_path, str(world["tmp"] / "models"), *flags).start()
    status, out = s.score("fraud-prod", charge(3, card="card-r"))
    assert out["features"]["card_charges_1h"] == 3 and out["seq"] == 4
    s.stop()  # SIGTERM: snapshot
    s = testlib.Scorer(tmp_path, str(world["tmp"] / "models"), *flags).start()
    status, out = s.score("fraud-prod", charge(4, card="card-r"))
    assert out["features"]["card_charges_1h"] == 4 and out["seq"] == 5
    s.stop()


def test_one_in_process_state_has_one_owner(tmp_path, world):
    flags = ("--state-dir", str(tmp_path / "state"))
    first = testlib.Scorer(tmp_path, str(world["tmp"] / "models"), *flags).start()
    second = testlib.Scorer(tmp_path, str(world["tmp"] / "models"), *flags)
    try:
        second.start(ready=False, timeout=20)
        status, health = call(second.base, "GET", "/healthz")
        assert status == 503 and "owns the in-process feature state" in health["errors"]["fraud-prod"]
    finally:
        second.stop()
        first.stop()


def test_past_the_concurrency_limit_requests_get_429_not_a_queue(world, tmp_path):
    import threading
    s = testlib.Scorer(tmp_path, str(world["tmp"] / "models"), "--max-concurrency", "1", "--threads", "6",
                       "--state-dir", str(tmp_path / "state")).start()
    statuses = []
    batch = {"events": [charge(i, card=f"card-q{i % 7}") for i in range(1000)]}

    def send():
        statuses.append(call(s.base, "POST", "/v1/score/fraud-prod/batch", batch, timeout=120)[0])
    try:
        threads = [threading.Thread(target=send) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert 200 in statuses and 429 in statuses and set(statuses) <= {200, 429}, statuses
        import urllib.request
        text = urllib.request.urlopen(s.base + "/metrics").read().decode()
        assert "scoring_rejected_total" in text and "scoring_rejected_total 0.0" not in text
    finally:
        s.stop()
