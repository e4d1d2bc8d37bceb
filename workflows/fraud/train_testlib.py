"""Shared by the train tests: run a workflow binary and read its JSON summary."""

import json
import os
import subprocess

ARGS = ["--charges", "20000", "--days", "30"]


def run(cmd, home, cwd=None, env=None):
    proc = subprocess.run(cmd + ARGS + ["--home", str(home)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "[train]" in proc.stderr  # progress is shown
    return json.loads(proc.stdout.strip().splitlines()[-1])
