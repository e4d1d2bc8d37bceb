"""How the online target arranges per-key state: what one key's state holds, where each value
sits, and which aggregations read what. The generated code (codegen.py) and the stores
(stores.py) both follow it; nothing here runs per event.

State lives in plain dicts, one per aggregation group: key -> state.
* window groups: `[ts, X, m1_0, m2_0, m1_1, m2_1, ...]`: ts the list of event_times in
  ascending order, X the key's index (below), then per stored event its member values,
  `stride` of them: the seq (only when a rule needs it, as `last`'s does) and one value per
  distinct member (e.g. the amount, the merchant; None where the event does not count for
  that aggregation). Which members and index entries each aggregation needs is its rule's
  to say (aggregates.py).
  A group of unfiltered counts has no members: its state is ts itself ("bare"). One flat list
  per key rather than a list per member: fewer objects for the allocator and the cyclic
  garbage collector to visit. Everything stored arrived before the event being served, so the
  members of a window are exactly the suffix with event_time >= t - w (one bisect), and the
  aggregations are C-level builtins over (strided) slices (len, sum, max, set).
  That is linear in the window's events: a key with INDEX_FROM stored events gets an index X
  (None below; groups with nothing to index have no X slot) that answers the same suffix
  queries in O(log n): prefix sums and counts for int sums, averages and filtered counts;
  each distinct value's newest event_time, sorted, for count_distinct; the stack of suffix
  extremes for min and max. An in-order event extends it; a late one rebuilds it.
  Entries older than max_t - lateness - longest window can never count again (any driver that
  is not too late has t >= max_t - lateness). An insert drops them once they are half of the
  key's entries (so a key holds at most about twice what its windows can still count, at an
  amortized constant cost); `OnlineProgram.sweep` drops them all and removes keys left empty.
* lifetime groups: running accumulators per key (count, sum, min, max, last, distinct set),
  one flat list per key (`LifetimeLayout`).
"""
from __future__ import annotations

import dataclasses

from roundhouse.features.language import syntax as ast
from roundhouse.features.language.printer import show
from roundhouse.features.language.syntax import Base
from roundhouse.features.plan import plan
from roundhouse.features.plan.plan import Group, Slot
from roundhouse.features.targets.online.aggregates import PREFIX_KINDS, rule

# The layout of the state above; stores refuse state written with another layout.
STATE_LAYOUT = 4
# Stored events from which a key's window state also keeps an index (see the module docstring).
INDEX_FROM = 64

@dataclasses.dataclass(frozen=True)
class Member:
    """A value a window group stores per event: the aggregated field's value (`field`; None
    for the 1 of a filtered count) where the event passes the filter, else None. Aggregations
    with the same field and filter (e.g. sum and avg of one field) share one member."""

    field: str | None
    where_text: str | None  # the filter's canonical text (printer.show): equal filters match
    where: ast.Expr | None = dataclasses.field(default=None, compare=False)

    def describe(self) -> str:
        value = self.field or "1"
        return value if self.where_text is None else f"{value} where {self.where_text}"


def member(slot: Slot) -> Member | None:
    """The member a slot's aggregation reads; None for an unfiltered event count (every
    stored event counts, nothing needs storing)."""
    agg = slot.agg
    if agg.where is None:
        return None if agg.field is None else Member(agg.field, None)
    return Member(agg.field, show(agg.where), agg.where)


def field_base(program: ast.Program, slot: Slot) -> Base | None:
    """The base type of the field a slot aggregates (None for an event count)."""
    return plan.field_base(program, slot.agg)


@dataclasses.dataclass
class WindowLayout:
    """One window group's per-key state: `[ts, X, per-event values...]` (see the module doc)."""

    group: Group
    has_seq: bool  # each stored event keeps its seq first (a rule `needs_seq`, e.g. last's)
    members: list[Member]  # the distinct members, in the order stored
    # The index X: (kind, member column) -> position of its first entry in X. Kinds
    # (online/aggregates.py): prefix_sum and prefix_count (prefix sums of an int member and
    # prefix counts of its non-null values), newest_times (value -> its newest event_time, and
    # those times sorted), suffix_max and suffix_min (the suffix extremes: event_times and
    # values). Each aggregation's rule says which it reads (none: always from slices, e.g. a
    # float sum, whose prefix sums would round differently, and last). Empty: the state has
    # no X.
    index: dict[tuple[str, int], int]

    @property
    def stride(self) -> int:
        """Values stored per event: the seq (if kept) and one per member."""
        return self.has_seq + len(self.members)

    @property
    def bare(self) -> bool:
        """Unfiltered counts only: the state is the list of event_times itself."""
        return self.stride == 0

    @property
    def base(self) -> int:
        """Position of the first per-event value in the state (after ts, and X if indexed)."""
        return 2 if self.index else 1

    def column(self, slot: Slot) -> int:
        """Position (1-based) of the slot's member among an event's stored values (the seq,
        when kept, is column 1)."""
        return 1 + self.has_seq + self.members.index(member(slot))


def window_layout(program: ast.Program, g: Group) -> WindowLayout:
    members: list[Member] = []
    for s in g.slots:
        m = member(s)
        if m is not None and m not in members:
            members.append(m)
    lay = WindowLayout(g, any(rule(s.agg).needs_seq for s in g.slots), members, {})
    size = 0  # entries of X so far
    for s in g.slots:
        if member(s) is None:
            continue
        c = lay.column(s)
        for kind in rule(s.agg).index(field_base(program, s)):
            if (kind, c) not in lay.index:
                lay.index[(kind, c)] = size
                size += 1 if kind in PREFIX_KINDS else 2
    return lay


@dataclasses.dataclass
class LifetimeLayout:
    """One lifetime group's per-key state: a flat list of running accumulators, from
    `offsets[i]` on for slot i, as its rule's `init` says (online/aggregates.py): count/exists
    [n], sum [total], avg [total, n], min/max [value], count_distinct [set], last [seq, value]."""

    group: Group
    offsets: list[int]
    init: list  # initial values; EMPTY_SET where a fresh set goes


def lifetime_layout(program: ast.Program, g: Group) -> LifetimeLayout:
    offsets, init = [], []
    for s in g.slots:
        offsets.append(len(init))
        init += rule(s.agg).init(field_base(program, s))
    return LifetimeLayout(g, offsets, init)


def state_layouts(program: ast.Program, groups: list[Group]) -> dict:
    """Group id -> its WindowLayout or LifetimeLayout (the groups the online target keeps)."""
    return {g.id: window_layout(program, g) if g.kind == "window" else lifetime_layout(program, g)
            for g in groups}
