"""Evaluations, their states and results, in the job store's database.

An evaluation moves through the job states by the job store's own transitions
(platform/jobs/store.py: QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED, RUNNING ->
QUEUED when its run was lost and is retried), leased to the worker running it exactly as a
job is: this store has the methods platform/training/worker.Worker calls on a job store, so
the service runs evaluations with the same Worker (claim, lease, heartbeat, logs, cancel, and
after a restart re-attach or run again) and a local executor of the workflow binaries.

Its rows are in their own tables, `evaluations` and `evaluation_logs`, beside `jobs` in the
same SQLite file or PostgreSQL database, written through the job store's connection and
transactions (its backend hooks): a training job and an evaluation are listed, and retried,
separately, and the jobs table and its readers are untouched. The spec and the result are
JSON (platform/evaluation/spec.py and evaluate.py), not protobuf.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.platform.jobs.store import (TERMINAL, TRANSITIONS, InvalidTransition, Job,
                                            JobNotFound, JobStore, LeaseLost, State, state_value)

COLUMNS = ("id", "state", "owner", "team", "workflow", "spec", "reason", "result", "attempt",
           "executor", "executor_ref", "lease_owner", "lease_expires_at", "cancel_requested",
           "created_at", "started_at", "finished_at", "updated_at")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM evaluations"

# Written in the types both backends take (SQLite reads DOUBLE PRECISION as REAL, BOOLEAN as
# a number); only the log table's generated key differs.
_TABLE = """
CREATE TABLE IF NOT EXISTS evaluations (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    team TEXT NOT NULL,
    workflow TEXT NOT NULL,
    spec TEXT NOT NULL,
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
)"""
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS evaluations_by_state ON evaluations (state, created_at)",
    "CREATE INDEX IF NOT EXISTS evaluations_by_team ON evaluations (team, created_at)",
    "CREATE INDEX IF NOT EXISTS evaluation_logs_by_evaluation ON evaluation_logs (evaluation_id, id)",
)
_LOGS = {
    "sqlite": "CREATE TABLE IF NOT EXISTS evaluation_logs (id INTEGER PRIMARY KEY AUTOINCREMENT, "
              "evaluation_id TEXT NOT NULL REFERENCES evaluations (id), chunk TEXT NOT NULL)",
    "postgres": "CREATE TABLE IF NOT EXISTS evaluation_logs (id BIGINT GENERATED ALWAYS AS IDENTITY "
                "PRIMARY KEY, evaluation_id TEXT NOT NULL REFERENCES evaluations (id), chunk TEXT NOT NULL)",
}
# Serializes schema creation across services starting at once (as the job store does).
_SCHEMA_LOCK_KEY = 0x526F756E6445  # "RoundE"


class EvaluationNotFound(JobNotFound):
    def __init__(self, evaluation_id: str):
        super().__init__(evaluation_id)
        self.args = (f"no evaluation {evaluation_id!r}",)


class InvalidEvaluationTransition(InvalidTransition):
    def __init__(self, evaluation_id: str, current: int, wanted: int):
        super().__init__(evaluation_id, current, wanted)
        self.args = (f"evaluation {evaluation_id} is {State.Name(current)}; it cannot become "
                     f"{State.Name(wanted)}",)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    id: str
    state: int  # a Job.State
    owner: str
    team: str
    workflow: str
    spec: dict
    reason: str = ""
    result: dict | None = None
    attempt: int = 0
    executor: str = ""
    executor_ref: str = ""
    cancel_requested: bool = False
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None

    @property
    def request(self) -> dict:
        """What the worker hands its executor: the resolved spec."""
        return self.spec

    def to_dict(self, *, full: bool = True) -> dict:
        """The API's view: with the spec and (once SUCCEEDED) the result when `full`."""
        out: dict[str, Any] = {
            "id": self.id, "state": State.Name(self.state), "owner": self.owner, "team": self.team,
            "workflow": self.workflow, "models": self.spec.get("models", []),
            "description": (self.spec.get("metadata") or {}).get("description", ""),
            "reason": self.reason, "attempt": self.attempt}
        for name in ("created_at", "started_at", "finished_at", "updated_at"):
            value = getattr(self, name)
            if value is not None:
                out[name] = dt.datetime.fromtimestamp(value, dt.timezone.utc).isoformat().replace("+00:00", "Z")
        if full:
            out["spec"] = self.spec
            if self.state == Job.SUCCEEDED and self.result is not None:
                out["result"] = self.result
        return out


