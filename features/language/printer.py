"""Typed AST -> canonical source text. Used for definition hashes (the lock) and fingerprints:
formatting, comments and locations do not change it; any change of meaning does."""
from __future__ import annotations

import hashlib
import json

from roundhouse.features.language import syntax as ast


def show(e: ast.Expr) -> str:
    if isinstance(e, ast.Literal):
        return json.dumps(e.value) if not isinstance(e.value, float) else repr(e.value)
    if isinstance(e, (ast.Name, ast.FieldRef)):
        return e.name
    if isinstance(e, ast.FeatureRef):
        return f"@{e.name}"
    if isinstance(e, ast.Unary):
        return f"({e.op} {show(e.operand)})"
    if isinstance(e, ast.Binary):
        return f"({show(e.left)} {e.op} {show(e.right)})"
    if isinstance(e, ast.IsNull):
        return f"({show(e.operand)} is {'not ' if e.negated else ''}null)"
    if isinstance(e, ast.If):
        return f"(if {show(e.cond)} then {show(e.then)} else {show(e.else_)})"
    if isinstance(e, ast.Call):
        return f"{e.fn}({', '.join(show(a) for a in e.args)})"
    if isinstance(e, ast.Agg):
        src = e.stream + (f".{e.field}" if e.field else "")
        if e.where is not None:
            src += f" where {show(e.where)}"
        keys = ", ".join(k.stream_field if k.stream_field == k.driver_field
                         else f"{k.stream_field} = {k.driver_field}" for k in e.keys)
        return f"{e.fn}({src}) by ({keys}) over {e.window.text}"
    raise TypeError(type(e))


def definition_hash(program: ast.Program, column: str) -> str:
    """Hash of everything a definition's values depend on: its expression, the definitions it
    reads (recursively), the fields and streams it touches, the driver and the lateness."""
    return definition_hashes(program, [column])[column]


def definition_hashes(program: ast.Program, columns) -> dict[str, str]:
    """column -> definition_hash, for `columns` and the definitions they read. Each hash uses
    the hashes of what it reads, computed before it in dependency order (the program's): no
    recursion along a chain of features, and each hash computed once."""
    defs = program.features + program.labels
    by_column = {d.column: d for d in defs}
    needed = set(columns)
    todo = list(needed)
    while todo:
        for n in ast.walk(by_column[todo.pop()].expr):
            if isinstance(n, ast.FeatureRef) and n.name not in needed:
                needed.add(n.name)
                todo.append(n.name)
    hashes: dict[str, str] = {}
    for d in defs:
        if d.column in needed:
            hashes[d.column] = _hash(program, d, hashes)
    return hashes


def _hash(program: ast.Program, d: ast.Definition, hashes: dict[str, str]) -> str:
    parts = [f"{d.kind} {show(d.expr)}", f"driver {program.driver}",
             f"lateness {program.lateness_micros}"]
    seen = set()

    def visit(e):
        for n in ast.walk(e):
            if isinstance(n, ast.FeatureRef) and n.name not in seen:
                seen.add(n.name)
                parts.append(f"uses {n.name}={hashes[n.name]}")
            if isinstance(n, ast.Agg):
                # Only the fields it reads: adding a field to a stream changes nothing.
                st, drv = program.streams[n.stream], program.driver_stream
                used = [n.field] + [k.stream_field for k in n.keys]
                parts.append(f"stream {st.name} " + ", ".join(
                    f"{name}:{st.field(name).type}" for name in used if name))
                parts.append(f"driver {drv.name} " + ", ".join(
                    f"{k.driver_field}:{drv.field(k.driver_field).type}" for k in n.keys))
                if n.where is not None:
                    visit(n.where)
            if isinstance(n, ast.FieldRef):
                parts.append(f"field {n.name}:{n.type}")

    visit(d.expr)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def fingerprint(program: ast.Program) -> str:
    """Identity of the online state layout and semantics: a store written by another program
    must not be resumed."""
    hashes = definition_hashes(program, [d.column for d in program.features])
    text = "\n".join(f"{d.column}={hashes[d.column]}" for d in program.features)
    return hashlib.sha256(f"{program.lateness_micros}\n{text}".encode()).hexdigest()[:16]
