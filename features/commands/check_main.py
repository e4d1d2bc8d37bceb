"""bazel run //features:check -- FILE.feat...

Type-checks definition files (with their imports) and prints every error with file, line,
column, the source line with a caret, and a hint. Exit status 1 if any file has errors.
"""
from __future__ import annotations

import sys

from roundhouse.features.commands import cli
from roundhouse.features.language import loader
from roundhouse.features.language.errors import FeatureError


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    status = 0
    for name in argv:
        try:
            program = loader.load(cli.path(name))
        except FeatureError as exc:
            print(exc, file=sys.stderr)
            status = 1
            continue
        print(f"{name}: ok ({len(program.features)} features, {len(program.labels)} labels, "
              f"driver {program.driver})")
    return status


if __name__ == "__main__":
    sys.exit(main())
