"""The job store over SQL, shared by the SQLite and PostgreSQL backends.

Backends supply a transaction (`_tx`), their DDL and how to lock rows; every query is written
once here with `?` placeholders (translated for psycopg). States are stored by name so the
tables read well in a SQL shell. Times are epoch seconds from an injectable clock, so tests
can let leases expire without sleeping.
"""

from __future__ import annotations

import abc
import contextlib
import time
import uuid
from typing import Any, Callable

from google.protobuf import json_format

from roundhouse.platform.api import job_pb2, training_pb2
from roundhouse.platform.jobs.store import (
    TERMINAL,
    InvalidTransition,
    Job,
    JobNotFound,
    JobStore,
    LeaseLost,
    State,
    check_transition,
    state_value,
)

COLUMNS = ("id", "state", "owner", "team", "workflow", "request", "reason", "result", "attempt",
           "executor", "executor_ref", "lease_owner", "lease_expires_at", "cancel_requested",
           "created_at", "started_at", "finished_at", "updated_at")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM jobs"


class SqlJobStore(JobStore):
    # Appended to a SELECT that picks jobs to take: PostgreSQL skips rows another
    # transaction holds; SQLite needs nothing since BEGIN IMMEDIATE already serializes writers.
    claim_lock = ""
    row_lock = ""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock

    # ---- backend hooks ----

    @abc.abstractmethod
    def _tx(self) -> contextlib.AbstractContextManager:
        """A context manager yielding a cursor inside one write transaction."""

    def _read(self) -> contextlib.AbstractContextManager:
        """Like _tx, for transactions that only read (backends may take lighter locks)."""
        return self._tx()

    def _q(self, sql: str) -> str:
        return sql

    # ---- interface ----

    def create(self, request: training_pb2.TrainingRequest, job_id: str | None = None) -> Job:
        job_id = job_id or uuid.uuid4().hex
        now = self._clock()
        with self._tx() as cur:
            cur.execute(self._q(
                "INSERT INTO jobs (id, state, owner, team, workflow, request, reason, attempt, "
                "executor, executor_ref, cancel_requested, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, '', 0, '', '', ?, ?, ?)"),
                (job_id, "QUEUED", request.metadata.owner, request.metadata.team,
                 request.workflow, json_format.MessageToJson(request, indent=None),
                 False, now, now))
            return self._get(cur, job_id)

    def get(self, job_id: str, *, with_logs: bool = False) -> Job:
        with self._read() as cur:
            job = self._get(cur, job_id)
            if with_logs:
                job.logs, _ = self._read_logs(cur, job_id, 0)
            return job

    def list(self, *, owner: str | None = None, workflow: str | None = None,
             state: int | str | None = None, team: str | None = None, limit: int = 100) -> list[Job]:
        where, args = [], []
        for column, value in (("owner", owner), ("workflow", workflow), ("team", team)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if state is not None and state != "":
            where.append("state = ?")
            args.append(State.Name(state_value(state)))
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        with self._read() as cur:
            cur.execute(self._q(sql), (*args, int(limit)))
            return [self._job(row) for row in cur.fetchall()]

    def transition(self, job_id: str, to: int, reason: str = "", *,
                   result: job_pb2.JobResult | None = None, worker: str | None = None) -> Job:
        to = state_value(to)
        with self._tx() as cur:
            row = self._row(cur, job_id, lock=True)
            if worker is not None and row["lease_owner"] != worker:
                raise LeaseLost(job_id, worker, row["lease_owner"])
            check_transition(job_id, State.Value(row["state"]), to)
            self._move(cur, job_id, to, reason, result)
            return self._get(cur, job_id)

    def claim(self, worker: str, lease_seconds: float, executor: str = "") -> Job | None:
        now = self._clock()
        with self._tx() as cur:
            cur.execute(self._q(
                "SELECT id FROM jobs WHERE state = 'QUEUED' ORDER BY created_at, id LIMIT 1"
                + self.claim_lock))
            row = cur.fetchone()
            if row is None:
                return None
            job_id = row[0]
            cur.execute(self._q(
                "UPDATE jobs SET state = 'RUNNING', attempt = attempt + 1, lease_owner = ?, "
                "lease_expires_at = ?, started_at = ?, finished_at = NULL, updated_at = ?, "
                "executor = ?, executor_ref = '', reason = '' WHERE id = ? AND state = 'QUEUED'"),
                (worker, now + lease_seconds, now, now, executor, job_id))
            return self._get(cur, job_id)

    def heartbeat(self, job_id: str, worker: str, lease_seconds: float) -> Job:
        with self._tx() as cur:
            row = self._row(cur, job_id, lock=True)
            if row["state"] != "RUNNING" or row["lease_owner"] != worker:
                raise LeaseLost(job_id, worker, row["lease_owner"])
            now = self._clock()
            cur.execute(self._q("UPDATE jobs SET lease_expires_at = ?, updated_at = ? "
                                "WHERE id = ?"), (now + lease_seconds, now, job_id))
            return self._get(cur, job_id)

    def set_executor_ref(self, job_id: str, worker: str, executor: str, ref: str) -> Job:
        with self._tx() as cur:
            row = self._row(cur, job_id, lock=True)
            if row["state"] != "RUNNING" or row["lease_owner"] != worker:
                raise LeaseLost(job_id, worker, row["lease_owner"])
            cur.execute(self._q("UPDATE jobs SET executor = ?, executor_ref = ?, updated_at = ? "
                                "WHERE id = ?"), (executor, ref, self._clock(), job_id))
            return self._get(cur, job_id)

    def request_cancel(self, job_id: str, reason: str = "cancelled") -> Job:
        with self._tx() as cur:
            row = self._row(cur, job_id, lock=True)
            state = State.Value(row["state"])
            if state == Job.QUEUED:
                self._move(cur, job_id, Job.CANCELLED, reason, None)
            elif state == Job.RUNNING:
                # Only the worker running it can stop the execution; it sees this flag on its
                # next heartbeat, stops it and moves the job to CANCELLED.
                cur.execute(self._q("UPDATE jobs SET cancel_requested = ?, reason = ?, "
                                    "updated_at = ? WHERE id = ?"),
                            (True, reason, self._clock(), job_id))
            else:
                raise InvalidTransition(job_id, state, Job.CANCELLED)
            return self._get(cur, job_id)

    def recover(self, worker: str, lease_seconds: float) -> list[Job]:
        now = self._clock()
        with self._tx() as cur:
            cur.execute(self._q(
                "SELECT id FROM jobs WHERE state = 'RUNNING' AND (lease_owner IS NULL OR "
                "lease_owner = ? OR lease_expires_at < ?) ORDER BY created_at, id"
                + self.claim_lock), (worker, now))
            ids = [r[0] for r in cur.fetchall()]
            for job_id in ids:
                cur.execute(self._q("UPDATE jobs SET lease_owner = ?, lease_expires_at = ?, "
                                    "updated_at = ? WHERE id = ?"),
                            (worker, now + lease_seconds, now, job_id))
            return [self._get(cur, job_id) for job_id in ids]

    def requeue(self, job_id: str, worker: str, reason: str, max_attempts: int) -> Job:
        with self._tx() as cur:
            row = self._row(cur, job_id, lock=True)
            if row["lease_owner"] != worker:
                raise LeaseLost(job_id, worker, row["lease_owner"])
            if row["cancel_requested"]:
                # Cancelled while its run was lost: honour the cancel rather than rerun.
                self._move(cur, job_id, Job.CANCELLED, row["reason"] or "cancelled", None)
            elif row["attempt"] >= max_attempts:
                self._move(cur, job_id, Job.FAILED,
                           f"{reason}; gave up after {row['attempt']} attempts", None)
            else:
                self._move(cur, job_id, Job.QUEUED, reason, None)
            return self._get(cur, job_id)

    def set_result(self, job_id: str, result: job_pb2.JobResult) -> Job:
        with self._tx() as cur:
            row = self._row(cur, job_id, lock=True)
            state = State.Value(row["state"])
            if state not in (Job.RUNNING, Job.SUCCEEDED):
                raise InvalidTransition(job_id, state, Job.SUCCEEDED)
            cur.execute(self._q("UPDATE jobs SET result = ?, updated_at = ? WHERE id = ?"),
                        (json_format.MessageToJson(result, indent=None), self._clock(), job_id))
            return self._get(cur, job_id)

    def append_logs(self, job_id: str, text: str) -> int:
        with self._tx() as cur:
            self._row(cur, job_id)
            # One writer per job (the lease holder) appends in order, so ids grow in commit
            # order for any one job and read_logs(after=id) misses nothing.
            cur.execute(self._q("INSERT INTO job_logs (job_id, chunk) VALUES (?, ?) "
                                "RETURNING id"), (job_id, text))
            return int(cur.fetchone()[0])

    def read_logs(self, job_id: str, after: int = 0) -> tuple[str, int]:
        with self._read() as cur:
            self._row(cur, job_id)
            return self._read_logs(cur, job_id, after)

    # ---- helpers ----

    def _read_logs(self, cur, job_id: str, after: int) -> tuple[str, int]:
        cur.execute(self._q("SELECT id, chunk FROM job_logs WHERE job_id = ? AND id > ? "
                            "ORDER BY id"), (job_id, after))
        rows = cur.fetchall()
        return "".join(r[1] for r in rows), (int(rows[-1][0]) if rows else after)

    def _move(self, cur, job_id: str, to: int, reason: str,
              result: job_pb2.JobResult | None) -> None:
        now = self._clock()
        sets = {"state": State.Name(to), "reason": reason, "updated_at": now}
        if to in TERMINAL:
            sets.update(finished_at=now, lease_owner=None, lease_expires_at=None)
        elif to == Job.QUEUED:
            # A fresh start: the next claim sets the lease, the executor and started_at.
            sets.update(lease_owner=None, lease_expires_at=None, executor_ref="",
                        started_at=None)
        elif to == Job.RUNNING:
            sets.update(started_at=now)
        if result is not None:
            sets["result"] = json_format.MessageToJson(result, indent=None)
        assignments = ", ".join(f"{k} = ?" for k in sets)
        cur.execute(self._q(f"UPDATE jobs SET {assignments} WHERE id = ?"),
                    (*sets.values(), job_id))

    def _row(self, cur, job_id: str, lock: bool = False) -> dict[str, Any]:
        cur.execute(self._q(_SELECT + " WHERE id = ?" + (self.row_lock if lock else "")),
                    (job_id,))
        row = cur.fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return dict(zip(COLUMNS, row))

    def _get(self, cur, job_id: str) -> Job:
        return self._job(tuple(self._row(cur, job_id).values()))

    @staticmethod
    def _job(row: tuple) -> Job:
        r = dict(zip(COLUMNS, row))
        job = Job(id=r["id"], state=State.Value(r["state"]), owner=r["owner"],
                  workflow=r["workflow"], reason=r["reason"] or "", attempt=r["attempt"],
                  executor=r["executor"] or "", executor_ref=r["executor_ref"] or "",
                  cancel_requested=bool(r["cancel_requested"]))
        json_format.Parse(r["request"], job.request)
        if r["result"]:
            json_format.Parse(r["result"], job.result)
        for name in ("created_at", "started_at", "finished_at", "updated_at"):
            if r[name] is not None:
                getattr(job, name).FromNanoseconds(int(round(r[name] * 1e9)))
        return job

