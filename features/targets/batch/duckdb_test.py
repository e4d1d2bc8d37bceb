"""Batch target (DuckDB): exact answers on a hand-written log, the naive reference on
generated logs, labels, and the CLI's Parquet output."""
import datetime
import pathlib

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roundhouse.features.commands import materialize_main
from roundhouse.features.language import loader
from roundhouse.features.targets.batch import duckdb_target
from roundhouse.features.testing import gen, reference, scenario
from roundhouse.features.testing.compare import assert_rows_equal
from roundhouse.features.transport import events

FEATURES = pathlib.Path(__file__).parents[2]


def run_batch(program, table, labels=True) -> list[dict]:
    con = duckdb.connect()
    con.register("events_in", table)
    return con.sql(duckdb_target.BatchCompiler(program, labels).sql("events_in")) \
        .to_arrow_table().to_pylist()


def test_hand_written_log_gives_the_contract_answers():
    assert_rows_equal(run_batch(scenario.program(), scenario.table()), scenario.expected_rows())


@pytest.mark.parametrize("defs", ["defs/fraud.feat", "testdata/kitchen_sink.feat"])
@pytest.mark.parametrize("seed", [1, 2])
def test_batch_matches_the_naive_reference(defs, seed):
    p = loader.load(FEATURES / defs)
    table = gen.generate(p, 250, seed)
    assert_rows_equal(run_batch(p, table), reference.evaluate(p, table))


@pytest.mark.parametrize("defs", ["defs/fraud.feat", "testdata/kitchen_sink.feat"])
def test_in_order_fast_path_gives_the_general_answer(defs):
    p = loader.load(FEATURES / defs)
    table = gen.generate(p, 600, 5)
    # Same events with their event_times sorted into seq order: in order, ties kept.
    times = table.column("event_time").combine_chunks().sort()
    table = table.set_column(1, "event_time", times)
    con = duckdb.connect()
    con.register("events_in", table)
    assert duckdb_target.is_in_order(con, "events_in")
    fast = con.sql(duckdb_target.BatchCompiler(p, in_order=True).sql("events_in")) \
        .to_arrow_table()
    general = con.sql(duckdb_target.BatchCompiler(p).sql("events_in")).to_arrow_table()
    assert fast.equals(general)
    assert_rows_equal(general.to_pylist(), reference.evaluate(p, table))
    con.register("shuffled", gen.generate(p, 50, 5))
    assert not duckdb_target.is_in_order(con, "shuffled")


def _fraud_log(rows):
    p = loader.load(FEATURES / "defs" / "fraud.feat")
    t0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    cols = {f.name: [] for f in events.schema(p)}
    for seq, (stream, micros, fields) in enumerate(rows, start=1):
        cols["seq"].append(seq)
        cols["event_time"].append(t0 + datetime.timedelta(microseconds=micros))
        cols["stream"].append(stream)
        for name in cols:
            if name not in ("seq", "event_time", "stream"):
                cols[name].append(fields.get(name))
    return p, pa.Table.from_pydict(cols, schema=events.schema(p))


def test_is_fraud_label_window_is_zero_to_ninety_days_inclusive():
    day = 86_400_000_000
    charge = lambda cid: {"charge_id": cid, "card_id": "c", "merchant_id": "m", "amount": 100}
    fraud = lambda cid: {"charge_id": cid, "merchant_id": "m", "reason": "fraudulent"}
    p, table = _fraud_log([
        ("charge", 0, charge("a")),
        ("charge", 0, charge("b")),
        ("charge", 0, charge("c")),
        ("charge", 0, charge("d")),
        ("dispute", 0, fraud("a")),                      # same instant: 0 days after
        ("dispute", 90 * day + 1, fraud("b")),            # just past 90 days
        ("dispute", 90 * day, {**fraud("c"), "reason": "duplicate"}),
        ("dispute", 90 * day, fraud("d")),                # exactly 90 days
    ])
    rows = run_batch(p, table)
    assert [r["is_fraud"] for r in rows] == [True, False, False, True]


def test_merchant_disputes_are_read_at_each_charge():
    hour = 3_600_000_000
    p, table = _fraud_log([
        ("dispute", 0, {"charge_id": "x", "merchant_id": "m1", "reason": "fraudulent"}),
        ("dispute", hour, {"charge_id": "y", "merchant_id": "m1", "reason": "other"}),
        ("dispute", hour, {"charge_id": "z", "merchant_id": None, "reason": "other"}),
        ("charge", 2 * hour, {"charge_id": "c1", "card_id": "k", "merchant_id": "m1",
                              "amount": 5}),
        ("charge", 2 * hour, {"charge_id": "c2", "card_id": "k", "merchant_id": "m2",
                              "amount": 0}),
    ])
    rows = run_batch(p, table)
    assert [r["merchant_disputes_30d"] for r in rows] == [2, 0]
    assert rows[1]["amount_to_card_avg_30d"] == 0.0
    assert rows[1]["card_amount_avg_30d"] == 5.0


