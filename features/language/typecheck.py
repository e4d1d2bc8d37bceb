"""Type checking: parsed modules -> ast.Program, or FeatureError with every problem found.

The checker is also where the language's promises are enforced: a feature cannot read a label
or a clock, a label is the only thing that looks forward in time, keys join fields of the same
type, and a `where` only sees the aggregated event.
"""
from __future__ import annotations

import dataclasses
import difflib

from roundhouse.features.language import syntax as ast
from roundhouse.features.language.aggregates import AGGREGATES, lookup
from roundhouse.features.language.errors import Diagnostic, FeatureError, Loc
from roundhouse.features.language.limits import MAX_FEATURE_CHAIN
from roundhouse.features.language.syntax import Base, Type

INT, FLOAT, BOOL, STRING = Base.INT, Base.FLOAT, Base.BOOL, Base.STRING
NUMERIC = (INT, FLOAT)

# Columns of the events file itself; a stream field cannot take these names.
RESERVED_FIELDS = ("seq", "event_time", "stream", "too_late")

# Names people reach for when they want the time; the language deliberately has none.
CLOCK_NAMES = {"now", "today", "current_time", "current_timestamp", "current_date", "clock",
               "time", "timestamp", "event_time", "wall_clock", "unix_timestamp", "sysdate"}

# name -> (argument bases or None for "any", result) ; checked in _call
FUNCTIONS = ("coalesce", "lower", "upper", "length", "concat", "starts_with", "ends_with",
             "contains", "abs")


