"""A throwaway PostgreSQL server on 127.0.0.1 for tests, using Debian's postgresql package.

    with postgres_server() as dsn:
        psycopg.connect(dsn)

The cluster lives in a fresh temporary directory and is stopped and deleted on exit. initdb
refuses to run as root, so when we are root the server runs as the `postgres` user through
runuser; that user must be able to read every parent of the data directory, which is why the
directory comes from tempfile.mkdtemp() (under /tmp) with mode 755 rather than pytest's
tmp_path (whose parents are 0700).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from typing import Iterator

from roundhouse.testing.ports import free_port

# Debian installs each major version side by side; take the newest present.
_BIN_GLOB = "/usr/lib/postgresql/*/bin"


class PostgresUnavailable(RuntimeError):
    pass


def _bin_dir() -> str:
    candidates = sorted(glob.glob(_BIN_GLOB), key=lambda p: int(p.split("/")[-2]))
    for candidate in reversed(candidates):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    raise PostgresUnavailable(
        "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin; "
        "install Debian's package: apt-get install -y postgresql"
    )


def _traversable_tmp() -> str:
    """A temp dir the postgres user can reach: every parent must be world-searchable.

    Bazel points TMPDIR into its output base under root's home (mode 0700), where the
    server, running as postgres, could not open its own data directory; /tmp always works.
    """
    base = tempfile.gettempdir()
    path = os.path.abspath(base)
    while True:
        if not os.stat(path).st_mode & 0o001:
            return "/tmp"
        parent = os.path.dirname(path)
        if parent == path:
            return base
        path = parent


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        # Bazel's test PATH (/bin:/usr/bin) leaves out sbin, where Debian keeps runuser.
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return [runuser, "-u", "postgres", "--", *cmd]
    return cmd


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(_as_server_user(cmd), capture_output=True, text=True)
    if proc.returncode != 0:
        raise PostgresUnavailable(
            f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        )


@contextlib.contextmanager
def postgres_server(dbname: str = "postgres") -> Iterator[str]:
    """Start a server, yield its DSN (trust auth, user postgres), stop and delete it on exit."""
    bin_dir = _bin_dir()
    # Socket paths are limited to 107 bytes, another reason for a short base directory.
    root = tempfile.mkdtemp(prefix="rh-pg-", dir=_traversable_tmp() if os.geteuid() == 0 else None)
    os.chmod(root, 0o755)
    data = os.path.join(root, "data")
    sock = os.path.join(root, "sock")
    os.mkdir(sock)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
    log = os.path.join(root, "server.log")
    port = free_port()
    started = False
    try:
        _run([os.path.join(bin_dir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
              "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        # -w waits until the server accepts connections, so callers can connect at once.
        # fsync=off: test data is disposable and fsync dominates the run time otherwise.
        _run([os.path.join(bin_dir, "pg_ctl"), "-D", data, "-l", log, "-w", "-t", "60",
              "-o", f"-k {sock} -h 127.0.0.1 -p {port} -c fsync=off", "start"])
        started = True
        if dbname != "postgres":
            _run([os.path.join(bin_dir, "createdb"), "-h", "127.0.0.1", "-p", str(port),
                  "-U", "postgres", dbname])
        yield f"postgresql://postgres@127.0.0.1:{port}/{dbname}"
    finally:
        if started:
            # "immediate" skips the shutdown checkpoint: nothing here needs to survive.
            subprocess.run(_as_server_user([os.path.join(bin_dir, "pg_ctl"), "-D", data,
                                            "-m", "immediate", "-w", "stop"]),
                           capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
