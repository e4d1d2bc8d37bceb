"""Definitions at the language's limits work in every stage: they check, hash, compile to the
batch SQL and to the online target's Python (whose compile() allows 200 nested parentheses)
and both targets give the naive reference's answers. One level more is an error (located:
see lang_test.py)."""
import functools

import pytest

from roundhouse.features.language import loader, parser, printer
from roundhouse.features.language.errors import FeatureError
from roundhouse.features.language.limits import MAX_EXPR_DEPTH, MAX_FEATURE_CHAIN
from roundhouse.features.targets.online.program import OnlineProgram
from roundhouse.features.testing import parity

HEADER = """\
lateness 1h
driver charge
stream charge {
  card_id: string?
  amount: int?
  rate: float?
  ok: bool?
  ip: string?
}
"""

# Expressions nesting n times, in the ways that nest deepest in the targets' code: the branch
# of an if, alternating int and float (each crossing converts), chains of operators, divisors
# nesting divisors (the batch target tests a divisor for zero), a `where` filter.
SHAPES = {
    "if_branches": lambda n: "if ok then (if (" * n + "rate" + ") > 0 then 1 else 2) else 0.5" * n,
    "else_chain": lambda n: "".join(f"if amount > {i} then {i} else " for i in range(n)) + "rate",
    "sum_chain": lambda n: " + ".join(["amount", "rate"] * (n // 2) + ["amount"] * (n % 2)),
    "divisors": lambda n: "1 / (" * n + "amount" + ")" * n,
    "coalesce_floats": lambda n: "coalesce(if (" * n + "rate" + ") > 1 then 1 else 2, 0.5)" * n,
    "null_tests": lambda n: "((" * n + "ok" + " is null) == true)" * n,
    "where_filter": lambda n: "count(charge where " + "".join(
        f"if amount / (rate + {i}.5) > 1 then " for i in range(n)) + "ok" + " else false" * n
        + ") by card_id over 1h",
}


def nests(expr: str) -> bool:
    try:
        parser.parse(HEADER + f"feature f = {expr}\n")
    except FeatureError as exc:
        assert "nests more than" in str(exc)
        return False
    return True


@functools.lru_cache(maxsize=None)
def at_limit(name: str) -> int:
    """How often the shape nests at the depth limit."""
    shape, lo, hi = SHAPES[name], 1, MAX_EXPR_DEPTH  # nests(shape(lo)); not nests(shape(hi + 1))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if nests(shape(mid)) else (lo, mid - 1)
    return lo


@pytest.fixture(scope="module")
def program():
    features = [f"feature {name} = {shape(at_limit(name))}\n" for name, shape in SHAPES.items()]
    # A chain at its limit in which each link reads the one before four times: written out
    # in place, the batch query would grow fourfold at each link.
    features.append("feature c0 = rate\n")
    features += [f"feature c{i} = if c{i - 1} > 0 then c{i - 1} + c{i - 1} else c{i - 1} / 2\n"
                 for i in range(1, MAX_FEATURE_CHAIN)]
    return loader.loads(HEADER + "".join(features), "limits.feat")


@pytest.mark.parametrize("name", SHAPES)
def test_each_shape_nests_to_the_depth_limit_and_no_further(name):
    n = at_limit(name)
    assert n > 1 and nests(SHAPES[name](n)) and not nests(SHAPES[name](n + 1))


def test_definitions_at_the_limits_hash_and_compile(program):
    hashes = printer.definition_hashes(program, [d.column for d in program.features])
    assert len(set(hashes.values())) == len(program.features)
    assert printer.fingerprint(program)
    OnlineProgram(program)  # compile() of the generated code


def test_both_targets_give_the_reference_answers_at_the_limits(program):
    report = parity.run(program, 30, seed=3, reference=True)
    assert not report.differences, "\n".join(report.differences[:10])
