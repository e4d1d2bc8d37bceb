"""The definition lock: checked-in hashes of published features.

A published feature never changes meaning: models trained on it and the online store serving it
rely on that. Changing one is done by adding a version (`feature x v2 = ...`, column x_v2)
beside it. The lock records, per definition file, every feature's version and the hash of what
its values depend on (printer.definition_hash); `check` turns any in-place change, and the
removal of a feature a workflow still uses, into an error that says what to do.
"""
from __future__ import annotations

import ast as pyast
import json
import pathlib

from roundhouse.features.language import loader, printer

UPDATE = "bazel run //features:lock -- --update"


def compute(defs_dir: pathlib.Path) -> dict:
    out = {}
    for path in sorted(defs_dir.glob("*.feat")):
        program = loader.load(path)
        own = {d.column for d in program.features + program.labels
               if d.loc.file == str(path)}
        hashes = printer.definition_hashes(program, own)
        out[path.name] = {
            d.column: {"name": d.name, "version": d.version, "kind": d.kind,
                       "hash": hashes[d.column]}
            for d in program.features + program.labels if d.column in own}
    return out


def dumps(lock: dict) -> str:
    return json.dumps(lock, indent=2, sort_keys=True) + "\n"


def used_by_workflows(workflows_dir: pathlib.Path) -> dict[str, list[str]]:
    """column -> workflow files that list it in a module-level FEATURES/LABEL(S) constant."""
    used: dict[str, list[str]] = {}
    for path in sorted(workflows_dir.rglob("*.py")) if workflows_dir.exists() else []:
        try:
            tree = pyast.parse(path.read_text())
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in tree.body:
            if not isinstance(node, pyast.Assign):
                continue
            names = {t.id for t in node.targets if isinstance(t, pyast.Name)}
            if not names & {"FEATURES", "LABEL", "LABELS"}:
                continue
            try:
                value = pyast.literal_eval(node.value)
            except ValueError:
                continue
            for column in [value] if isinstance(value, str) else value:
                used.setdefault(column, []).append(str(path))
    return used


def check(locked: dict, current: dict, used: dict[str, list[str]]) -> list[str]:
    problems = []
    for file, features in sorted(locked.items()):
        now = current.get(file, {})
        for column, entry in sorted(features.items()):
            if column not in now:
                users = used.get(column)
                if users:
                    problems.append(
                        f"{file}: {entry['kind']} {column!r} was removed but is still used by "
                        f"{', '.join(users)}; keep it (published features stay) or move those "
                        "workflows to another feature first")
                continue
            if now[column]["hash"] != entry["hash"]:
                v = entry["version"]
                problems.append(
                    f"{file}: published {entry['kind']} {entry['name']!r} v{v} (column "
                    f"{column!r}) changed in place. A published feature never changes meaning: "
                    f"restore it and publish a new version instead, e.g. `{entry['kind']} "
                    f"{entry['name']} v{v + 1} = ...` (column {entry['name']}_v{v + 1}), then "
                    f"run `{UPDATE}`")
    for file, features in sorted(current.items()):
        for column in sorted(set(features) - set(locked.get(file, {}))):
            problems.append(f"{file}: {features[column]['kind']} {column!r} is not in the lock; "
                            f"publish it with `{UPDATE}`")
    return problems
