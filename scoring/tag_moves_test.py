"""Tag moves under load: a tag moved back and forth 20 times while clients score through it,
on a scorer with two worker processes sharing a Redis state."""

import threading
import time
import urllib.request

from roundhouse.platform.api import model_pb2
from roundhouse.platform.registry import artifacts
from roundhouse.platform.registry.store import open_store
from roundhouse.platform.registry.tags import TagStore
from roundhouse.scoring import testlib
from roundhouse.scoring.testlib import call
from roundhouse.testing.redis_server import redis_url  # noqa: F401  (a fixture)

T0 = 1_704_067_200_000_000
PICKUP = 2.0  # seconds within which every worker serves the new model
MOVES = 20


def test_moves_under_load_fail_no_request_and_switch_within_two_seconds(tmp_path, redis_url):  # noqa: F811
    store = open_store(str(tmp_path / "models"))
    a, b = testlib.store_model(store, seed=1, n_trees=200, depth=6), testlib.store_model(store, seed=2)
    tags = TagStore(store)
    tags.set("fraud-prod", a)
    scorer = testlib.Scorer(tmp_path, str(tmp_path / "models"), "--features-store", redis_url,
                            "--workers", "2", "--poll", "0.5").start()
    answers: list[tuple[float, float, int, str]] = []  # (sent at, answered at, status, model ID)
    stop = threading.Event()

    def load(lane):
        i = 0
        while not stop.is_set():
            i += 1
            sent = time.monotonic()
            status, out = call(scorer.base, "POST", "/v1/score/fraud-prod",
                               {"event_time": T0 + i * 1000, "charge_id": f"c{lane}-{i}", "card_id": f"k{i % 50}",
                                "amount": 100 * i})
            answers.append((sent, time.monotonic(), status, out.get("model_id", out.get("error"))))

    clients = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for c in clients:
        c.start()
    moves = []  # (moved at, new model, old model)
    try:
        time.sleep(1)
        for k in range(MOVES):
            new, old = (b, a) if k % 2 == 0 else (a, b)
            if k % 4 == 3:
                assert tags.rollback("fraud-prod") == new  # a rollback is a move too
            else:
                tags.set("fraud-prod", new)
            moves.append((time.monotonic(), new, old))
            time.sleep(PICKUP + 0.3)
    finally:
        stop.set()
        for c in clients:
            c.join()
        scorer.stop()
    failed = [x for x in answers if x[2] != 200]
    assert not failed, failed[:5]
    assert {m for *_, m in answers} == {a, b}
    assert len(answers) > 200
    for k, (at, new, old) in enumerate(moves):
        until = moves[k + 1][0] if k + 1 < len(moves) else float("inf")
        # sent PICKUP s after the move and answered before the next one: the new model only
        # (an answer after the next move may rightly name that move's model, the old one)
        late = [x for x in answers if at + PICKUP <= x[0] and x[1] < until and x[3] != new]
        assert not late, (f"move {k}: {len(late)} answers from {old} more than {PICKUP} s after the move; "
                          "the workers' switches:\n" + "".join(
                              line for line in scorer.log.read_text().splitlines(keepends=True) if "serving" in line))


def test_a_model_that_fails_to_load_leaves_the_previous_one_serving(tmp_path):
    store = open_store(str(tmp_path / "models"))
    good = testlib.store_model(store, seed=1)
    record = model_pb2.ModelRecord()
    record.CopyFrom(store.get(good))
    record.ClearField("model_id")
    record.metrics["broken"] = 1
    record.artifact.format = artifacts.XGBOOST_JSON
    broken = store.put(b"{not a model", record, derived={"serving.trees": b"garbage"}).record.model_id
    tags = TagStore(store)
    tags.set("fraud-prod", good)
    scorer = testlib.Scorer(tmp_path, str(tmp_path / "models")).start()
    try:
        tags.set("fraud-prod", broken)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, health = call(scorer.base, "GET", "/healthz")
            if health["errors"]:
                break
            time.sleep(0.1)
        assert status == 200 and health["status"] == "degraded", health
        assert broken in health["errors"]["fraud-prod"] and health["serving"]["fraud-prod"] == good
        status, out = scorer.score("fraud-prod", {"event_time": T0, "charge_id": "c"})
        assert status == 200 and out["model_id"] == good
        text = urllib.request.urlopen(scorer.base + "/metrics").read().decode()
        assert 'scoring_tag_degraded{tag="fraud-prod"} 1.0' in text
        assert 'scoring_model_load_failures_total{tag="fraud-prod"} 1.0' in text
    finally:
        scorer.stop()
