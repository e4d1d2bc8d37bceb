import os
import pathlib

import pytest

from roundhouse.platform.api.validate import ResourceLimits
from roundhouse.platform.executors.kubernetes_manifest import DEFAULT_RESOURCE_CLASSES, ResourceClass
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


def test_data_roots_default_to_the_homes_data_folder_and_repeat(monkeypatch, tmp_path):
    monkeypatch.setenv("ROUNDHOUSE_HOME", str(tmp_path))
    # Where `bazel run //workflows/fraud:train` writes its tables (HOME/data/fraud).
    assert server.parse_args([]).data_roots == (tmp_path / "data",)
    args = server.parse_args(["--data-root", "/srv/a", "--data-root", "/srv/b"])
    assert args.data_roots == (pathlib.Path("/srv/a"), pathlib.Path("/srv/b"))


def test_limits_from_the_resource_table_and_the_machine():
    limits = server.table_limits(DEFAULT_RESOURCE_CLASSES)
    assert limits == ResourceLimits(max_cpu=8, max_memory_bytes=64 * 2**30, max_gpu=1)
    custom = {"cpu": ResourceClass(cpu="1500m", memory="100G"), "gpu": ResourceClass(cpu="1", memory="1Gi", gpu=4)}
    assert server.table_limits(custom) == ResourceLimits(max_cpu=1.5, max_memory_bytes=100 * 10**9, max_gpu=4)
    local = server.machine_limits()
    assert 1 <= local.max_cpu <= os.cpu_count()
    assert 0 < local.max_memory_bytes and local.max_memory_bytes % 2**20 == 0
