#!/bin/sh
# -I and -E would break Bazel's stub, which passes the runfiles paths in PYTHONPATH.
exec /usr/bin/python3 -S -B "$@"
