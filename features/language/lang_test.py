"""The language front end: parsing, typing, imports, versions and the errors users see."""
import pathlib
import textwrap

import pytest

from roundhouse.features.language import loader
from roundhouse.features.language.errors import FeatureError
from roundhouse.features.language.limits import MAX_EXPR_DEPTH, MAX_FEATURE_CHAIN, MAX_FILE_BYTES
from roundhouse.features.language.syntax import Base

FEATURES = pathlib.Path(__file__).parents[1]

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
    return loader.loads(HEADER + textwrap.dedent(body), "t.feat")


def error_of(body: str) -> str:
    with pytest.raises(FeatureError) as exc:
        check(body)
    return str(exc.value)


def test_fraud_definitions_have_the_issue_names_and_types():
    p = loader.load(FEATURES / "defs" / "fraud.feat")
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
    # Past the 64-bit int and double: a located error, not a ValueError or an inf.
    ("feature f = amount + 9223372036854775808\n", "integer 9223372036854775808 is out of range"),
    ("feature f = amount + " + "9" * 5000 + "\n", "is out of range"),
    ("feature f = amount + 1" + "0" * 400 + ".0\n", "is out of range"),
    ("feature f = count(charge) by card_id over 106751992d\n", "duration 106751992d is out"),
    ('feature f = lower("\\x")\n', "invalid escape in string"),
    # Aggregations are looked up in language/aggregates.py, not keywords of the grammar.
    ("feature f = cuont(charge) by card_id over 1h\n", "unknown aggregation 'cuont'\n"),
    ("feature f = cuont(charge) by card_id over 1h\n", "did you mean 'count'?"),
    ("feature f = tally(charge.amount) by card_id over 1h\n", "hint: aggregations: count, "),
    ("feature f = count(charge)\n", "count(...) needs `by KEY over WINDOW`"),
    ("feature f = lower(charge.ip)\n", "`charge.ip` reads a stream's events"),
    ("feature f = count(charge, dispute) by card_id over 1h\n", "reads one stream"),
    ("feature f = count(amount > 1 where ip is null) by card_id over 1h\n", "`where` filters"),
    ("feature f = cont(amount)\n", "did you mean 'count'? (an aggregation"),
    ("feature f = frist(charge.amount) by card_id over 1h\n", "did you mean 'first'?"),
    ("feature f = first(charge) by card_id over 1h\n", "first() needs a field"),
])
def test_errors(body, needle):
    assert needle in error_of(body)


def test_aggregation_names_are_not_keywords():
    p = loader.loads("lateness 1h\ndriver c\nstream c { k: string? count: int? last: int? }\n"
                     "feature n = count(c where count > 0) by k over 1h\n"
                     "feature m = last + count + n\n", "t.feat")
    assert [d.column for d in p.features] == ["n", "m"]
    assert p.features[0].expr.aggregate.name == "count"


def test_imports_share_streams_and_features(tmp_path):
    (tmp_path / "base.feat").write_text(HEADER + "feature n = count(charge) by card_id over 1h\n")
    (tmp_path / "team.feat").write_text('import "base.feat"\nfeature twice = n * 2\n')
    p = loader.load(tmp_path / "team.feat")
    assert [d.column for d in p.features] == ["n", "twice"]
    assert p.files == (str(tmp_path / "team.feat"), str(tmp_path / "base.feat"))


def test_import_cycle_and_missing_import_are_errors(tmp_path):
    (tmp_path / "a.feat").write_text('import "b.feat"\n')
    (tmp_path / "b.feat").write_text('import "a.feat"\n')
    with pytest.raises(FeatureError, match="import cycle"):
        loader.load(tmp_path / "a.feat")
    (tmp_path / "c.feat").write_text('import "nope.feat"\n')
    with pytest.raises(FeatureError, match="not found"):
        loader.load(tmp_path / "c.feat")


def test_lateness_and_driver_are_required():
    with pytest.raises(FeatureError, match="lateness"):
        loader.loads("driver c\nstream c { k: string }\nfeature n = count(c) by k over 1h\n")
    with pytest.raises(FeatureError, match="driver"):
        loader.loads("lateness 1h\nstream c { k: string }\nfeature n = count(c) by k over 1h\n")


# ---------------------------------------------------------------- hostile definitions and limits


def located(msg: str) -> tuple[int, int]:
    """(line, column) of the first error in a formatted report."""
    _, line, column = msg.split(": error:")[0].rsplit(":", 2)
    return int(line), int(column)


def test_deep_if_nesting_is_an_error_at_the_first_node_too_deep():
    depth = 1500
    body = ("feature f = " + "".join(f"if amount > {i} then " for i in range(depth)) + "1"
            + " else 0" * depth + "\n")
    msg = error_of(body)
    assert f"the expression of feature 'f' nests more than {MAX_EXPR_DEPTH} levels" in msg
    assert f"at most {MAX_EXPR_DEPTH} levels" in msg  # the hint says the limit
    # `if` k is level k, its condition k + 1, the condition's `amount` k + 2: the first
    # level past the limit is the `amount` of `if` number MAX_EXPR_DEPTH - 1.
    ifs = [i for i in range(len(body)) if body.startswith("if amount", i)]
    assert located(msg) == (HEADER.count("\n") + 1, ifs[MAX_EXPR_DEPTH - 2] + len("if ") + 1)


