"""Definition file text -> ast.Module, with Lark (LALR) and a Transformer.

Lark's syntax errors are turned into FeatureError diagnostics (file, line, column, caret, hint)
so a typo reads like a compiler error, not a Python traceback.
"""
from __future__ import annotations

import ast as pyast
import dataclasses
import functools
import math
import pathlib

import lark

from roundhouse.features.language import syntax as ast
from roundhouse.features.language.errors import Diagnostic, FeatureError, Loc
from roundhouse.features.language.limits import MAX_EXPR_DEPTH, MAX_FILE_BYTES, MAX_INT

_TYPES = ("int", "float", "bool", "string")
_UNIT_MICROS = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}

# What users most often mean when Lark stops at a token; shown as the hint.
_TOKEN_WORDS = {
    "EQUAL": "'='", "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'",
    "COLON": "':'", "COMMA": "','", "DOT": "'.'", "NAME": "a name", "DURATION":
    "a duration such as 30s, 15m, 1h or 7d", "TYPE": "a type (int, float, bool, string)",
    "STRING": "a quoted string", "KIND": "'feature' or 'label'", "VERSION": "a version such as v1",
    "LIFETIME": "'lifetime'", "INT": "a number", "FLOAT": "a number",
    "BY": "'by'", "OVER": "'over'", "NEXT": "'next'", "THEN": "'then'", "ELSE": "'else'",
}


@functools.lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    grammar = pathlib.Path(__file__).with_name("grammar.lark").read_text()
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse_duration(text: str, loc: Loc | None = None) -> int:
    loc = loc or Loc("<string>", 0, 0)
    digits = len(text) - len(text.lstrip("0123456789"))
    unit = text[digits:]
    if unit not in _UNIT_MICROS:
        raise FeatureError([Diagnostic(loc, f"unknown duration unit {unit!r} in {text!r}",
                                       "write s, m, h or d, e.g. 90s, 15m, 1h, 30d")])
    return _in_range(text[:digits], _UNIT_MICROS[unit], f"duration {text}", loc)


def _in_range(digits: str, scale: int, what: str, loc: Loc) -> int:
    """int(digits) * scale (a duration's unit in microseconds, or 1), or a located error past
    MAX_INT. Long digit strings are refused before int() refuses them with a ValueError."""
    if len(digits) > len(str(MAX_INT)) or int(digits) * scale > MAX_INT:
        unit = " microseconds (about 292,000 years)" if scale > 1 else ""
        raise FeatureError([Diagnostic(loc, f"{what} is out of range",
                                       f"ints are 64-bit: at most {MAX_INT}{unit}")])
    return int(digits) * scale


def _string(tok: lark.Token, loc: Loc) -> str:
    try:
        return pyast.literal_eval(tok)
    except (SyntaxError, ValueError):
        raise FeatureError([Diagnostic(loc, f"invalid escape in string {str(tok)[:40]}",
                                       r"escapes are \\, \", \n, \t, \xHH and \uHHHH")]) from None


def _depth_problem(d: ast.Definition) -> Diagnostic | None:
    """The first node (in source order) nested deeper than MAX_EXPR_DEPTH, found without
    recursion: every later stage recurses over expressions, so only checked ones reach them."""
    todo = [(d.expr, 1)]
    while todo:
        e, depth = todo.pop()
        if depth > MAX_EXPR_DEPTH:
            return Diagnostic(e.loc, f"the expression of {d.kind} {d.name!r} nests more than "
                                     f"{MAX_EXPR_DEPTH} levels deep",
                              f"at most {MAX_EXPR_DEPTH} levels (each operator, if, call and "
                              "where is one, and a chain such as a + b + c nests one per "
                              "operator): move a part into a feature of its own and read that")
        inner = ast.children(e) + ((e.where,) if isinstance(e, ast.Agg) and e.where is not None
                                   else ())
        todo += [(c, depth + 1) for c in reversed(inner)]
    return None


@dataclasses.dataclass(frozen=True)
class _Source:
    """What an aggregation reads, as parsed: `stream`, `stream.field`, with `where`."""

    stream: str
    loc: Loc
    field: str | None
    field_loc: Loc | None
    where: ast.Expr | None

    @property
    def text(self) -> str:
        return self.stream + (f".{self.field}" if self.field else "") + \
            (" where ..." if self.where is not None else "")


