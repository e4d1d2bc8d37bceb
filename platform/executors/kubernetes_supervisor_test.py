"""The supervisor keeps a real job store (SQLite) in step with a stand-in Kubernetes API."""

import json

import pytest

from roundhouse.platform.api import job_pb2, training_pb2
from roundhouse.platform.executors import kubernetes_manifest as m
from roundhouse.platform.executors.kubernetes import KubernetesExecutor
from roundhouse.platform.executors.kubernetes_standin import (
    NS,
    condition,
    job_obj,
    pod_list,
    pod_obj,
    running,
    status_obj,
)
from roundhouse.platform.executors.kubernetes_supervisor import (
    KubernetesSupervisor,
    result_from_logs,
)
from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.platform.jobs.store import LeaseLost

Job = job_pb2.Job
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
PODS = f"/api/v1/namespaces/{NS}/pods"
RESULT_LINE = json.dumps({"model_id": "m-7f3a", "git_sha": "abc123", "git_dirty": False,
                          "metrics": {"auc": 0.91, "logloss": 0.2}, "model_path": "/x"})


class Clock:
    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def world(tmp_path):
    """(stand-in, store, clock, make_supervisor(worker))."""
    clock = Clock()
    store = SqliteJobStore(str(tmp_path / "jobs.sqlite"), clock=clock)
    with running() as (stand_in, api_client):
        executor = KubernetesExecutor(m.KubernetesConfig(namespace=NS), api_client)

        def supervisor(worker="svc-a"):
            return KubernetesSupervisor(store, executor, worker, lease_seconds=60)

        stand_in.routes[("POST", JOBS)] = (201, lambda req: req.body)
        yield stand_in, store, clock, supervisor
        assert stand_in.unexpected == []
    store.close()


def request():
    r = training_pb2.TrainingRequest(workflow="fraud")
    r.metadata.owner = "ana"
    r.data.parquet.uri = "s3://training/fraud/"
    r.data.parquet.label_columns.append("is_fraud")
    r.holdout.random.fraction = 0.2
    return r


def claimed_and_started(store, sup):
    job = store.create(request())
    assert store.claim(sup.worker, 60, executor="kubernetes").id == job.id
    return sup.start(store.get(job.id))


def route_finished(stand_in, name, log_text):
    stand_in.routes[("GET", f"{JOBS}/{name}/status")] = (200, job_obj(name, [
        condition("Complete")]))
    stand_in.routes[("GET", PODS)] = (200, pod_list(pod_obj(f"{name}-p", "Succeeded")))
    stand_in.routes[("GET", f"{PODS}/{name}-p/log")] = (200, log_text)


def test_a_job_runs_to_success_with_its_result_and_logs(world):
    stand_in, store, _, supervisor = world
    sup = supervisor()
    job = claimed_and_started(store, sup)
    name = m.job_name(job.id)
    assert job.executor == "kubernetes" and job.executor_ref == name

    stand_in.routes[("GET", f"{JOBS}/{name}/status")] = (200, job_obj(name, active=1))
    stand_in.routes[("GET", PODS)] = (200, pod_list(pod_obj(f"{name}-p", "Running", {
        "running": {"startedAt": "2025-03-01T11:59:00Z"}})))
    assert sup.reconcile(job.id).state == Job.RUNNING

    route_finished(stand_in, name, f"[train] loading data\n{RESULT_LINE}\n")
    done = sup.reconcile(job.id)
    assert done.state == Job.SUCCEEDED
    assert done.result.model_id == "m-7f3a" and done.result.git_sha == "abc123"
    assert dict(done.result.metrics) == {"auc": 0.91, "logloss": 0.2}
    assert store.get(job.id, with_logs=True).logs.startswith("[train] loading data\n")
    assert [c for c in stand_in.calls() if c[0] == "POST"] == [("POST", JOBS)]


