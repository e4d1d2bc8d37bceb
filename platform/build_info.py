"""The git SHA and dirty flag that Bazel stamped into this build (tools/build_info.bzl)."""

import dataclasses
import pathlib

_DATA = pathlib.Path(__file__).with_name("build_info_data.txt")


@dataclasses.dataclass(frozen=True)
class BuildInfo:
    stamped: bool
    git_sha: str | None  # None when unstamped or built outside a git checkout
    git_dirty: bool | None


def parse(text: str) -> BuildInfo:
    values = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    stamped = values.get("STAMPED") == "true"
    sha = values.get("STABLE_GIT_COMMIT") if stamped else None
    dirty = values.get("STABLE_GIT_DIRTY") if stamped and sha else None
    return BuildInfo(stamped=stamped, git_sha=sha, git_dirty=None if dirty is None else dirty == "true")


def current() -> BuildInfo:
    """The build info linked into this binary; unstamped if it was not built by Bazel."""
    if not _DATA.exists():
        return BuildInfo(stamped=False, git_sha=None, git_dirty=None)
    return parse(_DATA.read_text())
