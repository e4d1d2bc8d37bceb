"""bazel run //features:lock -- [--update]

Checks features/defs against the checked-in lock (features/defs/features.lock), or with
--update rewrites the lock from the current definitions (publishing new features and
versions). Run from the workspace (bazel run sets BUILD_WORKSPACE_DIRECTORY).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

from roundhouse.features.language import lock
from roundhouse.features.language.errors import FeatureError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="lock", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--update", action="store_true")
    ap.add_argument("--root", default=os.environ.get("BUILD_WORKSPACE_DIRECTORY", "."))
    args = ap.parse_args(argv)
    root = pathlib.Path(args.root)
    defs = root / "features" / "defs"
    path = defs / "features.lock"
    try:
        current = lock.compute(defs)
    except FeatureError as exc:
        print(exc, file=sys.stderr)
        return 1
    locked = lock.json.loads(path.read_text()) if path.exists() else {}
    problems = lock.check(locked, current, lock.used_by_workflows(root / "workflows"))
    if args.update:
        blocking = [p for p in problems if "is not in the lock" not in p]
        # Updating publishes new entries; it never overwrites a changed published feature.
        if blocking:
            print("\n".join(blocking), file=sys.stderr)
            return 1
        merged = {f: {**locked.get(f, {}), **current.get(f, {})} for f in
                  sorted(set(locked) | set(current))}
        path.write_text(lock.dumps(merged))
        print(f"wrote {path}")
        return 0
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print("lock: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
