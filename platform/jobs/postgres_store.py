"""The job store in PostgreSQL (psycopg 3): the real server, shared by several services."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Iterator

import psycopg

from roundhouse.platform.jobs.sql_store import SqlJobStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    team TEXT NOT NULL,
    workflow TEXT NOT NULL,
    request TEXT NOT NULL,
    reason TEXT NOT NULL,
    result TEXT,
    attempt INTEGER NOT NULL,
    executor TEXT NOT NULL,
    executor_ref TEXT NOT NULL,
    lease_owner TEXT,
    lease_expires_at DOUBLE PRECISION,
    cancel_requested BOOLEAN NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_workflow ON jobs (workflow, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_team ON jobs (team, created_at);
CREATE TABLE IF NOT EXISTS job_logs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    chunk TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_logs_by_job ON job_logs (job_id, id);
"""

# Serializes schema creation across services starting at once: CREATE ... IF NOT EXISTS is
# not safe against a concurrent identical CREATE in PostgreSQL.
_SCHEMA_LOCK_KEY = 0x526F756E64  # "Round"


class PostgresJobStore(SqlJobStore):
    claim_lock = " FOR UPDATE SKIP LOCKED"
    row_lock = " FOR UPDATE"

    def __init__(self, dsn: str, clock: Callable[[], float] = time.time):
        super().__init__(clock)
        self.dsn = dsn
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            cur.execute(SCHEMA)

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            # autocommit + explicit transaction() blocks: no transaction is left open (and no
            # row lock held) between calls.
            self._conn = psycopg.connect(self.dsn, autocommit=True)
        return self._conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor]:
        with self._lock:
            stack = contextlib.ExitStack()
            for attempt in range(2):
                conn = self._connection()
                try:
                    stack.enter_context(conn.transaction())
                    break
                except psycopg.OperationalError:
                    # The server restarted or dropped us while idle. Nothing has happened
                    # yet in this transaction, so one retry on a new connection is safe.
                    self._drop()
                    if attempt:
                        raise
            try:
                with stack:
                    yield stack.enter_context(conn.cursor())
            except psycopg.OperationalError:
                # Lost mid-transaction: the outcome is unknown, so the caller must hear of
                # it; the next call reconnects.
                self._drop()
                raise

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._drop()
