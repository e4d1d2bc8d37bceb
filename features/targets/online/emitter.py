"""A small builder of Python source: lines, comments and indented blocks. The code generator
(codegen.py) decides every line before it writes it; the emitter only keeps the indentation,
so nothing is ever patched in the text afterwards."""
from __future__ import annotations

import contextlib
import textwrap

INDENT = "    "
# Comments wrap at this width, and stop after COMMENT_LINES lines (a feature's expression may
# be long: the code says the rest).
COMMENT_WIDTH = 96
COMMENT_LINES = 4


class Emitter:
    """    e = Emitter()
           with e.block("def f(x):"):
               e.comment("what f does")
               e.line("return x + 1")
           e.source()  # -> "def f(x):\\n    # what f does\\n    return x + 1\\n"
    """

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._depth = 0
        self._statements = 0  # lines written by `line` (comments and blanks are not)

    def line(self, text: str, comment: str | None = None) -> None:
        """One statement at the current indentation, with an optional trailing comment."""
        assert "\n" not in text, text
        if comment is not None:
            text = f"{text}  # {_one_line(comment)}"
        self._lines.append(INDENT * self._depth + text)
        self._statements += 1

    def lines(self, *texts: str) -> None:
        for text in texts:
            self.line(text)

    def comment(self, text: str) -> None:
        """A comment, wrapped (continuation lines indented), at most COMMENT_LINES lines."""
        text = " ".join(text.splitlines())
        lead = len(text) - len(text.lstrip(" "))
        lines = textwrap.wrap(text, width=COMMENT_WIDTH, subsequent_indent=" " * (lead + 2),
                              max_lines=COMMENT_LINES,
                              placeholder=" ...", break_on_hyphens=False) or [""]
        self._lines += [f"{INDENT * self._depth}# {ln}" for ln in lines]

    def blank(self) -> None:
        self._lines.append("")

    @contextlib.contextmanager
    def block(self, header: str):
        """`header` (ending in ':') with the statements written inside the `with` indented
        under it; a block left empty gets a `pass`."""
        assert header.endswith(":"), header
        self.line(header)
        self._depth += 1
        before = self._statements
        try:
            yield self
        finally:
            if self._statements == before:
                self.line("pass")
            self._depth -= 1

    def source(self) -> str:
        return "\n".join(self._lines) + "\n"


def _one_line(text: str) -> str:
    """Text safe after a statement: one line (a line break becomes a space), cut to width."""
    text = " ".join(text.splitlines())
    return text if len(text) <= COMMENT_WIDTH else text[:COMMENT_WIDTH - 3] + "..."
