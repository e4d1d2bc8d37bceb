"""Turn a training request's JSON into a checked TrainingRequest, or say exactly what is wrong.

Parsing is protobuf's json_format (ignore_unknown_fields=False). Its errors do not reliably
name the field that failed, and the service must answer a bad request with a 400 naming it,
so on a parse error we walk the JSON alongside the message descriptors and re-parse one field
at a time to find the first one json_format rejects. Field paths use the proto field names:
`holdout.random.fraction`, `data.parquet.filters[1].op`.

After parsing, `check_request` applies what the schema cannot say: required fields, ranges,
known enum values, the resource limits of the service, and combinations that make no sense.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any, Iterable

from google.protobuf import descriptor as _descriptor
from google.protobuf import json_format, message_factory

from roundhouse.platform.api import training_pb2

FieldDescriptor = _descriptor.FieldDescriptor


@dataclasses.dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class RequestError(ValueError):
    """A request that cannot be accepted; `field` is the path of the first offending field."""

    def __init__(self, errors: Iterable[FieldError]):
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))

    @property
    def field(self) -> str:
        return self.errors[0].field

    def to_dict(self) -> dict:
        """The body of a 400 response."""
        return {
            "error": "invalid training request",
            "field": self.field,
            "details": [dataclasses.asdict(e) for e in self.errors],
        }


@dataclasses.dataclass(frozen=True)
class ResourceLimits:
    """The most one job may ask for on a service, from what its executor can give."""

    max_cpu: float
    max_memory_bytes: int
    max_gpu: int


# Deeper bodies are refused before parsing: json_format stops at 100 levels of messages with
# a message naming no field, and recursive walks of the value (here, in json.dumps) would run
# out of stack. Requests need about ten levels; params get the rest.
MAX_DEPTH = 32


def parse_request(body: str | bytes | dict,
                  limits: ResourceLimits | None = None) -> training_pb2.TrainingRequest:
    """Parse and check a request; raises RequestError naming the offending field."""
    data = load_json(body) if isinstance(body, (str, bytes)) else body
    if not isinstance(data, dict):
        raise RequestError([FieldError("", f"the request must be a JSON object, got {_json_kind(data)}")])
    request = training_pb2.TrainingRequest()
    try:
        json_format.ParseDict(data, request, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise RequestError([_locate(data, request.DESCRIPTOR, "", str(exc))]) from None
    boolean = _boolean_for_number(data, request.DESCRIPTOR, "")
    if boolean is not None:
        raise RequestError([boolean])
    check_request(request, limits)
    return request


def load_json(body: str | bytes) -> Any:
    """A request body's JSON value; RequestError when it is not UTF-8 or not JSON, nests
    deeper than MAX_DEPTH, or repeats a key in one object."""
    def no_duplicates(pairs):
        seen = {}
        for key, value in pairs:
            if key in seen:
                raise RequestError([FieldError(key, f"key {key!r} appears twice in one object")])
            seen[key] = value
        return seen

    if isinstance(body, bytes):
        # JSON between systems is UTF-8 (RFC 8259); json.loads would also guess UTF-16/32.
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError([FieldError(
                "", f"the request body is not valid UTF-8: byte 0x{exc.object[exc.start]:02x} "
                    f"at offset {exc.start} ({exc.reason})")]) from None
    try:
        value = json.loads(body, object_pairs_hook=no_duplicates)
        deep = _deeper_than(value, MAX_DEPTH)
    except json.JSONDecodeError as exc:
        raise RequestError([FieldError(
            "", f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                f"column {exc.colno}")]) from None
    except RecursionError:  # json.loads ran out of stack first
        deep = True
    if deep:
        raise RequestError([FieldError(
            "", f"the request body nests objects and lists more than {MAX_DEPTH} levels deep")])
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    # Iterative: the point is not to recurse on a hostile value.
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1)
                         for child in (node.values() if isinstance(node, dict) else node))
    return False


def check_request(request: training_pb2.TrainingRequest,
                  limits: ResourceLimits | None = None) -> None:
    """Semantic checks on a parsed request; raises RequestError listing every problem.

    `limits`: what the service's executor can give one job; None (a workflow binary checking
    its own request) leaves resources unbounded.
    """
    errors: list[FieldError] = []
    add = lambda field, message: errors.append(FieldError(field, message))  # noqa: E731

    _check_enums(request, "", errors)

    if not request.metadata.owner.strip():
        add("metadata.owner", "required: who owns this model (a user name or email)")
    if not request.workflow:
        add("workflow", "required: the name of a workflow under workflows/, e.g. \"fraud\"")
    elif not _WORKFLOW_NAME.fullmatch(request.workflow):
        add("workflow", f"{request.workflow!r} is not a workflow name "
                        "(lower-case letters, digits and _; it names a folder under workflows/)")

    if not request.HasField("data"):
        add("data", "required: set data.parquet or data.sql")
    else:
        _check_source(request.data, "data", errors, is_holdout=False)

    if not request.HasField("holdout"):
        add("holdout", "required: set holdout.random, holdout.time_cutoff or holdout.dataset")
    else:
        kind = request.holdout.WhichOneof("kind")
        if kind is None:
            add("holdout", "set one of holdout.random, holdout.time_cutoff, holdout.dataset")
        elif kind == "random":
            fraction = request.holdout.random.fraction
            if not (0.0 < fraction < 1.0):
                add("holdout.random.fraction",
                    f"must be between 0 and 1 (exclusive), got {fraction!r}")
        elif kind == "time_cutoff":
            cutoff = request.holdout.time_cutoff
            if not cutoff.column:
                add("holdout.time_cutoff.column", "required: the time column to split on")
            if not cutoff.HasField("cutoff"):
                add("holdout.time_cutoff.cutoff",
                    "required: an RFC 3339 timestamp such as \"2024-06-01T00:00:00Z\"")
        elif kind == "dataset":
            if not request.holdout.dataset.HasField("source"):
                add("holdout.dataset.source", "required: the holdout's data source")
            else:
                _check_source(request.holdout.dataset.source, "holdout.dataset.source", errors,
                              is_holdout=True)

    if request.commit and not COMMIT.fullmatch(request.commit):
        add("commit", f"{request.commit!r} is not a full git SHA (40 lower-case hex digits): "
                      "tools/deploy tags each image with the full SHA of its commit")

    if request.HasField("resources"):
        _check_resources(request.resources, limits, errors)

    if errors:
        raise RequestError(errors)


def _check_resources(res: training_pb2.Resources, limits: ResourceLimits | None,
                     errors: list[FieldError]) -> None:
    add = lambda field, message: errors.append(FieldError(field, message))  # noqa: E731
    if not math.isfinite(res.cpu) or res.cpu < 0:
        add("resources.cpu", f"must be a non-negative number of cores, got {res.cpu!r}")
    elif limits and res.cpu > limits.max_cpu:
        add("resources.cpu", f"must be 0 (the resource type's default) to {limits.max_cpu:g} "
                             f"cores on this service, got {res.cpu:g}")
    if res.memory:
        if not _QUANTITY.fullmatch(res.memory):
            add("resources.memory",
                f"{res.memory!r} is not a memory quantity; write e.g. \"512Mi\", \"8Gi\"")
        else:
            memory = quantity(res.memory)
            # Under 1Mi is a typo ("512m" is half a byte), and no job could run in it.
            if memory < _MEBI or (limits and memory > limits.max_memory_bytes):
                bound = (f"1Mi to {binary_quantity(limits.max_memory_bytes)} on this service"
                         if limits else "at least 1Mi")
                add("resources.memory", f"must be {bound}, got {res.memory!r}")
    if res.gpu and res.type != training_pb2.Resources.GPU:
        add("resources.gpu", "GPUs are only given to resources.type GPU")
    elif limits and res.gpu > limits.max_gpu:
        add("resources.gpu", f"must be 0 to {limits.max_gpu} GPUs on this service, got {res.gpu}")


def _check_enums(message, path: str, errors: list[FieldError]) -> None:
    """Every enum value set in `message` is one of its enum's names.

    Proto3 enums are open: json_format takes any integer (`"type": 12345`) and keeps it.
    """
    for field, value in message.ListFields():
        here = f"{path}.{field.name}" if path else field.name
        for where, item in _items(field, value, here):
            if field.type == FieldDescriptor.TYPE_ENUM:
                if item not in field.enum_type.values_by_number:
                    errors.append(FieldError(where, f"{item} is not a valid value; expected "
                                                    f"{_expected(field)}"))
            elif _is_plain_message(field):
                _check_enums(item, where, errors)


def _items(field: FieldDescriptor, value: Any, here: str) -> Iterable[tuple[str, Any]]:
    """(path, value) of each item of a repeated field, or of the one value of a singular one."""
    if field.is_repeated:
        return [(f"{here}[{i}]", item) for i, item in enumerate(value or [])]
    return [(here, value)]


def quantity(text: str) -> float:
    """A Kubernetes quantity ("8Gi", "500m", "1e9") as a number; ValueError if it is none."""
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number, suffix = match.group(1), match.group(2) or ""
    if suffix[:1] in ("e", "E") and suffix != "E":
        return float(text)  # an exponent; float() also turns one too large into inf
    return float(number) * _SUFFIXES[suffix]


def binary_quantity(n: int) -> str:
    """Bytes as a quantity in the largest binary unit that divides them: 68719476736 -> 64Gi."""
    for unit in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        size = _SUFFIXES[unit]
        if n and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


# A full git SHA: what tools/deploy tags images with.
COMMIT = re.compile(r"[0-9a-f]{40}")
# A folder name under workflows/.
_WORKFLOW_NAME = re.compile(r"[a-z][a-z0-9_]*")
# The Kubernetes quantity grammar (resource.Quantity): a decimal number with an optional
# binary (Ki..Ei), decimal (m, k, M..E) or exponent suffix.
_QUANTITY = re.compile(
    r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?")
_SUFFIXES = {
    "": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    **{unit: 1024 ** (i + 1) for i, unit in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}
_MEBI = _SUFFIXES["Mi"]
_SCALAR_KINDS = {"number_value", "string_value", "bool_value"}


def _check_source(source: training_pb2.DataSource, path: str, errors: list[FieldError],
                  is_holdout: bool) -> None:
    add = lambda field, message: errors.append(FieldError(field, message))  # noqa: E731
    kind = source.WhichOneof("kind")
    if kind is None:
        add(path, f"set one of {path}.parquet, {path}.sql")
        return
    if kind == "parquet":
        pq = source.parquet
        base = f"{path}.parquet"
        if not pq.uri:
            add(f"{base}.uri", "required: a local path or s3://bucket/prefix")
        elif "://" in pq.uri and not pq.uri.startswith("s3://"):
            add(f"{base}.uri", f"{pq.uri!r}: only local paths and s3:// URIs are supported")
        elif pq.uri.startswith("s3://") and not pq.uri[len("s3://"):].split("/")[0]:
            add(f"{base}.uri", f"{pq.uri!r} has no bucket name")
        _check_columns(pq.columns, pq.label_columns, base, errors, is_holdout)
        for i, f in enumerate(pq.filters):
            _check_filter(f, f"{base}.filters[{i}]", errors)
    else:
        sql = source.sql
        base = f"{path}.sql"
        if not sql.query.strip():
            add(f"{base}.query", "required: the SQL query that returns the training table")
        _check_columns([], sql.label_columns, base, errors, is_holdout)


def _check_columns(columns, labels, base: str, errors: list[FieldError], is_holdout: bool) -> None:
    # A holdout dataset may leave its labels to the training source's.
    if not labels and not is_holdout:
        errors.append(FieldError(f"{base}.label_columns",
                                 "required: at least one label column to train against"))
    for name, values in (("columns", columns), ("label_columns", labels)):
        seen = set()
        for i, col in enumerate(values):
            if not col:
                errors.append(FieldError(f"{base}.{name}[{i}]", "empty column name"))
            elif col in seen:
                errors.append(FieldError(f"{base}.{name}[{i}]", f"column {col!r} listed twice"))
            seen.add(col)
    for i, label in enumerate(labels):
        if label in set(columns):
            errors.append(FieldError(f"{base}.label_columns[{i}]",
                                     f"{label!r} is also a feature column; a model must not "
                                     "see its own label"))


def _check_filter(f: training_pb2.RowFilter, path: str, errors: list[FieldError]) -> None:
    add = lambda field, message: errors.append(FieldError(field, message))  # noqa: E731
    Op = training_pb2.RowFilter.Op
    if not f.column:
        add(f"{path}.column", "required")
    if f.op == Op.OP_UNSPECIFIED:
        add(f"{path}.op", "required: one of " + ", ".join(
            n for n in Op.keys() if n != "OP_UNSPECIFIED"))
        return
    if f.op not in Op.values():
        return  # _check_enums reports it; there is no operator to check the value against
    kind = f.value.WhichOneof("kind") if f.HasField("value") else None
    if f.op in (Op.IS_NULL, Op.IS_NOT_NULL):
        if kind not in (None, "null_value"):
            add(f"{path}.value", f"{Op.Name(f.op)} takes no value")
    elif f.op in (Op.IN, Op.NOT_IN):
        if kind != "list_value":
            add(f"{path}.value", f"{Op.Name(f.op)} needs a list of values")
        elif any(v.WhichOneof("kind") not in _SCALAR_KINDS for v in f.value.list_value.values):
            add(f"{path}.value", "list items must be numbers, strings or booleans")
    elif kind not in _SCALAR_KINDS:
        add(f"{path}.value", f"{Op.Name(f.op)} needs a number, string or boolean value")


# ---- finding the field json_format rejected ----

def _boolean_for_number(data: dict, desc: _descriptor.Descriptor, path: str) -> FieldError | None:
    """The first JSON boolean given for a number or enum field of `data` (parsed already).

    json_format takes true as 1 there, so `"cpu": true` would ask for one core and
    `"type": true` for CPU; integer fields it refuses itself.
    """
    for key, value in data.items():
        field = _field_for_key(desc, key)
        here = f"{path}.{field.name}" if path else field.name
        for where, item in _items(field, value, here):
            if _is_plain_message(field) and isinstance(item, dict):
                found = _boolean_for_number(item, field.message_type, where)
                if found is not None:
                    return found
            elif isinstance(item, bool) and field.type not in (FieldDescriptor.TYPE_BOOL,
                                                               FieldDescriptor.TYPE_MESSAGE):
                return FieldError(where, f"expected {_expected(field)}, got a boolean "
                                         f"{_short(item)}")
    return None


def _field_for_key(desc: _descriptor.Descriptor, key: str) -> FieldDescriptor | None:
    field = desc.fields_by_name.get(key)
    if field is None:
        field = next((f for f in desc.fields if f.json_name == key), None)
    return field


def _message_class(desc: _descriptor.Descriptor):
    return message_factory.GetMessageClass(desc)


def _is_plain_message(field: FieldDescriptor) -> bool:
    """A message field we can descend into (not a map, not a well-known JSON type)."""
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return False
    if field.message_type.GetOptions().map_entry:
        return False
    return not field.message_type.full_name.startswith("google.protobuf.")


def _locate(data: Any, desc: _descriptor.Descriptor, path: str, fallback: str) -> FieldError:
    """The first field of `data` (JSON for message `desc`) that json_format rejects."""
    if not isinstance(data, dict):
        return FieldError(path, f"expected a JSON object, got {_json_kind(data)}")
    oneofs: dict[str, str] = {}
    for key, value in data.items():
        field = _field_for_key(desc, key)
        here = f"{path}.{key}" if path else key
        if field is None:
            known = ", ".join(f.name for f in desc.fields)
            return FieldError(here, f"unknown field {key!r}; {desc.name} has: {known}")
        here = f"{path}.{field.name}" if path else field.name
        if field.containing_oneof is not None and value is not None:
            other = oneofs.get(field.containing_oneof.name)
            if other is not None:
                return FieldError(path or field.containing_oneof.name,
                                  f"set only one of {other!r} and {field.name!r}")
            oneofs[field.containing_oneof.name] = field.name
        try:
            json_format.ParseDict({key: value}, _message_class(desc)(), ignore_unknown_fields=False)
            continue
        except json_format.ParseError as exc:
            error = str(exc)
        if _is_plain_message(field):
            if field.is_repeated:
                if not isinstance(value, list):
                    return FieldError(here, f"expected a list, got {_json_kind(value)}")
                for i, item in enumerate(value):
                    try:
                        json_format.ParseDict({key: [item]}, _message_class(desc)())
                    except json_format.ParseError as item_exc:
                        return _locate(item, field.message_type, f"{here}[{i}]", str(item_exc))
                return FieldError(here, _clean(error))
            if value is not None:
                return _locate(value, field.message_type, here, error)
        if field.is_repeated and not _is_map(field):
            if not isinstance(value, list):
                return FieldError(here, f"expected a list of {_expected(field)}, "
                                        f"got {_json_kind(value)}")
            for i, item in enumerate(value):
                try:
                    json_format.ParseDict({key: [item]}, _message_class(desc)())
                except json_format.ParseError:
                    return FieldError(f"{here}[{i}]", f"expected {_expected(field)}, "
                                                      f"got {_json_kind(item)} {_short(item)}")
        return FieldError(here, f"expected {_expected(field)}, got {_json_kind(value)} "
                                f"{_short(value)}")
    # Every field parsed on its own: the problem is one of combination.
    return FieldError(path, _clean(fallback))


def _is_map(field: FieldDescriptor) -> bool:
    return (field.type == FieldDescriptor.TYPE_MESSAGE
            and field.message_type.GetOptions().map_entry)


def _expected(field: FieldDescriptor) -> str:
    t = field.type
    if t == FieldDescriptor.TYPE_ENUM:
        names = [v.name for v in field.enum_type.values if v.number != 0]
        return "one of " + ", ".join(f'"{n}"' for n in names)
    if t == FieldDescriptor.TYPE_MESSAGE:
        name = field.message_type.full_name
        if _is_map(field):
            return "a JSON object"
        return {
            "google.protobuf.Timestamp": "an RFC 3339 timestamp such as \"2024-06-01T00:00:00Z\"",
            "google.protobuf.Duration": "a duration such as \"3.5s\"",
            "google.protobuf.Struct": "a JSON object",
            "google.protobuf.ListValue": "a list",
        }.get(name, "a JSON object")
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return "a number"
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64,
             FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64):
        bits = 32 if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32) else 64
        return f"a non-negative integer below 2^{bits}"
    if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return "a 32-bit integer"
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return "a 64-bit integer"
    if t == FieldDescriptor.TYPE_BOOL:
        return "true or false"
    if t == FieldDescriptor.TYPE_STRING:
        return "a string"
    if t == FieldDescriptor.TYPE_BYTES:
        return "base64-encoded bytes"
    return "a value of another type"


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _clean(message: str) -> str:
    # json_format nests "Failed to parse X field: " once per level; the innermost is the news.
    return message.rsplit("field: ", 1)[-1].rstrip(".")
