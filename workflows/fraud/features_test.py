import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roundhouse.workflows.fraud import features, synth

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def log(tmp_path):
    def write(*events):
        """events: (stream, minutes after T0, fields) in arrival order -> events Parquet path."""
        rows = []
        for seq, (stream, minutes, fields) in enumerate(events, start=1):
            row = {name: None for name in synth.SCHEMA.names}
            row.update(seq=seq, event_time=T0 + dt.timedelta(minutes=minutes), stream=stream, **fields)
            rows.append(row)
        path = tmp_path / f"events-{len(list(tmp_path.iterdir()))}.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=synth.SCHEMA), path)
        return path
    return write


def charge(cid, card="c1", merchant="m1", ip="i1", amount=100):
    return {"charge_id": cid, "card_id": card, "merchant_id": merchant, "ip": ip, "amount": amount,
            "currency": "usd", "country": "US"}


def rows(table):
    return {r["charge_id"]: r for r in table.to_pylist()}


def test_window_counts_earlier_arrivals_with_closed_lower_edge(log):
    out = rows(features.training_table(log(
        ("charge", 0, charge("a")),
        ("charge", 30, charge("b", amount=300)),
        ("charge", 60, charge("c")),   # exactly 1h after a: a is still inside [t-1h, t)
        ("charge", 61, charge("d")),   # a is now out of the 1h window
    )))
    assert out["a"]["card_charges_1h"] == 0  # the driver never counts itself
    assert out["c"]["card_charges_1h"] == 2
    assert out["d"]["card_charges_1h"] == 2
    assert out["d"]["card_charges_24h"] == 3
    assert out["d"]["card_amount_avg_30d"] == (100 + 300 + 100) / 3
    assert out["a"]["card_amount_avg_30d"] is None  # empty window


def test_late_event_counts_only_for_drivers_that_arrive_after_it(log):
    out = rows(features.training_table(log(
        ("charge", 10, charge("a", merchant="m1")),
        ("charge", 20, charge("b", merchant="m2")),
        ("charge", 5, charge("late", merchant="m3")),  # arrives third, happened first
        ("charge", 25, charge("c", merchant="m4")),
    )))
    assert out["b"]["card_charges_1h"] == 1
    assert out["c"]["card_charges_1h"] == 3
    assert out["c"]["card_distinct_merchants_24h"] == 3
    assert out["late"]["card_charges_1h"] == 2  # a and b arrived before it and are within 1h


def test_label_is_a_fraudulent_dispute_0_to_90_days_after(log):
    day = 24 * 60
    out = rows(features.training_table(log(
        ("charge", 0, charge("a")),
        ("charge", 1, charge("b")),
        ("charge", 2, charge("c")),
        ("dispute", 90 * day, {"charge_id": "a", "merchant_id": "m1", "reason": "fraudulent"}),
        ("dispute", 90 * day + 2, {"charge_id": "b", "merchant_id": "m1", "reason": "duplicate"}),
        ("dispute", 90 * day + 3, {"charge_id": "c", "merchant_id": "m1", "reason": "fraudulent"}),
        ("charge", 90 * day + 4, charge("d", card="c2")),
    )))
    assert out["a"]["is_fraud"] is True   # exactly 90 days: included
    assert out["b"]["is_fraud"] is False  # not a fraud dispute
    assert out["c"]["is_fraud"] is False  # 90 days and 1 minute: too late
    assert out["d"]["merchant_disputes_30d"] == 3
    assert out["d"]["card_charges_24h"] == 0


def test_synthetic_log_gives_one_row_per_charge_with_every_feature(tmp_path):
    events = synth.generate(synth.Config(charges=3000, days=20, seed=5))
    path = tmp_path / "events.parquet"
    pq.write_table(events, path)
    table = features.training_table(path)
    charges = sum(1 for s in events["stream"].to_pylist() if s == "charge")
    assert table.num_rows == charges
    assert set(features.FEATURES) | {features.LABEL, "event_time", "seq", "too_late"} <= set(table.column_names)
    assert table["seq"].to_pylist() == sorted(table["seq"].to_pylist())
    assert 0 < sum(table[features.LABEL].to_pylist()) < charges
