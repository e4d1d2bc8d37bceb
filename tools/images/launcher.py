#!/usr/bin/python3 -S
"""The entry point of a Roundhouse image (/app/<name>): runs a py_binary's main from its runfiles.

tools/images/image.bzl copies this file to /app/<name> and writes /app/<name>.json beside it:
{"main": "<runfiles path of the main .py>", "imports": [<import roots>]}; the runfiles sit at
/app/<name>.runfiles, laid out as Bazel lays them out. Hermetic like the .par (python3 -S):
the program's runfiles and the standard library, never the image's site-packages.
"""

import json
import os
import runpy
import sys


def main():
    entry = os.path.abspath(sys.argv[0])
    with open(entry + ".json", encoding="utf-8") as f:
        meta = json.load(f)
    root = entry + ".runfiles"
    stdlib = [p for p in sys.path[1:]
              if p and "site-packages" not in p and "dist-packages" not in p]
    sys.path[:] = [root] + [os.path.join(root, p) for p in meta["imports"]] + stdlib
    os.environ.setdefault("RUNFILES_DIR", root)
    main_path = os.path.join(root, meta["main"])
    sys.argv[0] = main_path
    runpy.run_path(main_path, run_name="__main__")


main()
