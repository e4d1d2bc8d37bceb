"""Typed expressions -> SQL text (DuckDB and Spark dialects), with the language's semantics:
SQL three-valued logic, division that is null on a zero divisor, ints promoted to double
wherever they meet a float (the online target does the same, so values agree bit for bit)."""
from __future__ import annotations

from typing import Callable

from roundhouse.features import syntax as ast
from roundhouse.features.syntax import Base


def quote(name: str) -> str:
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
        if op == "/":
            return (f"(CASE WHEN {self(r)} = 0 THEN NULL ELSE "
                    f"{self._double(l)} / {self._double(r)} END)")
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
