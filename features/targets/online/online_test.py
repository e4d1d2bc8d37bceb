"""Online target: exact answers, agreement with the reference, bounded state, restart from a
snapshot or from Redis without losing or double counting, and the replay CLI."""
import datetime
import pathlib
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roundhouse.features.commands import replay_main
from roundhouse.features.language import loader
from roundhouse.features.targets.online import replay, stores
from roundhouse.features.targets.online.codegen import Codegen
from roundhouse.features.targets.online.emitter import Emitter
from roundhouse.features.targets.online.program import INDEX_FROM, OnlineProgram
from roundhouse.features.testing import gen, parity, reference, scenario
from roundhouse.features.testing.compare import assert_rows_equal
from roundhouse.features.transport import events
from roundhouse.testing.redis_server import redis_url  # noqa: F401  (pytest fixture)

FEATURES = pathlib.Path(__file__).parents[2]


def replay_rows(program, table, store=None, index_from=INDEX_FROM) -> list[dict]:
    store = store or stores.MemoryStore(OnlineProgram(program, index_from))
    return replay.replay_table(program, events.conform(table, program), store).to_pylist()


def test_hand_written_log_gives_the_contract_answers():
    assert_rows_equal(replay_rows(scenario.program(), scenario.table()),
                      scenario.expected_rows())


@pytest.mark.parametrize("defs", ["defs/fraud.feat", "testdata/kitchen_sink.feat"])
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("index_from", [INDEX_FROM, 1])
def test_online_matches_the_naive_reference(defs, seed, index_from):
    p = loader.load(FEATURES / defs)
    table = gen.generate(p, 250, seed)
    assert_rows_equal(replay_rows(p, table, index_from=index_from),
                      reference.evaluate(p, table, labels=False))


def _steady_log(program, n, keys, step_micros, first_seq=0,
                t0=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)):
    cols = {f.name: [None] * n for f in events.schema(program)}
    cols["seq"] = list(range(first_seq, first_seq + n))
    cols["event_time"] = [t0 + datetime.timedelta(microseconds=i * step_micros) for i in range(n)]
    cols["stream"] = ["charge"] * n
    cols["charge_id"] = [f"ch{i}" for i in range(n)]
    cols["card_id"] = [f"card{i % keys}" for i in range(n)]
    cols["merchant_id"] = [f"m{i % 7}" for i in range(n)]
    cols["amount"] = [i % 100 for i in range(n)]
    return pa.Table.from_pydict(cols, schema=events.schema(program))


def test_indexed_state_serves_what_slices_serve_through_trims_and_sweeps():
    # 2000 charges one hour apart on 5 cards: keys of ~145 live events, trimmed on insert and
    # swept between the parts; one program indexes every key, the other none.
    p = loader.load(FEATURES / "defs" / "fraud.feat")
    table = events.conform(_steady_log(p, 2000, 5, 3_600_000_000), p)
    runs = []
    for index_from in (1, 10**9):
        ev = OnlineProgram(p, index_from)
        store = stores.MemoryStore(ev)
        rows = []
        for lo in range(0, 2000, 500):
            rows += replay.replay_table(p, table.slice(lo, 500), store).to_pylist()
            ev.sweep(store.states, store.meta)
        indexed = [st[1] is not None for st in store.states["window:charge:card_id"].values()]
        runs.append((rows, indexed))
    (with_index, indexed), (with_slices, never) = runs
    assert all(indexed) and not any(never)
    assert with_index == with_slices


def test_input_columns_share_one_object_per_value_of_a_column_with_few_values():
    p = loader.load(FEATURES / "defs" / "fraud.feat")
    ev = OnlineProgram(p)
    table = events.conform(_steady_log(p, 400, 300, 1_000_000), p)
    merchants = table.column("merchant_id").to_pylist()
    merchants[::10] = [None] * 40
    table = table.set_column(table.schema.get_field_index("merchant_id"), "merchant_id",
                             pa.array(merchants, pa.string()))
    strings: dict = {}
    halves = [table.slice(0, 200), table.slice(200)]
    cols = [replay.columns_of(half, ev, strings) for half in halves]
    for half, got in zip(halves, cols):
        for name in ("seq", "stream", "card_id", "merchant_id", "ip", "amount"):
            assert got[ev.pos[name]] == half.column(name).to_pylist(), name
    shared = cols[0][ev.pos["merchant_id"]] + cols[1][ev.pos["merchant_id"]]
    assert len({id(m) for m in shared if m is not None}) == 7  # m0..m6, across both calls