def _hint_names(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"did you mean {close[0]!r}?" if close else ""


@dataclasses.dataclass
class _Scope:
    """What bare names mean where an expression is checked."""

    fields: dict[str, ast.Field]
    stream: str
    features: dict[str, ast.Definition] | None  # None inside a `where`
    labels: dict[str, ast.Definition]
    in_label: bool
    where: bool = False


class Checker:
    def __init__(self, streams: dict[str, ast.Stream], driver: str | None,
                 defs: dict[str, ast.Definition]):
        self.streams = streams
        self.driver = driver
        self.defs = defs
        self.problems: list[Diagnostic] = []
        self.typed: dict[str, ast.Definition] = {}
        self._features = {c: x for c, x in defs.items() if x.kind == "feature"}
        self._labels = {c: x for c, x in defs.items() if x.kind == "label"}
        self._fields = {f.name: f for f in streams[driver].fields}

    def fail(self, loc: Loc, message: str, hint: str = "") -> None:
        self.problems.append(Diagnostic(loc, message, hint))

    # ------------------------------------------------------------ definitions
    def order(self) -> list[str]:
        """The definitions in dependency order: a definition after those it reads, otherwise
        as declared (a depth-first walk, without recursion: a chain of 10,000 features is a
        located error, not a RecursionError). Cycles and chains longer than
        MAX_FEATURE_CHAIN are problems."""
        reads = {c: list(dict.fromkeys(  # a field of the driver hides a feature's name
            n.name for n in ast.walk(d.expr) if isinstance(n, ast.Name)
            and n.name in self.defs and n.name not in self._fields)) for c, d in self.defs.items()}
        order: list[str] = []
        chain: dict[str, int] = {}  # definition -> the longest chain of reads it starts
        for root in self.defs:
            if root in chain:
                continue
            path, todo = [root], [iter(reads[root])]
            chain[root] = 0  # 0: on the path
            while path:
                column = next(todo[-1], None)
                if column is None:  # everything it reads is done
                    done = path.pop()
                    todo.pop()
                    chain[done] = 1 + max((chain[r] for r in reads[done]), default=0)
                    order.append(done)
                    if chain[done] == MAX_FEATURE_CHAIN + 1:
                        self._too_long(done, reads, chain)
                elif column not in chain:
                    path.append(column)
                    todo.append(iter(reads[column]))
                    chain[column] = 0
                elif chain[column] == 0:
                    d = self.defs[column]
                    cycle = " -> ".join(path[path.index(column):] + [column])
                    self.fail(d.loc, f"{d.kind} {column!r} depends on itself ({cycle})",
                              "break the cycle: a feature can only read features that do not "
                              "read it")
        return order

    def _too_long(self, column: str, reads: dict, chain: dict) -> None:
        names = [column]
        while chain[names[-1]] > 1:  # down the longest chain
            names.append(max(reads[names[-1]], key=chain.__getitem__))
        shown = names if len(names) <= 5 else names[:3] + ["..."] + names[-1:]
        d = self.defs[column]
        self.fail(d.loc, f"{d.kind} {column!r} heads a chain of {len(names)} definitions "
                         f"reading each other ({' -> '.join(shown)})",
                  f"a chain is at most {MAX_FEATURE_CHAIN} long: compute some of its links "
                  "in one expression")

    def definition(self, column: str) -> ast.Definition | None:
        """Types one definition; those it reads were typed before it (see `order`)."""
        d = self.defs[column]
        scope = _Scope(self._fields, self.driver, self._features, self._labels,
                       d.kind == "label")
        expr = self.expr(d.expr, scope)
        if expr is None:
            return None
        if expr.type.base is Base.NULL:
            self.fail(d.loc, f"{d.kind} {column!r} is always null, so it has no type",
                      "give it a value, e.g. coalesce(x, 0)")
            return None
        typed = dataclasses.replace(d, expr=expr)
        self.typed[column] = typed
        return typed

    # ------------------------------------------------------------ expressions
    def expr(self, e: ast.Expr, s: _Scope) -> ast.Expr | None:
        method = getattr(self, "_" + type(e).__name__.lower())
        return method(e, s)

    def _literal(self, e: ast.Literal, s):
        v = e.value
        if v is None:
            t = Type(Base.NULL, True)
        elif isinstance(v, bool):
            t = Type(BOOL)
        elif isinstance(v, int):
            t = Type(INT)
        elif isinstance(v, float):
            t = Type(FLOAT)
        else:
            t = Type(STRING)
        return dataclasses.replace(e, type=t)

    def _name(self, e: ast.Name, s: _Scope):
        n = e.name
        if n in s.fields:
            return ast.FieldRef(n, e.loc, s.fields[n].type)
        if n in CLOCK_NAMES:
            self.fail(e.loc, f"{n!r} reads a clock; the feature language has no notion of "
                             "time other than window lengths",
                      "aggregate over a window instead (e.g. `count(charge) by card_id over 1h`)"
                      "; clocks would make batch and online disagree")
            return None
        if s.where:
            other = s.features is not None and n in s.features
            self.fail(e.loc, f"{n!r} is not a field of stream {s.stream!r}",
                      "a `where` filter only reads fields of the aggregated event"
                      if other or n in s.labels else
                      _hint_names(n, s.fields) or
                      f"fields of {s.stream}: {', '.join(s.fields)}")
            return None
        if n in s.labels:
            if not s.in_label:
                self.fail(e.loc, f"feature reads label {n!r}; a feature can never read a label",
                          "labels look into the future and exist only in training tables; "
                          "compute the feature from past events instead")
                return None
            return self._read(n, e)
        if s.features is not None and n in s.features:
            return self._read(n, e)
        known = list(s.fields) + list(s.features or {}) + (list(s.labels) if s.in_label else [])
        self.fail(e.loc, f"unknown name {n!r}",
                  _hint_names(n, known) or
                  f"a name is a field of the driver stream {s.stream!r} or a feature")
        return None

    def _read(self, column: str, e: ast.Name):
        """A definition read by name; None (reported where it is) if it did not check."""
        d = self.typed.get(column)
        return None if d is None else ast.FeatureRef(column, e.loc, d.expr.type)

    def _sub(self, parts, s):
        out = [self.expr(p, s) for p in parts]
        return None if any(o is None for o in out) else out

    def _unary(self, e: ast.Unary, s):
        sub = self._sub([e.operand], s)
        if sub is None:
            return None
        (o,) = sub
        if e.op == "not":
            if not self._is(o, BOOL):
                return self._wrong(o, "`not` needs a bool")
            return dataclasses.replace(e, operand=o, type=Type(BOOL, o.type.nullable))
        if o.type.base not in NUMERIC:
            return self._wrong(o, "unary `-` needs a number")
        return dataclasses.replace(e, operand=o, type=o.type)

    def _is(self, e, base) -> bool:
        return e.type.base in (base, Base.NULL)

    def _wrong(self, e, what):
        self.fail(e.loc, f"{what}, got {e.type}", _type_hint(e.type))
        return None

    def _binary(self, e: ast.Binary, s):
        sub = self._sub([e.left, e.right], s)
        if sub is None:
            return None
        l, r = sub
        nullable = l.type.nullable or r.type.nullable
        op = e.op
        if op in ("and", "or"):
            for side in (l, r):
                if not self._is(side, BOOL):
                    return self._wrong(side, f"`{op}` needs bools")
            return dataclasses.replace(e, left=l, right=r, type=Type(BOOL, nullable))
        if op in ("+", "-", "*", "/"):
            for side in (l, r):
                if side.type.base not in NUMERIC + (Base.NULL,):
                    hint = ("join strings with concat(a, b)"
                            if side.type.base is STRING and op == "+" else _type_hint(side.type))
                    self.fail(side.loc, f"`{op}` needs numbers, got {side.type}", hint)
                    return None
            if op == "/":
                # Division always yields float and is null on a zero divisor (both targets).
                return dataclasses.replace(e, left=l, right=r, type=Type(FLOAT, True))
            base = INT if (l.type.base in (INT, Base.NULL) and r.type.base in (INT, Base.NULL)) \
                else FLOAT
            return dataclasses.replace(e, left=l, right=r, type=Type(base, nullable))
        # comparisons
        for side in (l, r):
            if isinstance(side, ast.Literal) and side.value is None:
                self.fail(side.loc, f"comparing with null with `{op}` is always null",
                          "write `x is null` or `x is not null`")
                return None
        if not (l.type.base in NUMERIC and r.type.base in NUMERIC) and l.type.base != r.type.base:
            self.fail(e.loc, f"cannot compare {l.type} with {r.type}",
                      "both sides of a comparison must have the same type (int and float mix)")
            return None
        if op not in ("==", "!=") and l.type.base is BOOL:
            self.fail(e.loc, f"`{op}` does not order bools", "use == or !=")
            return None
        return dataclasses.replace(e, left=l, right=r, type=Type(BOOL, nullable))

    def _isnull(self, e: ast.IsNull, s):
        sub = self._sub([e.operand], s)
        if sub is None:
            return None
        return dataclasses.replace(e, operand=sub[0], type=Type(BOOL))

    def _if(self, e: ast.If, s):
        sub = self._sub([e.cond, e.then, e.else_], s)
        if sub is None:
            return None
        c, t, f = sub
        if not self._is(c, BOOL):
            return self._wrong(c, "the condition of `if` must be a bool")
        u = unify(t.type, f.type)
        if u is None:
            self.fail(e.loc, f"the branches of `if` have different types: {t.type} and {f.type}",
                      "make both branches the same type (int and float mix)")
            return None
        return dataclasses.replace(e, cond=c, then=t, else_=f, type=u)

    def _call(self, e: ast.Call, s):
        fn = e.fn
        if fn in CLOCK_NAMES:
            self.fail(e.loc, f"{fn}() reads a clock; the feature language has no notion of time "
                             "other than window lengths",
                      "aggregate over a window instead; clocks would make batch and online "
                      "disagree")
            return None
        if lookup(fn) is not None:
            self.fail(e.loc, f"{fn}(...) needs `by KEY over WINDOW`",
                      f"e.g. `{fn}(charge) by card_id over 1h`")
            return None
        if fn not in FUNCTIONS:
            close = difflib.get_close_matches(fn, list(FUNCTIONS) + list(AGGREGATES), n=1)
            a = lookup(close[0]) if close else None
            hint = f"functions: {', '.join(FUNCTIONS)}" if not close else \
                f"did you mean {close[0]!r}?" + (
                    f" (an aggregation: {a.name}(STREAM{'.FIELD' if a.reads_field else ''}) "
                    "by KEY over WINDOW)" if a else "")
            self.fail(e.loc, f"unknown function {fn!r}", hint)
            return None
        args = self._sub(list(e.args), s)
        if args is None:
            return None

        def arity(n):
            if len(args) != n:
                self.fail(e.loc, f"{fn}() takes {n} argument{'s' if n > 1 else ''}, "
                                 f"got {len(args)}")
                return False
            return True

        def want(a, bases, what):
            if a.type.base not in bases + (Base.NULL,):
                self._wrong(a, f"{fn}() needs {what}")
                return False
            return True

        anynull = any(a.type.nullable for a in args)
        if fn == "coalesce":
            if not args:
                self.fail(e.loc, "coalesce() needs at least one argument")
                return None
            t = args[0].type
            for a in args[1:]:
                u = unify(t, a.type)
                if u is None:
                    self.fail(a.loc, f"coalesce() arguments must share a type: {t} and {a.type}")
                    return None
                t = u
            t = Type(t.base, all(a.type.nullable for a in args))
        elif fn in ("lower", "upper", "length"):
            if not arity(1) or not want(args[0], (STRING,), "a string"):
                return None
            t = Type(INT if fn == "length" else STRING, anynull)
        elif fn == "concat":
            if len(args) < 2:
                self.fail(e.loc, "concat() takes two or more strings")
                return None
            if not all(want(a, (STRING,), "strings") for a in args):
                return None
            t = Type(STRING, anynull)
        elif fn in ("starts_with", "ends_with", "contains"):
            if not arity(2) or not all(want(a, (STRING,), "strings") for a in args):
                return None
            t = Type(BOOL, anynull)
        else:  # abs
            if not arity(1) or not want(args[0], NUMERIC, "a number"):
                return None
            t = args[0].type
        return dataclasses.replace(e, args=tuple(args), type=t)

    def _agg(self, e: ast.Agg, s: _Scope):
        if s.where:
            self.fail(e.loc, "an aggregation cannot appear inside a `where` filter",
                      "filter on the aggregated event's own fields")
            return None
        a = lookup(e.fn)
        if a is None:
            self.fail(e.loc, f"unknown aggregation {e.fn!r}",
                      _hint_names(e.fn, AGGREGATES) or
                      f"aggregations: {', '.join(AGGREGATES)}")
            return None
        if e.window.forward and not s.in_label:
            self.fail(e.window.loc, "a feature cannot look forward in time (`over next ...`)",
                      "only a label may look forward; declare it with `label NAME = ...`")
            return None
        if e.stream not in self.streams:
            self.fail(e.stream_loc or e.loc, f"unknown stream {e.stream!r}",
                      _hint_names(e.stream, self.streams) or
                      f"declare it with `stream {e.stream} {{ ... }}`")
            return None
        st = self.streams[e.stream]
        fields = {f.name: f for f in st.fields}
        ok = True
        if not a.reads_field:
            if e.field is not None:
                self.fail(e.loc, f"{e.fn}() counts events: write {e.fn}({e.stream})",
                          f"to skip events where {e.field} is null, add "
                          f"`where {e.field} is not null`")
                return None
            rtype = a.result_type(None)
        else:
            if e.field is None:
                self.fail(e.loc, f"{e.fn}() needs a field: {e.fn}({e.stream}.FIELD)",
                          f"fields of {e.stream}: {', '.join(fields)}")
                return None
            f = fields.get(e.field)
            if f is None:
                self.fail(e.field_loc or e.loc, f"stream {e.stream!r} has no field {e.field!r}",
                          _hint_names(e.field, fields) or f"fields: {', '.join(fields)}")
                return None
            if f.type.base not in a.takes:
                return self._wrong(ast.FieldRef(e.field, e.loc, f.type),
                                   f"{e.fn}() needs {a.takes_text}")
            rtype = a.result_type(f.type.base)
        driver_fields = {f.name: f for f in self.streams[self.driver].fields}
        for k in e.keys:
            sf, df = fields.get(k.stream_field), driver_fields.get(k.driver_field)
            if sf is None:
                ok = False
                self.fail(k.loc, f"stream {e.stream!r} has no key field {k.stream_field!r}",
                          _hint_names(k.stream_field, fields) or f"fields: {', '.join(fields)}")
            elif df is None:
                ok = False
                self.fail(k.loc, f"driver stream {self.driver!r} has no field "
                                 f"{k.driver_field!r} to join on",
                          "join a differently named field with `by "
                          f"{k.stream_field} = DRIVER_FIELD`")
            elif sf.type.base != df.type.base:
                ok = False
                self.fail(k.loc, f"key {e.stream}.{k.stream_field} is {sf.type.base.value} but "
                                 f"{self.driver}.{k.driver_field} is {df.type.base.value}",
                          "join keys must have the same type")
            elif sf.type.base is FLOAT:
                ok = False
                self.fail(k.loc, "a float field cannot be a key",
                          "group by an int, bool or string field")
        if len({k.stream_field for k in e.keys}) != len(e.keys):
            ok = False
            self.fail(e.loc, "the same key field appears twice")
        where = None
        if e.where is not None:
            wscope = _Scope(fields, e.stream, None, {}, False, where=True)
            where = self.expr(e.where, wscope)
            if where is None:
                return None
            if not self._is(where, BOOL):
                return self._wrong(where, "a `where` filter must be a bool")
        if not ok:
            return None
        return dataclasses.replace(e, where=where, type=rtype, aggregate=a)

    # FieldRef/FeatureRef only appear after checking
    def _fieldref(self, e, s):
        return e

    def _featureref(self, e, s):
        return e


def unify(a: Type, b: Type) -> Type | None:
    nullable = a.nullable or b.nullable
    if a.base is Base.NULL:
        return Type(b.base, True)
    if b.base is Base.NULL:
        return Type(a.base, True)
    if a.base == b.base:
        return Type(a.base, nullable)
    if a.base in NUMERIC and b.base in NUMERIC:
        return Type(FLOAT, nullable)
    return None


def _type_hint(t: Type) -> str:
    if t.base is Base.NULL:
        return "null has no type here; use coalesce(x, default) or `x is null`"
    return ""


def check(modules: list[ast.Module], sources: dict[str, str] | None = None) -> ast.Program:
    """Merge the root module (first) and its imports into a checked Program."""
    problems: list[Diagnostic] = []
    root = modules[0]
    streams: dict[str, ast.Stream] = {}
    field_types: dict[str, tuple[Base, ast.Stream]] = {}
    driver: tuple[str, Loc] | None = None
    lateness: ast.Window | None = None
    defs: dict[str, ast.Definition] = {}
    # Imports first, root last: an importer sees its imports' declarations.
    for m in modules[1:] + modules[:1]:
        for st in m.streams:
            if st.name in streams:
                problems.append(Diagnostic(st.loc, f"stream {st.name!r} is declared twice "
                                           f"(first at {streams[st.name].loc})",
                                           "declare each stream once and import that file"))
                continue
            streams[st.name] = st
            seen = set()
            for f in st.fields:
                if f.name in seen:
                    problems.append(Diagnostic(f.loc, f"field {f.name!r} is declared twice in "
                                               f"stream {st.name!r}"))
                seen.add(f.name)
                if f.name in RESERVED_FIELDS:
                    problems.append(Diagnostic(f.loc, f"{f.name!r} is a column of every event",
                                               "pick another field name; seq, event_time and "
                                               "stream are provided by the log"))
                prev = field_types.get(f.name)
                if prev and prev[0] != f.type.base:
                    problems.append(Diagnostic(
                        f.loc, f"field {f.name!r} is {f.type.base.value} here but "
                               f"{prev[0].value} in stream {prev[1].name!r}",
                        "a field name shared by streams is one column of the events file; "
                        "give both the same type or rename one"))
                field_types.setdefault(f.name, (f.type.base, st))
        if m.driver is not None:
            if driver is not None and driver[0] != m.driver[0]:
                problems.append(Diagnostic(m.driver[1], f"driver {m.driver[0]!r} conflicts "
                                           f"with driver {driver[0]!r} at {driver[1]}",
                                           "all features of a program are evaluated at the "
                                           "same driver events"))
            driver = driver or m.driver
        if m.lateness is not None:
            if lateness is not None and lateness.micros != m.lateness.micros:
                problems.append(Diagnostic(m.lateness.loc, f"lateness {m.lateness.text} "
                                           f"conflicts with lateness {lateness.text} at "
                                           f"{lateness.loc}",
                                           "one program has one allowed lateness"))
            lateness = lateness or m.lateness
        for d in m.definitions:
            if d.column in defs:
                problems.append(Diagnostic(d.loc, f"{d.kind} {d.column!r} is defined twice "
                                           f"(first at {defs[d.column].loc})",
                                           "to change a published feature, add a new version: "
                                           f"`{d.kind} {d.name} v{d.version + 1} = ...`"))
                continue
            defs[d.column] = d
    if problems:
        raise FeatureError(problems, sources)
    first = root.definitions[0].loc if root.definitions else Loc(root.file, 1, 1)
    if driver is None:
        raise FeatureError([Diagnostic(first, "no driver stream declared",
                                       "say at which events features are evaluated, e.g. "
                                       "`driver charge`")], sources)
    if driver[0] not in streams:
        raise FeatureError([Diagnostic(driver[1], f"unknown driver stream {driver[0]!r}",
                                       _hint_names(driver[0], streams) or
                                       f"declare `stream {driver[0]} {{ ... }}`")], sources)
    checker = Checker(streams, driver[0], defs)
    for column in checker.order():
        checker.definition(column)
    if checker.problems:
        raise FeatureError(checker.problems, sources)
    has_aggs = any(ast.aggregations(d.expr) for d in checker.typed.values())
    if lateness is None and has_aggs:
        raise FeatureError([Diagnostic(first, "no allowed lateness declared",
                                       "declare how late an event may arrive, e.g. "
                                       "`lateness 1h` (drivers later than that get nulls)")],
                           sources)
    # Dependency order: checker.typed fills in post-order (dependencies first).
    order = list(checker.typed)
    return ast.Program(
        file=root.file, streams=streams, driver=driver[0],
        lateness_micros=lateness.micros if lateness else 0,
        features=tuple(checker.typed[c] for c in order if checker.typed[c].kind == "feature"),
        labels=tuple(checker.typed[c] for c in order if checker.typed[c].kind == "label"),
        files=tuple(m.file for m in modules))
