"""What an executor reports about one run, the same for every executor."""

from __future__ import annotations

import dataclasses

from roundhouse.platform.api import job_pb2

Job = job_pb2.Job


@dataclasses.dataclass(frozen=True)
class ExecutionStatus:
    """RUNNING (pending counts as running), SUCCEEDED or FAILED, with a reason.

    `lost` means the run vanished without a known outcome (a Kubernetes Job deleted, a local
    process gone without an exit code), so the job may be run again.
    """

    state: int
    reason: str = ""
    lost: bool = False

    @property
    def finished(self) -> bool:
        return self.state in (Job.SUCCEEDED, Job.FAILED, Job.CANCELLED)