class EvaluationStore:
    """Evaluations in the database of `jobs`: a SQLite or PostgreSQL job store (one of
    platform/jobs/sql_store.SqlJobStore's backends)."""

    def __init__(self, jobs: JobStore):
        self._jobs = jobs
        # The job store's backend hooks: its transactions, placeholder style, row locks, clock.
        self._tx, self._read, self._q = jobs._tx, jobs._read, jobs._q
        self._claim_lock, self._row_lock = jobs.claim_lock, jobs.row_lock
        self._clock = jobs._clock
        backend = "sqlite" if isinstance(jobs, SqliteJobStore) else "postgres"
        with self._tx() as cur:
            if backend == "postgres":
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            for statement in (_TABLE, _LOGS[backend], *_INDEXES):
                cur.execute(statement)

    # ---- what the API asks ----

    def create(self, spec: dict, *, owner: str, team: str, workflow: str,
               evaluation_id: str | None = None) -> Evaluation:
        evaluation_id = evaluation_id or uuid.uuid4().hex
        now = self._clock()
        with self._tx() as cur:
            cur.execute(self._q(
                "INSERT INTO evaluations (id, state, owner, team, workflow, spec, reason, attempt, "
                "executor, executor_ref, cancel_requested, created_at, updated_at) "
                "VALUES (?, 'QUEUED', ?, ?, ?, ?, '', 0, '', '', ?, ?, ?)"),
                (evaluation_id, owner, team, workflow, json.dumps(spec, sort_keys=True), False, now, now))
            return self._get(cur, evaluation_id)

    def get(self, evaluation_id: str) -> Evaluation:
        with self._read() as cur:
            return self._get(cur, evaluation_id)

    def list(self, *, owner: str | None = None, team: str | None = None,
             state: int | str | None = None, limit: int = 100) -> list[Evaluation]:
        """Evaluations matching every given filter, newest first."""
        where, args = [], []
        for column, value in (("owner", owner), ("team", team)):
            if value is not None and value != "":
                where.append(f"{column} = ?")
                args.append(value)
        if state is not None and state != "":
            where.append("state = ?")
            args.append(State.Name(state_value(state)))
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        with self._read() as cur:
            cur.execute(self._q(sql), (*args, int(limit)))
            return [self._evaluation(row) for row in cur.fetchall()]

    def request_cancel(self, evaluation_id: str, reason: str = "cancelled") -> Evaluation:
        with self._tx() as cur:
            row = self._row(cur, evaluation_id, lock=True)
            state = State.Value(row["state"])
            if state == Job.QUEUED:
                self._move(cur, evaluation_id, Job.CANCELLED, reason, None)
            elif state == Job.RUNNING:  # its worker stops the run at its next heartbeat
                cur.execute(self._q("UPDATE evaluations SET cancel_requested = ?, reason = ?, "
                                    "updated_at = ? WHERE id = ?"),
                            (True, reason, self._clock(), evaluation_id))
            else:
                raise InvalidEvaluationTransition(evaluation_id, state, Job.CANCELLED)
            return self._get(cur, evaluation_id)

    # ---- what the worker asks (the JobStore methods of the same names) ----

    def transition(self, evaluation_id: str, to: int, reason: str = "", *, result: dict | None = None,
                   worker: str | None = None) -> Evaluation:
        to = state_value(to)
        with self._tx() as cur:
            row = self._row(cur, evaluation_id, lock=True)
            if worker is not None and row["lease_owner"] != worker:
                raise LeaseLost(evaluation_id, worker, row["lease_owner"])
            current = State.Value(row["state"])
            if to not in TRANSITIONS[current]:
                raise InvalidEvaluationTransition(evaluation_id, current, to)
            self._move(cur, evaluation_id, to, reason, result)
            return self._get(cur, evaluation_id)

    def claim(self, worker: str, lease_seconds: float, executor: str = "") -> Evaluation | None:
        now = self._clock()
        with self._tx() as cur:
            cur.execute(self._q("SELECT id FROM evaluations WHERE state = 'QUEUED' "
                                "ORDER BY created_at, id LIMIT 1" + self._claim_lock))
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(self._q(
                "UPDATE evaluations SET state = 'RUNNING', attempt = attempt + 1, lease_owner = ?, "
                "lease_expires_at = ?, started_at = ?, finished_at = NULL, updated_at = ?, "
                "executor = ?, executor_ref = '', reason = '' WHERE id = ? AND state = 'QUEUED'"),
                (worker, now + lease_seconds, now, now, executor, row[0]))
            return self._get(cur, row[0])

    def heartbeat(self, evaluation_id: str, worker: str, lease_seconds: float) -> Evaluation:
        with self._tx() as cur:
            row = self._row(cur, evaluation_id, lock=True)
            if row["state"] != "RUNNING" or row["lease_owner"] != worker:
                raise LeaseLost(evaluation_id, worker, row["lease_owner"])
            now = self._clock()
            cur.execute(self._q("UPDATE evaluations SET lease_expires_at = ?, updated_at = ? WHERE id = ?"),
                        (now + lease_seconds, now, evaluation_id))
            return self._get(cur, evaluation_id)

    def set_executor_ref(self, evaluation_id: str, worker: str, executor: str, ref: str) -> Evaluation:
        with self._tx() as cur:
            row = self._row(cur, evaluation_id, lock=True)
            if row["state"] != "RUNNING" or row["lease_owner"] != worker:
                raise LeaseLost(evaluation_id, worker, row["lease_owner"])
            cur.execute(self._q("UPDATE evaluations SET executor = ?, executor_ref = ?, updated_at = ? "
                                "WHERE id = ?"), (executor, ref, self._clock(), evaluation_id))
            return self._get(cur, evaluation_id)

    def recover(self, worker: str, lease_seconds: float) -> list[Evaluation]:
        now = self._clock()
        with self._tx() as cur:
            cur.execute(self._q(
                "SELECT id FROM evaluations WHERE state = 'RUNNING' AND (lease_owner IS NULL OR "
                "lease_owner = ? OR lease_expires_at < ?) ORDER BY created_at, id" + self._claim_lock),
                (worker, now))
            ids = [r[0] for r in cur.fetchall()]
            for evaluation_id in ids:
                cur.execute(self._q("UPDATE evaluations SET lease_owner = ?, lease_expires_at = ?, "
                                    "updated_at = ? WHERE id = ?"),
                            (worker, now + lease_seconds, now, evaluation_id))
            return [self._get(cur, evaluation_id) for evaluation_id in ids]

    def requeue(self, evaluation_id: str, worker: str, reason: str, max_attempts: int) -> Evaluation:
        with self._tx() as cur:
            row = self._row(cur, evaluation_id, lock=True)
            if row["lease_owner"] != worker:
                raise LeaseLost(evaluation_id, worker, row["lease_owner"])
            if row["cancel_requested"]:
                self._move(cur, evaluation_id, Job.CANCELLED, row["reason"] or "cancelled", None)
            elif row["attempt"] >= max_attempts:
                self._move(cur, evaluation_id, Job.FAILED,
                           f"{reason}; gave up after {row['attempt']} attempts", None)
            else:
                self._move(cur, evaluation_id, Job.QUEUED, reason, None)
            return self._get(cur, evaluation_id)

    def append_logs(self, evaluation_id: str, text: str) -> int:
        with self._tx() as cur:
            self._row(cur, evaluation_id)
            cur.execute(self._q("INSERT INTO evaluation_logs (evaluation_id, chunk) VALUES (?, ?) "
                                "RETURNING id"), (evaluation_id, text))
            return int(cur.fetchone()[0])

    def read_logs(self, evaluation_id: str, after: int = 0) -> tuple[str, int]:
        with self._read() as cur:
            self._row(cur, evaluation_id)
            cur.execute(self._q("SELECT id, chunk FROM evaluation_logs WHERE evaluation_id = ? AND id > ? "
                                "ORDER BY id"), (evaluation_id, after))
            rows = cur.fetchall()
            return "".join(r[1] for r in rows), (int(rows[-1][0]) if rows else after)

    # ---- helpers ----

    def _move(self, cur, evaluation_id: str, to: int, reason: str, result: dict | None) -> None:
        now = self._clock()
        sets: dict[str, Any] = {"state": State.Name(to), "reason": reason, "updated_at": now}
        if to in TERMINAL:
            sets.update(finished_at=now, lease_owner=None, lease_expires_at=None)
        elif to == Job.QUEUED:
            sets.update(lease_owner=None, lease_expires_at=None, executor_ref="", started_at=None)
        if result is not None:
            sets["result"] = json.dumps(result, sort_keys=True)
        assignments = ", ".join(f"{k} = ?" for k in sets)
        cur.execute(self._q(f"UPDATE evaluations SET {assignments} WHERE id = ?"), (*sets.values(), evaluation_id))

    def _row(self, cur, evaluation_id: str, lock: bool = False) -> dict[str, Any]:
        cur.execute(self._q(_SELECT + " WHERE id = ?" + (self._row_lock if lock else "")), (evaluation_id,))
        row = cur.fetchone()
        if row is None:
            raise EvaluationNotFound(evaluation_id)
        return dict(zip(COLUMNS, row))

    def _get(self, cur, evaluation_id: str) -> Evaluation:
        return self._evaluation(tuple(self._row(cur, evaluation_id).values()))

    @staticmethod
    def _evaluation(row: tuple) -> Evaluation:
        r = dict(zip(COLUMNS, row))
        return Evaluation(
            id=r["id"], state=State.Value(r["state"]), owner=r["owner"], team=r["team"],
            workflow=r["workflow"], spec=json.loads(r["spec"]), reason=r["reason"] or "",
            result=json.loads(r["result"]) if r["result"] else None, attempt=r["attempt"],
            executor=r["executor"] or "", executor_ref=r["executor_ref"] or "",
            cancel_requested=bool(r["cancel_requested"]), created_at=r["created_at"],
            started_at=r["started_at"], finished_at=r["finished_at"], updated_at=r["updated_at"])
