"""The consumer over a local append-only log and over Redis Streams: restarts resume from the
committed position, a batch lost in a crash is re-read, and the state ends exactly where one
uninterrupted pass over the log ends."""
import pathlib

import pyarrow.compute as pc

from roundhouse.features.commands import consume_main
from roundhouse.features.language import loader
from roundhouse.features.targets.online import replay, stores
from roundhouse.features.targets.online.program import OnlineProgram
from roundhouse.features.testing import gen
from roundhouse.features.transport import consume, eventlog, events
from roundhouse.testing.redis_server import redis_url  # noqa: F401  (pytest fixture)

FEATURES = pathlib.Path(__file__).parents[1]
DEFS = FEATURES / "testdata" / "kitchen_sink.feat"


def _events(program, n=900, seed=21):
    table = events.conform(gen.generate(program, n, seed), program)
    d = table.to_pylist()
    ts = pc.cast(table.column("event_time"), "int64").to_pylist()
    for e, t in zip(d, ts):
        e["event_time"] = t
    return table, d


def _uninterrupted(program, table):
    store = stores.MemoryStore(OnlineProgram(program))
    replay.replay_table(program, table, store)
    return store


def test_local_log_restart_neither_loses_nor_double_counts(tmp_path):
    program = loader.load(DEFS)
    table, evs = _events(program)
    want = _uninterrupted(program, table)
    log = eventlog.LocalLog(tmp_path / "events.jsonl")
    snap = tmp_path / "state.snapshot"
    ev = OnlineProgram(program)

    log.append(evs[:400])
    first = stores.MemoryStore(ev, snap)
    assert consume.run(first, log, batch=128).events == 400
    # A crash after applying a batch but before committing it: that batch is lost from
    # the state and must be read again after the restart.
    log.append(evs[400:600])
    crashed = stores.MemoryStore(ev, snap)
    events_read, _ = log.read(crashed.position, 100)
    crashed.process_batch([ev.row({**e, "t": e["event_time"]}) for e in events_read])
    del crashed

    log.append(evs[600:])
    second = stores.MemoryStore(ev, snap)
    assert second.meta[1] == evs[399]["seq"]
    assert consume.run(second, log, batch=128).events == 500
    ev.sweep(want.states, want.meta)
    ev.sweep(second.states, second.meta)
    assert second.states == want.states and second.meta == want.meta
    # Committed: a third start has nothing to do.
    assert consume.run(stores.MemoryStore(ev, snap), log).events == 0


def test_a_half_written_line_is_not_consumed(tmp_path):
    program = loader.load(DEFS)
    _, evs = _events(program, 10)
    log = eventlog.LocalLog(tmp_path / "events.jsonl")
    log.append(evs[:3])
    with (tmp_path / "events.jsonl").open("a") as fh:
        fh.write('{"seq": 99999, "stream": "ord')
    got, pos = log.read(0, 100)
    assert [e["seq"] for e in got] == [e["seq"] for e in evs[:3]]
    assert pos == len((tmp_path / "events.jsonl").read_bytes()) - len('{"seq": 99999, "stream": "ord')


def test_redis_streams_into_redis_store_resumes_exactly(redis_url):  # noqa: F811
    program = loader.load(DEFS)
    table, evs = _events(program, 700, 8)
    want = _uninterrupted(program, table)
    ev = OnlineProgram(program)
    log = eventlog.RedisStreamLog(redis_url, "t:events")
    log.r.delete("t:events")
    log.append(evs[:300])
    store = stores.RedisStore(ev, redis_url, namespace="t:consume", fresh=True)
    consume.run(store, log, batch=64)
    position = store.position
    store.close()
    log.append(evs[300:])
    again = stores.RedisStore(ev, redis_url, namespace="t:consume")
    assert again.position == position and again.meta[1] == evs[299]["seq"]
    consume.run(again, log, batch=64)
    probe = {**evs[-1], "seq": evs[-1]["seq"] + 1, "t": evs[-1]["event_time"],
             "stream": program.driver}
    mem = stores.MemoryStore(ev)
    mem.states, mem.meta = want.states, want.meta
    assert again.serve(probe) == mem.serve(probe)
    again.clear()


def test_consume_cli_over_a_local_log(tmp_path, capsys):
    program = loader.load(DEFS)
    _, evs = _events(program, 200, 3)
    eventlog.LocalLog(tmp_path / "log.jsonl").append(evs)
    args = ["--defs", str(DEFS), "--log", str(tmp_path / "log.jsonl"), "--snapshot",
            str(tmp_path / "snap")]
    assert consume_main.main(args) == 0
    assert '"msg": "caught up", "events": 200' in capsys.readouterr().out
    assert consume_main.main(args) == 0
    assert '"msg": "caught up", "events": 0' in capsys.readouterr().out
