"""Hyperparameter searches and their trials, in the job store's database.

Two tables beside `jobs` in the same SQLite file or PostgreSQL database, written through the
job store's own connection and transactions (its backend hooks, as platform/evaluation/store.py
does): `tuning_searches` (one row per search: its spec as JSON, its state, and the lease of the
service process that advances it) and `tuning_trials` (search id, trial number, the sampled
params as JSON, the training job that runs the trial, its state RUNNING | COMPLETE | FAIL, and
its value and model once finished). These rows are the search's whole state: the optuna study
is rebuilt from them (platform/tuning/search.py), so a killed service loses nothing.

A search is RUNNING from its creation until SUCCEEDED, FAILED or CANCELLED (the job states'
names). One service process at a time advances it: `acquire` leases it as the job store's
claim leases a job (a row lock, SKIP LOCKED on PostgreSQL, BEGIN IMMEDIATE on SQLite), and
every write of the advance step checks that lease (LeaseLost otherwise).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.platform.jobs.store import JobNotFound, JobStore, LeaseLost

SEARCH_STATES = ("RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
TRIAL_STATES = ("RUNNING", "COMPLETE", "FAIL")

_SEARCH_COLUMNS = ("id", "state", "owner", "team", "spec", "reason", "lease_owner", "lease_expires_at",
                   "created_at", "updated_at", "finished_at")
_TRIAL_COLUMNS = ("search_id", "number", "params", "job_id", "state", "value", "model_id", "reason",
                  "created_at", "finished_at")
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tuning_searches (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    team TEXT NOT NULL,
    spec TEXT NOT NULL,
    reason TEXT NOT NULL,
    lease_owner TEXT,
    lease_expires_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION
)""",
    """CREATE TABLE IF NOT EXISTS tuning_trials (
    search_id TEXT NOT NULL REFERENCES tuning_searches (id),
    number INTEGER NOT NULL,
    params TEXT NOT NULL,
    job_id TEXT NOT NULL,
    state TEXT NOT NULL,
    value DOUBLE PRECISION,
    model_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    PRIMARY KEY (search_id, number)
)""",
    "CREATE INDEX IF NOT EXISTS tuning_searches_by_state ON tuning_searches (state, created_at)",
    "CREATE INDEX IF NOT EXISTS tuning_searches_by_team ON tuning_searches (team, created_at)",
)
_SCHEMA_LOCK_KEY = 0x526F756E6454  # "RoundT": serializes schema creation across services


class SearchNotFound(JobNotFound):
    def __init__(self, search_id: str):
        super().__init__(search_id)
        self.args = (f"no search {search_id!r}",)


def _iso(value: float | None) -> str | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value, dt.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True)
class Trial:
    number: int
    params: dict
    job_id: str
    state: str  # one of TRIAL_STATES
    value: float | None = None
    model_id: str = ""
    reason: str = ""

    def to_dict(self) -> dict:
        return {"number": self.number, "params": self.params, "job_id": self.job_id, "state": self.state,
                "value": self.value, "model_id": self.model_id, "reason": self.reason}


