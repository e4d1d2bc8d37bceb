"""The online target's rule for each aggregation of the language (language/aggregates.py):
what it keeps in a key's state (layout.py) and the Python source that reads its value there
(codegen.py writes the rest of the program around these snippets).

* window groups store each event's member value (None where it does not count) and, for a rule
  with `needs_seq`, its seq. `window(v)` is the value from the stored values of the driver's
  window (v: a `WindowValues`, which codegen provides); `index` the kinds of entry of the key's
  index X it reads instead once the key has one (see layout.py), and `from_index(x)` the value
  from them (x: an `IndexValues`).
* lifetime groups keep running accumulators per key: `init` (their initial values), `add` (the
  lines adding the member value `m` at seq `seq`) and `lifetime` (the value).

Helpers the snippets call are in RUNTIME (the generated code's namespace; runtime.py).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Protocol

from roundhouse.features.language import aggregates as lang
from roundhouse.features.language import syntax as ast
from roundhouse.features.language.syntax import Base

# The kinds of entry of a window key's index X (layout.py says what each holds).
PREFIX_SUM = "prefix_sum"  # prefix sums of an int member
PREFIX_COUNT = "prefix_count"  # prefix counts of a member's non-null values
NEWEST_TIMES = "newest_times"  # each value's newest event_time, and those times sorted
SUFFIX_MAX = "suffix_max"  # the stack of suffix maxima: event_times, values
SUFFIX_MIN = "suffix_min"  # the stack of suffix minima
PREFIX_KINDS = (PREFIX_SUM, PREFIX_COUNT)  # one list in X each; the others take two


class WindowValues(Protocol):
    """What a window rule reads, for one member over the driver's window (from codegen)."""

    i: str  # the local holding the position of the window's first stored event
    # The aggregation counts every stored event (an unfiltered event count): no member is
    # stored for it, and `n - i` events are in the window.
    unfiltered: bool

    def raw(self) -> str:
        """A local holding the member's stored values in the window (None where an event
        does not count), made once per window and member."""

    def values_slice(self) -> str:
        """Source of that list, made anew."""

    def seqs_slice(self) -> str:
        """Source of the list of the seqs of the window's stored events."""

    def present(self, f: Callable[[str], str], shared: str | None = None) -> str:
        """A local holding f(vl) for the list vl of the member's values in the window that
        are not None. f's source must raise TypeError on a None among them (sum, min and max
        do), so it is tried on the raw values first and the list made only if that fails.
        `shared` names a value several rules read (e.g. "sm", the sum): made once; else the
        local is the aggregation's own."""

    def present_list(self) -> str:
        """A local holding vl itself."""


class IndexValues(Protocol):
    """What a rule reads from the key's index X (from codegen)."""

    lo: str  # the local holding the window's lower bound on event_time

    def prefix(self, kind: str) -> str:
        """Source of the window's share of a prefix list of X (PREFIX_KINDS)."""

    def at(self, kind: str) -> int:
        """The position in X of the entry of `kind` (its first list, for the two-list
        kinds)."""


@dataclasses.dataclass(frozen=True)
class OnlineRule:
    window: Callable[[WindowValues, Base | None], str]
    init: Callable[[Base | None], list]  # lifetime accumulators (EMPTY_SET: a new set each)
    add: Callable[[str, int], list[str]]  # (state, offset) -> lines adding m (not None)
    lifetime: Callable[[str, int], str]  # (state, offset) -> source of the value
    index: Callable[[Base | None], tuple[str, ...]] = lambda base: ()
    from_index: Callable[[IndexValues], str] | None = None
    needs_seq: bool = False  # window groups keep each stored event's seq for it
    # Its value is computed as a float whenever its result type is float (sum, avg), so the
    # generated code converts nothing.
    computed: bool = False


class _EmptySet:
    def __repr__(self) -> str:
        return "set()"


# The initial value of a count_distinct's lifetime accumulator: each key gets its own set.
EMPTY_SET = _EmptySet()


def _last(seqs, col):
    """The non-null value of col with the greatest seq (late events sit mid-list)."""
    best, value = None, None
    for q, v in zip(seqs, col):
        if v is not None and (best is None or q > best):
            best, value = q, v
    return value


def _first(seqs, col):
    """The non-null value of col with the smallest seq (late events sit mid-list)."""
    best, value = None, None
    for q, v in zip(seqs, col):
        if v is not None and (best is None or q < best):
            best, value = q, v
    return value


# The helpers the rules' snippets call, by the names they call them.
RUNTIME = {"_last": _last, "_first": _first}


def _count_window(v: WindowValues, base) -> str:
    if v.unfiltered:
        return f"n - {v.i}"
    return f"len({v.raw()}) - {v.raw()}.count(None)"


def _exists_window(v: WindowValues, base) -> str:
    if v.unfiltered:
        return f"n > {v.i}"
    return f"len({v.raw()}) > {v.raw()}.count(None)"


