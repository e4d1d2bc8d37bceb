"""Where Roundhouse keeps local data, models and jobs by default."""

import os
import pathlib


def default_home() -> pathlib.Path:
    """$ROUNDHOUSE_HOME or ~/.roundhouse: outside any checkout, so runs never dirty one."""
    return pathlib.Path(os.environ.get("ROUNDHOUSE_HOME") or pathlib.Path.home() / ".roundhouse")
