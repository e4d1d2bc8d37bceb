"""Schedules and their runs, in the job store's database (as platform/evaluation/store.py).

Two tables beside `jobs`, in the same SQLite file or PostgreSQL database, written through the
job store's connection and transactions:

  schedules      id, team, owner, tag, spec (JSON), created_at, updated_at
  schedule_runs  id, schedule_id, slot, kind (cron | manual), at (the time its window is
                 relative to), state (PENDING -> TRAINING -> EVALUATING -> DECIDED), job_id,
                 evaluation_id, champion_id, challenger_id, decision (promoted | kept |
                 failed), reason, details (JSON), lease_owner, lease_expires_at, timestamps;
                 UNIQUE (schedule_id, slot)

The unique (schedule_id, slot) is what keeps two service processes from both running one
slot: each inserts the run of a due slot with ON CONFLICT DO NOTHING, and only the insert
that made the row gets it back. A run is advanced by whoever holds its lease (`claim_runs`).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.platform.jobs.store import JobStore
from roundhouse.platform.schedules import spec as spec_lib

STATES = ("PENDING", "TRAINING", "EVALUATING", "DECIDED")
DECISIONS = ("promoted", "kept", "failed")

_SCHEDULE_COLUMNS = ("id", "team", "owner", "tag", "spec", "created_at", "updated_at")
_RUN_COLUMNS = ("id", "schedule_id", "slot", "kind", "at", "state", "job_id", "evaluation_id",
                "champion_id", "challenger_id", "decision", "reason", "details", "lease_owner",
                "lease_expires_at", "created_at", "updated_at", "decided_at")
_TABLES = (
    """CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY,
    team TEXT NOT NULL,
    owner TEXT NOT NULL,
    tag TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS schedule_runs (
    id TEXT PRIMARY KEY,
    schedule_id TEXT NOT NULL REFERENCES schedules (id),
    slot TEXT NOT NULL,
    kind TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    job_id TEXT NOT NULL,
    evaluation_id TEXT NOT NULL,
    champion_id TEXT NOT NULL,
    challenger_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    details TEXT NOT NULL,
    lease_owner TEXT,
    lease_expires_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    decided_at DOUBLE PRECISION,
    UNIQUE (schedule_id, slot)
)""",
    "CREATE INDEX IF NOT EXISTS schedules_by_team ON schedules (team, created_at)",
    "CREATE INDEX IF NOT EXISTS schedule_runs_by_schedule ON schedule_runs (schedule_id, created_at)",
    "CREATE INDEX IF NOT EXISTS schedule_runs_by_state ON schedule_runs (state)",
)
_SCHEMA_LOCK_KEY = 0x526F756E6453  # "RoundS"


class ScheduleNotFound(KeyError):
    def __init__(self, schedule_id: str):
        super().__init__(schedule_id)
        self.args = (f"no schedule {schedule_id!r}",)

    def __str__(self):
        return self.args[0]


@dataclasses.dataclass(frozen=True)
class Schedule:
    id: str
    team: str
    owner: str
    tag: str
    spec: spec_lib.ScheduleSpec
    created_at: float
    updated_at: float

    def to_dict(self) -> dict:
        return {"id": self.id, "team": self.team, "owner": self.owner, "tag": self.tag,
                "created_at": spec_lib.iso(self.created_at), **self.spec.to_dict()}


@dataclasses.dataclass(frozen=True)
class Run:
    id: str
    schedule_id: str
    slot: str
    kind: str
    at: float
    state: str
    job_id: str = ""
    evaluation_id: str = ""
    champion_id: str = ""
    challenger_id: str = ""
    decision: str = ""
    reason: str = ""
    details: dict = dataclasses.field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    decided_at: float | None = None

    def to_dict(self) -> dict:
        out = {"id": self.id, "schedule_id": self.schedule_id, "slot": self.slot, "kind": self.kind,
               "at": spec_lib.iso(self.at), "state": self.state, "job_id": self.job_id,
               "evaluation_id": self.evaluation_id, "champion_id": self.champion_id,
               "challenger_id": self.challenger_id, "decision": self.decision, "reason": self.reason,
               "details": self.details, "created_at": spec_lib.iso(self.created_at)}
        if self.decided_at is not None:
            out["decided_at"] = spec_lib.iso(self.decided_at)
        return out


class ScheduleStore:
    """Schedules in the database of `jobs` (a SQLite or PostgreSQL job store)."""

    def __init__(self, jobs: JobStore):
        self._tx, self._read, self._q = jobs._tx, jobs._read, jobs._q
        self._row_lock, self._claim_lock = jobs.row_lock, jobs.claim_lock
        self.clock = jobs._clock
        postgres = not isinstance(jobs, SqliteJobStore)
        with self._tx() as cur:
            if postgres:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            for statement in _TABLES:
                cur.execute(statement)

    # ---- schedules ----

    def create(self, spec: spec_lib.ScheduleSpec, *, team: str, owner: str,
               schedule_id: str | None = None) -> Schedule:
        schedule_id = schedule_id or "s-" + uuid.uuid4().hex[:12]
        now = self.clock()
        with self._tx() as cur:
            cur.execute(self._q("INSERT INTO schedules (id, team, owner, tag, spec, created_at, updated_at) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)"),
                        (schedule_id, team, owner, spec.tag, json.dumps(spec.to_dict(), sort_keys=True),
                         now, now))
        return self.get(schedule_id)

    def get(self, schedule_id: str) -> Schedule:
        with self._read() as cur:
            cur.execute(self._q(f"SELECT {', '.join(_SCHEDULE_COLUMNS)} FROM schedules WHERE id = ?"),
                        (schedule_id,))
            row = cur.fetchone()
        if row is None:
            raise ScheduleNotFound(schedule_id)
        return _schedule(row)

    def list(self, *, team: str | None = None) -> list[Schedule]:
        sql = f"SELECT {', '.join(_SCHEDULE_COLUMNS)} FROM schedules"
        args: tuple = ()
        if team:
            sql, args = sql + " WHERE team = ?", (team,)
        with self._read() as cur:
            cur.execute(self._q(sql + " ORDER BY created_at, id"), args)
            return [_schedule(r) for r in cur.fetchall()]

    # ---- runs ----

    def create_run(self, schedule_id: str, slot: str, *, kind: str, at: float) -> Run | None:
        """The new run of `slot`, or None when that slot has a run already (another process
        made it): the database's unique (schedule_id, slot) decides."""
        run_id = "r-" + uuid.uuid4().hex[:12]
        now = self.clock()
        with self._tx() as cur:
            cur.execute(self._q(
                "INSERT INTO schedule_runs (id, schedule_id, slot, kind, at, state, job_id, evaluation_id, "
                "champion_id, challenger_id, decision, reason, details, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'PENDING', '', '', '', '', '', '', '{}', ?, ?) "
                "ON CONFLICT (schedule_id, slot) DO NOTHING RETURNING id"),
                (run_id, schedule_id, slot, kind, at, now, now))
            made = cur.fetchone()
        return None if made is None else self.get_run(run_id)

    def last_cron_at(self, schedule_id: str) -> float | None:
        """The time of the schedule's latest cron run (None: it has none)."""
        with self._read() as cur:
            cur.execute(self._q("SELECT MAX(at) FROM schedule_runs WHERE schedule_id = ? AND kind = 'cron'"),
                        (schedule_id,))
            row = cur.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def get_run(self, run_id: str) -> Run:
        with self._read() as cur:
            cur.execute(self._q(f"SELECT {', '.join(_RUN_COLUMNS)} FROM schedule_runs WHERE id = ?"), (run_id,))
            row = cur.fetchone()
        if row is None:
            raise KeyError(f"no run {run_id!r}")
        return _run(row)

    def runs(self, schedule_id: str, limit: int = 100) -> list[Run]:
        """The schedule's runs, newest first."""
        with self._read() as cur:
            cur.execute(self._q(f"SELECT {', '.join(_RUN_COLUMNS)} FROM schedule_runs WHERE schedule_id = ? "
                                "ORDER BY created_at DESC, at DESC, id DESC LIMIT ?"), (schedule_id, int(limit)))
            return [_run(r) for r in cur.fetchall()]

    def claim_runs(self, worker: str, lease_seconds: float) -> list[Run]:
        """The undecided runs this worker may advance now, leased to it: free ones, its own,
        and those whose lease ran out (a killed service's)."""
        now = self.clock()
        with self._tx() as cur:
            cur.execute(self._q(
                "SELECT id FROM schedule_runs WHERE state <> 'DECIDED' AND (lease_owner IS NULL OR "
                "lease_owner = ? OR lease_expires_at < ?) ORDER BY created_at, id" + self._claim_lock),
                (worker, now))
            ids = [r[0] for r in cur.fetchall()]
            for run_id in ids:
                cur.execute(self._q("UPDATE schedule_runs SET lease_owner = ?, lease_expires_at = ? WHERE id = ?"),
                            (worker, now + lease_seconds, run_id))
        return [self.get_run(run_id) for run_id in ids]

    def update_run(self, run_id: str, *, expect_state: str, worker: str | None = None, **fields) -> Run | None:
        """Set `fields` on the run if it is still in `expect_state` (and leased to `worker`);
        None when it is not (another step got there first). `details` is merged."""
        now = self.clock()
        with self._tx() as cur:
            cur.execute(self._q(f"SELECT state, lease_owner, details FROM schedule_runs WHERE id = ?"
                                + self._row_lock), (run_id,))
            row = cur.fetchone()
            if row is None or row[0] != expect_state or (worker is not None and row[1] != worker):
                return None
            if "details" in fields:
                fields["details"] = json.dumps({**json.loads(row[2] or "{}"), **fields["details"]},
                                               sort_keys=True)
            fields["updated_at"] = now
            if fields.get("state") == "DECIDED":
                fields.update(decided_at=now, lease_owner=None, lease_expires_at=None)
            assignments = ", ".join(f"{k} = ?" for k in fields)
            cur.execute(self._q(f"UPDATE schedule_runs SET {assignments} WHERE id = ?"), (*fields.values(), run_id))
        return self.get_run(run_id)


def _schedule(row) -> Schedule:
    r = dict(zip(_SCHEDULE_COLUMNS, row))
    return Schedule(id=r["id"], team=r["team"], owner=r["owner"], tag=r["tag"],
                    spec=spec_lib.from_dict(json.loads(r["spec"])), created_at=r["created_at"],
                    updated_at=r["updated_at"])


def _run(row) -> Run:
    r: dict[str, Any] = dict(zip(_RUN_COLUMNS, row))
    return Run(id=r["id"], schedule_id=r["schedule_id"], slot=r["slot"], kind=r["kind"], at=float(r["at"]),
               state=r["state"], job_id=r["job_id"], evaluation_id=r["evaluation_id"],
               champion_id=r["champion_id"], challenger_id=r["challenger_id"], decision=r["decision"],
               reason=r["reason"], details=json.loads(r["details"] or "{}"), created_at=r["created_at"],
               updated_at=r["updated_at"], decided_at=r["decided_at"])