def test_materialize_cli_writes_the_training_table(tmp_path):
    p = loader.load(FEATURES / "defs" / "fraud.feat")
    src = tmp_path / "events.parquet"
    pq.write_table(gen.generate(p, 300, 3), src)
    out = tmp_path / "out" / "train.parquet"
    code = materialize_main.main(["--defs", str(FEATURES / "defs" / "fraud.feat"), "--events",
                                  str(src), "--out", str(out)])
    assert code == 0
    table = pq.read_table(out)
    assert table.column_names == ["seq", "too_late"] + [d.column for d in p.features] + \
        ["is_fraud"]
    assert table.schema.field("card_charges_1h").type == pa.int64()
    seqs = table.column("seq").to_pylist()
    assert seqs == sorted(seqs) and len(seqs) == sum(
        1 for s in pq.read_table(src).column("stream").to_pylist() if s == "charge")


def test_materialize_cli_reports_a_bad_events_file(tmp_path, capsys):
    src = tmp_path / "events.parquet"
    pq.write_table(pa.table({"seq": [1], "stream": ["charge"]}), src)
    code = materialize_main.main(["--defs", str(FEATURES / "defs" / "fraud.feat"), "--events",
                                  str(src), "--out", str(tmp_path / "o.parquet")])
    assert code == 1
    assert "missing column 'event_time'" in capsys.readouterr().err


# Strings that text-built SQL mangles: str.format braces, quotes, backslashes, LIKE's % and _,
# control characters, Spark's ${...} substitution, non-ASCII.
HOSTILE = ["{reason}", "{0} %s {{x}} %(x)s", "it's \"quoted\" \\ back", "'", "\\", "%_",
           "a\\%b_", "line1\nline2\ttab\r\x01\x0012end", "${reason}", "${system:java.version}",
           "fraudulent—é 🚀"]


def _language_string(s: str) -> str:
    """s as a string literal of the feature language."""
    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}
    return '"' + "".join(escapes.get(c, f"\\x{ord(c):02x}" if ord(c) < 32 else c)
                         for c in s) + '"'


def test_materialize_reads_hostile_strings_as_written(tmp_path):
    """`{reason}` once crashed materialize with a KeyError (the SQL went through str.format).
    Each string is a label true only for the charge with a dispute of exactly that reason, and
    a feature true only for the charge whose card_id is exactly that string; the other charges
    hold the string as escaped text (unicode_escape), which must not match."""
    defs = tmp_path / "hostile.feat"
    defs.write_text(
        "lateness 1h\ndriver charge\n"
        "stream charge { charge_id: string  card_id: string? }\n"
        "stream dispute { charge_id: string?  reason: string? }\n"
        'label l v1 = exists(dispute where reason == "{reason}") by charge_id over next 90d\n'
        + "".join(f"label h{i} = exists(dispute where reason == {_language_string(s)}) "
                  f"by charge_id over next 90d\n"
                  f"feature card_is{i} = card_id == {_language_string(s)}\n"
                  for i, s in enumerate(HOSTILE)), encoding="utf-8")
    p = loader.load(defs)
    day = 86_400_000_000
    near = [s.encode("unicode_escape").decode("ascii") for s in HOSTILE]
    near = [n if n != s else s.upper() + "?" for n, s in zip(near, HOSTILE)]
    assert not set(near) & set(HOSTILE)
    rows = []
    for i, (s, n) in enumerate(zip(HOSTILE, near)):
        rows += [("charge", 0, {"charge_id": f"a{i}", "card_id": s}),
                 ("charge", 0, {"charge_id": f"b{i}", "card_id": n}),
                 ("dispute", day, {"charge_id": f"a{i}", "reason": s}),
                 ("dispute", day, {"charge_id": f"b{i}", "reason": n})]
    t0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    cols = {f.name: [] for f in events.schema(p)}
    for seq, (stream, micros, fields) in enumerate(rows, start=1):
        cols["seq"].append(seq)
        cols["event_time"].append(t0 + datetime.timedelta(microseconds=micros))
        cols["stream"].append(stream)
        for name in ("charge_id", "card_id", "reason"):
            cols[name].append(fields.get(name))
    src = tmp_path / "events.parquet"
    pq.write_table(pa.Table.from_pydict(cols, schema=events.schema(p)), src)
    out = tmp_path / "train.parquet"
    assert materialize_main.main(["--defs", str(defs), "--events", str(src), "--out",
                                  str(out)]) == 0
    got = pq.read_table(out).to_pylist()
    charges = [f["charge_id"] for stream, _, f in rows if stream == "charge"]
    assert [r["l"] for r in got] == [c == "a0" for c in charges]
    for i in range(len(HOSTILE)):
        assert [r[f"h{i}"] for r in got] == [c == f"a{i}" for c in charges], HOSTILE[i]
        assert [r[f"card_is{i}"] for r in got] == [c == f"a{i}" for c in charges], HOSTILE[i]
    assert got == run_batch(p, pq.read_table(src))  # the CLI and the compiler agree


