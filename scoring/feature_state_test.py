import pathlib

import pytest

from roundhouse.features import lang, online, stores
from roundhouse.scoring import events
from roundhouse.scoring.feature_state import LocalFeatureState, StateError

PROGRAM = lang.load(pathlib.Path(__file__).parent.parent / "features" / "defs" / "fraud.feat")
T0 = 1_704_067_200_000_000


def charge(i, card="k"):
    return events.parse_event({"event_time": T0 + i, "charge_id": f"c{i}", "card_id": card}, PROGRAM, "charge")


def test_a_background_snapshot_holds_every_event_applied_before_it(tmp_path):
    state = LocalFeatureState(PROGRAM, tmp_path, snapshot_every=3600)
    try:
        served = [state.apply(charge(i))[1]["card_charges_1h"] for i in range(5)]
        assert served == [0, 1, 2, 3, 4]
        state.save_in_background()
        snapshot = next(tmp_path.glob("*/state.snapshot"))
        saved = stores.MemoryStore(online.OnlineProgram(PROGRAM), snapshot=snapshot)
        assert saved.meta[1] == 5 and saved.position == (tmp_path / snapshot.parent / "events.jsonl").stat().st_size
        assert saved.serve({"seq": 6, "t": T0 + 6, "stream": "charge", "card_id": "k"})["card_charges_1h"] == 5
        with pytest.raises(StateError, match="owns the in-process feature state"):
            LocalFeatureState(PROGRAM, tmp_path)
    finally:
        state.close()
    again = LocalFeatureState(PROGRAM, tmp_path)
    try:
        assert again.apply(charge(9))[1]["card_charges_1h"] == 5
    finally:
        again.close()