def _sum(v: WindowValues) -> str:
    return v.present(lambda vl: f"sum({vl})", shared="sm")


def _extreme(fn: str) -> Callable[[WindowValues, Base | None], str]:
    return lambda v, base: v.present(lambda vl: f"{fn}({vl}) if {vl} else None")


def _extreme_index(kind: str) -> Callable[[IndexValues], str]:
    def read(x: IndexValues) -> str:
        o = x.at(kind)
        return f"X[{o + 1}][xk] if (xk := bisect_left(X[{o}], {x.lo})) < len(X[{o}]) else None"
    return read


def _int_only(*kinds: str) -> Callable[[Base | None], tuple[str, ...]]:
    """Prefix sums only of ints: a float's would round differently from the batch target's."""
    return lambda base: kinds if base is Base.INT else ()


def _distinct_index(x: IndexValues) -> str:
    o = x.at(NEWEST_TIMES) + 1
    return f"len(X[{o}]) - bisect_left(X[{o}], {x.lo})"


def _keep(op: str) -> Callable[[str, int], list[str]]:
    return lambda st, o: [f"if {st}[{o}] is None or m {op} {st}[{o}]: {st}[{o}] = m"]


def _one(st: str, o: int) -> str:
    return f"{st}[{o}]"


RULES: dict[lang.Aggregate, OnlineRule] = {
    lang.COUNT: OnlineRule(
        _count_window, lambda base: [0], lambda st, o: [f"{st}[{o}] += 1"], _one,
        index=lambda base: (PREFIX_COUNT,), from_index=lambda x: x.prefix(PREFIX_COUNT)),
    lang.EXISTS: OnlineRule(
        _exists_window, lambda base: [0], lambda st, o: [f"{st}[{o}] += 1"],
        lambda st, o: f"({st}[{o}] > 0)",
        index=lambda base: (PREFIX_COUNT,), from_index=lambda x: x.prefix(PREFIX_COUNT) + " > 0"),
    lang.SUM: OnlineRule(
        lambda v, base: f"float({_sum(v)})" if base is Base.FLOAT else _sum(v),
        lambda base: [0.0 if base is Base.FLOAT else 0], lambda st, o: [f"{st}[{o}] += m"],
        _one, index=_int_only(PREFIX_SUM, PREFIX_COUNT),
        from_index=lambda x: x.prefix(PREFIX_SUM), computed=True),
    # A sum of ints below 2**53 (any realistic one) is exact as a float: int / int then
    # equals float(sum) / n.
    lang.AVG: OnlineRule(
        lambda v, base: f"{_sum(v)} / len({v.present_list()}) if {v.present_list()} else None",
        lambda base: [0, 0], lambda st, o: [f"{st}[{o}] += m", f"{st}[{o + 1}] += 1"],
        lambda st, o: f"({st}[{o}] / {st}[{o + 1}] if {st}[{o + 1}] else None)",
        index=_int_only(PREFIX_SUM, PREFIX_COUNT),
        from_index=lambda x: (f"({x.prefix(PREFIX_SUM)}) / xc if (xc := "
                              f"{x.prefix(PREFIX_COUNT)}) else None"), computed=True),
    lang.MIN: OnlineRule(
        _extreme("min"), lambda base: [None], _keep("<"), _one,
        index=lambda base: (SUFFIX_MIN,), from_index=_extreme_index(SUFFIX_MIN)),
    lang.MAX: OnlineRule(
        _extreme("max"), lambda base: [None], _keep(">"), _one,
        index=lambda base: (SUFFIX_MAX,), from_index=_extreme_index(SUFFIX_MAX)),
    lang.COUNT_DISTINCT: OnlineRule(
        lambda v, base: f"len(_s := set({v.raw()})) - (None in _s)",
        lambda base: [EMPTY_SET], lambda st, o: [f"{st}[{o}].add(m)"],
        lambda st, o: f"len({st}[{o}])",
        index=lambda base: (NEWEST_TIMES,), from_index=_distinct_index),
    # Stored events are in event_time order, so a late one sits mid-list: the seqs decide.
    # Lifetime: events arrive in seq order, so the newest non-null value is the last one.
    lang.LAST: OnlineRule(
        lambda v, base: f"_last({v.seqs_slice()}, {v.values_slice()})",
        lambda base: [None, None], lambda st, o: [f"{st}[{o}] = seq", f"{st}[{o + 1}] = m"],
        lambda st, o: f"{st}[{o + 1}]", needs_seq=True),
    # Lifetime: the first non-null value to arrive, kept.
    lang.FIRST: OnlineRule(
        lambda v, base: f"_first({v.seqs_slice()}, {v.values_slice()})",
        lambda base: [None], lambda st, o: [f"if {st}[{o}] is None: {st}[{o}] = m"], _one,
        needs_seq=True),
}

lang.require_rules(RULES, "the online target (targets/online/aggregates.py)")


def rule(agg: ast.Agg) -> OnlineRule:
    return RULES[agg.aggregate]
