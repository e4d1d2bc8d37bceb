"""Live parity: the features the running scorer uses equal //features:replay's for the same log.

A generated log of fraud.feat's streams (ties, late and too-late events, null keys, window
edges) goes to the scorer one event at a time in seq order, charges scored and disputes
through /v1/events. Then several concurrent clients send another log to scorers sharing a
Redis state: afterwards every served value, and the state itself, equal a replay of the
accepted events in the order the scorers numbered them.
"""

import pathlib
import pickle
import subprocess
import threading
import urllib.request

import pyarrow as pa
import pyarrow.parquet as pq
import redis

from roundhouse.features.language import loader
from roundhouse.features.targets.online import stores
from roundhouse.features.targets.online.program import OnlineProgram
from roundhouse.features.testing import compare, gen
from roundhouse.features.transport import eventlog, events as events_mod
from roundhouse.platform.registry.store import open_store
from roundhouse.platform.registry.tags import TagStore
from roundhouse.scoring import testlib
from roundhouse.scoring.testlib import call
from roundhouse.testing.redis_server import redis_url  # noqa: F401  (a fixture)

REPLAY = pathlib.Path(__file__).parent.parent / "features" / "commands" / "replay"
PROGRAM = loader.load(testlib.FRAUD)
FIELDS = [f for s in PROGRAM.streams.values() for f in s.fields]


def replay(table: pa.Table, tmp: pathlib.Path) -> list[dict]:
    events, out = tmp / "events.parquet", tmp / "online.parquet"
    pq.write_table(table, events)
    subprocess.run([str(REPLAY), "--defs", str(testlib.FRAUD), "--events", str(events), "--out", str(out)],
                   check=True)
    return pq.read_table(out).to_pylist()


