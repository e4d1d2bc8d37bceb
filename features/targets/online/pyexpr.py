"""Typed expressions -> Python source with the same semantics as the SQL the batch target
emits (three-valued logic, null propagation, division null on a zero divisor, ints promoted to
float where they meet a float). Used by the online target and the reference evaluator."""
from __future__ import annotations

from typing import Callable

from roundhouse.features.language import syntax as ast
from roundhouse.features.language.syntax import Base


def _and(a, b):
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or(a, b):
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def _not(a):
    return None if a is None else not a


def _neg(a):
    return None if a is None else -a


def _div(a, b):
    if a is None or b is None or b == 0:
        return None
    return float(a) / float(b)


def _f(a):
    return None if a is None else float(a)


def _coalesce(*args):
    for a in args:
        if a is not None:
            return a
    return None


def _concat(*args):
    if any(a is None for a in args):
        return None
    return "".join(args)


def _lift(fn):
    return lambda *args: None if any(a is None for a in args) else fn(*args)


_OPS = {
    "+": _lift(lambda a, b: a + b), "-": _lift(lambda a, b: a - b),
    "*": _lift(lambda a, b: a * b), "==": _lift(lambda a, b: a == b),
    "!=": _lift(lambda a, b: a != b), "<": _lift(lambda a, b: a < b),
    "<=": _lift(lambda a, b: a <= b), ">": _lift(lambda a, b: a > b),
    ">=": _lift(lambda a, b: a >= b),
}
_FUNCS = {
    "lower": _lift(str.lower), "upper": _lift(str.upper), "length": _lift(len),
    "starts_with": _lift(str.startswith), "ends_with": _lift(str.endswith),
    "contains": _lift(lambda s, p: p in s), "abs": _lift(abs),
}

RUNTIME = {"_and": _and, "_or": _or, "_not": _not, "_neg": _neg, "_div": _div, "_f": _f,
           "_coalesce": _coalesce, "_concat": _concat,
           **{f"_op{i}": fn for i, fn in enumerate(_OPS.values())},
           **{f"_fn_{k}": v for k, v in _FUNCS.items()}}
_OP_NAME = {op: f"_op{i}" for i, op in enumerate(_OPS)}


class PyExpr:
    """Compile an expression to a Python expression string; `ref` maps names/aggs to source.

    The source is at most a conditional expression (`a if c else b`), parenthesized only where
    Python needs it (an `if`'s then-branch, an operand of `is`): it nests about one pair of
    parentheses per level of the expression, and Python allows 200 (limits.MAX_EXPR_DEPTH)."""

    def __init__(self, ref: Callable[[ast.Expr], str]):
        self.ref = ref
        self._n = 0

    def _tmp(self) -> str:
        self._n += 1
        return f"_t{self._n}"

    def __call__(self, e: ast.Expr) -> str:
        return getattr(self, "_" + type(e).__name__.lower())(e)

    def _float(self, e) -> str:
        if e.type.base is not Base.INT:
            return self(e)
        if isinstance(e, ast.Literal) and isinstance(e.value, int):
            return repr(float(e.value))  # int literals are 64-bit: float() cannot overflow
        a = self._tmp()  # _f inlined
        return f"None if ({a} := {self(e)}) is None else float({a})"

    def _as(self, e, t) -> str:
        return self._float(e) if t.base is Base.FLOAT else self(e)

    def _literal(self, e):
        return repr(e.value)

    def _fieldref(self, e):
        return self.ref(e)

    _featureref = _fieldref
    _agg = _fieldref

    def _unary(self, e):
        return f"{'_not' if e.op == 'not' else '_neg'}({self(e.operand)})"

    def _binary(self, e):
        l, r = e.left, e.right
        if e.op == "and":
            return f"_and({self(l)}, {self(r)})"
        if e.op == "or":
            return f"_or({self(l)}, {self(r)})"
        if e.op == "/":  # _div inlined
            a, b = self._tmp(), self._tmp()
            # Python converts an int operand of a float division exactly as float() does, so
            # only int / int needs one: the SQL targets divide doubles, Python's int / int
            # rounds the exact quotient (they differ past 2**53).
            both_int = l.type.base is Base.INT and r.type.base is Base.INT
            fa = f"float({a})" if both_int else a
            return (f"None if ({a} := {self(l)}) is None or ({b} := {self(r)}) is None "
                    f"or {b} == 0 else {fa} / {b}")
        tests, vals = self._operands(e)
        if not tests:
            return f"({vals[0]} {e.op} {vals[1]})"
        nulls = " or ".join(f"({t} := {src}) is None" for t, src in tests)
        return f"None if {nulls} else {vals[0]} {e.op} {vals[1]}"

    def _operands(self, e) -> tuple[list[tuple[str, str]], list[str]]:
        """The operands of a binary operator: (temporary, source) of each that may be null, and
        the two values. Inline (no call) null propagation: this is the online target's hot
        path. A literal operand is never null and needs no test; an int meeting a float is
        converted after its test (as _float would, one test fewer)."""
        l, r = e.left, e.right
        mixed = Base.FLOAT in (l.type.base, r.type.base)
        tests, vals = [], []
        for side in (l, r):
            if isinstance(side, ast.Literal) and side.value is not None:
                vals.append(self._float(side) if mixed else self(side))
            else:
                t = self._tmp()
                tests.append((t, self(side)))
                vals.append(f"float({t})" if mixed and side.type.base is Base.INT else t)
        return tests, vals

    def _true(self, e) -> str:
        """A condition that holds exactly when e is true (not false, not null)."""
        if isinstance(e, ast.Binary) and e.op in ("==", "!=", "<", "<=", ">", ">="):
            tests, vals = self._operands(e)
            nonnull = [f"({t} := {src}) is not None" for t, src in tests]
            return " and ".join(nonnull + [f"{vals[0]} {e.op} {vals[1]}"])
        if isinstance(e, ast.IsNull):
            return self(e)
        return f"({self(e)}) is True"

    def _isnull(self, e):
        return f"({self(e.operand)}) is {'not ' if e.negated else ''}None"

    def _if(self, e):
        return (f"({self._as(e.then, e.type)}) if {self._true(e.cond)} "
                f"else {self._as(e.else_, e.type)}")

    def _call(self, e):
        if e.fn == "coalesce":
            return "_coalesce(" + ", ".join(self._as(a, e.type) for a in e.args) + ")"
        if e.fn == "concat":
            return "_concat(" + ", ".join(self(a) for a in e.args) + ")"
        return f"_fn_{e.fn}(" + ", ".join(self(a) for a in e.args) + ")"
