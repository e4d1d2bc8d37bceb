import numpy as np
import pyarrow.compute as pc

from roundhouse.workflows.fraud import synth

CFG = synth.Config(charges=20_000, days=30, seed=3)


def test_deterministic_by_seed():
    a = synth.generate(CFG)
    assert a.equals(synth.generate(CFG))
    assert not a.equals(synth.generate(synth.Config(charges=20_000, days=30, seed=4)))


def test_log_format():
    t = synth.generate(CFG)
    assert t.schema == synth.SCHEMA
    seq = t["seq"].to_numpy()
    assert (np.diff(seq) > 0).all()
    assert set(t["stream"].to_pylist()) == {"charge", "dispute"}
    charges = t.filter(pc.equal(t["stream"], "charge"))
    assert charges["amount"].null_count == 0 and pc.min(charges["amount"]).as_py() > 0
    assert charges["charge_id"].null_count == 0 and len(set(charges["charge_id"].to_pylist())) == charges.num_rows


def test_disputes_follow_their_charge_within_90_days():
    t = synth.generate(CFG).to_pandas()
    charges = t[t.stream == "charge"].set_index("charge_id")
    disputes = t[t.stream == "dispute"]
    assert len(disputes) > 0
    lag = disputes.event_time.to_numpy() - charges.loc[disputes.charge_id, "event_time"].to_numpy()
    assert (lag >= np.timedelta64(1, "D")).all() and (lag <= np.timedelta64(90, "D")).all()
    assert (disputes.merchant_id.to_numpy() == charges.loc[disputes.charge_id, "merchant_id"].to_numpy()).all()
    assert (disputes.reason == "fraudulent").mean() > 0.5


def test_some_events_arrive_late_some_beyond_an_hour():
    t = synth.generate(CFG)
    et = t["event_time"].cast("int64").to_numpy()
    behind = np.maximum.accumulate(et) - et  # how far each event is behind the newest seen
    assert (behind > 60 * synth.SECOND_US).sum() > 0
    assert (behind > 3600 * synth.SECOND_US).sum() > 0


def test_card_testing_bursts_exist():
    t = synth.generate(CFG).to_pandas()
    small = t[(t.stream == "charge") & (t.amount < 300)].sort_values("event_time")
    # one IP running 3+ distinct cards through one merchant within ten minutes
    burst = small.groupby(["ip", "merchant_id"]).agg(
        cards=("card_id", "nunique"), span=("event_time", lambda s: s.max() - s.min()))
    assert ((burst.cards >= 3) & (burst.span <= np.timedelta64(10, "m"))).any()
