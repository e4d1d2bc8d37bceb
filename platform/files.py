"""Writing files so that readers see the old content or the new one, never half of it."""

import os
import pathlib
import tempfile
from typing import Callable


def write_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Calls write(temp_path) on a temporary file beside `path`, then renames it into place."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
