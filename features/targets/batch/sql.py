"""What the batch targets share: typed expressions -> sqlglot expression trees, the query's
building blocks, the final select, and the two dialects the trees are written out in.

The language's semantics: SQL three-valued logic, division that is null on a zero divisor,
ints promoted to double wherever they meet a float (the online target does the same, so values
agree bit for bit).

No SQL is written by formatting text. A query is a tree of sqlglot nodes; user text (string
literals, field and feature names) enters it only as `exp.Literal.string` and quoted
identifiers, which the dialect's generator escapes when it writes the tree out. The targets
write in DIALECTS["duckdb"] or DIALECTS["spark"]: sqlglot's own DuckDB and Spark, overriding
only what the batch target needs written differently (see `RoundhouseDuckDB`,
`RoundhouseSpark`). Every identifier is quoted, the platform's own names too."""
from __future__ import annotations

import contextlib
import re
import sys
from typing import Callable, Iterable

from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.dialects.spark import Spark
from sqlglot.errors import ErrorLevel

from roundhouse.features.language import syntax as ast
from roundhouse.features.language.syntax import Base


# ------------------------------------------------------------------ the dialects

def _divide_once(gen, e: exp.SafeDivide) -> str:
    """DuckDB: l / r, null when r is 0, with r written once: r's one value in a list, dropped
    if 0. sqlglot's DuckDB writes SafeDivide as `CASE WHEN r <> 0 THEN l / r END` (and
    DuckDB's NULLIF is a macro for that CASE): r twice, and divisors holding divisors would
    double the query at each level."""
    d = exp.to_identifier("d")
    kept = exp.Bracket(
        this=exp.ArrayFilter(this=exp.Array(expressions=[e.expression]),
                             expression=exp.Lambda(this=exp.NEQ(this=d, expression=num(0)),
                                                   expressions=[d.copy()])),
        expressions=[num(1)], offset=1)  # 1-based, as written
    return gen.sql(exp.Div(this=_wrap(e.this), expression=kept))


class RoundhouseDuckDB(DuckDB):
    class Generator(DuckDB.Generator):
        TRANSFORMS = {**DuckDB.Generator.TRANSFORMS, exp.SafeDivide: _divide_once}


class RoundhouseSpark(Spark):
    """sqlglot's Spark writes SafeDivide as TRY_DIVIDE (null on a zero divisor, ANSI mode or
    not) and escapes strings with backslashes, as Spark reads them."""

    class Generator(Spark.Generator):
        def literal_sql(self, expression: exp.Literal) -> str:
            if not expression.is_string:
                return super().literal_sql(expression)
            # Two characters as \uXXXX (exactly four digits) rather than sqlglot's escapes:
            # '$', since Spark substitutes ${var}, ${env:X}, ${system:X} in the text of every
            # query before parsing it, string literals included; and NUL, which sqlglot writes
            # as \0, read as an octal escape (\012 ...) when digits follow it.
            body = "".join(f"\\u{ord(p):04x}" if p in ("$", "\0") else self.escape_str(p)
                           for p in _SPARK_UNICODE.split(expression.this))
            return f"{self.dialect.QUOTE_START}{body}{self.dialect.QUOTE_END}"


_SPARK_UNICODE = re.compile("([$\0])")


DIALECTS = {"duckdb": RoundhouseDuckDB, "spark": RoundhouseSpark}


def quote(name: str, dialect: str = "duckdb") -> str:
    """An identifier as SQL text of `dialect`, for SQL written outside these trees."""
    return render(ident(name), dialect)


def string(value: str, dialect: str = "duckdb") -> str:
    """A string literal as SQL text of `dialect`, for SQL written outside these trees."""
    return render(exp.Literal.string(value), dialect)


def render(tree: exp.Expr, dialect: str, pretty: bool = False) -> str:
    """The tree as SQL text of `dialect`; a node the dialect cannot write is an error. What
    the targets run is one line; `pretty` (for a person: `explain`) writes the same query with
    a clause or expression per line, indented as it nests (sqlglot's pretty printer)."""
    with _deep():
        return DIALECTS[dialect]().generate(tree, copy=False, unsupported_level=ErrorLevel.RAISE,
                                            pretty=pretty)


