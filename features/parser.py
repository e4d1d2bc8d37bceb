"""Definition file text -> ast.Module, with Lark (LALR) and a Transformer.

Lark's syntax errors are turned into FeatureError diagnostics (file, line, column, caret, hint)
so a typo reads like a compiler error, not a Python traceback.
"""
from __future__ import annotations

import ast as pyast
import functools
import pathlib

import lark

from roundhouse.features import syntax as ast
from roundhouse.features.errors import Diagnostic, FeatureError, Loc

_TYPES = ("int", "float", "bool", "string")
_UNIT_MICROS = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}

# What users most often mean when Lark stops at a token; shown as the hint.
_TOKEN_WORDS = {
    "EQUAL": "'='", "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'",
    "COLON": "':'", "COMMA": "','", "DOT": "'.'", "NAME": "a name", "DURATION":
    "a duration such as 30s, 15m, 1h or 7d", "TYPE": "a type (int, float, bool, string)",
    "STRING": "a quoted string", "KIND": "'feature' or 'label'", "VERSION": "a version such as v1",
    "LIFETIME": "'lifetime'", "AGG_FN": "an aggregation", "INT": "a number", "FLOAT": "a number",
    "BY": "'by'", "OVER": "'over'", "NEXT": "'next'", "THEN": "'then'", "ELSE": "'else'",
}


@functools.lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    grammar = pathlib.Path(__file__).with_name("grammar.lark").read_text()
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse_duration(text: str, loc: Loc | None = None) -> int:
    digits = len(text) - len(text.lstrip("0123456789"))
    unit = text[digits:]
    if unit not in _UNIT_MICROS:
        raise FeatureError([Diagnostic(loc or Loc("<string>", 0, 0),
                                       f"unknown duration unit {unit!r} in {text!r}",
                                       "write s, m, h or d, e.g. 90s, 15m, 1h, 30d")])
    return int(text[:digits]) * _UNIT_MICROS[unit]


