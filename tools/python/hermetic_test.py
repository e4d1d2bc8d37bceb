"""The Python toolchain is hermetic: a target imports only what it depends on."""

import importlib.util
import pathlib
import subprocess
import sys

# On the machine's own Python (Debian's /usr/lib/python3/dist-packages), not in this test's
# deps: PyYAML is also in @pypi and declared here, PyJWT and cryptography are not declared.
SYSTEM_PACKAGES = ("yaml", "jwt", "cryptography")


def test_no_site_packages_on_the_path():
    assert sys.flags.no_site == 1
    leaked = [p for p in sys.path if "site-packages" in p or "dist-packages" in p]
    assert leaked == []


def test_the_system_python_has_packages_that_could_leak():
    # Without this the tests below could pass on a machine that has nothing to leak.
    probe = f"import importlib.util as u; print(*(u.find_spec(n).origin for n in {SYSTEM_PACKAGES}))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert all("/dist-packages/" in origin for origin in proc.stdout.split()), proc.stdout


def test_a_declared_dependency_comes_from_its_pypi_repo_not_the_system():
    import yaml

    assert "/pypi/pyyaml/" in yaml.__file__ and "-packages" not in yaml.__file__, yaml.__file__


def test_fetched_or_installed_but_undeclared_packages_do_not_import():
    # duckdb is in @pypi (other targets use it); jwt and cryptography are on the system Python.
    for name in ("duckdb", "jwt", "cryptography"):
        assert importlib.util.find_spec(name) is None, name


def test_undeclared_import_in_a_binary_fails():
    binary = pathlib.Path(__file__).with_name("undeclared_import")
    proc = subprocess.run([str(binary)], capture_output=True, text=True)
    assert proc.returncode != 0 and "No module named 'duckdb'" in proc.stderr
