"""Test support for everything kept in the job store's database (jobs, evaluations, tuning,
schedules, tokens): one suite runs against SQLite and a real PostgreSQL.

    from roundhouse.platform.jobs.testlib import FakeClock, job_databases, postgres  # noqa: F401

`job_databases()` makes a fresh database and returns `open()`, which opens another job store
on it (another service process), all sharing `open.clock`; every store opened is closed after
the test.
"""
import itertools

import psycopg
import pytest

from roundhouse.platform.jobs.postgres_store import PostgresJobStore
from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.testing import postgres_server


class FakeClock:
    """Time that moves only when a test says so: lease expiry without sleeping."""

    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture(scope="module")
def postgres():
    with postgres_server.postgres_server() as dsn:
        yield dsn


_db_numbers = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def job_databases(request, tmp_path):
    opened = []
    server_dsn = request.getfixturevalue("postgres") if request.param == "postgres" else None

    def new_database(clock=None):
        clock = clock or FakeClock()
        n = next(_db_numbers)
        if server_dsn is None:
            path = str(tmp_path / f"jobs{n}.sqlite")

            def connect():
                return SqliteJobStore(path, clock=clock)
        else:
            name = f"jobs_{n}"
            with psycopg.connect(server_dsn, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            dsn = server_dsn.rsplit("/", 1)[0] + "/" + name

            def connect():
                return PostgresJobStore(dsn, clock=clock)

        def open_store():
            opened.append(connect())
            return opened[-1]
        open_store.clock = clock
        return open_store

    yield new_database
    for store in opened:
        store.close()