def test_a_sum_of_20000_terms_is_an_error_with_the_caret_on_its_line():
    terms = 20_000
    body = "feature f = " + " + ".join(["amount"] * terms) + "\n"
    msg = error_of(body)
    assert "nests more than" in msg and "a chain such as a + b + c nests one per operator" in msg
    # (((a + a) + a) + ...): the last `+` is level 1, so `+` number terms - k is level k.
    plus = [i for i, c in enumerate(body) if c == "+"]
    line, column = located(msg)
    assert (line, column) == (HEADER.count("\n") + 1, plus[terms - MAX_EXPR_DEPTH - 2] + 1)
    # The 240,000-character line is shown around the caret only.
    shown, caret = msg.split("\n")[1:3]
    assert len(shown) < 200 and shown[caret.index("^")] == "+"


def test_nesting_at_the_limit_checks_and_one_more_level_is_an_error():
    def sum_of(terms):
        return "feature f = " + " + ".join(["amount"] * terms) + "\n"

    assert check(sum_of(MAX_EXPR_DEPTH)).features[0].column == "f"
    assert "nests more than" in error_of(sum_of(MAX_EXPR_DEPTH + 1))
    where = " and ".join(["amount > 1"] * (MAX_EXPR_DEPTH - 2))  # count(...) 1, where 2
    check(f"feature n = count(charge where {where}) by card_id over 1h\n")
    assert "nests more than" in error_of(
        f"feature n = count(charge where {where} and ip is null) by card_id over 1h\n")


def chain_of(links: int) -> str:
    """Features f0 <- f1 <- ... (each reading the one before), declared last first."""
    return "".join(f"feature f{i} = f{i - 1} + 1\n" for i in range(links - 1, 0, -1)) + \
        "feature f0 = amount\n"


def test_a_chain_of_features_at_the_limit_checks_and_one_more_is_an_error():
    p = check(chain_of(MAX_FEATURE_CHAIN))
    assert [d.column for d in p.features][:2] == ["f0", "f1"]  # dependency order
    msg = error_of(chain_of(MAX_FEATURE_CHAIN + 1))
    head = f"f{MAX_FEATURE_CHAIN}"
    assert (f"feature {head!r} heads a chain of {MAX_FEATURE_CHAIN + 1} definitions reading "
            f"each other ({head} -> f{MAX_FEATURE_CHAIN - 1} -> ") in msg
    assert located(msg) == (HEADER.count("\n") + 1, len("feature ") + 1)
    assert f"a chain is at most {MAX_FEATURE_CHAIN} long" in msg


def test_a_chain_of_2000_features_is_an_error_not_a_recursion_error():
    msg = error_of(chain_of(2000))
    assert "heads a chain of" in msg and msg.count("error:") == 1  # where it passes the limit


def test_an_invalid_utf8_byte_is_an_error_at_its_line_and_column(tmp_path):
    path = tmp_path / "bad.feat"
    path.write_bytes(HEADER.encode() + "feature é = ".encode() + b"\xff\xfe 1\n")
    with pytest.raises(FeatureError) as exc:
        loader.load(path)
    msg = str(exc.value)
    line = HEADER.count("\n") + 1
    assert f"{path}:{line}:13: error: invalid UTF-8 byte 0xff" in msg  # columns count characters
    assert "feature é = \ufffd\ufffd 1\n" + " " * 16 + "^" in msg
    assert "hint: definition files are UTF-8" in msg


def test_a_file_past_the_size_limit_is_an_error_where_it_passes(tmp_path):
    line = "# " + "x" * 97 + "\n"  # 100 bytes
    path = tmp_path / "big.feat"
    path.write_text(line * (MAX_FILE_BYTES // 100 + 1))
    with pytest.raises(FeatureError) as exc:
        loader.load(path)
    msg = str(exc.value)
    assert f"{path}:{MAX_FILE_BYTES // 100 + 1}:{MAX_FILE_BYTES % 100 + 1}: error: definition " \
        f"file is larger than {MAX_FILE_BYTES} bytes" in msg
    assert "at most 1 MiB" in msg


@pytest.mark.parametrize("target, needle", [
    ("/", "imported path '/' is a folder, not a .feat file"),
    ("sub", "imported path 'sub' is a folder, not a .feat file"),
    ("", "the import path is empty"),
    ("nope.feat", "imported file 'nope.feat' not found"),
    ("x" * 5000 + ".feat", "cannot read imported file"),  # a name too long for the system
    ("\\x00", "the import path contains a NUL character"),
    ("./team.feat", "import cycle: "),  # itself, spelled another way
])
def test_a_bad_import_is_an_error_at_the_import_statement(tmp_path, target, needle):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "team.feat"
    path.write_text(HEADER + f'\n  import "{target}"\n')
    with pytest.raises(FeatureError) as exc:
        loader.load(path)
    msg = str(exc.value)
    assert f"{path}:{HEADER.count(chr(10)) + 2}:3: error: {needle}" in msg
    assert f'\n      import "{target[:40]}' in msg  # the statement, with the caret under it


def test_a_file_that_cannot_be_read_is_named_without_a_position(tmp_path):
    with pytest.raises(FeatureError) as exc:
        loader.load(tmp_path)
    assert str(exc.value).startswith(f"{tmp_path}: error: {tmp_path} is a folder, not a .feat file")


def test_one_file_imported_by_two_spellings_is_read_once(tmp_path):
    (tmp_path / "base.feat").write_text(HEADER)
    (tmp_path / "a.feat").write_text('import "base.feat"\nfeature a = amount\n')
    (tmp_path / "b.feat").write_text('import "./a.feat"\nimport "../' + tmp_path.name +
                                     '/base.feat"\nfeature b = a + 1\n')
    assert [d.column for d in loader.load(tmp_path / "b.feat").features] == ["a", "b"]
