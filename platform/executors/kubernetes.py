"""Run training jobs as Kubernetes Jobs through the official client.

The job store holds the truth about a training job; this executor only submits a Kubernetes
Job, reads back what happened to it, copies its logs and deletes it on cancel. Its `ref` (the
Kubernetes Job's name) is what the job store keeps so a restarted service can re-attach.
It has the executor interface platform/training's worker drives: name, submit(job_id,
request) -> ref, status(ref), logs(ref), cancel(ref).

A Job runs the image tools/deploy pushed for the request's commit (or `main`), by the digest
the registry gives for that tag at submit time. A commit that was never deployed fails the
submit with ImageNotFound, so the job fails at once with the reason instead of waiting for
Kubernetes to give up pulling.

A Job whose pod cannot be scheduled, or whose image cannot be pulled, never fails by itself:
Kubernetes keeps it pending. status() looks at the pods, reports those as failures with the
reason (so a job is not left "running" forever) and deletes the stuck Job.

Watching is only a hint of when to look again: JobWatcher re-lists after a dropped or
expired watch, and whoever consumes it should still poll status() now and then.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from typing import Callable, Iterator, Mapping

import urllib3
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from roundhouse.platform.api import job_pb2, training_pb2
from roundhouse.platform.images.registry import (
    Credentials,
    ImageResolver,
    RegistryClient,
)
from roundhouse.platform.executors.status import ExecutionStatus
from roundhouse.platform.executors import kubernetes_manifest as manifest

log = logging.getLogger(__name__)

Job = job_pb2.Job

# Waiting reasons that mean the image will not arrive without someone changing something.
IMAGE_PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                                 "ErrImageNeverPull", "RegistryUnavailable"})
# Waiting reasons that mean the pod's own configuration is broken (a missing secret...).
CONFIG_FAILURES = frozenset({"CreateContainerConfigError", "CreateContainerError"})


def registry_resolver(config: manifest.KubernetesConfig,
                      environ: Mapping[str, str]) -> RegistryClient:
    """The resolver for config's registry, with the credentials its env var names point at."""
    return RegistryClient(
        insecure=config.registry_insecure,
        credentials=Credentials.from_env(config.registry_username_env,
                                         config.registry_password_env, environ))


