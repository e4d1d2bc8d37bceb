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


def default_redis_url() -> str:
    """The Redis server the mains use unless told otherwise."""
    return os.environ.get("ROUNDHOUSE_REDIS_URL", "redis://127.0.0.1:6379/0")


def fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 1
