"""One definition per aggregation (language/aggregates.py): every target has a rule for each,
a target without one fails on import, and no other code tells aggregations apart by name."""
import ast as pyast
import importlib
import pathlib
import sys

import pytest

from roundhouse.features.language import aggregates as lang
from roundhouse.features.language import loader, syntax
from roundhouse.features.targets.batch import aggregates as batch
from roundhouse.features.targets.online import aggregates as online
from roundhouse.features.testing import gen, parity, reference
from roundhouse.features.transport import events

FEATURES = pathlib.Path(__file__).parents[1]

# The modules holding each target's table of rules.
TABLES = ["roundhouse.features.targets.batch.aggregates",
          "roundhouse.features.targets.online.aggregates",
          "roundhouse.features.testing.reference"]


@pytest.mark.parametrize("a", list(lang.AGGREGATES.values()), ids=lambda a: a.name)
def test_every_aggregation_has_a_rule_in_every_target(a):
    assert a in batch.RULES and a in online.RULES and a in reference.RULES
    for dialect in batch.OVERRIDES:
        assert isinstance(batch.OVERRIDES[dialect].get(a, batch.RULES[a]), batch.BatchRule)
    assert set(batch.RULES) == set(online.RULES) == set(reference.RULES) == \
        set(lang.AGGREGATES.values())


@pytest.mark.parametrize("module", TABLES)
def test_a_target_without_a_rule_for_an_aggregation_fails_on_import(module, monkeypatch):
    new = lang.Aggregate("median", True, (lang.INT,), "an int")
    monkeypatch.setitem(lang.AGGREGATES, "median", new)
    monkeypatch.delitem(sys.modules, module)
    with pytest.raises(NotImplementedError, match=r"has no rule for aggregation\(s\) median"):
        importlib.import_module(module)
    monkeypatch.undo()  # the real module again, for the tests after this one
    importlib.import_module(module)


def test_require_rules_names_what_is_missing_and_what_is_unknown():
    with pytest.raises(NotImplementedError, match="no rule for aggregation.s. count, exists"):
        lang.require_rules({a: 1 for a in list(lang.AGGREGATES.values())[2:]}, "t")
    with pytest.raises(NotImplementedError, match="unknown keys"):
        lang.require_rules({**{a: 1 for a in lang.AGGREGATES.values()}, "sum": 1}, "t")


def test_the_checker_records_the_definition_and_its_result_type():
    p = loader.loads("lateness 1h\ndriver c\nstream c { k: string? v: int? f: float? }\n" + "".join(
        f"feature x_{a.name} = {a.name}(c{'.v' if a.reads_field else ''}) by k over 1h\n"
        for a in lang.AGGREGATES.values()), "t.feat")
    for d in p.features:
        a = lang.AGGREGATES[d.expr.fn]
        assert d.expr.aggregate is a
        assert d.expr.type == a.result_type(lang.INT if a.reads_field else None)


KITCHEN_SINK = FEATURES / "testdata" / "kitchen_sink.feat"  # every construct of the language


def test_the_kitchen_sink_uses_every_aggregation_over_every_kind_of_window():
    p = loader.load(KITCHEN_SINK)
    used: dict = {}
    for d in p.features + p.labels:
        for a in syntax.aggregations(d.expr):
            kind = "next" if a.window.forward else "lifetime" if a.window.micros is None \
                else "window"
            used.setdefault(a.aggregate, set()).add(kind)
    missing = [f"{a.name} over {kind}" for a in lang.AGGREGATES.values()
               for kind in ("window", "lifetime", "next") if kind not in used.get(a, ())]
    assert not missing, f"testdata/kitchen_sink.feat has no {', '.join(missing)}"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_kitchen_sink_logs_exercise_the_members_of_each_aggregation(seed):
    """The parity test's logs (3000 events, these seeds) give every aggregation of a field
    windows of several values, with a null value skipped, with values whose seq order is not
    their time order, and windows a member has left (parity.member_coverage)."""
    p = loader.load(KITCHEN_SINK)
    got = parity.member_coverage(p, events.conform(gen.generate(p, 3000, seed), p))
    missing = [f"{a.name}: {corner}" for a in lang.AGGREGATES.values() if a.reads_field
               for corner in parity.MEMBER_CORNERS if not got.get(a.name, {}).get(corner)]
    assert not missing, f"{missing}: {got}"


def _name_tests(tree) -> list[tuple[int, str]]:
    """(line, name) of each aggregation name compared against (==, !=, in) or used as a dict
    key or match pattern in a module."""
    names = set(lang.AGGREGATES)
    found = []

    def strings(node):
        if isinstance(node, pyast.Constant) and node.value in names:
            yield node
        elif isinstance(node, (pyast.Tuple, pyast.List, pyast.Set)):
            for e in node.elts:
                yield from strings(e)

    for node in pyast.walk(tree):
        if isinstance(node, pyast.Compare):
            parts = [node.left, *node.comparators]
        elif isinstance(node, pyast.Dict):
            parts = [k for k in node.keys if k is not None]
        elif isinstance(node, pyast.MatchValue):
            parts = [node.value]
        else:
            continue
        found += [(s.lineno, s.value) for p in parts for s in strings(p)]
    return found


def test_no_other_code_compares_aggregation_names():
    sources = sorted(p for p in FEATURES.rglob("*.py") if not p.name.endswith("_test.py")
                     and p != FEATURES / "language" / "aggregates.py")
    # The compilers' path at least (in Bazel, the files this test depends on).
    have = {str(p.relative_to(FEATURES)) for p in sources}
    assert {"language/typecheck.py", "plan/plan.py", "targets/batch/duckdb_target.py",
            "targets/batch/spark_target.py", "targets/online/layout.py",
            "targets/online/codegen.py", "testing/reference.py", "testing/parity.py"} <= have
    offenders = [f"{p.relative_to(FEATURES)}:{line}: {name!r}" for p in sources
                 for line, name in _name_tests(pyast.parse(p.read_text()))]
    assert not offenders, "aggregation names compared outside language/aggregates.py " \
        "(look the definition up instead: Agg.aggregate):\n" + "\n".join(offenders)
