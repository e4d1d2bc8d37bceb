"""Entry point of every py_pytest target: runs pytest on the test files given as args."""

import os
import sys

import pytest


def main(argv):
    # The test runs in runfiles/roundhouse. Rooting pytest one level up names test modules
    # `roundhouse.platform.x_test`, not `platform.x_test`, which would shadow the stdlib.
    # importlib mode: no sys.path insertion; no cacheprovider: runfiles are not ours to write.
    args = ["-p", "no:cacheprovider", "--import-mode=importlib", "-q", "-ra",
            "--rootdir", os.path.dirname(os.getcwd())] + argv
    code = pytest.main(args)
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("py_pytest: no tests collected; a test target must run tests", file=sys.stderr)
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
