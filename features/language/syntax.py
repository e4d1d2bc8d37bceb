"""The typed AST of the feature language: plain, immutable dataclasses shared by every target.

The parser builds these nodes with `type=None`; the type checker returns copies with every
expression's `type` filled in and every bare name resolved to a FieldRef or FeatureRef, so the
compilers never have to guess what a name means.
"""
from __future__ import annotations

import dataclasses
import enum

from roundhouse.features.language.errors import Loc


class Base(enum.Enum):
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STRING = "string"
    NULL = "null"  # the type of the literal `null`; unifies with any other base


@dataclasses.dataclass(frozen=True)
class Type:
    base: Base
    nullable: bool = False

    def __str__(self) -> str:
        return self.base.value + ("?" if self.nullable and self.base is not Base.NULL else "")


# ---------------------------------------------------------------- declarations


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    type: Type
    loc: Loc


@dataclasses.dataclass(frozen=True)
class Stream:
    name: str
    fields: tuple[Field, ...]
    loc: Loc

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


@dataclasses.dataclass(frozen=True)
class Window:
    """A window length in microseconds; None means lifetime. `forward` marks a label's
    look-ahead window (`over next 90d`)."""

    micros: int | None
    text: str
    forward: bool
    loc: Loc


# ---------------------------------------------------------------- expressions


@dataclasses.dataclass(frozen=True)
class Expr:
    pass


@dataclasses.dataclass(frozen=True)
class Literal(Expr):
    value: object
    loc: Loc
    type: Type | None = None


@dataclasses.dataclass(frozen=True)
class Name(Expr):
    """An unresolved identifier (parser output only)."""

    name: str
    loc: Loc
    type: Type | None = None


@dataclasses.dataclass(frozen=True)
class FieldRef(Expr):
    """A field of the event being evaluated (the driver, or the aggregated event in a `where`)."""

    name: str
    loc: Loc
    type: Type | None = None


@dataclasses.dataclass(frozen=True)
class FeatureRef(Expr):
    name: str  # the output column name of the referenced feature
    loc: Loc
    type: Type | None = None


@dataclasses.dataclass(frozen=True)
class Unary(Expr):
    op: str  # "-" or "not"
    operand: Expr
    loc: Loc
    type: Type | None = None


@dataclasses.dataclass(frozen=True)
class Binary(Expr):
    op: str  # + - * / == != < <= > >= and or
    left: Expr
    right: Expr
    loc: Loc
    type: Type | None = None


@dataclasses.dataclass(frozen=True)
class IsNull(Expr):
    operand: Expr
    negated: bool
    loc: Loc
    type: Type | None = None


@dataclasses.dataclass(frozen=True)
class If(Expr):
    cond: Expr
    then: Expr
    else_: Expr
    loc: Loc
    type: Type | None = None


@dataclasses.dataclass(frozen=True)
class Call(Expr):
    fn: str
    args: tuple[Expr, ...]
    loc: Loc
    type: Type | None = None


@dataclasses.dataclass(frozen=True)
class Key:
    """`by merchant_id` joins the aggregated stream's merchant_id to the driver's merchant_id;
    `by card = card_id` joins the aggregated stream's `card` to the driver's `card_id`."""

    stream_field: str
    driver_field: str
    loc: Loc


@dataclasses.dataclass(frozen=True)
class Agg(Expr):
    fn: str  # the aggregation's name, as written (language/aggregates.py defines them)
    stream: str
    field: str | None  # None for count(stream) / exists(stream)
    where: Expr | None  # over the aggregated event's fields
    keys: tuple[Key, ...]
    window: Window
    loc: Loc
    type: Type | None = None
    stream_loc: Loc | None = None  # where errors about the stream or field point
    field_loc: Loc | None = None
    # Its definition, an aggregates.Aggregate (AGGREGATES[fn]), filled in by the type checker:
    # the key of every target's rule for it.
    aggregate: object = dataclasses.field(default=None, compare=False)


# ---------------------------------------------------------------- definitions


@dataclasses.dataclass(frozen=True)
class Definition:
    kind: str  # "feature" or "label"
    name: str
    version: int
    expr: Expr
    loc: Loc

    @property
    def column(self) -> str:
        """Version 1 keeps the plain name; later versions live beside it as name_vN, so a model
        trained on v1 keeps reading v1 while new models read v2."""
        return self.name if self.version == 1 else f"{self.name}_v{self.version}"


@dataclasses.dataclass(frozen=True)
class Import:
    path: str
    loc: Loc


@dataclasses.dataclass(frozen=True)
class Module:
    """One parsed definition file."""

    file: str
    imports: tuple[Import, ...]
    streams: tuple[Stream, ...]
    driver: tuple[str, Loc] | None
    lateness: Window | None
    definitions: tuple[Definition, ...]


@dataclasses.dataclass(frozen=True)
class Program:
    """A checked program: a definition file with its imports resolved and every expression typed.

    `features` and `labels` are in dependency order (a feature comes after those it reads)."""

    file: str
    streams: dict[str, Stream]
    driver: str
    lateness_micros: int
    features: tuple[Definition, ...]
    labels: tuple[Definition, ...]
    files: tuple[str, ...]  # every file read, the root first

    @property
    def driver_stream(self) -> Stream:
        return self.streams[self.driver]

    def definition(self, column: str) -> Definition:
        for d in self.features + self.labels:
            if d.column == column:
                return d
        raise KeyError(column)


def children(e: Expr) -> tuple[Expr, ...]:
    if isinstance(e, Unary):
        return (e.operand,)
    if isinstance(e, Binary):
        return (e.left, e.right)
    if isinstance(e, IsNull):
        return (e.operand,)
    if isinstance(e, If):
        return (e.cond, e.then, e.else_)
    if isinstance(e, Call):
        return e.args
    return ()


def walk(e: Expr):
    """Pre-order walk that does not descend into an aggregation's `where` (a different scope)."""
    yield e
    for c in children(e):
        yield from walk(c)


def aggregations(e: Expr) -> list[Agg]:
    return [n for n in walk(e) if isinstance(n, Agg)]