class _ToAst(lark.Transformer_NonRecursive):
    """Builds the AST bottom-up without recursion: a chain of 20,000 terms is an error to
    report (see _depth_problem), not a RecursionError."""

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
        loc = Loc(self.file, meta.line, meta.column)
        return ast.Import(_string(items[0], loc), loc)

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
        d = ast.Definition(str(kind), str(name),
                           _in_range(version[1:], 1, f"version {version}", self._tok(version))
                           if version else 1, expr, self._tok(name))
        problem = _depth_problem(d)
        if problem is not None:
            raise FeatureError([problem])
        return d

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
        loc = self._tok(items[0])
        return ast.Literal(_in_range(items[0], 1, f"integer {str(items[0])[:40]}", loc), loc)

    def float_(self, items):
        value, loc = float(items[0]), self._tok(items[0])
        if math.isinf(value):  # past the largest double, about 1.8e308
            raise FeatureError([Diagnostic(loc, f"number {str(items[0])[:40]} is out of range",
                                           "floats are 64-bit doubles: at most about 1.8e308")])
        return ast.Literal(value, loc)

    def string(self, items):
        loc = self._tok(items[0])
        return ast.Literal(_string(items[0], loc), loc)

    def true(self, items):
        return ast.Literal(True, self._tok(items[0]))

    def false(self, items):
        return ast.Literal(False, self._tok(items[0]))

    def null(self, items):
        return ast.Literal(None, self._tok(items[0]))

    def name(self, items):
        return ast.Name(str(items[0]), self._tok(items[0]))

    def call(self, items):
        fn, *args, tail = items
        args = [a for a in args if a is not None]
        if tail is None:
            for a in args:
                if isinstance(a, _Source):
                    raise FeatureError([Diagnostic(
                        a.loc, f"`{a.text}` reads a stream's events, which only an "
                               "aggregation does",
                        f"aggregate them: `AGGREGATION({a.text}) by KEY over WINDOW`")])
            return ast.Call(str(fn), tuple(args), self._tok(fn))
        keys, window = tail
        if len(args) != 1 or not isinstance(args[0], (_Source, ast.Name)):
            loc = args[1].loc if len(args) > 1 else args[0].loc if args else self._tok(fn)
            raise FeatureError([Diagnostic(
                loc, f"an aggregation reads one stream: {fn}(STREAM) or {fn}(STREAM.FIELD)",
                f"e.g. `{fn}(STREAM where FIELD > 0) by KEY over 1h`")])
        src = args[0] if isinstance(args[0], _Source) else \
            _Source(args[0].name, args[0].loc, None, None, None)
        return ast.Agg(str(fn), src.stream, src.field, src.where, keys, window, self._tok(fn),
                       stream_loc=src.loc, field_loc=src.field_loc)

    def stream_field(self, items):
        stream, field, where = items
        return _Source(str(stream), self._tok(stream), str(field), self._tok(field), where)

    def stream_where(self, items):
        stream, where = items
        if not isinstance(stream, ast.Name):
            raise FeatureError([Diagnostic(
                stream.loc, "`where` filters the events of a stream: write "
                            "AGG(STREAM where CONDITION) by KEY over WINDOW",
                "e.g. `count(charge where amount > 100) by card_id over 1h`")])
        return _Source(stream.name, stream.loc, None, None, where)

    def aggregated(self, items):
        keys, window = items
        return keys, window

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


def decode(data: bytes, file: str) -> str:
    """A definition file's bytes -> its text, or a located error: where it passes
    MAX_FILE_BYTES, or at its first byte that is not UTF-8 (shown as U+FFFD under the caret)."""
    _check_size(data, file)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        loc = _byte_loc(data, exc.start, file)
        raise FeatureError([Diagnostic(loc, f"invalid UTF-8 byte 0x{data[exc.start]:02x}",
                                       "definition files are UTF-8 text; save it as UTF-8")],
                           {file: data.decode("utf-8", "replace")}) from None


def _check_size(data: bytes, file: str) -> None:
    """A located error (where the file passes the limit) for a file past MAX_FILE_BYTES."""
    if len(data) > MAX_FILE_BYTES:
        head = data[:MAX_FILE_BYTES].decode("utf-8", "replace")
        raise FeatureError([Diagnostic(_byte_loc(data, MAX_FILE_BYTES, file),
                                       f"definition file is larger than {MAX_FILE_BYTES} bytes",
                                       f"a file holds at most {MAX_FILE_BYTES >> 20} MiB: split "
                                       "it into files that import each other")], {file: head})


def _byte_loc(data: bytes, offset: int, file: str) -> Loc:
    """The line and column (in characters, as the parser counts them) of a byte offset."""
    start = data.rfind(b"\n", 0, offset) + 1
    return Loc(file, data.count(b"\n", 0, offset) + 1,
               len(data[start:offset].decode("utf-8", "replace")) + 1)


def parse(text: str, file: str = "<string>") -> ast.Module:
    _check_size(text.encode("utf-8", "surrogatepass"), file)
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
