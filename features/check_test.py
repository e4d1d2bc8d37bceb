"""The check command: ok for good files, located errors and exit status 1 for bad ones."""
import pathlib

from roundhouse.features import check_main

HERE = pathlib.Path(__file__).parent


def test_check_accepts_the_shared_definitions(capsys):
    assert check_main.main([str(HERE / "defs" / "fraud.feat"),
                            str(HERE / "testdata" / "kitchen_sink.feat")]) == 0
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