class KubernetesExecutor:
    name = "kubernetes"

    def __init__(self, config: manifest.KubernetesConfig, api_client: client.ApiClient,
                 resolver: ImageResolver | None = None,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)):
        self.config = config
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._resolver = resolver or registry_resolver(config, os.environ)
        self._now = now

    # ---- submit ----

    def submit(self, job_id: str, request: training_pb2.TrainingRequest,
               image: str | None = None) -> str:
        """Create the Kubernetes Job; returns its name, the ref to keep in the job store.

        The Job runs `image` when given, else the request's deployed image by digest; an
        image never deployed raises ImageNotFound.

        Idempotent: after a crash between creating the Job and recording its name, submitting
        again finds the Job already there and adopts it, if it was made for this job id.
        """
        body = manifest.build_job(job_id, request, self.config,
                                  image or self._image_by_digest(request))
        name = body.metadata.name
        try:
            self._batch.create_namespaced_job(self.config.namespace, body)
            log.info("submitted kubernetes job %s for training job %s", name, job_id)
        except ApiException as exc:
            if exc.status != 409:
                raise
            existing = self._batch.read_namespaced_job(name, self.config.namespace)
            annotations = existing.metadata.annotations or {}
            if annotations.get(manifest.LABEL_PREFIX + "job-id") != job_id:
                raise RuntimeError(f"kubernetes job {name} exists but belongs to another "
                                   f"training job ({annotations.get('roundhouse.io/job-id')!r})"
                                   ) from exc
            log.info("kubernetes job %s already exists; adopting it", name)
        return name

    def _image_by_digest(self, request: training_pb2.TrainingRequest) -> str:
        tagged = manifest.image_reference(request, self.config)
        digest = self._resolver.digest(tagged)
        log.info("image %s is %s", tagged, digest)
        return f"{manifest.image_repository(request.workflow, self.config)}@{digest}"

    # ---- status ----

    def status(self, ref: str) -> ExecutionStatus:
        try:
            job = self._batch.read_namespaced_job_status(ref, self.config.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return ExecutionStatus(Job.FAILED, f"kubernetes job {ref} no longer exists "
                                                   "(deleted, or removed after its time-to-live)",
                                       lost=True)
            raise
        for cond in job.status.conditions or []:
            if cond.status != "True":
                continue
            if cond.type == "Complete":
                return ExecutionStatus(Job.SUCCEEDED)
            if cond.type == "Failed":
                detail = self._pod_failure_detail(ref)
                reason = {
                    "DeadlineExceeded": f"ran longer than activeDeadlineSeconds "
                                        f"({job.spec.active_deadline_seconds}s)",
                    "BackoffLimitExceeded": "the training container failed",
                }.get(cond.reason, f"{cond.reason}: {cond.message or ''}".strip(": "))
                return ExecutionStatus(Job.FAILED, f"{reason}{': ' + detail if detail else ''}")
        return self._pending_or_running(ref)

    def _pods(self, ref: str) -> list[client.V1Pod]:
        pods = self._core.list_namespaced_pod(self.config.namespace,
                                              label_selector=f"job-name={ref}").items
        return sorted(pods, key=lambda p: (p.metadata.creation_timestamp or dt.datetime.min
                                           .replace(tzinfo=dt.timezone.utc), p.metadata.name))

    def _pending_or_running(self, ref: str) -> ExecutionStatus:
        """A Job without a final condition: running, or stuck in a way that will not resolve.

        A Job found stuck is deleted here: left alone it would keep its pod (and a pulling
        pod's node reservation, GPUs included) until activeDeadlineSeconds. Such a pod never
        ran, so there is no log to lose.
        """
        status = self._pod_level_status(ref)
        if status.state == Job.FAILED:
            log.warning("kubernetes job %s is stuck (%s); deleting it", ref, status.reason)
            self.cancel(ref)
        return status

    def _pod_level_status(self, ref: str) -> ExecutionStatus:
        pods = self._pods(ref)
        if not pods:
            return ExecutionStatus(Job.RUNNING, "waiting for the pod to be created")
        pod = pods[-1]
        for cs in (pod.status.container_statuses or []) + (pod.status.init_container_statuses or []):
            waiting = cs.state.waiting if cs.state else None
            if waiting is None:
                continue
            if waiting.reason in IMAGE_PULL_FAILURES:
                return ExecutionStatus(Job.FAILED, f"image {cs.image} could not be pulled "
                                                   f"({waiting.reason}): {waiting.message or ''}"
                                       .rstrip(": "))
            if waiting.reason in CONFIG_FAILURES:
                return ExecutionStatus(Job.FAILED, f"container {cs.name} cannot start "
                                                   f"({waiting.reason}): {waiting.message or ''}"
                                       .rstrip(": "))
        for cond in pod.status.conditions or []:
            if cond.type == "PodScheduled" and cond.status == "False" \
                    and cond.reason == "Unschedulable":
                since = cond.last_transition_time or self._now()
                waited = (self._now() - since).total_seconds()
                message = f"pod {pod.metadata.name} cannot be scheduled: {cond.message}"
                if waited >= self.config.unschedulable_grace_seconds:
                    return ExecutionStatus(Job.FAILED, f"{message} (for {waited:.0f}s)")
                return ExecutionStatus(Job.RUNNING, f"waiting: {message}")
        phase = pod.status.phase or "Pending"
        return ExecutionStatus(Job.RUNNING, "" if phase == "Running" else f"pod {phase.lower()}")

    def _pod_failure_detail(self, ref: str) -> str:
        """Why the last pod's container ended: its reason, exit code and termination message."""
        try:
            pods = self._pods(ref)
        except ApiException:
            return ""
        for pod in reversed(pods):
            for cs in pod.status.container_statuses or []:
                term = cs.state.terminated if cs.state else None
                if term is not None and term.exit_code:
                    message = (term.message or "").strip().splitlines()
                    tail = f"; last output: {message[-1]}" if message else ""
                    return f"{term.reason or 'Error'}, exit code {term.exit_code}{tail}"
        return ""

    # ---- logs ----

    def logs(self, ref: str) -> str:
        """The logs of every pod the Job ran (a retried Job has several), oldest first.

        Call it while the job runs and once more when it ends, before ttlSecondsAfterFinished
        removes the pods; the caller keeps the text in the job store. The text only grows
        between calls (a later pod's log comes after a header), so a caller can copy just
        what is new since the length it saw last.
        """
        try:
            pods = self._pods(ref)
        except ApiException as exc:
            if exc.status == 404:
                return ""
            raise
        parts = []
        for i, pod in enumerate(pods):
            try:
                text = self._core.read_namespaced_pod_log(pod.metadata.name,
                                                          self.config.namespace,
                                                          container=manifest.CONTAINER)
            except ApiException as exc:
                # A pod that never started has no log; say so rather than fail the copy.
                text = f"(no log: {exc.status} {exc.reason})\n"
            if i:
                parts.append(f"==> retried in pod {pod.metadata.name} <==\n")
            parts.append(text if text.endswith("\n") or not text else text + "\n")
        return "".join(parts)

    # ---- cancel ----

    def cancel(self, ref: str) -> None:
        """Delete the Job and, through foreground propagation, its pods. Deleting twice is fine."""
        try:
            self._batch.delete_namespaced_job(ref, self.config.namespace,
                                              propagation_policy="Foreground")
        except ApiException as exc:
            if exc.status != 404:
                raise


class JobWatcher:
    """Names of our Kubernetes Jobs that may have changed: a hint to call status() on them.

    Starts with a list (every Job is "changed"), then watches from the list's
    resourceVersion. When the watch expires (410 Gone) or the connection drops it lists again
    rather than trusting that nothing happened meanwhile.
    """

    def __init__(self, api_client: client.ApiClient, namespace: str,
                 watch_timeout_seconds: int = 300, retry_delay_seconds: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep):
        self._batch = client.BatchV1Api(api_client)
        self._namespace = namespace
        self._selector = f"{manifest.MANAGED_BY_LABEL}={manifest.MANAGED_BY}"
        self._timeout = watch_timeout_seconds
        self._retry_delay = retry_delay_seconds
        self._sleep = sleep
        self.relists = 0

    def _list(self) -> tuple[list[str], str]:
        self.relists += 1
        jobs = self._batch.list_namespaced_job(self._namespace, label_selector=self._selector)
        return [j.metadata.name for j in jobs.items], jobs.metadata.resource_version

    def changes(self) -> Iterator[str]:
        """Yields Job names forever (the caller stops iterating when it is done)."""
        resource_version = None
        while True:
            if resource_version is None:
                try:
                    names, resource_version = self._list()
                except (ApiException, urllib3.exceptions.HTTPError) as exc:
                    log.warning("listing kubernetes jobs failed (%s); retrying", exc)
                    self._sleep(self._retry_delay)
                    continue
                yield from names
            w = watch.Watch()
            try:
                for event in w.stream(self._batch.list_namespaced_job, self._namespace,
                                      label_selector=self._selector,
                                      resource_version=resource_version,
                                      timeout_seconds=self._timeout,
                                      allow_watch_bookmarks=True):
                    obj = event["object"]
                    resource_version = obj.metadata.resource_version or resource_version
                    if event["type"] != "BOOKMARK":
                        yield obj.metadata.name
                # The server ended the watch at its timeout: resume from where we are.
            except ApiException as exc:
                # 410 Gone: our resourceVersion is too old; anything may have happened since.
                log.info("kubernetes watch ended (%s %s); listing again", exc.status, exc.reason)
                resource_version = None
            except (urllib3.exceptions.HTTPError, ValueError) as exc:
                log.warning("kubernetes watch dropped (%s); listing again", exc)
                resource_version = None
                self._sleep(self._retry_delay)
            finally:
                w.stop()
