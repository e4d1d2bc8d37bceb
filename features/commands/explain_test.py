"""The explain command: the generated online program compiles and names every feature; the
batch query runs in DuckDB; a bad file gives its located error and status 1."""
import pathlib

import duckdb
import pytest
import sqlglot

from roundhouse.features.commands import explain_main
from roundhouse.features.language import loader
from roundhouse.features.targets.batch import duckdb_target
from roundhouse.features.transport import events

FEATURES = pathlib.Path(__file__).parents[1]
DEFS = ["defs/fraud.feat", "testdata/kitchen_sink.feat"]


def _explain(capsys, *argv) -> str:
    assert explain_main.main(list(argv)) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def _assert_sql_runs(program, sql: str) -> None:
    """The query parses and binds: run over an empty events table of the program's schema."""
    con = duckdb.connect()
    con.register("events", events.schema(program).empty_table())
    result = con.execute(sql.rstrip().rstrip(";"))
    names = [d[0] for d in result.description]
    assert names[:2] == ["seq", "too_late"]
    assert set(names) >= {d.column for d in program.features + program.labels}
    con.close()


@pytest.mark.parametrize("defs", DEFS)
def test_explain_prints_the_online_program_and_the_batch_query(capsys, defs):
    path = FEATURES / defs
    program = loader.load(path)
    out = _explain(capsys, str(path))
    assert out.startswith(f"{explain_main.ONLINE_HEADER}: {path} ====\n")
    python, sep, sql = out.partition(f"\n{explain_main.BATCH_HEADER} over events: {path} ====\n")
    assert sep, out[:200]
    compile(python, "explained.py", "exec")
    for d in program.features:  # a comment or an output column says which block is whose
        assert f"# {d.column}" in python or f"# feature {d.name} v{d.version} =" in python
        assert d.column in sql
    assert "def run(C, states, meta, out):" in python
    _assert_sql_runs(program, sql)


def test_explain_one_target(capsys):
    path = FEATURES / "defs" / "fraud.feat"
    online = _explain(capsys, str(path), "--target", "online")
    assert explain_main.BATCH_HEADER not in online
    compile(online, "explained.py", "exec")
    batch = _explain(capsys, str(path), "--target", "batch", "--events", "ev_in")
    assert batch.startswith(f"{explain_main.BATCH_HEADER} over ev_in: {path} ====\n")
    assert "def run(" not in batch and "ev_in" in batch


def test_explain_prints_the_batch_query_that_runs_pretty_printed(capsys):
    path = FEATURES / "testdata" / "kitchen_sink.feat"
    shown = _explain(capsys, str(path), "--target", "batch").split(" ====\n", 1)[1]
    shown = shown.rstrip().rstrip(";")
    runs = duckdb_target.BatchCompiler(loader.load(path)).sql("events")
    assert "\n" not in runs and shown.count("\n") > 100  # a clause or expression per line
    # The same query, written out two ways.
    assert sqlglot.parse_one(shown, read="duckdb") == sqlglot.parse_one(runs, read="duckdb")


def test_explain_reads_paths_relative_to_where_bazel_ran(capsys, monkeypatch):
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(FEATURES))
    out = _explain(capsys, "defs/fraud.feat", "--target", "online")
    assert out.startswith(f"{explain_main.ONLINE_HEADER}: defs/fraud.feat ====\n")


def test_explain_prints_the_located_error_of_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.feat"
    bad.write_text("lateness 1h\ndriver c\nstream c { k: string? v: int? }\n"
                   "feature a = sum(c.w) by k over 1h\n")
    assert explain_main.main([str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"{bad}:4:19: error: stream 'c' has no field 'w'")
    assert "Traceback" not in captured.err
