"""Helpers shared by the command-line mains."""
from __future__ import annotations

import os
import pathlib
import sys


def path(p: str) -> pathlib.Path:
    """`bazel run` starts us in the runfiles tree; relative paths mean the user's directory."""
    base = os.environ.get("BUILD_WORKING_DIRECTORY")
    q = pathlib.Path(p)
    return q if q.is_absolute() or not base else pathlib.Path(base) / q


def fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 1
