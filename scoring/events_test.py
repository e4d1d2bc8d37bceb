import pathlib

import pytest

from roundhouse.features.language import loader
from roundhouse.scoring import events

PROGRAM = loader.load(pathlib.Path(__file__).parent.parent / "features" / "defs" / "fraud.feat")
CHARGE = {"event_time": "2024-01-01T00:00:00Z", "charge_id": "c1", "card_id": "k", "amount": 1200}


def errors(body, stream="charge"):
    with pytest.raises(events.EventError) as info:
        events.parse_event(body, PROGRAM, stream)
    return {e.field: e.message for e in info.value.errors}


def test_a_charge_parses_with_nullable_fields_left_out():
    e = events.parse_event(CHARGE, PROGRAM, "charge")
    assert e.stream == "charge" and e.t == 1_704_067_200_000_000
    assert e.fields["amount"] == 1200 and e.fields["merchant_id"] is None


def test_event_time_as_rfc3339_with_offset_or_integer_microseconds():
    assert events.event_time("2024-01-01T01:00:00+01:00") == 1_704_067_200_000_000
    assert events.event_time("2024-01-01T00:00:00.000001Z") == 1_704_067_200_000_001
    assert events.event_time(5) == 5
    for bad in ("2024-01-01T00:00:00", "2024-01-01", "yesterday", 1.5, True, None):
        with pytest.raises(ValueError):
            events.event_time(bad)


def test_every_bad_field_is_named():
    found = errors({"event_time": "2024-01-01T00:00:00", "amount": "12", "card_id": 7, "colour": "red",
                    "seq": 3})
    assert set(found) == {"event_time", "amount", "card_id", "colour", "seq", "charge_id"}
    assert "integer" in found["amount"] and "string" in found["card_id"]
    assert "unknown field" in found["colour"] and "missing" in found["charge_id"]


def test_types_are_strict():
    assert "integer" in errors({**CHARGE, "amount": 12.5})["amount"]
    assert "integer" in errors({**CHARGE, "amount": True})["amount"]
    assert "int64" in errors({**CHARGE, "amount": 1 << 70})["amount"]
    assert "not nullable" in errors({**CHARGE, "charge_id": None})["charge_id"]


def test_streams_are_checked():
    assert "unknown stream" in errors({**CHARGE, "stream": "refund"}, stream=None)["stream"]
    assert "scores 'charge'" in errors({**CHARGE, "stream": "dispute"})["stream"]
    assert "missing" in errors(CHARGE, stream=None)["stream"]
    d = events.parse_event({"stream": "dispute", "event_time": 9, "reason": "fraudulent"}, PROGRAM)
    assert d.stream == "dispute" and d.fields == {"charge_id": None, "merchant_id": None, "reason": "fraudulent"}


def test_bodies_that_are_not_json_objects():
    for body in (b"{", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000, b"NaN"):
        with pytest.raises(ValueError):
            events.parse_json(body)
    assert "(body)" in errors([1, 2])
