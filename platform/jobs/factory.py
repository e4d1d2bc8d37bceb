"""Open a job store from a URL, so services take one flag (--job-store) for either backend."""

from __future__ import annotations

from roundhouse.platform.jobs.postgres_store import PostgresJobStore
from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.platform.jobs.store import JobStore


def open_store(url: str, **kwargs) -> JobStore:
    """postgresql://... for PostgreSQL; sqlite:///path or a plain path for SQLite."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresJobStore(url, **kwargs)
    return SqliteJobStore(url.removeprefix("sqlite://"), **kwargs)