def test_state_is_bounded_by_longest_window_plus_lateness_and_evicted_state_goes():
    p = loader.load(FEATURES / "defs" / "fraud.feat")
    ev = OnlineProgram(p)
    store = stores.MemoryStore(ev)
    hour = 3_600_000_000
    # 2000 charges one hour apart on 5 cards: ~83 days, longest window 30 days + 1h lateness.
    replay.replay_table(p, _steady_log(p, 2000, 5, hour), store)
    ev.sweep(store.states, store.meta)
    limit = (30 * 24 + 1) + 1  # charges per key within 30d + lateness, one hour apart
    for g in ev.window_groups:
        for key, st in store.states[g.id].items():
            ts = ev.times(g, st)  # event_times; other lists, if any, run parallel to it
            assert store.meta[0] - ts[0] <= 30 * 24 * hour + hour, (g.id, key)
            assert len(ts) <= limit
            assert ts is st or len(st) == ev.base(g) + len(ts) * ev.stride(g), (g.id, key)
            if g.id in ev.compiled.build and st[1] is not None:  # evicted from the index too
                assert all(len(part) <= len(ts) + 1 for part in st[1]), (g.id, key)
    assert all(st[1] for st in store.states["window:charge:card_id"].values())  # ~145 each
    # Ten more cards, then a single charge months later: every earlier key is out of reach
    # of any driver that is not too late, so its state goes entirely.
    replay.replay_table(p, _steady_log(p, 10, 10, hour, 10_000,
                                       datetime.datetime(2024, 4, 1, tzinfo=datetime.timezone.utc)),
                        store)
    assert "card9" in store.states["window:charge:card_id"]
    replay.replay_table(p, _steady_log(p, 1, 1, hour, 20_000,
                                       datetime.datetime(2024, 6, 1, tzinfo=datetime.timezone.utc)),
                        store)
    ev.sweep(store.states, store.meta)
    assert list(store.states["window:charge:card_id"]) == ["card0"]
    assert store.key_count() <= 4  # one card, one merchant, the single charge's other keys


def test_restart_from_snapshot_loses_nothing_and_counts_nothing_twice(tmp_path):
    p = loader.load(FEATURES / "testdata" / "kitchen_sink.feat")
    table = events.conform(gen.generate(p, 1500, 11), p)
    ev = OnlineProgram(p)
    whole = replay.replay_table(p, table, stores.MemoryStore(ev)).to_pylist()

    snap = tmp_path / "state.snapshot"
    first = stores.MemoryStore(ev, snap)
    out1 = replay.replay_table(p, table.slice(0, 700), first).to_pylist()
    first.commit()
    # Events after the snapshot were processed but never committed: a crash loses them from
    # the state, and the restart must re-read them from the log.
    replay.replay_table(p, table.slice(700, 100), first)
    del first
    second = stores.MemoryStore(ev, snap)
    out2 = replay.replay_table(p, table, second).to_pylist()  # the whole log again
    assert out1 + out2 == whole


def test_redis_store_agrees_with_memory_and_resumes(redis_url):  # noqa: F811
    p = loader.load(FEATURES / "testdata" / "kitchen_sink.feat")
    table = events.conform(gen.generate(p, 1200, 5), p)
    ev = OnlineProgram(p)
    whole = replay.replay_table(p, table, stores.MemoryStore(ev)).to_pylist()
    store = stores.RedisStore(ev, redis_url, namespace="t:resume", fresh=True)
    out1 = replay.replay_table(p, table.slice(0, 500), store).to_pylist()
    store.close()
    again = stores.RedisStore(ev, redis_url, namespace="t:resume")
    out2 = replay.replay_table(p, table, again).to_pylist()
    assert out1 + out2 == whole
    again.clear()


def test_redis_store_evicts_expired_keys(redis_url):  # noqa: F811
    p = loader.load(FEATURES / "defs" / "fraud.feat")
    ev = OnlineProgram(p)
    store = stores.RedisStore(ev, redis_url, namespace="t:evict", fresh=True)
    replay.replay_table(p, events.conform(_steady_log(p, 50, 50, 60_000_000), p), store)
    before = store.key_count()
    assert before > 50
    later = _steady_log(p, 1, 1, 1, 1000,
                        datetime.datetime(2024, 3, 1, tzinfo=datetime.timezone.utc))
    replay.replay_table(p, events.conform(later, p), store)
    # Only the last charge's keys remain (card, merchant, ip group has a null ip).
    assert store.key_count() == 2
    assert store.r.zcard(store._idx("window:charge:card_id")) == 1
    store.clear()


def test_serve_reads_features_without_ingesting():
    p = scenario.program()
    store = stores.MemoryStore(OnlineProgram(p))
    replay.replay_table(p, events.conform(scenario.table(), p), store)
    t = scenario.T0 + datetime.timedelta(minutes=70)
    micros = int((t - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc))
                 .total_seconds()) * 1_000_000
    first = store.serve({"seq": 100, "t": micros, "stream": "charge", "card": "A", "amount": 4})
    again = store.serve({"seq": 101, "t": micros, "stream": "charge", "card": "A", "amount": 4})
    assert first == {**again, "seq": 100}
    assert first["c1h"] == 4 and first["too_late"] is False


