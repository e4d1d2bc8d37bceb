"""The Python toolchain is hermetic: a target imports only what it depends on."""

import importlib.util
import pathlib
import subprocess
import sys


def test_no_site_packages_on_the_path():
    assert sys.flags.no_site == 1
    leaked = [p for p in sys.path if "site-packages" in p or "dist-packages" in p]
    assert leaked == []


def test_declared_dependency_imports():
    assert importlib.util.find_spec("pytest") is not None


def test_fetched_but_undeclared_packages_do_not_import():
    # Both are in @pypi (other targets use them), and flask is also installed in the
    # machine's own Python, but this test does not depend on either.
    for name in ("duckdb", "flask"):
        assert importlib.util.find_spec(name) is None, name


def test_undeclared_import_in_a_binary_fails():
    binary = pathlib.Path(__file__).with_name("undeclared_import")
    proc = subprocess.run([str(binary)], capture_output=True, text=True)
    assert proc.returncode != 0 and "No module named 'duckdb'" in proc.stderr
