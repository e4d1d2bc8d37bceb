import os
import pathlib

import pytest

from roundhouse.features.language import loader
from roundhouse.features.targets.online import stores
from roundhouse.features.targets.online.program import OnlineProgram
from roundhouse.scoring import events
from roundhouse.scoring.feature_state import LocalFeatureState, StateError

PROGRAM = loader.load(pathlib.Path(__file__).parent.parent / "features" / "defs" / "fraud.feat")
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
        saved = stores.MemoryStore(OnlineProgram(PROGRAM), snapshot=snapshot)
        # The snapshot covers the whole first segment; the log goes on in the next one.
        assert saved.meta[1] == 5 and saved.position == (1, 0)
        assert sorted(p.name for p in snapshot.parent.glob("events.*")) == ["events.00000001.jsonl"]
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


def _segment_names(tmp_path):
    return sorted(p.name for p in tmp_path.glob("*/events.*.jsonl"))


def test_snapshots_rotate_the_log_and_a_killed_process_loses_nothing(tmp_path):
    pid = os.fork()
    if pid == 0:  # a scorer killed after snapshots and more events: no close(), no final save
        code = 1
        try:
            state = LocalFeatureState(PROGRAM, tmp_path, snapshot_every=3600)
            for round_ in range(3):
                for i in range(4):
                    state.apply(charge(round_ * 10 + i))
                state.save_in_background()
            state.apply(charge(99))
            code = 0
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    # Three snapshots: the segments they cover are gone; the last holds the one later event.
    assert _segment_names(tmp_path) == ["events.00000003.jsonl"]
    again = LocalFeatureState(PROGRAM, tmp_path)
    try:
        seq, served = again.apply(charge(100))
        assert seq == 14 and served["card_charges_1h"] == 13
    finally:
        again.close()
    # close() saved a snapshot: the log starts afresh.
    assert _segment_names(tmp_path) == ["events.00000004.jsonl"]