def test_image_pull_failure_fails_the_job_and_deletes_the_kubernetes_job(world):
    stand_in, store, _, supervisor = world
    sup = supervisor()
    job = claimed_and_started(store, sup)
    name = job.executor_ref
    stand_in.routes[("GET", f"{JOBS}/{name}/status")] = (200, job_obj(name, active=1))
    stand_in.routes[("GET", PODS)] = (200, pod_list(pod_obj(f"{name}-p", "Pending", {
        "waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}})))
    stand_in.routes[("GET", f"{PODS}/{name}-p/log")] = (
        400, status_obj(400, "BadRequest", "container is waiting to start"))
    stand_in.routes[("DELETE", f"{JOBS}/{name}")] = (200, status_obj(200, "", ""))
    failed = sup.reconcile(job.id)
    assert failed.state == Job.FAILED
    assert "could not be pulled (ImagePullBackOff)" in failed.reason
    assert ("DELETE", f"{JOBS}/{name}") in stand_in.calls()


def test_success_without_a_result_line_is_a_failure(world):
    stand_in, store, _, supervisor = world
    sup = supervisor()
    job = claimed_and_started(store, sup)
    route_finished(stand_in, job.executor_ref, "done, I think\n")
    failed = sup.reconcile(job.id)
    assert failed.state == Job.FAILED and "without reporting a model" in failed.reason


def test_cancel_deletes_the_kubernetes_job_and_keeps_the_logs(world):
    stand_in, store, _, supervisor = world
    sup = supervisor()
    job = claimed_and_started(store, sup)
    name = job.executor_ref
    store.request_cancel(job.id, "cancelled by ana")
    stand_in.routes[("DELETE", f"{JOBS}/{name}")] = (200, status_obj(200, "", ""))
    stand_in.routes[("GET", PODS)] = (200, pod_list(pod_obj(f"{name}-p", "Running")))
    stand_in.routes[("GET", f"{PODS}/{name}-p/log")] = (200, "epoch 1\n")
    cancelled = sup.reconcile(job.id)
    assert cancelled.state == Job.CANCELLED and cancelled.reason == "cancelled by ana"
    assert store.read_logs(job.id)[0] == "epoch 1\n"


def test_after_a_crash_another_service_reattaches_without_resubmitting(world):
    stand_in, store, clock, supervisor = world
    dead = supervisor("svc-a")
    attached = claimed_and_started(store, dead)
    # svc-a also claimed a second job but died before submitting it.
    unsubmitted = store.create(request())
    store.claim("svc-a", 60, executor="kubernetes")

    clock.now += 120  # svc-a's leases have run out
    route_finished(stand_in, attached.executor_ref, RESULT_LINE + "\n")
    fresh = m.job_name(unsubmitted.id)
    stand_in.routes[("GET", f"{JOBS}/{fresh}/status")] = (200, job_obj(fresh, active=1))
    stand_in.routes[("GET", PODS)] = (200, lambda req: pod_list(
        pod_obj(f"{attached.executor_ref}-p", "Succeeded")
        if req.query["labelSelector"] == f"job-name={attached.executor_ref}"
        else pod_obj(f"{fresh}-p", "Pending")))
    posts_before = stand_in.calls().count(("POST", JOBS))
    recovered = {j.id: j for j in supervisor("svc-b").recover()}
    assert recovered[attached.id].state == Job.SUCCEEDED
    assert recovered[attached.id].result.model_id == "m-7f3a"
    # The unsubmitted one is submitted now, by its new owner.
    assert recovered[unsubmitted.id].state == Job.RUNNING
    assert recovered[unsubmitted.id].executor_ref == m.job_name(unsubmitted.id)
    assert stand_in.calls().count(("POST", JOBS)) == posts_before + 1
    with pytest.raises(LeaseLost):
        dead.reconcile(unsubmitted.id)


def test_result_from_logs_takes_the_last_result_line():
    text = "\n".join(['{"model_id": "old"}', "{not json}", RESULT_LINE, "bye"])
    assert result_from_logs(text).model_id == "m-7f3a"
    assert result_from_logs('{"metrics": {}}\nplain') is None
