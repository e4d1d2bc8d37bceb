"""The job store in a SQLite file: the embedded default, nothing to set up."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from typing import Callable, Iterator

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
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_workflow ON jobs (workflow, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_team ON jobs (team, created_at);
CREATE TABLE IF NOT EXISTS job_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    chunk TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_logs_by_job ON job_logs (job_id, id);
"""


class SqliteJobStore(SqlJobStore):
    def __init__(self, path: str, clock: Callable[[], float] = time.time):
        super().__init__(clock)
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        # One connection per store, used under a lock: the service's threads share it, and
        # other processes (a second service, the CLI) coordinate through SQLite's file locks.
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves (below).
        self._conn = sqlite3.connect(path, timeout=30, isolation_level=None,
                                     check_same_thread=False)
        self._lock = threading.Lock()
        # WAL lets readers in other processes proceed while a writer commits.
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA busy_timeout = 30000")
        with self._lock:
            self._conn.executescript(SCHEMA)

    def _tx(self):
        # IMMEDIATE takes the write lock up front, so a read-then-update (claim, transition)
        # cannot interleave with another process's.
        return self._transaction("BEGIN IMMEDIATE")

    def _read(self):
        # A deferred transaction only reads: with WAL it never waits for a writer.
        return self._transaction("BEGIN")

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            self._conn.execute(begin)
            cur = self._conn.cursor()
            try:
                yield cur
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                cur.close()

    def close(self) -> None:
        self._conn.close()
