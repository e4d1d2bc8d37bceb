"""The language front end: parsing, typing, imports, versions and the errors users see."""
import pathlib
import textwrap

import pytest

from roundhouse.features import lang
from roundhouse.features.errors import FeatureError
from roundhouse.features.syntax import Base

HERE = pathlib.Path(__file__).parent

HEADER = """\
lateness 1h
driver charge
stream charge {
  charge_id: string
  card_id: string?
  amount: int?
  ip: string?
}
stream dispute {
  charge_id: string?
  reason: string?
}
"""


def check(body: str):
    return lang.loads(HEADER + textwrap.dedent(body), "t.feat")


def error_of(body: str) -> str:
    with pytest.raises(FeatureError) as exc:
        check(body)
    return str(exc.value)


def test_fraud_definitions_have_the_issue_names_and_types():
    p = lang.load(HERE / "defs" / "fraud.feat")
    assert [d.column for d in p.features] == [
        "card_charges_1h", "card_charges_24h", "card_charges_7d", "card_amount_sum_7d",
        "card_amount_avg_7d", "card_amount_avg_30d", "card_distinct_merchants_30d",
        "card_amount_max_30d", "merchant_charges_1h", "ip_distinct_cards_24h",
        "merchant_disputes_30d", "card_distinct_merchants_24h", "amount",
        "amount_to_card_avg_30d"]
    assert [d.column for d in p.labels] == ["is_fraud"]
    assert p.lateness_micros == 3_600_000_000
    types = {d.column: d.expr.type.base for d in p.features + p.labels}
    assert types["card_charges_1h"] is Base.INT
    assert types["card_amount_avg_30d"] is Base.FLOAT
    assert types["card_amount_max_30d"] is Base.INT
    assert types["is_fraud"] is Base.BOOL


def test_versions_live_side_by_side_and_v1_keeps_the_plain_name():
    p = check("""
        feature n v1 = count(charge) by card_id over 1h
        feature n v2 = count(charge where amount > 0) by card_id over 1h
        feature both = n + n_v2
    """)
    assert [d.column for d in p.features][:2] == ["n", "n_v2"]
    assert p.definition("n_v2").version == 2


def test_derived_feature_types_follow_nulls_and_promotion():
    p = check("""
        feature n = count(charge) by card_id over 1h
        feature ratio = amount / n
        feature safe = coalesce(n, 0) * 2
        feature big = if n > 3 then "many" else lower(coalesce(ip, "none"))
    """)
    t = {d.column: d.expr.type for d in p.features}
    assert (t["ratio"].base, t["ratio"].nullable) == (Base.FLOAT, True)
    assert (t["safe"].base, t["safe"].nullable) == (Base.INT, False)
    assert t["big"].base is Base.STRING


def test_dependency_order_puts_readers_after_what_they_read():
    p = check("""
        feature b = a + 1
        feature a = count(charge) by card_id over 1h
    """)
    assert [d.column for d in p.features] == ["a", "b"]


def test_error_shows_file_line_column_caret_and_hint():
    msg = error_of("feature x = sum(charge.amout) by card_id over 1h\n")
    line = HEADER.count("\n") + 1
    assert f"t.feat:{line}:24: error: stream 'charge' has no field 'amout'" in msg
    assert "    feature x = sum(charge.amout) by card_id over 1h\n" + " " * 27 + "^" in msg
    assert "hint: did you mean 'amount'?" in msg


def test_a_feature_cannot_read_a_label():
    msg = error_of("""
        label fraud = exists(dispute) by charge_id over next 90d
        feature leak = if fraud then 1 else 0
    """)
    assert "a feature can never read a label" in msg
    assert "hint:" in msg


def test_labels_may_read_labels_and_features():
    p = check("""
        feature n = count(charge) by card_id over 1h
        label fraud = exists(dispute where reason == "fraudulent") by charge_id over next 90d
        label fraud_on_busy_card = fraud and n > 3
    """)
    assert [d.column for d in p.labels] == ["fraud", "fraud_on_busy_card"]


@pytest.mark.parametrize("body", ["feature t = now()\n", "feature t = event_time\n",
                                  "feature t = current_timestamp\n"])
def test_clocks_are_rejected(body):
    assert "reads a clock" in error_of(body)


def test_a_feature_cannot_look_forward():
    msg = error_of("feature f = count(dispute) by charge_id over next 1d\n")
    assert "cannot look forward" in msg and "label" in msg


@pytest.mark.parametrize("body, needle", [
    ("feature f = count(charge) by card_id over 1hour\n", "unknown duration unit 'hour'"),
    ("feature f = count(dispute) by card_id over 1h\n", "no key field 'card_id'"),
    ("feature f = count(dispute) by reason = amount over 1h\n", "is string but charge.amount is int"),
    ("feature f = avg(charge.ip) by card_id over 1h\n", "avg() needs a number"),
    ("feature f = count(charge.amount) by card_id over 1h\n", "counts events"),
    ("feature f = count(charge where ip > 3) by card_id over 1h\n", "cannot compare"),
    ("feature f = count(charge where n > 3) by card_id over 1h\n", "not a field of stream"),
    ("feature f = amount == null\n", "is null"),
    ("feature f = ip + 1\n", "concat"),
    ("feature f = f + 1\n", "depends on itself"),
    ("feature f = count(charges) by card_id over 1h\n", "did you mean 'charge'"),
    ("feature f = 1\nfeature f = 2\n", "defined twice"),
    ("feature f = count(charge) by card_id over\n", "unexpected"),
    ("stream x { a: integer }\n", "unknown type 'integer'"),
    ("feature f = null\n", "always null"),
])
def test_errors(body, needle):
    assert needle in error_of(body)


def test_imports_share_streams_and_features(tmp_path):
    (tmp_path / "base.feat").write_text(HEADER + "feature n = count(charge) by card_id over 1h\n")
    (tmp_path / "team.feat").write_text('import "base.feat"\nfeature twice = n * 2\n')
    p = lang.load(tmp_path / "team.feat")
    assert [d.column for d in p.features] == ["n", "twice"]
    assert p.files == (str(tmp_path / "team.feat"), str(tmp_path / "base.feat"))


def test_import_cycle_and_missing_import_are_errors(tmp_path):
    (tmp_path / "a.feat").write_text('import "b.feat"\n')
    (tmp_path / "b.feat").write_text('import "a.feat"\n')
    with pytest.raises(FeatureError, match="import cycle"):
        lang.load(tmp_path / "a.feat")
    (tmp_path / "c.feat").write_text('import "nope.feat"\n')
    with pytest.raises(FeatureError, match="not found"):
        lang.load(tmp_path / "c.feat")


def test_lateness_and_driver_are_required():
    with pytest.raises(FeatureError, match="lateness"):
        lang.loads("driver c\nstream c { k: string }\nfeature n = count(c) by k over 1h\n")
    with pytest.raises(FeatureError, match="driver"):
        lang.loads("lateness 1h\nstream c { k: string }\nfeature n = count(c) by k over 1h\n")
