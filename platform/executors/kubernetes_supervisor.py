"""Keeps the job store in step with Kubernetes Jobs: the job store is the truth.

A service claims a job from the store, `start`s it here (submit + record the Kubernetes Job
name on the job), then calls `reconcile` whenever the JobWatcher hints that the Job changed,
and every so often regardless (the lease needs the heartbeat anyway, and a hint can be lost).
`reconcile` copies the logs into the store when the Job ends, before its time-to-live removes
the pods, and deletes Jobs that failed for a pod-level reason (unschedulable, image pull) so
they stop trying. After a service restart, `recover` re-attaches to the Jobs still running.

The workflow container ends by printing one JSON line with model_id, git_sha and metrics
(see workflows/fraud/train_main.py); that line is the job's result.
"""

from __future__ import annotations

import json
import logging

from roundhouse.platform.api import job_pb2
from roundhouse.platform.executors.kubernetes import KubernetesExecutor
from roundhouse.platform.jobs.store import JobStore

log = logging.getLogger(__name__)

Job = job_pb2.Job
EXECUTOR = "kubernetes"


def result_from_logs(text: str) -> job_pb2.JobResult | None:
    """The last log line that is a JSON object with a model_id, as a JobResult."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not (line.startswith("{") and line.endswith("}")):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("model_id"):
            result = job_pb2.JobResult(model_id=str(data["model_id"]),
                                       git_sha=str(data.get("git_sha") or ""))
            for name, value in (data.get("metrics") or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    result.metrics[name] = float(value)
            return result
    return None


class KubernetesSupervisor:
    def __init__(self, store: JobStore, executor: KubernetesExecutor, worker: str,
                 lease_seconds: float = 60.0, max_attempts: int = 3):
        self.store = store
        self.executor = executor
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts

    def start(self, job: Job) -> Job:
        """Submit a job this worker has claimed, and record where it runs."""
        ref = self.executor.submit(job.id, job.request)
        return self.store.set_executor_ref(job.id, self.worker, EXECUTOR, ref)

    def reconcile(self, job_id: str) -> Job:
        """Look at the Kubernetes Job once and move the training job on if it ended.

        Also renews this worker's lease; raises LeaseLost if another worker took the job.
        """
        job = self.store.heartbeat(job_id, self.worker, self.lease_seconds)
        if not job.executor_ref:
            # Claimed, then the service died before submitting: submit now (idempotent).
            job = self.start(job)
        ref = job.executor_ref
        if job.cancel_requested:
            self.executor.cancel(ref)
            self._copy_logs(job.id, ref)
            return self.store.transition(job.id, Job.CANCELLED, job.reason or "cancelled",
                                         worker=self.worker)
        status = self.executor.status(ref)
        if not status.finished:
            return job
        self._copy_logs(job.id, ref)
        if status.state == Job.SUCCEEDED:
            result = result_from_logs(self.store.read_logs(job.id)[0])
            if result is None:
                return self.store.transition(
                    job.id, Job.FAILED, "the workflow finished without reporting a model "
                                        "(no JSON result line in its log)", worker=self.worker)
            return self.store.transition(job.id, Job.SUCCEEDED, result=result, worker=self.worker)
        # A Job stuck on scheduling or an image pull would keep trying: stop it.
        self.executor.cancel(ref)
        return self.store.transition(job.id, Job.FAILED, status.reason, worker=self.worker)

    def recover(self) -> list[Job]:
        """After a restart: take over orphaned jobs and re-attach to their Kubernetes Jobs.

        A job claimed for this executor but never submitted is submitted now. Jobs of another
        executor cannot be re-attached from here and are re-queued to run again; a service
        running several executors dispatches on job.executor itself and calls reconcile.
        """
        jobs = []
        for job in self.store.recover(self.worker, self.lease_seconds):
            if job.executor == EXECUTOR:
                log.info("re-attaching job %s (kubernetes job %r)", job.id, job.executor_ref)
                jobs.append(self.reconcile(job.id))
            else:
                jobs.append(self.store.requeue(job.id, self.worker,
                                               f"its worker stopped; the {job.executor or 'unknown'}"
                                               " run cannot be re-attached here",
                                               self.max_attempts))
        return jobs

    def _copy_logs(self, job_id: str, ref: str) -> None:
        text = self.executor.logs(ref)
        if text:
            self.store.append_logs(job_id, text)