@contextlib.contextmanager
def _deep(limit: int = 10_000):
    """sqlglot's generator recurses over the tree, a few frames per node and a few nodes per
    level of an expression: at the language's limits (limits_test) it needs about 3,000."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def source(events: str | exp.Expr, dialect: str) -> exp.Expr:
    """The events table: a node, or the caller's SQL table expression (a table name, or e.g.
    read_parquet('x.parquet')): platform text, never user text."""
    if isinstance(events, exp.Expr):
        return events
    return exp.maybe_parse(events, into=exp.Table, dialect=DIALECTS[dialect])


# ------------------------------------------------------------------ building blocks

BIGINT = exp.DataType.Type.BIGINT
DOUBLE = exp.DataType.Type.DOUBLE
BOOLEAN = exp.DataType.Type.BOOLEAN
STRING = exp.DataType.Type.TEXT  # VARCHAR in DuckDB, STRING in Spark
HUGEINT = exp.DataType.Type.INT128
# Both targets order a window's events by o = time * SHIFT + seq, exactly: seq < 2^40 (a
# trillion events) keeps o unique and ordered.
SHIFT = 1 << 40


def seqs_out_of_range(lo: int | None, hi: int | None) -> str | None:
    """Why a log whose seqs run from lo to hi (None: no events) cannot be ordered by o."""
    if lo is not None and not (0 <= lo and hi < SHIFT):
        return f"seq must lie in [0, 2^40) for the batch targets (it runs from {lo} to {hi})"
    return None
TYPES = {Base.INT: BIGINT, Base.FLOAT: DOUBLE, Base.BOOL: BOOLEAN, Base.STRING: STRING}


def ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.Column(this=ident(name), table=ident(table) if table else None)


def table(name: str, alias: str | None = None) -> exp.Table:
    return exp.Table(this=ident(name), alias=exp.TableAlias(this=ident(alias)) if alias else None)


def num(n: int) -> exp.Expr:
    """A platform-written number (window lengths, lateness, bucket widths)."""
    return exp.Literal.number(n)


def cast(e: exp.Expr, to: exp.DataType.Type) -> exp.Cast:
    return exp.Cast(this=e, to=exp.DataType(this=to))


def alias(e: exp.Expr, name: str) -> exp.Alias:
    return exp.Alias(this=e, alias=ident(name))


def literal(value) -> exp.Expr:
    """A value of the language as SQL: ints are BIGINT, floats DOUBLE from their exact text."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int):
        return cast(num(value), BIGINT)
    if isinstance(value, float):
        return cast(exp.Literal.string(repr(value)), DOUBLE)
    return exp.Literal.string(str(value))


def _wrap(e: exp.Expr, kinds: tuple = (exp.Binary, exp.Not, exp.Neg)) -> exp.Expr:
    """The generator writes a tree as it is, without adding parentheses for precedence."""
    return exp.Paren(this=e) if isinstance(e, kinds) else e


def op(kind: type[exp.Binary], left: exp.Expr, right: exp.Expr | int) -> exp.Expr:
    """left <kind> right; a compound operand is parenthesized."""
    if isinstance(right, int):
        right = num(right)
    return kind(this=_wrap(left), expression=_wrap(right))


def and_(*conds: exp.Expr) -> exp.Expr:
    out = _wrap(conds[0], (exp.Or,))
    for c in conds[1:]:
        out = exp.And(this=out, expression=_wrap(c, (exp.Or,)))
    return out


def or_(*conds: exp.Expr) -> exp.Expr:
    out = conds[0]
    for c in conds[1:]:
        out = exp.Or(this=out, expression=c)
    return out


def not_(e: exp.Expr) -> exp.Expr:
    return exp.Not(this=_wrap(e, (exp.Connector,)))


def is_null(e: exp.Expr) -> exp.Expr:
    return exp.Is(this=_wrap(e), expression=exp.Null())


def not_null(e: exp.Expr) -> exp.Expr:
    return exp.Not(this=is_null(e))


def case(cond: exp.Expr, then: exp.Expr, else_: exp.Expr | None = None) -> exp.Case:
    return exp.Case(ifs=[exp.If(this=cond, true=then)], default=else_)


def coalesce(*args: exp.Expr | int | bool) -> exp.Coalesce:
    nodes = [num(a) if isinstance(a, int) and not isinstance(a, bool) else
             exp.Boolean(this=a) if isinstance(a, bool) else a for a in args]
    return exp.Coalesce(this=nodes[0], expressions=nodes[1:])


def greatest(*args: exp.Expr) -> exp.Greatest:
    """Nulls skipped, as DuckDB and Spark do (sqlglot would otherwise write a null test)."""
    return exp.Greatest(this=args[0], expressions=list(args[1:]), ignore_nulls=True)


def least(*args: exp.Expr) -> exp.Least:
    return exp.Least(this=args[0], expressions=list(args[1:]), ignore_nulls=True)


def filtered(agg: exp.Expr, cond: exp.Expr) -> exp.Filter:
    """agg FILTER (WHERE cond)"""
    return exp.Filter(this=agg, expression=exp.Where(this=cond))


