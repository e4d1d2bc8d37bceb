"""The job store: where training jobs, their states, logs and results live.

One interface, two backends: SQLite (the embedded default, a file) and PostgreSQL (the real
server). Both are SqlJobStore underneath; see sql_store.py.

Jobs move QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED, and RUNNING -> QUEUED when a
run is lost and retried. A worker (a service process) owns a running job through a lease it
must renew; after a crash the lease runs out and `recover` hands the job to whoever asks, who
re-attaches to the still-running execution or re-queues it. So a job is never stuck in
RUNNING and never lost.
"""

from __future__ import annotations

import abc
from typing import Iterable

from roundhouse.platform.api import job_pb2, training_pb2

Job = job_pb2.Job
State = job_pb2.Job.State

TERMINAL = frozenset({Job.SUCCEEDED, Job.FAILED, Job.CANCELLED})

# Allowed moves. RUNNING -> QUEUED is a retry after a lost run; everything terminal is final.
TRANSITIONS: dict[int, frozenset[int]] = {
    Job.QUEUED: frozenset({Job.RUNNING, Job.CANCELLED, Job.FAILED}),
    Job.RUNNING: frozenset({Job.SUCCEEDED, Job.FAILED, Job.CANCELLED, Job.QUEUED}),
    Job.SUCCEEDED: frozenset(),
    Job.FAILED: frozenset(),
    Job.CANCELLED: frozenset(),
}


class JobStoreError(Exception):
    pass


class JobNotFound(JobStoreError, KeyError):
    def __init__(self, job_id: str):
        self.job_id = job_id
        super().__init__(f"no job {job_id!r}")

    def __str__(self) -> str:
        return self.args[0]


class InvalidTransition(JobStoreError):
    def __init__(self, job_id: str, current: int, wanted: int):
        self.job_id, self.current, self.wanted = job_id, current, wanted
        super().__init__(f"job {job_id} is {State.Name(current)}; it cannot become "
                         f"{State.Name(wanted)}")


class LeaseLost(JobStoreError):
    """The worker no longer owns the job (its lease ran out and someone else took it)."""

    def __init__(self, job_id: str, worker: str, owner: str | None):
        self.job_id, self.worker, self.owner = job_id, worker, owner
        super().__init__(f"worker {worker!r} does not hold the lease on job {job_id} "
                         f"(held by {owner!r})")


def state_value(state: int | str) -> int:
    """A Job.State from its number or its name in any case ("running")."""
    if isinstance(state, str):
        try:
            return State.Value(state.upper())
        except ValueError:
            raise ValueError(f"unknown job state {state!r}; one of "
                             f"{', '.join(n.lower() for n in State.keys()[1:])}") from None
    return int(state)


class JobStore(abc.ABC):
    """What the service, the executors' supervisors and the CLI need from a job store."""

    @abc.abstractmethod
    def create(self, request: training_pb2.TrainingRequest, job_id: str | None = None) -> Job:
        """A new QUEUED job for `request`."""

    @abc.abstractmethod
    def get(self, job_id: str, *, with_logs: bool = False) -> Job:
        """The job; raises JobNotFound."""

    @abc.abstractmethod
    def list(self, *, owner: str | None = None, workflow: str | None = None,
             state: int | str | None = None, team: str | None = None, limit: int = 100) -> list[Job]:
        """Jobs matching every given filter, newest first (`team`: the request's metadata.team)."""

    @abc.abstractmethod
    def transition(self, job_id: str, to: int, reason: str = "", *,
                   result: job_pb2.JobResult | None = None, worker: str | None = None) -> Job:
        """Move a job to state `to` if TRANSITIONS allows it (else InvalidTransition).

        With `worker`, the move only happens while that worker holds the job's lease (else
        LeaseLost): a worker that was presumed dead must not finish a job someone else has
        taken over.
        """

    @abc.abstractmethod
    def claim(self, worker: str, lease_seconds: float, executor: str = "") -> Job | None:
        """Atomically take the oldest QUEUED job: RUNNING, attempt + 1, leased to `worker`."""

    @abc.abstractmethod
    def heartbeat(self, job_id: str, worker: str, lease_seconds: float) -> Job:
        """Extend the lease; raises LeaseLost. The returned job shows cancel_requested."""

    @abc.abstractmethod
    def set_executor_ref(self, job_id: str, worker: str, executor: str, ref: str) -> Job:
        """Record where the job runs (e.g. a Kubernetes Job name) so it can be re-attached."""

    @abc.abstractmethod
    def request_cancel(self, job_id: str, reason: str = "cancelled") -> Job:
        """Cancel: a QUEUED job at once; a RUNNING one is flagged for its worker to stop."""

    @abc.abstractmethod
    def recover(self, worker: str, lease_seconds: float) -> list[Job]:
        """Take over RUNNING jobs whose lease ran out, or that `worker` held before a restart.

        The caller must re-attach to each (its executor_ref) or `requeue` it.
        """

    @abc.abstractmethod
    def requeue(self, job_id: str, worker: str, reason: str, max_attempts: int) -> Job:
        """RUNNING -> QUEUED for another run, or FAILED once `max_attempts` runs were lost."""

    @abc.abstractmethod
    def set_result(self, job_id: str, result: job_pb2.JobResult) -> Job:
        """Store the result of a RUNNING or SUCCEEDED job without changing its state."""

    @abc.abstractmethod
    def append_logs(self, job_id: str, text: str) -> int:
        """Append a chunk of log text; returns its position for read_logs(after=...)."""

    @abc.abstractmethod
    def read_logs(self, job_id: str, after: int = 0) -> tuple[str, int]:
        """Log text appended after position `after`, and the position to continue from."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_transition(job_id: str, current: int, wanted: int,
                     allowed: Iterable[int] | None = None) -> None:
    if wanted not in (TRANSITIONS[current] if allowed is None else allowed):
        raise InvalidTransition(job_id, current, wanted)

