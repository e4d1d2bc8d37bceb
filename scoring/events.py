"""Request bodies -> typed events of a definition file's streams, or errors naming each field.

An event body is a JSON object: `event_time` (RFC 3339 with a UTC offset, or integer
microseconds since the epoch; never the scorer's clock) and the stream's fields, typed as the
definition declares them (`int` a JSON integer, `float` a number, `bool` true/false, `string`
a string; `?` fields may be null or left out). `stream` may name the stream (it must, on
/v1/events); `seq` may not: the scorer numbers events in arrival order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math

from roundhouse.features.language import syntax as ast
from roundhouse.features.transport import eventlog

INT64 = (-(1 << 63), (1 << 63) - 1)
_EXPECTED = {ast.Base.INT: "an integer", ast.Base.FLOAT: "a number", ast.Base.BOOL: "true or false",
             ast.Base.STRING: "a string"}


@dataclasses.dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def to_dict(self) -> dict:
        return {"field": self.field, "message": self.message}


class EventError(ValueError):
    """Everything wrong with one body, each problem with the field it is about."""

    def __init__(self, errors: list[FieldError], where: str = ""):
        super().__init__("; ".join(f"{where}{e.field}: {e.message}" for e in errors))
        self.errors = [FieldError(where + e.field, e.message) for e in errors]


@dataclasses.dataclass(frozen=True)
class Event:
    stream: str
    t: int  # event_time, microseconds since the epoch
    fields: dict

    def as_dict(self, seq: int) -> dict:
        """The features library's event dict (features.online.OnlineProgram.row)."""
        return {**self.fields, "seq": seq, "t": self.t, "stream": self.stream}


def parse_json(body: bytes):
    """A request body as JSON; ValueError with a plain message for anything else."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"body is not UTF-8 (byte {e.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ValueError(f"body is not JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except RecursionError:
        raise ValueError("body is nested too deeply") from None


def _no_constant(name):
    raise json.JSONDecodeError(f"{name} is not a JSON value", name, 0)


def event_time(value) -> int:
    """RFC 3339 (with Z or an offset) or integer microseconds -> microseconds since the epoch."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("expected an RFC 3339 time with a UTC offset (2024-01-01T00:00:00Z) or "
                         f"integer microseconds since the epoch, got {_kind(value)}")
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise ValueError("microseconds out of the int64 range")
        return value
    text = value.strip()
    try:
        parsed = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" else text)
    except ValueError:
        raise ValueError(f"{value!r} is not an RFC 3339 time (2024-01-01T00:00:00Z)") from None
    if parsed.tzinfo is None or "T" not in text.upper():
        raise ValueError(f"{value!r} has no UTC offset: write it as 2024-01-01T00:00:00Z")
    return eventlog.micros(parsed)


def _kind(value) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _check(value, typ: ast.Type) -> str | None:
    """Why `value` is not of the declared type (None: it is)."""
    if value is None:
        return None if typ.nullable else f"expected {_EXPECTED[typ.base]}, got null (the field is not nullable)"
    base = typ.base
    ok = {ast.Base.INT: isinstance(value, int) and not isinstance(value, bool),
          ast.Base.FLOAT: isinstance(value, (int, float)) and not isinstance(value, bool),
          ast.Base.BOOL: isinstance(value, bool),
          ast.Base.STRING: isinstance(value, str)}[base]
    if not ok:
        return f"expected {_EXPECTED[base]}{' or null' if typ.nullable else ''}, got {_kind(value)}"
    if base is ast.Base.INT and not INT64[0] <= value <= INT64[1]:
        return "integer out of the int64 range"
    if base is ast.Base.FLOAT and not math.isfinite(value):
        return "expected a finite number"
    return None


def parse_event(body, program: ast.Program, stream: str | None = None, where: str = "") -> Event:
    """A JSON value -> Event of `stream` (default: the body's `stream` field), or EventError."""
    if not isinstance(body, dict):
        raise EventError([FieldError("(body)", f"expected a JSON object, got {_kind(body)}")], where)
    errors = []
    named = body.get("stream")
    if stream is None:
        if named is None:
            raise EventError([FieldError("stream", "missing: name one of "
                                         + ", ".join(sorted(program.streams)))], where)
        stream = named
    elif named is not None and named != stream:
        errors.append(FieldError("stream", f"this endpoint scores {stream!r} events, got {named!r}"))
    declared = program.streams.get(stream) if isinstance(stream, str) else None
    if declared is None:
        raise EventError([FieldError("stream", f"unknown stream {stream!r}; declared: "
                                     + ", ".join(sorted(program.streams)))], where)
    t = None
    if "event_time" not in body:
        errors.append(FieldError("event_time", "missing (RFC 3339 UTC time or integer microseconds)"))
    else:
        try:
            t = event_time(body["event_time"])
        except ValueError as e:
            errors.append(FieldError("event_time", str(e)))
    fields = {}
    for f in declared.fields:
        if f.name not in body:
            if not f.type.nullable:
                errors.append(FieldError(f.name, f"missing ({f.type})"))
            fields[f.name] = None
            continue
        problem = _check(body[f.name], f.type)
        if problem:
            errors.append(FieldError(f.name, problem))
        value = body[f.name]
        fields[f.name] = float(value) if f.type.base is ast.Base.FLOAT and value is not None else value
    for name in body:
        if name == "seq":
            errors.append(FieldError("seq", "not accepted: the scorer numbers events in arrival order"))
        elif name not in ("stream", "event_time") and declared.field(name) is None:
            errors.append(FieldError(name, f"unknown field of stream {stream!r} (it has "
                                     + ", ".join(f.name for f in declared.fields) + ")"))
    if errors:
        raise EventError(errors, where)
    return Event(stream, t, fields)
