import os

import pytest

from roundhouse.platform.training import server


def test_built_in_workflows_are_found_in_the_runfiles():
    args = server.parse_args([])
    assert set(args.workflows) == {"fraud"}
    assert os.access(args.workflows["fraud"], os.X_OK)
    assert args.host == "127.0.0.1" and args.executor == "local"


def test_workflow_flags_add_or_replace_and_bad_ones_are_refused(capsys):
    args = server.parse_args(["--workflow", "fraud=python3 -S /opt/fraud.par", "--workflow", "churn=/x"])
    assert args.workflows == {"fraud": "python3 -S /opt/fraud.par", "churn": "/x"}
    with pytest.raises(SystemExit):
        server.parse_args(["--workflow", "nameonly"])
    assert "expected NAME=COMMAND" in capsys.readouterr().err
