"""The token store in the job store's database: SQLite (a file) or PostgreSQL.

The table `api_tokens` sits beside `jobs`, so the service, the admin command and (later) the
scorer need one URL, the one --jobs takes. Every query is written once with `?` placeholders
(translated for psycopg); the two backends differ in their connection and DDL.
"""

from __future__ import annotations

import abc
import contextlib
import os
import sqlite3
import threading
import time
from typing import Callable, Iterator

import psycopg

from roundhouse.platform.auth.tokens import Token, TokenNotFound, TokenStore

COLUMNS = ("id", "team", "admin", "name", "secret_sha256", "created_at", "revoked_at")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM api_tokens"

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    team TEXT NOT NULL,
    admin INTEGER NOT NULL,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""

POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    team TEXT NOT NULL,
    admin BOOLEAN NOT NULL,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);
"""

# Serializes schema creation across processes starting at once (CREATE ... IF NOT EXISTS is
# not safe against a concurrent identical CREATE in PostgreSQL); not the job store's key.
_SCHEMA_LOCK_KEY = 0x546F6B656E  # "Token"


class SqlTokenStore(TokenStore):
    @abc.abstractmethod
    def _tx(self) -> contextlib.AbstractContextManager:
        """A cursor inside one transaction."""

    def _q(self, sql: str) -> str:
        return sql

    def _insert(self, token: Token) -> None:
        with self._tx() as cur:
            cur.execute(self._q(f"INSERT INTO api_tokens ({', '.join(COLUMNS)}) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)"),
                        (token.id, token.team, bool(token.admin), token.name, token.secret_sha256,
                         token.created_at, token.revoked_at))

    def get(self, token_id: str) -> Token:
        with self._tx() as cur:
            cur.execute(self._q(_SELECT + " WHERE id = ?"), (token_id,))
            row = cur.fetchone()
        if row is None:
            raise TokenNotFound(token_id)
        return self._token(row)

    def list(self, *, include_revoked: bool = True) -> list[Token]:
        sql = _SELECT + ("" if include_revoked else " WHERE revoked_at IS NULL")
        with self._tx() as cur:
            cur.execute(self._q(sql + " ORDER BY created_at, id"))
            return [self._token(row) for row in cur.fetchall()]

    def revoke(self, token_id: str) -> Token:
        with self._tx() as cur:
            cur.execute(self._q("UPDATE api_tokens SET revoked_at = ? "
                                "WHERE id = ? AND revoked_at IS NULL"), (self._clock(), token_id))
            cur.execute(self._q(_SELECT + " WHERE id = ?"), (token_id,))
            row = cur.fetchone()
        if row is None:
            raise TokenNotFound(token_id)
        return self._token(row)

    @staticmethod
    def _token(row) -> Token:
        r = dict(zip(COLUMNS, row))
        return Token(id=r["id"], team=r["team"], admin=bool(r["admin"]), name=r["name"],
                     created_at=float(r["created_at"]),
                     revoked_at=None if r["revoked_at"] is None else float(r["revoked_at"]),
                     secret_sha256=r["secret_sha256"])


class SqliteTokenStore(SqlTokenStore):
    def __init__(self, path: str, clock: Callable[[], float] = time.time):
        super().__init__(clock)
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        # Like the job store: one connection under a lock, other processes through file locks.
        self._conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA busy_timeout = 30000")
        with self._lock:
            self._conn.executescript(SQLITE_SCHEMA)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
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


class PostgresTokenStore(SqlTokenStore):
    def __init__(self, dsn: str, clock: Callable[[], float] = time.time):
        super().__init__(clock)
        self.dsn = dsn
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            cur.execute(POSTGRES_SCHEMA)

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s")

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor]:
        with self._lock:
            stack = contextlib.ExitStack()
            for attempt in range(2):
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.dsn, autocommit=True)
                conn = self._conn
                try:
                    stack.enter_context(conn.transaction())
                    break
                except psycopg.OperationalError:
                    # Dropped while idle: nothing happened yet, one retry on a new connection.
                    self._drop()
                    if attempt:
                        raise
            try:
                with stack:
                    yield stack.enter_context(conn.cursor())
            except psycopg.OperationalError:
                self._drop()
                raise

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._drop()


def open_token_store(url: str, **kwargs) -> SqlTokenStore:
    """The token store in the job store at `url` (postgresql://..., sqlite:///path or a path)."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresTokenStore(url, **kwargs)
    return SqliteTokenStore(url.removeprefix("sqlite://"), **kwargs)
