"""Errors that point at the source: file, line, column, the line itself with a caret, and a hint.

Every stage (parser, type checker, import resolution) raises or collects FeatureError so that
`check`, the compilers and the tests all print the same, actionable message.
"""
from __future__ import annotations

import dataclasses
import pathlib


@dataclasses.dataclass(frozen=True)
class Loc:
    """A position in a definition file (1-based line and column, as editors show them)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        # Line 0: the file as a whole (one that cannot be read, say), not a place in it.
        return f"{self.file}:{self.line}:{self.column}" if self.line > 0 else self.file


NOWHERE = Loc("<builtin>", 0, 0)

# Characters of a long source line shown around the caret.
_SHOWN = 160


@dataclasses.dataclass
class Diagnostic:
    loc: Loc
    message: str
    hint: str = ""

    def format(self, source: str | None = None) -> str:
        text = f"{self.loc}: error: {self.message}"
        if source is None and self.loc.line > 0:
            try:
                source = pathlib.Path(self.loc.file).read_text(errors="replace")
            except (OSError, ValueError):
                source = None
        if source is not None and self.loc.line > 0:
            lines = source.split("\n")  # lines as the parser counts them: \n ends one
            if self.loc.line <= len(lines):
                line, col = lines[self.loc.line - 1].rstrip("\r"), max(self.loc.column, 1) - 1
                if len(line) > _SHOWN:  # a generated one-line file: the part around the caret
                    start = max(col - _SHOWN // 2, 0)
                    head = "..." if start else ""
                    tail = "..." if start + _SHOWN < len(line) else ""
                    line, col = head + line[start:start + _SHOWN] + tail, col - start + len(head)
                text += f"\n    {line}\n    {' ' * col}^"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class FeatureError(Exception):
    """One or more diagnostics; str() is the full, formatted report."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = list(diagnostics)
        self.sources = dict(sources or {})
        super().__init__(self.format())

    def format(self) -> str:
        return "\n".join(d.format(self.sources.get(d.loc.file)) for d in self.diagnostics)


def error(loc: Loc, message: str, hint: str = "") -> FeatureError:
    return FeatureError([Diagnostic(loc, message, hint)])
