"""The one JSON line an evaluation run ends with, {"evaluation": result}, and reading it back.

The service's worker reads a finished run's result from its output with `parse` (as it reads
a training run's summary line), so this module is all the service needs of a run.
"""

from __future__ import annotations

import json

KEY = "evaluation"


def line(result: dict) -> str:
    return json.dumps({KEY: result}, sort_keys=True)


def parse(output: str) -> dict | None:
    """The result in a run's output (its last {"evaluation": ...} line), or None."""
    for text in reversed(output.strip().splitlines()):
        if not text.startswith("{"):
            continue
        try:
            summary = json.loads(text)
        except ValueError:
            continue
        if isinstance(summary, dict) and isinstance(summary.get(KEY), dict):
            return summary[KEY]
    return None
