"""The worker driving Kubernetes Jobs end to end, against the API stand-in and a real image
registry (Debian's docker-registry): submit, follow, copy the pod's logs, take the result
from the workflow's JSON line, report failures."""

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
from roundhouse.testing.registry_server import push_image, registry  # noqa: F401  (registry: a fixture)

Job = job_pb2.Job
SHA = "3f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e"


def request(commit=""):
    r = training_pb2.TrainingRequest(workflow="fraud", commit=commit)
    r.metadata.owner = "ana"
    r.data.parquet.uri = "s3://training/fraud/"
    r.data.parquet.label_columns.append("is_fraud")
    r.holdout.random.fraction = 0.2
    return r


def test_jobs_run_their_image_and_bad_or_undeployed_images_fail_with_the_reason(tmp_path, registry):
    at_sha = push_image(registry, "roundhouse/fraud", [SHA], layer=b"built from SHA")
    at_main = push_image(registry, "roundhouse/fraud", ["main"], layer=b"built from main")
    jobs = SqliteJobStore(str(tmp_path / "jobs.sqlite"))
    undeployed = "0" * 40
    good, bad = jobs.create(request(commit=SHA)), jobs.create(request())
    never = jobs.create(request(commit=undeployed))
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

        config = m.KubernetesConfig(namespace=NS, registry=registry, registry_insecure=True)
        worker = Worker(jobs, k8s.KubernetesExecutor(config, api_client), "w1", capacity=3)
        for _ in range(4):
            worker.step()
        assert stand_in.unexpected == []
        posted = {r.body["metadata"]["name"]: r.body["spec"]["template"]["spec"]["containers"][0]
                  for r in stand_in.requests if r.method == "POST"}

    # Each Job runs its commit's image (main without one), by digest, and is told which.
    assert {name: c["image"] for name, c in posted.items()} == {
        good_name: f"{registry}/roundhouse/fraud@{at_sha}",
        bad_name: f"{registry}/roundhouse/fraud@{at_main}"}
    for container in posted.values():
        assert {"name": "ROUNDHOUSE_IMAGE", "value": container["image"]} in container["env"]

    done = jobs.get(good.id, with_logs=True)
    assert done.state == Job.SUCCEEDED and done.result.model_id == "m-0123"
    assert done.result.metrics["roc_auc"] == 0.97 and "[train] loading data" in done.logs
    failed = jobs.get(bad.id)
    assert failed.state == Job.FAILED and "ImagePullBackOff" in failed.reason and "nope:1" in failed.reason
    # A commit never deployed fails at once, before any Kubernetes Job exists.
    not_deployed = jobs.get(never.id)
    assert not_deployed.state == Job.FAILED
    assert not_deployed.reason == (f"could not start: image {registry}/roundhouse/fraud:{undeployed} "
                                   f"not found: nothing was deployed under the tag '{undeployed}'; "
                                   "deploy that commit first with tools/deploy")
