"""Load a definition file with its imports and type-check it: the one entry point for targets.

`load(path)` -> ast.Program, or FeatureError carrying every diagnostic.
"""
from __future__ import annotations

import pathlib

from roundhouse.features import parser, syntax as ast, typecheck
from roundhouse.features.errors import Diagnostic, FeatureError, Loc


def load(path: str | pathlib.Path) -> ast.Program:
    root = pathlib.Path(path)
    modules: list[ast.Module] = []
    sources: dict[str, str] = {}
    _load(root, modules, sources, stack=[])
    return typecheck.check(modules, sources)


def loads(text: str, file: str = "<string>") -> ast.Program:
    """Check a program given as text (no imports); handy for tests and tools."""
    module = parser.parse(text, file)
    if module.imports:
        raise FeatureError([Diagnostic(module.imports[0].loc,
                                       "imports need a file on disk", "use load(path)")],
                           {file: text})
    return typecheck.check([module], {file: text})


def _load(path: pathlib.Path, modules, sources, stack, via: ast.Import | None = None) -> None:
    key = str(path)
    if any(str(p) == key for p in stack):
        chain = " -> ".join(str(p) for p in stack + [path])
        raise FeatureError([Diagnostic(via.loc if via else _first_loc(key),
                                       f"import cycle: {chain}",
                                       "move the shared declarations into a third file")],
                           sources)
    if any(m.file == key for m in modules):
        return  # imported twice via different paths: read once
    try:
        text = path.read_text()
    except OSError as exc:
        raise FeatureError([Diagnostic(_first_loc(key), f"cannot read {key}: {exc.strerror}",
                                       "check the path (imports are relative to the importing "
                                       "file)")], sources) from None
    sources[key] = text
    module = parser.parse(text, key)
    modules.append(module)
    for imp in module.imports:
        target = (path.parent / imp.path)
        if not target.exists():
            raise FeatureError([Diagnostic(imp.loc, f"imported file {imp.path!r} not found "
                                           f"(looked for {target})",
                                           "imports are relative to the importing file")],
                               sources)
        _load(target, modules, sources, stack + [path], imp)


def _first_loc(file: str) -> Loc:
    return Loc(file, 0, 0)
