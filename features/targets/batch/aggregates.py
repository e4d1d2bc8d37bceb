"""The batch target's rule for each aggregation of the language (language/aggregates.py): the
SQL aggregates its value is computed from and how, as sqlglot trees (sql.py). DuckDB and Spark
share `RULES`; a dialect that computes one differently overrides only that one in
`OVERRIDES[dialect]` (as sqlglot's dialects override its generator).

A rule is its *parts*, each one SQL aggregate over the member values `m` of the aggregated
events (NULL where an event does not count: outside the window, filtered out, or a null field)
and their seqs, and its *value*, an expression of the parts' results. The compilers
(duckdb_target.py, spark_target.py) compute the parts over whatever the events of a window
are there (a window frame, a join aggregated per driver), name them, and write the value. How
two partial results over disjoint sets of events combine (the DuckDB target's regular and late
members) is the part's `merge`.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Callable

from sqlglot import exp

from roundhouse.features.language import aggregates as lang
from roundhouse.features.language import syntax as ast
from roundhouse.features.language.syntax import Base
from roundhouse.features.targets.batch.sql import (and_, BIGINT, case, cast, coalesce, col, DOUBLE,
                                                   filtered, greatest, is_null, least, not_null,
                                                   num, op, or_)

Node = Callable[[], exp.Expr]  # a new node per call (a sqlglot node has one parent)


class Merge(enum.Enum):
    """How a part's results over two disjoint sets of events combine into the result over
    both (the DuckDB target's regular members and late members of a window)."""

    ADD = "add"  # counts and sums; over no events the part is NULL, taken as 0
    LEAST = "least"
    GREATEST = "greatest"
    NEWEST = "newest"  # the value of the side holding the greatest seq (a seq part, `q`, says)
    OLDEST = "oldest"  # the value of the side holding the smallest seq
    # A distinct count: the regular members' count plus the number of the late members'
    # values that no regular member in the window has (the DuckDB target joins for those).
    DISTINCT = "distinct"
    UNION = "union"  # sets of values (Spark's distinct count): their union; NULL over no events


ZERO_MERGES = (Merge.ADD, Merge.DISTINCT)  # parts that are 0 over no events


@dataclasses.dataclass(frozen=True)
class Part:
    name: str  # its column's suffix (c, s, v, q)
    build: Callable[[Node, Node], exp.Expr]  # (m, seq) -> the SQL aggregate
    merge: Merge
    present: bool = False  # over the events whose m is not NULL only (FILTER): ARG_MAX needs it

    def sql(self, m: Node, seq: Node, cond: exp.Expr | None = None, filter: bool = True
            ) -> exp.Expr:
        """The aggregate over the member values m() (and seqs seq()), of the rows where `cond`
        (if given) holds: a FILTER clause, or with filter=False (Spark's window functions take
        none) m and seq NULL elsewhere, which every part's aggregate skips."""
        conds = ([cond] if cond is not None else []) + ([not_null(m())] if self.present else [])
        if not conds:
            return self.build(m, seq)
        if filter:
            return filtered(self.build(m, seq), and_(*conds))
        return self.build(lambda: case(and_(*_copies(conds)), m()),
                          lambda: case(and_(*_copies(conds)), seq()))

    @property
    def zero(self) -> bool:
        return self.merge in ZERO_MERGES


@dataclasses.dataclass(frozen=True)
class BatchRule:
    parts: tuple[Part, ...]
    # (part, the field's base type) -> the value; part(name) is a new node of that part's
    # result each call, 0 rather than NULL for a count or sum over no events.
    value: Callable[[Callable[[str], exp.Expr], Base | None], exp.Expr]

    def __post_init__(self):
        ordered = [p for p in self.parts if p.merge in (Merge.NEWEST, Merge.OLDEST)]
        assert len(ordered) <= 1 and sum(p.merge is Merge.DISTINCT for p in self.parts) <= 1
        assert all(p.name != "q" for p in self.parts), "q is the seq part's name"

    @property
    def late_distinct(self) -> Part | None:
        """Its DISTINCT part, if any."""
        return next((p for p in self.parts if p.merge is Merge.DISTINCT), None)

    def with_seqs(self) -> list[Part]:
        """The parts, each NEWEST or OLDEST one followed by its seq part `q`: the greatest
        (smallest) seq of the events it reads, which says which side's value is the newest
        (oldest) when two partial results merge."""
        out = []
        for p in self.parts:
            out.append(p)
            if p.merge in (Merge.NEWEST, Merge.OLDEST):
                pick = exp.Max if p.merge is Merge.NEWEST else exp.Min
                out.append(Part("q", lambda m, seq, pick=pick: pick(this=seq()), p.merge,
                                p.present))
        return out

    def merged(self, name: str, regular: Callable[[str], exp.Expr],
               late: Callable[[str], exp.Expr], late_distinct: Callable[[], exp.Expr]
               ) -> exp.Expr:
        """Part `name` over two disjoint sets of events, from its results (and its seq part's)
        over each: regular(name), late(name); late_distinct() for a DISTINCT part."""
        p = next(p for p in self.parts if p.name == name)
        if p.merge is Merge.ADD:
            return op(exp.Add, coalesce(regular(name), 0), coalesce(late(name), 0))
        if p.merge is Merge.DISTINCT:
            return op(exp.Add, coalesce(regular(name), 0), coalesce(late_distinct(), 0))
        if p.merge is Merge.UNION:
            return exp.Case(ifs=[exp.If(this=is_null(regular(name)), true=late(name)),
                                 exp.If(this=is_null(late(name)), true=regular(name))],
                            default=exp.Anonymous(this="ARRAY_UNION",
                                                  expressions=[regular(name), late(name)]))
        if p.merge is Merge.LEAST:
            return least(regular(name), late(name))
        if p.merge is Merge.GREATEST:
            return greatest(regular(name), late(name))
        after = exp.GT if p.merge is Merge.NEWEST else exp.LT
        return case(and_(not_null(late("q")), or_(is_null(regular("q")),
                                                   op(after, late("q"), regular("q")))),
                    late(name), regular(name))

    def total(self, column: Callable[[str], exp.Expr], base: Base | None) -> exp.Expr:
        """The value from the parts' columns over all of a window's events (column(name))."""
        zero = {p.name for p in self.parts if p.zero}
        return self.value(lambda n: coalesce(column(n), 0) if n in zero else column(n), base)


def _copies(nodes: list[exp.Expr]) -> list[exp.Expr]:
    return [n.copy() for n in nodes]


def _count(m: Node, seq: Node) -> exp.Expr:
    return exp.Count(this=m())


def _sum(m: Node, seq: Node) -> exp.Expr:
    return exp.Sum(this=m())


def _sum_type(base: Base | None) -> exp.DataType.Type:
    return BIGINT if base is Base.INT else DOUBLE


def _avg(p, base) -> exp.Expr:
    return case(op(exp.EQ, p("c"), 0), exp.Null(), op(exp.Div, cast(p("s"), DOUBLE), p("c")))


RULES: dict[lang.Aggregate, BatchRule] = {
    lang.COUNT: BatchRule((Part("c", _count, Merge.ADD),), lambda p, base: p("c")),
    lang.EXISTS: BatchRule((Part("c", _count, Merge.ADD),),
                           lambda p, base: op(exp.GT, p("c"), 0)),
    lang.SUM: BatchRule((Part("s", _sum, Merge.ADD),),
                        lambda p, base: cast(p("s"), _sum_type(base))),
    lang.AVG: BatchRule((Part("s", _sum, Merge.ADD), Part("c", _count, Merge.ADD)), _avg),
    lang.MIN: BatchRule((Part("v", lambda m, seq: exp.Min(this=m()), Merge.LEAST),),
                        lambda p, base: p("v")),
    lang.MAX: BatchRule((Part("v", lambda m, seq: exp.Max(this=m()), Merge.GREATEST),),
                        lambda p, base: p("v")),
    lang.COUNT_DISTINCT: BatchRule(
        (Part("c", lambda m, seq: exp.Count(this=exp.Distinct(expressions=[m()])),
              Merge.DISTINCT),), lambda p, base: p("c")),
    # The value at the greatest seq of the events whose value is not null.
    lang.LAST: BatchRule(
        (Part("v", lambda m, seq: exp.ArgMax(this=m(), expression=seq()), Merge.NEWEST,
              present=True),), lambda p, base: p("v")),
    # The value at the smallest seq of the events whose value is not null.
    lang.FIRST: BatchRule(
        (Part("v", lambda m, seq: exp.ArgMin(this=m(), expression=seq()), Merge.OLDEST,
              present=True),), lambda p, base: p("v")),
}

# Per dialect, the rules it writes differently (FILTER, ARG_MAX/MAX_BY and the rest are
# written by sqlglot in each dialect's spelling). Spark computes windows as window frames, whose
# functions take no DISTINCT: a distinct count there is the size of the set of values.
OVERRIDES: dict[str, dict[lang.Aggregate, BatchRule]] = {
    "duckdb": {},
    "spark": {lang.COUNT_DISTINCT: BatchRule(
        (Part("c", lambda m, seq: exp.ArrayUniqueAgg(this=m()), Merge.UNION),),
        lambda p, base: case(is_null(p("c")), cast(num(0), BIGINT),
                             cast(exp.ArraySize(this=p("c")), BIGINT)))},
}

lang.require_rules(RULES, "the batch target (targets/batch/aggregates.py)")


def rule(agg: ast.Agg, dialect: str) -> BatchRule:
    """The rule of a checked aggregation in `dialect`."""
    return OVERRIDES[dialect].get(agg.aggregate) or RULES[agg.aggregate]


def filtered_member_value(agg: ast.Agg, where_sql: Callable[[ast.Expr], exp.Expr]) -> exp.Expr:
    """The value an event of the events table contributes after the aggregation's filter
    (where_sql compiles it); NULL means it does not count."""
    value = member_value(agg, col)
    return value if agg.where is None else case(where_sql(agg.where), value)


def member_value(agg: ast.Agg, column: Callable[[str], exp.Expr]) -> exp.Expr:
    """The value an event contributes (before its filter): its field's column(name), or 1 for
    an event count."""
    return column(agg.field) if agg.aggregate.reads_field else num(1)