def test_replay_cli_writes_one_row_per_driver(tmp_path):
    p = loader.load(FEATURES / "defs" / "fraud.feat")
    src = tmp_path / "events.parquet"
    pq.write_table(gen.generate(p, 300, 4), src)
    out = tmp_path / "replay.parquet"
    assert replay_main.main(["--defs", str(FEATURES / "defs" / "fraud.feat"), "--events", str(src),
                             "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert table.column_names == ["seq", "too_late"] + [d.column for d in p.features]


def test_replay_cli_with_redis_store_matches_memory(tmp_path, redis_url):  # noqa: F811
    defs = str(FEATURES / "defs" / "fraud.feat")
    p = loader.load(defs)
    src = tmp_path / "events.parquet"
    pq.write_table(gen.generate(p, 400, 9), src)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert replay_main.main(["--defs", defs, "--events", str(src), "--out", str(a)]) == 0
    assert replay_main.main(["--defs", defs, "--events", str(src), "--out", str(b),
                             "--store", "redis", "--redis-url", redis_url]) == 0
    assert pq.read_table(a).equals(pq.read_table(b))


def test_ifs_and_divisions_over_nulls_agree_with_the_batch_target():
    # An `if` takes its else branch when the condition is null: the online target tests
    # comparisons inline (no three-valued temporary), so nulls on either side must not slip;
    # a division converts an operand to float only when both are ints.
    p = loader.loads(textwrap.dedent("""\
        lateness 1h
        driver charge
        stream charge {
          card_id: string?
          amount: int?
          score: float?
        }
        feature avg_1h = avg(charge.amount) by card_id over 1h
        feature above = if amount > avg_1h then 1 else 0
        feature same = if amount == 50 then "fifty" else "other"
        feature low = if score <= 0.5 then score else null
        feature not_null = if amount is null then -1 else amount
        feature both = if (amount > 10) and (score < 0.9) then true else false
        feature per_int = amount / avg_1h
        feature per_float = score / amount
        feature n_1h = count(charge) by card_id over 1h
        feature per_count = amount / n_1h
        """), "ifs.feat")
    for seed in (1, 2):
        report = parity.run(p, 1500, seed)
        assert not report.differences, "\n".join(report.differences)


def test_the_generated_program_reads_as_code_with_comments_naming_what_it_computes():
    p = loader.load(FEATURES / "testdata" / "kitchen_sink.feat")
    ev = OnlineProgram(p)
    compile(ev.source, "online.py", "exec")
    header = ev.source.split("\n\n", 1)[0]
    for g in ev.groups:  # the header: each table, its state, each aggregation and its feature
        assert f"states[{g.id!r}]" in header
        for s in g.slots:
            assert f"#     {Codegen.agg_name(s)} = " in header
    for d in p.features:  # the output column each value goes to
        assert f"  # {d.column}\n" in ev.source
    derived = [d for d in p.features if f"f_{d.column} = " in ev.source]
    assert derived and all(f"# feature {d.name} v{d.version} = " in ev.source for d in derived)


def test_the_fields_read_come_from_the_plan_not_from_the_text_of_the_code():
    # A string literal that looks like a field local (v_...) is not a field: the generated
    # code reads the fields the aggregations and features use, and nothing else.
    p = loader.loads(textwrap.dedent("""\
        lateness 1h
        driver c
        stream c { k: string?  tag: string?  unused: int? }
        feature n = count(c where tag == "v_nope") by k over 1h
        """), "names.feat")
    ev = OnlineProgram(p)
    assert ev.input_columns == ["seq", "t", "stream", "k", "tag"]
    states, meta = ev.new_states(), [None, None]
    served = [ev.process(ev.row({"seq": i, "t": i, "stream": "c", "k": "a", "tag": tag}),
                         states, meta) for i, tag in enumerate(["v_nope", "x", "v_nope"])]
    assert [row[2] for row in served] == [0, 1, 1]


def test_the_emitter_indents_blocks_and_keeps_comments_on_comment_lines():
    e = Emitter()
    with e.block("def f(x):"):
        e.comment("first line\nsecond " + "word " * 100)
        with e.block("if x:"):
            e.comment("a block with only a comment gets a pass")
        e.line("return x", comment="no\nline break")
    src = e.source()
    namespace: dict = {}
    exec(compile(src, "emitted.py", "exec"), namespace)  # noqa: S102
    assert namespace["f"](3) == 3
    assert "        pass\n" in src and "    return x  # no line break\n" in src
    comments = [ln for ln in src.splitlines() if ln.lstrip().startswith("#")]
    assert len(comments) == 5 and comments[3].endswith(" ...")  # cut at COMMENT_LINES
