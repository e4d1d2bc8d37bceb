"""Load a definition file with its imports and type-check it: the one entry point for targets.

`load(path)` -> ast.Program, or FeatureError carrying every diagnostic.
"""
from __future__ import annotations

import pathlib

from roundhouse.features.language import parser, syntax as ast, typecheck
from roundhouse.features.language.errors import Diagnostic, FeatureError, Loc
from roundhouse.features.language.limits import MAX_FILE_BYTES


def load(path: str | pathlib.Path) -> ast.Program:
    modules, sources = _load(pathlib.Path(path))
    return typecheck.check(modules, sources)


def loads(text: str, file: str = "<string>") -> ast.Program:
    """Check a program given as text (no imports); handy for tests and tools."""
    module = parser.parse(text, file)
    if module.imports:
        raise FeatureError([Diagnostic(module.imports[0].loc,
                                       "imports need a file on disk", "use load(path)")],
                           {file: text})
    return typecheck.check([module], {file: text})


def _load(root: pathlib.Path) -> tuple[list[ast.Module], dict[str, str]]:
    """The root module, then its imports depth first in the order written. Without recursion,
    so a long chain of imports is no RecursionError; files are told apart by their resolved
    path, so `./a.feat` and `a.feat` are one file (read once, and a cycle when they import
    each other)."""
    modules: list[ast.Module] = []
    sources: dict[str, str] = {}
    seen: set[pathlib.Path] = set()
    # (import statement, the file it is in, the chain of importing files: (resolved, shown));
    # the root is (None, root, ()). Popped last first: pushed in reverse.
    todo: list[tuple[ast.Import | None, pathlib.Path, tuple[tuple[pathlib.Path, str], ...]]]
    todo = [(None, root, ())]
    while todo:
        via, importer, chain = todo.pop()
        path = importer if via is None else _target(importer, via, sources)
        text = _read(path, via, sources)
        key, ident = str(path), path.resolve()
        if any(ident == i for i, _ in chain):
            cycle = " -> ".join([name for _, name in chain] + [key])
            raise FeatureError([Diagnostic(via.loc, f"import cycle: {cycle}",
                                           "move the shared declarations into a third file")],
                               sources)
        if ident in seen:
            continue  # imported twice via different paths: read once
        seen.add(ident)
        sources[key] = text
        module = parser.parse(text, key)
        modules.append(module)
        todo += [(imp, path, chain + ((ident, key),)) for imp in reversed(module.imports)]
    return modules, sources


def _target(importer: pathlib.Path, imp: ast.Import, sources) -> pathlib.Path:
    """The file an import statement names, or an error at the statement saying what is wrong."""
    def fail(message: str, hint: str = "imports are relative to the importing file"):
        return FeatureError([Diagnostic(imp.loc, message, hint)], sources)

    example = 'name a .feat file, e.g. import "common.feat"'
    if not imp.path:
        raise fail("the import path is empty", example)
    if "\0" in imp.path:
        raise fail("the import path contains a NUL character", example)
    target = importer.parent / imp.path
    try:
        is_dir = target.is_dir()
        exists = is_dir or target.exists()
    except OSError as exc:
        raise fail(f"cannot read imported file {imp.path!r}: {exc.strerror}") from None
    if is_dir:
        raise fail(f"imported path {imp.path!r} is a folder, not a .feat file (it is {target})")
    if not exists:
        raise fail(f"imported file {imp.path!r} not found (looked for {target})")
    return target


def _read(path: pathlib.Path, via: ast.Import | None, sources) -> str:
    """A definition file's text: read up to the size limit, decoded with a located error."""
    key = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # one byte more tells that the file is too large
    except OSError as exc:
        what = "is a folder, not a .feat file" if isinstance(exc, IsADirectoryError) else \
            f"cannot be read: {exc.strerror}"
        # The import statement, or for the root line 0: the file, not a place in it.
        loc = via.loc if via else Loc(key, 0, 0)
        raise FeatureError([Diagnostic(loc, f"{key} {what}", "check the path" if via is None
                                       else "imports are relative to the importing file")],
                           sources) from None
    return parser.decode(data, key)