def over(agg: exp.Expr, window: str | None = None, partition: Iterable[exp.Expr] = (),
         order: Iterable[exp.Expr] = (), spec: exp.WindowSpec | None = None) -> exp.Window:
    """agg OVER window, or agg OVER (PARTITION BY ... ORDER BY ... spec)."""
    if window is not None:
        return exp.Window(this=agg, alias=ident(window), over="OVER")
    return exp.Window(this=agg, partition_by=list(partition) or None,
                      order=order_by(*order) if order else None, spec=spec, over="OVER")


def named_window(name: str, partition: Iterable[exp.Expr], order: Iterable[exp.Expr],
                 spec: exp.WindowSpec) -> exp.Window:
    """name AS (PARTITION BY ... ORDER BY ... spec), for a SELECT's WINDOW clause."""
    return exp.Window(this=ident(name), partition_by=list(partition),
                      order=order_by(*order), spec=spec)


def frame(kind: str, start: exp.Expr | str, end: exp.Expr | str) -> exp.WindowSpec:
    """ROWS|RANGE BETWEEN start PRECEDING AND end PRECEDING; "UNBOUNDED" for unbounded."""
    return exp.WindowSpec(kind=kind, start=start, start_side="PRECEDING", end=end,
                          end_side="PRECEDING")


def order_by(*keys: exp.Expr) -> exp.Order:
    return exp.Order(expressions=[exp.Ordered(this=k, nulls_first=False) for k in keys])


def join(target: exp.Expr, on: exp.Expr | None = None, using: Iterable[str] = (),
         side: str | None = None, method: str | None = None) -> exp.Join:
    return exp.Join(this=target, on=on, using=[ident(u) for u in using] or None, side=side,
                    method=method)


def select(columns: Iterable[exp.Expr], from_: exp.Expr | str, *, where=None, joins=(),
           group: Iterable[exp.Expr] = (), windows: Iterable[exp.Window] = (), qualify=None,
           order: Iterable[exp.Expr] = (), distinct: bool = False) -> exp.Select:
    if isinstance(from_, str):
        from_ = table(from_)
    return exp.Select(
        expressions=list(columns), from_=exp.From(this=from_),
        joins=list(joins) or None, where=exp.Where(this=where) if where is not None else None,
        group=exp.Group(expressions=list(group)) if group else None,
        windows=list(windows) or None,
        qualify=exp.Qualify(this=qualify) if qualify is not None else None,
        order=order_by(*order) if order else None,
        distinct=exp.Distinct() if distinct else None)


def union_all(first: exp.Select, second: exp.Select) -> exp.Union:
    return exp.Union(this=first, expression=second, distinct=False)


def cte(name: str, query: exp.Expr) -> exp.CTE:
    return exp.CTE(this=query, alias=exp.TableAlias(this=ident(name)))


def with_ctes(query: exp.Select, ctes: list[exp.CTE]) -> exp.Select:
    query.set("with_", exp.With(expressions=ctes))
    return query


# ------------------------------------------------------------------ expressions

def _trivial(e: ast.Expr) -> bool:
    """A literal or a column: cheap to write twice."""
    return isinstance(e, (ast.Literal, ast.FieldRef, ast.FeatureRef, ast.Agg))


