"""The training service's worker: moves jobs from the job store through an executor.

Each step it renews the lease of every job it runs, copies new log output into the job store,
stops what was cancelled, records what finished, and claims queued jobs while it has room.
The job store is the truth: on start the worker first recovers RUNNING jobs whose lease ran
out (or that it held before a restart) and re-attaches to their executions, or queues them
to run again when the execution is gone. So a killed service loses no job.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable

from roundhouse.platform.api import job_pb2
from roundhouse.platform.jobs.store import JobNotFound, JobStore, LeaseLost

log = logging.getLogger(__name__)
Job = job_pb2.Job


def parse_summary(output: str) -> job_pb2.JobResult | None:
    """The workflow's closing JSON line ({"model_id", "git_sha", "metrics", ...}), if any."""
    for line in reversed(output.strip().splitlines()):
        try:
            summary = json.loads(line)
        except ValueError:
            continue
        if isinstance(summary, dict) and summary.get("model_id"):
            result = job_pb2.JobResult(model_id=summary["model_id"], git_sha=summary.get("git_sha") or "")
            result.metrics.update({k: float(v) for k, v in (summary.get("metrics") or {}).items()})
            return result
    return None


class Worker:
    """`jobs` may be any store with the JobStore methods the worker calls (claim, heartbeat,
    transition...), such as platform/evaluation's EvaluationStore; `parse_result` reads the
    result of a finished run from its output (default: the training summary line)."""

    def __init__(self, jobs: JobStore, executor, worker_id: str, *, lease_seconds: float = 30.0,
                 capacity: int = 2, max_attempts: int = 3,
                 parse_result: Callable[[str], Any] = parse_summary):
        self.jobs = jobs
        self.parse_result = parse_result
        self.executor = executor
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.capacity = capacity
        self.max_attempts = max_attempts
        self.running: dict[str, str] = {}  # job id -> executor ref
        self.copied: dict[str, int] = {}  # job id -> characters of output already in the store

    def recover(self) -> None:
        for job in self.jobs.recover(self.worker_id, self.lease_seconds):
            if job.executor_ref and job.executor == self.executor.name:
                log.info("re-attaching to job %s at %s", job.id, job.executor_ref)
                self.running[job.id] = job.executor_ref
                self.copied[job.id] = len(self.jobs.read_logs(job.id)[0])
            else:
                self.jobs.requeue(job.id, self.worker_id, "its run was lost before it started",
                                  self.max_attempts)

    def step(self) -> None:
        for job_id, ref in list(self.running.items()):
            try:
                self._track(job_id, ref)
            except (LeaseLost, JobNotFound) as e:
                log.warning("dropping job %s: %s", job_id, e)
                self._forget(job_id)
        while len(self.running) < self.capacity:
            job = self.jobs.claim(self.worker_id, self.lease_seconds, self.executor.name)
            if job is None:
                break
            try:
                ref = self.executor.submit(job.id, job.request)
            except Exception as e:  # a job that cannot start fails with the reason, visibly
                log.exception("job %s could not start", job.id)
                self.jobs.transition(job.id, Job.FAILED, f"could not start: {e}", worker=self.worker_id)
                continue
            self.jobs.set_executor_ref(job.id, self.worker_id, self.executor.name, ref)
            self.running[job.id] = ref
            self.copied[job.id] = 0
            log.info("job %s started at %s", job.id, ref)

    def _copy_logs(self, job_id, ref) -> str:
        output = self.executor.logs(ref)
        new = output[self.copied.get(job_id, 0):]
        if new:
            self.jobs.append_logs(job_id, new)
            self.copied[job_id] = len(output)
        return output

    def _track(self, job_id, ref) -> None:
        job = self.jobs.heartbeat(job_id, self.worker_id, self.lease_seconds)
        if job.cancel_requested:
            self.executor.cancel(ref)
            self._copy_logs(job_id, ref)
            self.jobs.transition(job_id, Job.CANCELLED, job.reason or "cancelled", worker=self.worker_id)
            self._forget(job_id)
            return
        status = self.executor.status(ref)
        output = self._copy_logs(job_id, ref)
        if not status.finished:
            return
        if status.state == Job.SUCCEEDED:
            result = self.parse_result(output)
            if result is None:
                self.jobs.transition(job_id, Job.FAILED, "the workflow ended without printing its result",
                                     worker=self.worker_id)
            else:
                self.jobs.transition(job_id, Job.SUCCEEDED, result=result, worker=self.worker_id)
        elif status.lost:
            self.jobs.requeue(job_id, self.worker_id, status.reason, self.max_attempts)
        else:
            self.jobs.transition(job_id, Job.FAILED, status.reason, worker=self.worker_id)
        self._forget(job_id)

    def _forget(self, job_id) -> None:
        self.running.pop(job_id, None)
        self.copied.pop(job_id, None)

    def run(self, stop: threading.Event, poll_seconds: float = 0.5) -> None:
        self.recover()
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # keep serving; the job store keeps the truth for the next step
                log.exception("worker step failed")
            stop.wait(poll_seconds)