@dataclasses.dataclass(frozen=True)
class Search:
    id: str
    state: str  # one of SEARCH_STATES
    owner: str
    team: str
    spec: dict  # platform/tuning/space.SearchSpec.to_dict()
    reason: str = ""
    trials: tuple[Trial, ...] = ()
    created_at: float | None = None
    updated_at: float | None = None
    finished_at: float | None = None

    def best(self) -> Trial | None:
        """The COMPLETE trial with the best value (the lowest number among equals)."""
        done = [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        if not done:
            return None
        sign = -1.0 if self.spec["direction"] == "maximize" else 1.0
        return min(done, key=lambda t: (sign * t.value, t.number))

    def to_dict(self, *, full: bool = True) -> dict:
        best = self.best()
        counts = {s.lower(): sum(t.state == s for t in self.trials) for s in TRIAL_STATES}
        out: dict[str, Any] = {
            "id": self.id, "state": self.state, "owner": self.owner, "team": self.team,
            "metric": self.spec["metric"], "direction": self.spec["direction"],
            "budget": self.spec["budget"], "parallelism": self.spec["parallelism"],
            "reason": self.reason, "trial_counts": counts,
            "best": None if best is None else {"number": best.number, "value": best.value,
                                               "params": best.params, "job_id": best.job_id,
                                               "model_id": best.model_id}}
        for name in ("created_at", "updated_at", "finished_at"):
            if getattr(self, name) is not None:
                out[name] = _iso(getattr(self, name))
        if full:
            out["spec"] = self.spec
            out["trials"] = [t.to_dict() for t in self.trials]
        return out


class TuningStore:
    """Searches in the database of `jobs`: a SQLite or PostgreSQL job store (one of
    platform/jobs/sql_store.SqlJobStore's backends)."""

    def __init__(self, jobs: JobStore):
        self.jobs = jobs
        self._tx, self._read, self._q = jobs._tx, jobs._read, jobs._q
        self._claim_lock, self._row_lock = jobs.claim_lock, jobs.row_lock
        self._clock = jobs._clock
        with self._tx() as cur:
            if not isinstance(jobs, SqliteJobStore):
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            for statement in _SCHEMA:
                cur.execute(statement)

    # ---- what the API asks ----

    def create(self, spec: dict, *, owner: str, team: str, search_id: str | None = None) -> Search:
        search_id = search_id or uuid.uuid4().hex
        now = self._clock()
        with self._tx() as cur:
            cur.execute(self._q(
                "INSERT INTO tuning_searches (id, state, owner, team, spec, reason, created_at, updated_at) "
                "VALUES (?, 'RUNNING', ?, ?, ?, '', ?, ?)"),
                (search_id, owner, team, json.dumps(spec, sort_keys=True), now, now))
            return self._get(cur, search_id)

    def get(self, search_id: str) -> Search:
        with self._read() as cur:
            return self._get(cur, search_id)

    def list(self, *, owner: str | None = None, team: str | None = None, state: str | None = None,
             limit: int = 100) -> list[Search]:
        """Searches matching every given filter, newest first."""
        where, args = [], []
        for column, value in (("owner", owner), ("team", team), ("state", state.upper() if state else None)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT id FROM tuning_searches" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        with self._read() as cur:
            cur.execute(self._q(sql), (*args, int(limit)))
            return [self._get(cur, row[0]) for row in cur.fetchall()]

    def cancel(self, search_id: str, reason: str = "cancelled") -> Search:
        """RUNNING -> CANCELLED (whoever holds the lease), its running trials FAIL; the caller
        cancels their jobs (the returned search lists them, with the reason "cancelled: ...")."""
        with self._tx() as cur:
            row = self._row(cur, search_id, lock=True)
            if row["state"] == "RUNNING":
                self._finish(cur, search_id, "CANCELLED", reason)
                cur.execute(self._q("UPDATE tuning_trials SET state = 'FAIL', reason = ?, finished_at = ? "
                                    "WHERE search_id = ? AND state = 'RUNNING'"),
                            (f"cancelled: {reason}", self._clock(), search_id))
            return self._get(cur, search_id)

    # ---- what the advance step asks (platform/tuning/search.py) ----

    def acquire(self, worker: str, lease_seconds: float) -> list[str]:
        """Lease to `worker` every RUNNING search whose lease is free, ran out or is its own;
        their IDs, oldest first. A search another live worker holds is not returned."""
        now = self._clock()
        with self._tx() as cur:
            cur.execute(self._q(
                "SELECT id FROM tuning_searches WHERE state = 'RUNNING' AND (lease_owner IS NULL OR "
                "lease_owner = ? OR lease_expires_at < ?) ORDER BY created_at, id" + self._claim_lock),
                (worker, now))
            ids = [r[0] for r in cur.fetchall()]
            for search_id in ids:
                cur.execute(self._q("UPDATE tuning_searches SET lease_owner = ?, lease_expires_at = ? "
                                    "WHERE id = ?"), (worker, now + lease_seconds, search_id))
            return ids

    def check_lease(self, search_id: str, worker: str) -> None:
        """LeaseLost unless `worker` holds the RUNNING search `search_id`."""
        with self._read() as cur:
            self._held(cur, search_id, worker, lock=False)

    def add_trial(self, search_id: str, worker: str, number: int, params: dict, job_id: str) -> Trial:
        """Record trial `number` (RUNNING, its job `job_id`) while `worker` holds the search."""
        with self._tx() as cur:
            self._held(cur, search_id, worker)
            cur.execute(self._q(
                "INSERT INTO tuning_trials (search_id, number, params, job_id, state, model_id, reason, "
                "created_at) VALUES (?, ?, ?, ?, 'RUNNING', '', '', ?)"),
                (search_id, number, json.dumps(params, sort_keys=True), job_id, self._clock()))
            cur.execute(self._q("UPDATE tuning_searches SET updated_at = ? WHERE id = ?"),
                        (self._clock(), search_id))
        return Trial(number, params, job_id, "RUNNING")

    def finish_trial(self, search_id: str, worker: str, number: int, state: str, *,
                     value: float | None = None, model_id: str = "", reason: str = "") -> None:
        if state not in ("COMPLETE", "FAIL"):
            raise ValueError(f"a finished trial is COMPLETE or FAIL, not {state!r}")
        with self._tx() as cur:
            self._held(cur, search_id, worker)
            now = self._clock()
            cur.execute(self._q(
                "UPDATE tuning_trials SET state = ?, value = ?, model_id = ?, reason = ?, finished_at = ? "
                "WHERE search_id = ? AND number = ? AND state = 'RUNNING'"),
                (state, value, model_id, reason, now, search_id, number))
            cur.execute(self._q("UPDATE tuning_searches SET updated_at = ? WHERE id = ?"), (now, search_id))

    def finish(self, search_id: str, worker: str, state: str, reason: str = "") -> Search:
        """RUNNING -> SUCCEEDED or FAILED, while `worker` holds the search."""
        with self._tx() as cur:
            self._held(cur, search_id, worker)
            self._finish(cur, search_id, state, reason)
            return self._get(cur, search_id)

    # ---- helpers ----

    def _finish(self, cur, search_id: str, state: str, reason: str) -> None:
        now = self._clock()
        cur.execute(self._q("UPDATE tuning_searches SET state = ?, reason = ?, finished_at = ?, updated_at = ?, "
                            "lease_owner = NULL, lease_expires_at = NULL WHERE id = ?"),
                    (state, reason, now, now, search_id))

    def _held(self, cur, search_id: str, worker: str, lock: bool = True) -> None:
        row = self._row(cur, search_id, lock=lock)
        if row["state"] != "RUNNING" or row["lease_owner"] != worker:
            raise LeaseLost(search_id, worker, row["lease_owner"])

    def _row(self, cur, search_id: str, lock: bool = False) -> dict[str, Any]:
        cur.execute(self._q(f"SELECT {', '.join(_SEARCH_COLUMNS)} FROM tuning_searches WHERE id = ?"
                            + (self._row_lock if lock else "")), (search_id,))
        row = cur.fetchone()
        if row is None:
            raise SearchNotFound(search_id)
        return dict(zip(_SEARCH_COLUMNS, row))

    def _get(self, cur, search_id: str) -> Search:
        r = self._row(cur, search_id)
        cur.execute(self._q(f"SELECT {', '.join(_TRIAL_COLUMNS)} FROM tuning_trials WHERE search_id = ? "
                            "ORDER BY number"), (search_id,))
        trials = []
        for row in cur.fetchall():
            t = dict(zip(_TRIAL_COLUMNS, row))
            trials.append(Trial(number=int(t["number"]), params=json.loads(t["params"]), job_id=t["job_id"],
                                state=t["state"], value=None if t["value"] is None else float(t["value"]),
                                model_id=t["model_id"] or "", reason=t["reason"] or ""))
        return Search(id=r["id"], state=r["state"], owner=r["owner"], team=r["team"], spec=json.loads(r["spec"]),
                      reason=r["reason"] or "", trials=tuple(trials), created_at=r["created_at"],
                      updated_at=r["updated_at"], finished_at=r["finished_at"])