def body(row: dict, i: int) -> dict:
    """An event as a client sends it: its stream's fields, event_time in either accepted form."""
    t = row["event_time"]
    out = {"event_time": eventlog.micros(t) if i % 2 else t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    for f in PROGRAM.streams[row["stream"]].fields:
        out[f.name] = row[f.name]
    return out


def send(base: str, row: dict, i: int) -> tuple[int, dict | None]:
    """(seq the scorer gave the event, the features it served for a charge)."""
    if row["stream"] == PROGRAM.driver:
        status, out = call(base, "POST", "/v1/score/fraud-live?explain=1", body(row, i))
        assert status == 200, out
        return out["seq"], {"seq": out["seq"], **out["features"]}
    status, out = call(base, "POST", "/v1/events", {"stream": row["stream"], **body(row, i)})
    assert status == 200, out
    [seq] = out["seqs"]["fraud.feat"]
    return seq, None


def store_with_tag(tmp: pathlib.Path) -> str:
    store = open_store(str(tmp / "models"))
    TagStore(store).set("fraud-live", testlib.store_model(store, seed=5))
    return str(tmp / "models")


def renumbered(rows: list[dict], seqs: list[int]) -> pa.Table:
    """The accepted events as the scorer numbered them, in that order."""
    order = sorted(range(len(rows)), key=lambda i: seqs[i])
    table = pa.Table.from_pylist([{**rows[i], "seq": seqs[i]} for i in order], schema=events_mod.schema(PROGRAM))
    return table


def test_scorer_features_equal_the_replay_value_for_value(tmp_path):
    log = gen.generate(PROGRAM, n=1500, seed=11)
    rows = log.to_pylist()
    charges = [r for r in rows if r["stream"] == "charge"]
    # The log really holds the hard cases.
    assert sum(r["card_id"] is None for r in charges) > 10
    assert sum(r["stream"] == "dispute" for r in rows) > 100
    times = [r["event_time"] for r in rows]
    assert len(set(times)) < len(times) - 50  # ties
    scorer = testlib.Scorer(tmp_path, store_with_tag(tmp_path)).start()
    try:
        sent = [send(scorer.base, r, i) for i, r in enumerate(rows)]
    finally:
        scorer.stop()
    seqs = [s for s, _ in sent]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    want = replay(renumbered(rows, seqs), tmp_path)
    got = [features for _, features in sent if features is not None]
    assert sum(w["too_late"] for w in want) > 10
    assert sum(w["card_charges_1h"] is not None and w["card_charges_1h"] > 1 for w in want) > 5
    compare.assert_rows_equal(got, want)


def test_concurrent_clients_lose_nothing_and_count_nothing_twice(tmp_path, redis_url):  # noqa: F811
    log = gen.generate(PROGRAM, n=1200, seed=12)
    rows = log.to_pylist()
    scorer = testlib.Scorer(tmp_path, store_with_tag(tmp_path), "--features-store", redis_url,
                            "--workers", "2", "--namespace", "rh:live").start()
    seqs: list = [None] * len(rows)
    served: dict[int, dict] = {}
    lanes = 6

    def client(lane):
        for i in range(lane, len(rows), lanes):
            seqs[i], features = send(scorer.base, rows[i], i)
            if features is not None:
                served[seqs[i]] = features
    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(lanes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Whichever worker answers /metrics counts every worker's requests.
        text = urllib.request.urlopen(scorer.base + "/metrics").read().decode()
    finally:
        scorer.stop()
    answered = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("scoring_requests_total{") and 'code="200"' in line)
    assert answered == len(rows)
    assert None not in seqs and len(set(seqs)) == len(seqs)
    want = replay(renumbered(rows, seqs), tmp_path)
    compare.assert_rows_equal([served[w["seq"]] for w in want], want)

    # The shared state equals the accepted events applied one by one, in the scorers' order,
    # to an empty namespace.
    program = OnlineProgram(PROGRAM)
    fresh = stores.RedisStore(program, redis_url, namespace="rh:check", fresh=True)
    for event in renumbered(rows, seqs).to_pylist():
        fresh.process_batch([program.row({**event, "t": eventlog.micros(event["event_time"])})])
    r = redis.Redis.from_url(redis_url)
    state = lambda ns: {k: pickle.loads(v) for k, v in r.hgetall(f"{ns}:state").items()}  # noqa: E731
    assert state("rh:live") == state("rh:check")
    assert len(state("rh:check")) > 5


CONSUME = pathlib.Path(__file__).parent.parent / "features" / "commands" / "consume"


def test_ingest_stream_hands_events_to_the_consumer(tmp_path, redis_url):  # noqa: F811
    """--ingest stream: the scorer serves from the shared state and appends each event to a
    Redis Stream; //features:consume applies them; later events see them all."""
    rows = gen.generate(PROGRAM, n=400, seed=13).to_pylist()
    scorer = testlib.Scorer(tmp_path, store_with_tag(tmp_path), "--features-store", redis_url,
                            "--ingest", "stream", "--redis-stream", "rh:events").start()
    try:
        last = max(i for i, r in enumerate(rows) if r["stream"] == PROGRAM.driver)
        history, probe = rows[:last], rows[last]
        seqs = [send(scorer.base, r, i)[0] for i, r in enumerate(history)]
        assert redis.Redis.from_url(redis_url).xlen("rh:events") == len(history)
        subprocess.run([str(CONSUME), "--defs", str(testlib.FRAUD), "--redis-stream", "rh:events",
                        "--store", "redis", "--redis-url", redis_url], check=True)
        seq, features = send(scorer.base, probe, 0)
    finally:
        scorer.stop()
    want = replay(renumbered(history + [probe], seqs + [seq]), tmp_path)
    compare.assert_rows_equal([features], want[-1:])


def test_ingest_none_serves_without_touching_the_state(tmp_path, redis_url):  # noqa: F811
    scorer = testlib.Scorer(tmp_path, store_with_tag(tmp_path), "--features-store", redis_url,
                            "--ingest", "none", "--namespace", "rh:readonly").start()
    try:
        charge = {"event_time": 1_704_067_200_000_000, "charge_id": "c", "card_id": "k"}
        counts = [scorer.score("fraud-live", charge)[1]["features"]["card_charges_1h"] for _ in range(3)]
    finally:
        scorer.stop()
    assert counts == [0, 0, 0]
    assert redis.Redis.from_url(redis_url).hlen("rh:readonly:state") == 0