_BINARY = {"+": exp.Add, "-": exp.Sub, "*": exp.Mul, "==": exp.EQ, "!=": exp.NEQ,
           "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}
_FUNCS = {"lower": exp.Lower, "upper": exp.Upper, "abs": exp.Abs}
_FUNCS2 = {"starts_with": exp.StartsWith, "ends_with": exp.EndsWith, "contains": exp.Contains}


class SqlExpr:
    """Compile one expression to a tree; `ref` maps FieldRef/FeatureRef/Agg nodes to a new
    node each time it is called (a node has one parent).

    Every operator is parenthesized, as the language nests it."""

    def __init__(self, ref: Callable[[ast.Expr], exp.Expr]):
        self.ref = ref

    def __call__(self, e: ast.Expr) -> exp.Expr:
        return getattr(self, "_" + type(e).__name__.lower())(e)

    def _double(self, e: ast.Expr) -> exp.Expr:
        s = self(e)
        return cast(s, DOUBLE) if e.type.base is Base.INT else s

    def _as(self, e: ast.Expr, t: ast.Type) -> exp.Expr:
        return self._double(e) if t.base is Base.FLOAT else self(e)

    def _literal(self, e):
        return literal(e.value)

    def _fieldref(self, e):
        return self.ref(e)

    _featureref = _fieldref
    _agg = _fieldref

    def _unary(self, e):
        node = exp.Not if e.op == "not" else exp.Neg
        return exp.Paren(this=node(this=self(e.operand)))

    def _binary(self, e):
        l, r = e.left, e.right
        if e.op in ("and", "or"):
            kind = exp.And if e.op == "and" else exp.Or
            return exp.Paren(this=kind(this=self(l), expression=self(r)))
        if e.op == "/":  # null on a zero divisor
            if _trivial(r):
                return exp.Paren(this=case(exp.EQ(this=self(r), expression=num(0)), exp.Null(),
                                           exp.Div(this=self._double(l),
                                                   expression=self._double(r))))
            # r written once: the dialect's SafeDivide (RoundhouseDuckDB, RoundhouseSpark)
            return exp.Paren(this=exp.SafeDivide(this=self._double(l),
                                                 expression=self._double(r)))
        mixed = Base.FLOAT in (l.type.base, r.type.base)
        ls, rs = (self._double(l), self._double(r)) if mixed else (self(l), self(r))
        return exp.Paren(this=_BINARY[e.op](this=ls, expression=rs))

    def _isnull(self, e):
        test = exp.Is(this=self(e.operand), expression=exp.Null())
        return exp.Paren(this=exp.Not(this=test) if e.negated else test)

    def _if(self, e):
        return exp.Paren(this=case(self(e.cond), self._as(e.then, e.type),
                                   self._as(e.else_, e.type)))

    def _call(self, e):
        fn, args = e.fn, e.args
        if fn == "coalesce":
            return coalesce(*(self._as(a, e.type) for a in args))
        if fn == "concat":  # `||`: null if any part is (DuckDB's concat() skips nulls)
            out = self(args[0])
            for a in args[1:]:
                out = exp.DPipe(this=out, expression=self(a))
            return exp.Paren(this=out)
        if fn == "length":
            return cast(exp.Length(this=self(args[0])), BIGINT)
        if fn in _FUNCS2:
            return _FUNCS2[fn](this=self(args[0]), expression=self(args[1]))
        return _FUNCS[fn](this=self(args[0]))


def stream_is(name: str, table_alias: str | None = None) -> exp.Expr:
    return exp.EQ(this=col("stream", table_alias), expression=exp.Literal.string(name))


def base_cte(program: ast.Program, plan, values: dict[str, exp.Expr],
             joins: list[exp.Join]) -> exp.CTE:
    """`base`, which both targets end with: each driver event (drv, with `joins`) as seq,
    too_late, its fields and each aggregation slot's value (values[slot name]), null for a null
    key or a too-late driver (labels ignore lateness)."""
    cols = [alias(col("seq", "drv"), "seq"), alias(col("too_late", "drv"), "too_late")]
    cols += [alias(col(f.name, "drv"), f.name) for f in program.driver_stream.fields]
    for g in plan.groups:
        for s in g.slots:
            conds = [is_null(col(k, "drv")) for k in g.driver_keys]
            if g.kind != "forward":
                conds.insert(0, col("too_late", "drv"))
            cols.append(alias(case(or_(*conds), exp.Null(), values[s.name]), s.name))
    return cte("base", select(cols, "drv", joins=joins))


def final_select(program: ast.Program, plan, ctes: list[exp.CTE], labels: bool) -> exp.Select:
    """The query over the `base` CTE (driver fields and guarded aggregation slots) that both
    batch targets end with: seq, too_late and one typed column per feature (and label).

    A definition that others read is a column of a layer over base, not written out where it
    is read: written out, a chain of features would nest past the engines' expression depth,
    and one read twice by the next, read twice by the next... would double at each link.
    Layer i holds those that read only columns of the layers below it."""
    defs = program.features + (program.labels if labels else ())
    read = {n.name for d in defs for n in ast.walk(d.expr) if isinstance(n, ast.FeatureRef)}
    columns: dict[str, tuple[exp.Expr, int]] = {}  # read definition -> (its tree, layers)
    layers: list[list[exp.Expr]] = []

    def ref(e: ast.Expr) -> exp.Expr:
        if isinstance(e, ast.FieldRef):
            return col(e.name)
        if isinstance(e, ast.Agg):
            return col(plan.slot(e).name)
        return columns[e.name][0].copy()  # defs are in dependency order

    compile_expr = SqlExpr(ref)
    out = [col("seq"), col("too_late")]
    for d in defs:
        tree = compile_expr(d.expr)
        if d.column in read:
            level = max((columns[n.name][1] for n in ast.walk(d.expr)
                         if isinstance(n, ast.FeatureRef)), default=0)
            if not _trivial(d.expr):
                layers += [[] for _ in range(level + 1 - len(layers))]
                name = f"__f{len(columns)}"
                layers[level].append(alias(tree, name))
                tree, level = col(name), level + 1
            columns[d.column] = (tree, level)
        out.append(alias(cast(tree.copy() if d.column in read else tree,
                              TYPES.get(d.expr.type.base, STRING)), d.column))
    ctes = list(ctes)
    src = "base"
    for i, cols in enumerate(layers):
        ctes.append(cte(f"feat{i}", select([exp.Star(), *cols], src)))
        src = f"feat{i}"
    return with_ctes(select(out, src, order=[col("seq")]), ctes)
