"""Typed expressions -> SQL text (DuckDB and Spark dialects), with the language's semantics:
SQL three-valued logic, division that is null on a zero divisor, ints promoted to double
wherever they meet a float (the online target does the same, so values agree bit for bit)."""
from __future__ import annotations

from typing import Callable

from roundhouse.features.language import syntax as ast
from roundhouse.features.language.syntax import Base


def quote(name: str, dialect: str = "duckdb") -> str:
    if dialect == "spark":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def literal(value, dialect: str = "duckdb") -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return f"CAST({value} AS BIGINT)"
    if isinstance(value, float):
        return f"CAST('{value!r}' AS DOUBLE)"
    s = str(value).replace("'", "''")
    if dialect == "spark":
        s = s.replace("\\", "\\\\")
    return f"'{s}'"


def _trivial(e: ast.Expr) -> bool:
    """A literal or a column: cheap to write twice."""
    return isinstance(e, (ast.Literal, ast.FieldRef, ast.FeatureRef, ast.Agg))


class SqlExpr:
    """Compile one expression; `ref` maps FieldRef/FeatureRef/Agg nodes to SQL."""

    def __init__(self, ref: Callable[[ast.Expr], str], dialect: str = "duckdb"):
        self.ref = ref
        self.dialect = dialect

    def __call__(self, e: ast.Expr) -> str:
        return getattr(self, "_" + type(e).__name__.lower())(e)

    def _double(self, e: ast.Expr) -> str:
        s = self(e)
        return f"CAST({s} AS DOUBLE)" if e.type.base is Base.INT else s

    def _as(self, e: ast.Expr, t: ast.Type) -> str:
        return self._double(e) if t.base is Base.FLOAT else self(e)

    def _literal(self, e):
        return literal(e.value, self.dialect)

    def _fieldref(self, e):
        return self.ref(e)

    def _featureref(self, e):
        return self.ref(e)

    def _agg(self, e):
        return self.ref(e)

    def _unary(self, e):
        op = "NOT " if e.op == "not" else "-"
        return f"({op}{self(e.operand)})"

    def _binary(self, e):
        op = e.op
        l, r = e.left, e.right
        if op in ("and", "or"):
            return f"({self(l)} {op.upper()} {self(r)})"
        if op == "/":  # null on a zero divisor
            if _trivial(r):
                return (f"(CASE WHEN {self(r)} = 0 THEN NULL ELSE "
                        f"{self._double(l)} / {self._double(r)} END)")
            # Not `CASE WHEN r = 0`: r written twice, and divisors holding divisors would
            # double the query at each level (DuckDB's NULLIF is a macro for that CASE).
            if self.dialect == "spark":  # its division is null on 0 (ANSI off: batch_spark)
                return f"({self._double(l)} / {self._double(r)})"
            # r's one value in a list, dropped if 0.
            return (f"({self._double(l)} / list_filter([{self._double(r)}], "
                    "lambda d: d <> 0)[1])")
        mixed = Base.FLOAT in (l.type.base, r.type.base)
        ls, rs = (self._double(l), self._double(r)) if mixed else (self(l), self(r))
        sqlop = {"==": "=", "!=": "<>"}.get(op, op)
        return f"({ls} {sqlop} {rs})"

    def _isnull(self, e):
        return f"({self(e.operand)} IS {'NOT ' if e.negated else ''}NULL)"

    def _if(self, e):
        return (f"(CASE WHEN {self(e.cond)} THEN {self._as(e.then, e.type)} "
                f"ELSE {self._as(e.else_, e.type)} END)")

    def _call(self, e):
        fn, args = e.fn, e.args
        if fn == "coalesce":
            return "COALESCE(" + ", ".join(self._as(a, e.type) for a in args) + ")"
        if fn == "concat":
            return "(" + " || ".join(self(a) for a in args) + ")"
        if fn == "length":
            return f"CAST(length({self(args[0])}) AS BIGINT)"
        if fn == "ends_with" and self.dialect == "spark":
            return f"endswith({self(args[0])}, {self(args[1])})"
        if fn == "starts_with" and self.dialect == "spark":
            return f"startswith({self(args[0])}, {self(args[1])})"
        return f"{fn}(" + ", ".join(self(a) for a in args) + ")"


def final_select(program: ast.Program, plan, ctes: list[str], labels: bool, dialect: str = "duckdb") -> str:
    """The query over the `base` CTE (driver fields and guarded aggregation slots) that both
    batch targets end with: seq, too_late and one typed column per feature (and label).

    A definition that others read is a column of a layer over base, not written out where it
    is read: written out, a chain of features would nest past the engines' expression depth,
    and one read twice by the next, read twice by the next... would double at each link.
    Layer i holds those that read only columns of the layers below it."""
    defs = program.features + (program.labels if labels else ())
    read = {n.name for d in defs for n in ast.walk(d.expr) if isinstance(n, ast.FeatureRef)}
    columns: dict[str, tuple[str, int]] = {}  # read definition -> (its SQL, layers it needs)
    layers: list[list[str]] = []

    def ref(e: ast.Expr) -> str:
        if isinstance(e, ast.FieldRef):
            return quote(e.name, dialect)
        if isinstance(e, ast.Agg):
            return plan.slot(e).name
        return columns[e.name][0]  # defs are in dependency order

    compile_expr = SqlExpr(ref, dialect)
    string = "VARCHAR" if dialect == "duckdb" else "STRING"
    out = ["seq", "too_late"]
    for d in defs:
        sql = compile_expr(d.expr)
        if d.column in read:
            level = max((columns[n.name][1] for n in ast.walk(d.expr)
                         if isinstance(n, ast.FeatureRef)), default=0)
            if not _trivial(d.expr):
                layers += [[] for _ in range(level + 1 - len(layers))]
                layers[level].append(f"{sql} AS __f{len(columns)}")
                sql, level = f"__f{len(columns)}", level + 1
            columns[d.column] = (sql, level)
        t = {Base.INT: "BIGINT", Base.FLOAT: "DOUBLE", Base.BOOL: "BOOLEAN"}.get(d.expr.type.base, string)
        out.append(f"CAST({sql} AS {t}) AS {quote(d.column, dialect)}")
    source = "base"
    for i, cols in enumerate(layers):
        ctes = ctes + [f"feat{i} AS (SELECT *, {', '.join(cols)} FROM {source})"]
        source = f"feat{i}"
    return ("WITH " + ",\n".join(ctes) + "\nSELECT " + ", ".join(out) + f" FROM {source} "
            "ORDER BY seq")
