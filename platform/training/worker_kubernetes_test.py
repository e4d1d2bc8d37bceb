"""The worker driving Kubernetes Jobs end to end, against the API stand-in: submit, follow,
copy the pod's logs, take the result from the workflow's JSON line, report failures."""

import json

from roundhouse.platform.api import job_pb2, training_pb2
from roundhouse.platform.executors import kubernetes as k8s
from roundhouse.platform.executors import kubernetes_manifest as m
from roundhouse.platform.executors.kubernetes_standin import (
    JOBS,
    NS,
    PODS,
    condition,
    job_obj,
    pod_list,
    pod_obj,
    running,
    status_obj,
)
from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.platform.training.worker import Worker

Job = job_pb2.Job


def request():
    r = training_pb2.TrainingRequest(workflow="fraud")
    r.metadata.owner = "ana"
    r.data.parquet.uri = "s3://training/fraud/"
    r.data.parquet.label_columns.append("is_fraud")
    r.holdout.random.fraction = 0.2
    return r


def test_a_kubernetes_job_runs_to_a_result_and_a_bad_image_fails_with_its_reason(tmp_path):
    jobs = SqliteJobStore(str(tmp_path / "jobs.sqlite"))
    good, bad = jobs.create(request()), jobs.create(request())
    good_name, bad_name = m.job_name(good.id), m.job_name(bad.id)
    summary = {"model_id": "m-0123", "git_sha": "a" * 40, "git_dirty": False,
               "metrics": {"roc_auc": 0.97}, "model_path": "s3://models/m-0123/model.json"}
    with running() as (stand_in, api_client):
        stand_in.routes[("POST", JOBS)] = (201, lambda req: req.body)
        stand_in.routes[("GET", f"{JOBS}/{good_name}/status")] = [
            (200, job_obj(good_name, active=1, job_id=good.id)),
            (200, job_obj(good_name, [condition("Complete")], job_id=good.id))]
        stand_in.routes[("GET", f"{JOBS}/{bad_name}/status")] = (200, job_obj(bad_name, active=1, job_id=bad.id))
        stand_in.routes[("GET", PODS)] = (200, lambda req: pod_list(
            pod_obj(f"{good_name}-p", "Running", {"running": {"startedAt": "2025-03-01T11:00:00Z"}})
            if good_name in req.query.get("labelSelector", "") else
            pod_obj(f"{bad_name}-p", "Pending", {"waiting": {
                "reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope:1\""}})))
        stand_in.routes[("GET", f"{PODS}/{good_name}-p/log")] = (
            200, "[train] loading data\n" + json.dumps(summary) + "\n")
        stand_in.routes[("GET", f"{PODS}/{bad_name}-p/log")] = (400, status_obj(400, "BadRequest", "waiting"))
        stand_in.routes[("DELETE", f"{JOBS}/{bad_name}")] = (200, status_obj(200, "", ""))

        worker = Worker(jobs, k8s.KubernetesExecutor(m.KubernetesConfig(namespace=NS), api_client), "w1")
        for _ in range(4):
            worker.step()
        assert stand_in.unexpected == []

    done = jobs.get(good.id, with_logs=True)
    assert done.state == Job.SUCCEEDED and done.result.model_id == "m-0123"
    assert done.result.metrics["roc_auc"] == 0.97 and "[train] loading data" in done.logs
    failed = jobs.get(bad.id)
    assert failed.state == Job.FAILED and "ImagePullBackOff" in failed.reason and "nope:1" in failed.reason