def test_string_literals_read_back_exactly():
    """Random strings of the characters that escaping gets wrong, as literals of the DuckDB
    dialect (sql.render): DuckDB reads each back as it was."""
    import random

    from sqlglot import exp

    from roundhouse.features.targets.batch import sql

    rnd = random.Random(7)
    chars = list("\\'\"${}%_0127ux\n\r\t\x01\x00\x7f\u2028é🚀 —")
    strings = HOSTILE + ["".join(rnd.choice(chars) for _ in range(rnd.randrange(12)))
                         for _ in range(300)]
    query = exp.Select(expressions=[sql.alias(exp.Literal.string(s), f"c{i}")
                                    for i, s in enumerate(strings)])
    assert list(duckdb.connect().sql(sql.render(query, "duckdb")).fetchall()[0]) == strings


def _bad_events(p, change):
    table = gen.generate(p, 50, 4)
    return change(table)


@pytest.mark.parametrize("change", [
    lambda t: t.set_column(0, "seq", pa.array([1] * t.num_rows, pa.int64())),   # repeated seqs
    lambda t: t.set_column(2, "stream", pa.array([None] * t.num_rows, pa.string())),
    lambda t: t.set_column(t.schema.get_field_index("charge_id"), "charge_id",
                           pa.nulls(t.num_rows, pa.string())),               # declared non-null
    lambda t: t.set_column(1, "event_time", pa.array([True] * t.num_rows)),  # no conversion
], ids=["repeated-seq", "null-stream", "null-non-null-field", "bool-event-time"])
def test_materialize_reports_what_events_read_reports(tmp_path, capsys, change):
    """DuckDB reads the file itself (footer checks, then one aggregate): same errors."""
    p = loader.load(FEATURES / "defs" / "fraud.feat")
    src = tmp_path / "events.parquet"
    pq.write_table(_bad_events(p, change), src)
    with pytest.raises(events.EventsError) as want:
        events.read(str(src), p)
    code = materialize_main.main(["--defs", str(FEATURES / "defs" / "fraud.feat"), "--events",
                                  str(src), "--out", str(tmp_path / "o.parquet")])
    assert code == 1
    assert capsys.readouterr().err == f"materialize: {want.value}\n"


def test_materialize_within_a_small_memory_limit_cleans_up(tmp_path, capsys):
    p = loader.load(FEATURES / "defs" / "fraud.feat")
    src = tmp_path / "events.parquet"
    pq.write_table(gen.generate(p, 3000, 8), src)
    outs = {}
    for limit in ("none", "64MB"):
        out = tmp_path / limit / "train.parquet"
        assert materialize_main.main(["--defs", str(FEATURES / "defs" / "fraud.feat"),
                                      "--events", str(src), "--out", str(out),
                                      "--memory-limit", limit, "--threads", "1"]) == 0
        assert sorted(x.name for x in out.parent.iterdir()) == ["train.parquet"]  # no spill left
        outs[limit] = pq.read_table(out)
    assert outs["64MB"].equals(outs["none"])
    # Too little is a clear error, not a traceback.
    assert materialize_main.main(["--defs", str(FEATURES / "defs" / "fraud.feat"), "--events",
                                  str(src), "--out", str(tmp_path / "t" / "o.parquet"),
                                  "--memory-limit", "1MB"]) == 1
    assert "raise --memory-limit" in capsys.readouterr().err
    assert sorted(x.name for x in (tmp_path / "t").iterdir()) == []
    with pytest.raises(SystemExit):
        materialize_main.main(["--defs", "x", "--events", "y", "--out", "z",
                               "--memory-limit", "lots"])
