"""The aggregations of the language, each defined once: its name, what it reads, the field
types it takes, its result type, its value over an empty window and how it treats nulls.

The type checker looks a name up here (`lookup`) and records the definition on the typed node
(`syntax.Agg.aggregate`); every target keeps a table of rules keyed by these objects
(targets/batch/aggregates.py, targets/online/aggregates.py, testing/reference.py) and checks
at import that it has a rule for each one in `AGGREGATES`. Nothing else knows their names:
the grammar takes any name in an aggregation's place (`NAME(STREAM[.FIELD] ...) by ...`).

Shared by all: an aggregation counts the events of its window (features/README.md: seq before
the driver's, event_time within the window, the key equal, the `where` true); of those, one
whose field is null is skipped (it counts for nothing); the empty window gives `empty`.
"""
from __future__ import annotations

import dataclasses

from roundhouse.features.language.syntax import Base, Type

INT, FLOAT, BOOL, STRING = Base.INT, Base.FLOAT, Base.BOOL, Base.STRING


@dataclasses.dataclass(frozen=True, eq=False)  # compared and hashed by identity
class Aggregate:
    name: str
    # True: `name(STREAM.FIELD)` aggregates a field's values; False: `name(STREAM)` counts
    # events (a filtered one skips events where its `where` is not true).
    reads_field: bool
    # The field types it takes (reads_field only) and how an error says so.
    takes: tuple[Base, ...] = ()
    takes_text: str = ""
    # Its result's type; None: the field's own type.
    result: Base | None = None
    # Over an empty window: 0 (of the result's type: 0, 0.0, false) or null.
    empty_is_zero: bool = False
    # It adds values up: over a float field the result depends on the order of the additions,
    # so the targets agree within 1e-9 only (an int field's sum is exact, hence its average).
    adds: bool = False
    # A field value that is null is skipped, as if its event were not counted (every
    # aggregation of the language; the reference applies it).
    skips_nulls: bool = True
    doc: str = ""

    def result_type(self, field: Base | None) -> Type:
        """The result's type for a field of base `field` (None for an event count); always
        nullable (a null key or a too-late driver gives null)."""
        return Type(self.result if self.result is not None else field, True)

    def empty_value(self, field: Base | None):
        """The value over an empty window."""
        if not self.empty_is_zero:
            return None
        return {INT: 0, FLOAT: 0.0, BOOL: False}[self.result_type(field).base]

    def exact(self, field: Base | None) -> bool:
        """The targets agree on its value exactly, floats included (the parity contract)."""
        return not (self.adds and field is FLOAT)

    def __repr__(self) -> str:
        return f"<aggregate {self.name}>"

    def __reduce__(self):
        """Pickled (and copied) as its name: the rules are keyed by the registry's object."""
        return lookup, (self.name,)


COUNT = Aggregate("count", False, result=INT, empty_is_zero=True,
                  doc="the number of counted events")
EXISTS = Aggregate("exists", False, result=BOOL, empty_is_zero=True,
                   doc="whether any event is counted")
SUM = Aggregate("sum", True, (INT, FLOAT), "a number", empty_is_zero=True, adds=True,
                doc="the sum of the values")
AVG = Aggregate("avg", True, (INT, FLOAT), "a number", result=FLOAT, adds=True,
                doc="the exact sum of the values divided by their number")
MIN = Aggregate("min", True, (INT, FLOAT, STRING), "a number or a string",
                doc="the smallest value")
MAX = Aggregate("max", True, (INT, FLOAT, STRING), "a number or a string",
                doc="the largest value")
COUNT_DISTINCT = Aggregate("count_distinct", True, (INT, BOOL, STRING),
                           "an int, bool or string", result=INT, empty_is_zero=True,
                           doc="the number of distinct values")
LAST = Aggregate("last", True, (INT, FLOAT, BOOL, STRING), "a field",
                 doc="the value of the counted event with the greatest seq (of those whose "
                     "value is not null)")
FIRST = Aggregate("first", True, (INT, FLOAT, BOOL, STRING), "a field",
                  doc="the value of the counted event with the smallest seq (of those whose "
                      "value is not null)")

# Every aggregation, by name, in the order the README lists them.
AGGREGATES: dict[str, Aggregate] = {a.name: a for a in (
    COUNT, EXISTS, SUM, AVG, MIN, MAX, LAST, FIRST, COUNT_DISTINCT)}


def lookup(name: str) -> Aggregate | None:
    return AGGREGATES.get(name)


def require_rules(rules, target: str) -> None:
    """Raises unless `rules` (a target's table, keyed by Aggregate) has a rule for every
    aggregation: called where each table is defined, so a target without one fails on import."""
    missing = [a.name for a in AGGREGATES.values() if a not in rules]
    extra = [k for k in rules if not isinstance(k, Aggregate) or AGGREGATES.get(k.name) is not k]
    if missing or extra:
        raise NotImplementedError(
            f"{target} has no rule for aggregation(s) {', '.join(missing) or '-'}"
            + (f" and rules for unknown keys {extra!r}" if extra else "")
            + ": each aggregation of language/aggregates.py needs a rule in every target")