class _ToAst(lark.Transformer):
    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _loc(self, item) -> Loc:
        meta = getattr(item, "meta", None)
        if meta is not None and not getattr(meta, "empty", True):
            return Loc(self.file, meta.line, meta.column)
        return Loc(self.file, getattr(item, "line", 0) or 0, getattr(item, "column", 0) or 0)

    def _tok(self, tok: lark.Token) -> Loc:
        return Loc(self.file, tok.line, tok.column)

    # ---------------------------------------------------------------- top level
    def start(self, items):
        imports = tuple(i for i in items if isinstance(i, ast.Import))
        streams = tuple(i for i in items if isinstance(i, ast.Stream))
        defs = tuple(i for i in items if isinstance(i, ast.Definition))
        drivers = [i for i in items if isinstance(i, tuple) and i[0] == "driver"]
        latenesses = [i for i in items if isinstance(i, ast.Window)]
        problems = []
        if len(drivers) > 1:
            problems.append(Diagnostic(drivers[1][2], "a file declares its driver stream once",
                                       "remove the second `driver` line"))
        if len(latenesses) > 1:
            problems.append(Diagnostic(latenesses[1].loc, "a file declares `lateness` once",
                                       "remove the second `lateness` line"))
        if problems:
            raise FeatureError(problems)
        return ast.Module(
            file=self.file, imports=imports, streams=streams,
            driver=(drivers[0][1], drivers[0][2]) if drivers else None,
            lateness=latenesses[0] if latenesses else None, definitions=defs)

    @lark.v_args(meta=True)
    def import_(self, meta, items):
        return ast.Import(pyast.literal_eval(items[0]), Loc(self.file, meta.line, meta.column))

    @lark.v_args(meta=True)
    def lateness(self, meta, items):
        tok = items[0]
        return ast.Window(parse_duration(tok, self._tok(tok)), str(tok), False, self._tok(tok))

    def driver(self, items):
        return ("driver", str(items[0]), self._tok(items[0]))

    def stream(self, items):
        name, *fields = items
        return ast.Stream(str(name), tuple(fields), self._tok(name))

    def field(self, items):
        name, typ, nullable = items
        if str(typ) not in _TYPES:
            raise FeatureError([Diagnostic(self._tok(typ), f"unknown type {str(typ)!r}",
                                           "field types are int, float, bool and string; "
                                           "add ? for a nullable field, e.g. `ip: string?`")])
        return ast.Field(str(name), ast.Type(ast.Base(str(typ)), nullable is not None),
                         self._tok(name))

    def definition(self, items):
        kind, name, version, expr = items
        return ast.Definition(str(kind), str(name), int(version[1:]) if version else 1, expr,
                              self._tok(name))

    # ---------------------------------------------------------------- expressions
    def if_(self, items):
        cond, then, else_ = items
        return ast.If(cond, then, else_, _loc_of(cond))

    def binary(self, items):
        left, op, right = items
        return ast.Binary(str(op), left, right, self._tok(op))

    def unary(self, items):
        op, operand = items
        return ast.Unary(str(op), operand, self._tok(op))

    def is_null(self, items):
        return ast.IsNull(items[0], False, _loc_of(items[0]))

    def is_not_null(self, items):
        return ast.IsNull(items[0], True, _loc_of(items[0]))

    def int_(self, items):
        return ast.Literal(int(items[0]), self._tok(items[0]))

    def float_(self, items):
        return ast.Literal(float(items[0]), self._tok(items[0]))

    def string(self, items):
        return ast.Literal(pyast.literal_eval(items[0]), self._tok(items[0]))

    def true(self, items):
        return ast.Literal(True, self._tok(items[0]))

    def false(self, items):
        return ast.Literal(False, self._tok(items[0]))

    def null(self, items):
        return ast.Literal(None, self._tok(items[0]))

    def name(self, items):
        return ast.Name(str(items[0]), self._tok(items[0]))

    def call(self, items):
        fn, *args = items
        return ast.Call(str(fn), tuple(a for a in args if a is not None), self._tok(fn))

    def aggregation(self, items):
        fn, stream, field, where, keys, window = items
        return ast.Agg(str(fn), str(stream), str(field) if field is not None else None, where,
                       keys, window, self._tok(fn), stream_loc=self._tok(stream),
                       field_loc=self._tok(field) if field is not None else None)

    def keys(self, items):
        return tuple(items)

    def key(self, items):
        left, right = items
        return ast.Key(str(left), str(right if right is not None else left), self._tok(left))

    def back(self, items):
        return ast.Window(parse_duration(items[0], self._tok(items[0])), str(items[0]), False,
                          self._tok(items[0]))

    def lifetime(self, items):
        return ast.Window(None, "lifetime", False, self._tok(items[0]))

    def forward(self, items):
        return ast.Window(parse_duration(items[0], self._tok(items[0])), "next " + str(items[0]), True,
                          self._tok(items[0]))


def _loc_of(e: ast.Expr) -> Loc:
    return e.loc


def parse(text: str, file: str = "<string>") -> ast.Module:
    try:
        tree = _lark().parse(text)
    except lark.exceptions.UnexpectedInput as exc:
        raise FeatureError([_syntax_diagnostic(exc, text, file)], {file: text}) from None
    try:
        return _ToAst(file).transform(tree)
    except lark.exceptions.VisitError as exc:
        if isinstance(exc.orig_exc, FeatureError):
            raise FeatureError(exc.orig_exc.diagnostics, {file: text}) from None
        raise


def _syntax_diagnostic(exc: lark.exceptions.UnexpectedInput, text: str, file: str) -> Diagnostic:
    loc = Loc(file, exc.line if exc.line > 0 else 1, exc.column if exc.column > 0 else 1)
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else "end of file"
        return Diagnostic(loc, f"unexpected character {char!r}", _expected_hint(exc.allowed))
    if isinstance(exc, lark.exceptions.UnexpectedEOF):
        return Diagnostic(loc, "unexpected end of file", _expected_hint(exc.expected))
    tok = exc.token
    what = "end of file" if tok.type == "$END" else f"{str(tok)!r}"
    if tok.type == "$END":
        lines = text.splitlines() or [""]
        loc = Loc(file, len(lines), len(lines[-1]) + 1)
    return Diagnostic(loc, f"unexpected {what}", _expected_hint(exc.expected))


def _expected_hint(expected) -> str:
    words = sorted({_TOKEN_WORDS.get(t, t.lower().strip("_").replace("_", " ")
                                     if t.isupper() else repr(t)) for t in (expected or ())})
    if not words:
        return ""
    if len(words) > 8:
        words = words[:8] + ["..."]
    return "expected " + ", ".join(words)
