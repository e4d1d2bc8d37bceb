"""The check command: ok for good files, located errors and exit status 1 for bad ones."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

from roundhouse.features.commands import (check_main, consume_main, explain_main, lock_main,
                                         materialize_main, replay_main)
from roundhouse.features.language.limits import MAX_EXPR_DEPTH

FEATURES = pathlib.Path(__file__).parents[1]


def test_check_accepts_the_shared_definitions(capsys):
    assert check_main.main([str(FEATURES / "defs" / "fraud.feat"),
                            str(FEATURES / "testdata" / "kitchen_sink.feat")]) == 0
    out = capsys.readouterr().out
    assert "fraud.feat: ok (" in out and "driver charge" in out


def test_check_prints_every_error_with_location_caret_and_hint(tmp_path, capsys):
    bad = tmp_path / "bad.feat"
    bad.write_text("lateness 1h\ndriver c\nstream c { k: string? v: int? }\n"
                   "feature a = sum(c.w) by k over 1h\n"
                   "feature b = now()\n")
    assert check_main.main([str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:4:19: error: stream 'c' has no field 'w'" in err
    assert f"{bad}:5:13: error: now() reads a clock" in err
    assert "    feature b = now()\n                ^" in err
    assert err.count("hint:") == 2


HOSTILE = {
    # (file contents, the error at its line and column)
    "deep": ("lateness 1h\ndriver c\nstream c { k: string? v: int? }\nfeature f = "
             + "if v > 0 then " * 1500 + "1" + " else 0" * 1500 + "\n",
             # the `v` in the condition of `if` number MAX_EXPR_DEPTH - 1: level MAX + 1
             f":4:{13 + (MAX_EXPR_DEPTH - 2) * 14 + 3}: error: the expression of feature 'f' "
             f"nests more than {MAX_EXPR_DEPTH} levels deep"),
    "utf8": (b"lateness 1h\ndriver c\nstream c { k: string\xff }\n",
             ":3:21: error: invalid UTF-8 byte 0xff"),
    "folder": ('lateness 1h\nimport "/"\n',
               ":2:1: error: imported path '/' is a folder, not a .feat file"),
}


def _hostile(tmp_path, name) -> pathlib.Path:
    text, _ = HOSTILE[name]
    path = tmp_path / "defs" / f"{name}.feat"
    path.parent.mkdir(parents=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# Every command that reads definitions: the located error and status 1, never a traceback.
COMMANDS = {
    "check": lambda defs, tmp: check_main.main([str(defs)]),
    "materialize": lambda defs, tmp: materialize_main.main(
        ["--defs", str(defs), "--events", str(tmp / "e.parquet"), "--out", str(tmp / "o.parquet")]),
    "replay": lambda defs, tmp: replay_main.main(
        ["--defs", str(defs), "--events", str(tmp / "e.parquet"), "--out", str(tmp / "o.parquet")]),
    "consume": lambda defs, tmp: consume_main.main(
        ["--defs", str(defs), "--log", str(tmp / "log.jsonl"), "--snapshot", str(tmp / "s")]),
    "lock": lambda defs, tmp: lock_main.main(["--root", str(tmp.parent)]),
    "explain": lambda defs, tmp: explain_main.main([str(defs)]),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", HOSTILE)
def test_commands_print_the_located_error_of_a_hostile_file(tmp_path, capsys, command, name):
    root = tmp_path / "features"  # lock reads features/defs under its --root
    path = _hostile(root, name)
    assert COMMANDS[command](path, root) == 1
    err = capsys.readouterr().err
    assert f"{path}{HOSTILE[name][1]}" in err
    assert re.search(r"\n +\^\n", err)  # the caret under the line


@pytest.mark.parametrize("name", HOSTILE)
def test_check_as_a_program_prints_no_traceback(tmp_path, name):
    path = _hostile(tmp_path, name)
    run = subprocess.run([sys.executable, "-S", "-m", "roundhouse.features.commands.check_main", str(path)],
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                         capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.startswith(f"{path}{HOSTILE[name][1]}")
    assert "Traceback" not in run.stderr
