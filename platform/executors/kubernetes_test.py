"""The executor's calls, against a local HTTP stand-in for the Kubernetes API server.

The stand-in (kubernetes_standin.py) records what the client sends and answers with canned
API objects, including a pod stuck in ImagePullBackOff and one that is Unschedulable. Images
are resolved against a real registry (Debian's docker-registry) where that is the point, and
against a fixed table of deployed tags elsewhere.
"""

import dataclasses
import datetime as dt
import itertools

import kubernetes_validate
import pytest
from kubernetes import client

from roundhouse.platform.api import job_pb2, training_pb2
from roundhouse.platform.executors import kubernetes as k8s
from roundhouse.platform.executors import kubernetes_manifest as m
from roundhouse.platform.images.registry import ImageNotFound
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
from roundhouse.testing.registry_server import push_image, registry  # noqa: F401  (registry: a fixture)

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
Job = job_pb2.Job
SHA = "3f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e"
MAIN_DIGEST = "sha256:" + "4d" * 32


@dataclasses.dataclass
class Deployed:
    """An ImageResolver over a fixed table of deployed tags; keeps the references asked."""

    digests: dict
    asked: list = dataclasses.field(default_factory=list)

    def digest(self, reference):
        self.asked.append(reference)
        if reference not in self.digests:
            raise ImageNotFound(f"image {reference} not found")
        return self.digests[reference]


@pytest.fixture
def api():
    with running() as (stand_in, api_client):
        yield stand_in, api_client
        assert stand_in.unexpected == [], "the executor made calls nobody expected"


def executor(api_client, resolver=None, **config):
    resolver = resolver or Deployed({"localhost:5000/roundhouse/fraud:main": MAIN_DIGEST})
    return k8s.KubernetesExecutor(m.KubernetesConfig(namespace=NS, **config), api_client,
                                  resolver=resolver, now=lambda: NOW)


def request(commit=""):
    r = training_pb2.TrainingRequest(workflow="fraud", commit=commit)
    r.metadata.owner, r.metadata.team = "ana@example.com", "fraud"
    r.data.parquet.uri = "s3://training/fraud/"
    r.data.parquet.label_columns.append("is_fraud")
    r.holdout.random.fraction = 0.2
    r.resources.type = training_pb2.Resources.GPU
    r.resources.gpu = 2
    return r


def test_submit_posts_a_valid_job_manifest_running_the_commits_image_by_digest(api, registry):
    stand_in, api_client = api
    name = m.job_name("j1")
    pushed = push_image(registry, "roundhouse/fraud", [SHA, "main"], layer=b"built from SHA")
    # main moves on; the request asked for SHA's image.
    push_image(registry, "roundhouse/fraud", ["main"], layer=b"built later")
    stand_in.routes[("POST", JOBS)] = (201, lambda req: req.body)
    # No resolver given: the executor asks config's registry.
    ex = k8s.KubernetesExecutor(m.KubernetesConfig(namespace=NS, registry=registry,
                                                   registry_insecure=True), api_client)
    assert ex.submit("j1", request(commit=SHA)) == name
    (post,) = stand_in.requests
    assert (post.method, post.path) == ("POST", JOBS)
    body = post.body
    kubernetes_validate.validate(body, "1.37.0", strict=True)
    assert body["kind"] == "Job" and body["metadata"]["name"] == name
    pod = body["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == f"{registry}/roundhouse/fraud@{pushed}"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ROUNDHOUSE_IMAGE"] == f"{registry}/roundhouse/fraud@{pushed}"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert body["metadata"]["labels"]["roundhouse.io/owner"] == "ana-example.com"
    assert body["metadata"]["annotations"]["roundhouse.io/owner"] == "ana@example.com"


def test_submit_of_a_commit_never_deployed_creates_no_job(api, registry):
    stand_in, api_client = api
    push_image(registry, "roundhouse/fraud", ["main"])
    ex = k8s.KubernetesExecutor(m.KubernetesConfig(namespace=NS, registry=registry,
                                                   registry_insecure=True), api_client)
    undeployed = "0" * 40
    with pytest.raises(ImageNotFound, match=f"image {registry}/roundhouse/fraud:{undeployed} "
                                            "not found.*tools/deploy"):
        ex.submit("j1", request(commit=undeployed))
    assert stand_in.requests == []


def test_submit_without_a_commit_runs_main_and_an_explicit_image_wins(api):
    stand_in, api_client = api
    stand_in.routes[("POST", JOBS)] = (201, lambda req: req.body)
    deployed = Deployed({"localhost:5000/roundhouse/fraud:main": MAIN_DIGEST})
    ex = executor(api_client, resolver=deployed)
    ex.submit("j1", request())
    ex.submit("j2", request(commit=SHA), image="localhost:5000/roundhouse/fraud:debug")
    assert deployed.asked == ["localhost:5000/roundhouse/fraud:main"]
    images = [r.body["spec"]["template"]["spec"]["containers"][0]["image"]
              for r in stand_in.requests]
    assert images == [f"localhost:5000/roundhouse/fraud@{MAIN_DIGEST}",
                      "localhost:5000/roundhouse/fraud:debug"]
    with pytest.raises(ValueError, match="commit: 'HEAD' is not a full git SHA"):
        ex.submit("j3", request(commit="HEAD"))
    assert len(stand_in.requests) == 2 and len(deployed.asked) == 1


def test_submit_again_adopts_the_job_it_made_and_refuses_a_stranger(api):
    stand_in, api_client = api
    name = m.job_name("j1")
    stand_in.routes[("POST", JOBS)] = (409, status_obj(409, "AlreadyExists", "exists"))
    stand_in.routes[("GET", f"{JOBS}/{name}")] = [(200, job_obj(name, job_id="j1")),
                                                  (200, job_obj(name, job_id="other"))]
    assert executor(api_client).submit("j1", request()) == name
    with pytest.raises(RuntimeError, match="belongs to another training job"):
        executor(api_client).submit("j1", request())
    assert stand_in.calls() == [("POST", JOBS), ("GET", f"{JOBS}/{name}")] * 2


def test_status_of_finished_jobs(api):
    stand_in, api_client = api
    ex = executor(api_client)
    stand_in.routes[("GET", f"{JOBS}/done/status")] = (200, job_obj("done", [
        condition("SuccessCriteriaMet"), condition("Complete")]))
    assert ex.status("done") == k8s.ExecutionStatus(Job.SUCCEEDED)

    stand_in.routes[("GET", f"{JOBS}/late/status")] = (200, job_obj("late", [
        condition("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")]))
    stand_in.routes[("GET", PODS)] = (200, pod_list())
    late = ex.status("late")
    assert late.state == Job.FAILED and "activeDeadlineSeconds (3600s)" in late.reason

    crashed_pod = pod_obj("crash-1", "Failed", {"terminated": {
        "exitCode": 1, "reason": "Error",
        "message": "Traceback...\nValueError: label column 'is_fraud' is constant\n"}})
    stand_in.routes[("GET", f"{JOBS}/crash/status")] = (200, job_obj("crash", [
        condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]))
    stand_in.routes[("GET", PODS)] = (200, pod_list(crashed_pod))
    crash = ex.status("crash")
    assert crash.state == Job.FAILED
    assert crash.reason == ("the training container failed: Error, exit code 1; last output: "
                            "ValueError: label column 'is_fraud' is constant")
    assert stand_in.requests[-1].query == {"labelSelector": "job-name=crash"}

    stand_in.routes[("GET", f"{JOBS}/gone/status")] = (404, status_obj(404, "NotFound", "nf"))
    gone = ex.status("gone")
    assert gone.state == Job.FAILED and "no longer exists" in gone.reason and gone.lost
    assert not crash.lost and not late.lost


def test_image_pull_backoff_is_a_failure_with_the_image_named(api):
    stand_in, api_client = api
    stand_in.routes[("GET", f"{JOBS}/img/status")] = (200, job_obj("img", active=1))
    stand_in.routes[("GET", PODS)] = (200, pod_list(pod_obj("img-x", "Pending", {"waiting": {
        "reason": "ImagePullBackOff",
        "message": 'Back-off pulling image "localhost:5000/roundhouse/fraud:latest"'}})))
    stand_in.routes[("DELETE", f"{JOBS}/img")] = (200, status_obj(200, "", ""))
    status = executor(api_client).status("img")
    assert status.state == Job.FAILED and not status.lost
    assert status.reason.startswith(
        "image localhost:5000/roundhouse/fraud:latest could not be pulled (ImagePullBackOff)")
    # The stuck Job is deleted so its pod stops holding the node's resources.
    assert stand_in.calls() == [("GET", f"{JOBS}/img/status"), ("GET", PODS),
                                ("DELETE", f"{JOBS}/img")]


@pytest.mark.parametrize("minutes_ago, state", [(20, Job.FAILED), (1, Job.RUNNING)])
def test_unschedulable_pod_fails_after_the_grace_period(api, minutes_ago, state):
    stand_in, api_client = api
    since = (NOW - dt.timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    stand_in.routes[("GET", f"{JOBS}/gpu/status")] = (200, job_obj("gpu", active=1))
    stand_in.routes[("GET", PODS)] = (200, pod_list(pod_obj("gpu-x", "Pending", conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "lastTransitionTime": since,
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}])))
    stand_in.routes[("DELETE", f"{JOBS}/gpu")] = (200, status_obj(200, "", ""))
    status = executor(api_client, unschedulable_grace_seconds=600).status("gpu")
    assert status.state == state
    assert (("DELETE", f"{JOBS}/gpu") in stand_in.calls()) == (state == Job.FAILED)
    assert "pod gpu-x cannot be scheduled: 0/3 nodes are available: 3 Insufficient " \
           "nvidia.com/gpu." in status.reason
    if state == Job.RUNNING:
        assert status.reason.startswith("waiting: ")
    else:
        assert status.reason.endswith("(for 1200s)")


def test_running_pod_is_running(api):
    stand_in, api_client = api
    stand_in.routes[("GET", f"{JOBS}/ok/status")] = (200, job_obj("ok", active=1))
    stand_in.routes[("GET", PODS)] = (200, pod_list(pod_obj("ok-x", "Running", {
        "running": {"startedAt": "2025-03-01T11:59:00Z"}})))
    assert executor(api_client).status("ok") == k8s.ExecutionStatus(Job.RUNNING, "")


def test_logs_are_copied_from_every_pod_oldest_first(api):
    stand_in, api_client = api
    stand_in.routes[("GET", PODS)] = (200, pod_list(
        pod_obj("run-b", created="2025-03-01T11:30:00Z"),
        pod_obj("run-a", created="2025-03-01T11:00:00Z")))
    stand_in.routes[("GET", f"{PODS}/run-a/log")] = (200, "loading data\ncrashed\n")
    stand_in.routes[("GET", f"{PODS}/run-b/log")] = (
        400, status_obj(400, "BadRequest", 'container "train" is waiting to start'))
    text = executor(api_client).logs("run")
    assert text == ("loading data\ncrashed\n"
                    "==> retried in pod run-b <==\n(no log: 400 Bad Request)\n")
    log_calls = [r for r in stand_in.requests if r.path.endswith("/log")]
    assert [r.query for r in log_calls] == [{"container": "train"}] * 2


def test_cancel_deletes_the_job_with_its_pods(api):
    stand_in, api_client = api
    stand_in.routes[("DELETE", f"{JOBS}/a")] = (200, status_obj(200, "", ""))
    stand_in.routes[("DELETE", f"{JOBS}/gone")] = (404, status_obj(404, "NotFound", "nf"))
    stand_in.routes[("DELETE", f"{JOBS}/broken")] = (500, status_obj(500, "InternalError", "x"))
    ex = executor(api_client)
    ex.cancel("a")
    ex.cancel("gone")  # already deleted: fine
    with pytest.raises(client.ApiException):
        ex.cancel("broken")
    first = stand_in.requests[0]
    assert (first.method, first.path) == ("DELETE", f"{JOBS}/a")
    policy = first.query.get("propagationPolicy") or (first.body or {}).get("propagationPolicy")
    assert policy == "Foreground"


def job_list(rv, *names):
    return {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {"resourceVersion": rv},
            "items": [job_obj(n) for n in names]}


def event(type_, name, rv):
    obj = job_obj(name)
    obj["metadata"]["resourceVersion"] = rv
    return {"type": type_, "object": obj}


def test_watcher_relists_after_an_expired_watch_and_a_dropped_connection(api):
    stand_in, api_client = api
    stand_in.routes[("GET", JOBS)] = [(200, job_list("100", "a", "b")),
                                      (200, job_list("200", "a", "b", "c")),
                                      (200, job_list("300", "c"))]
    gone = {"type": "ERROR", "object": status_obj(410, "Expired", "too old resource version")}
    stand_in.routes[("GET", JOBS + "?watch")] = [
        ("stream", [event("ADDED", "c", "101"), event("MODIFIED", "a", "102"), gone], False),
        # The connection drops before the server says anything: the executor cannot know
        # what it missed, so it lists again.
        ("stream", [], True),
    ]
    watcher = k8s.JobWatcher(api_client, NS, watch_timeout_seconds=30, sleep=lambda s: None)
    # Stop after the third list, before the watcher opens another watch.
    seen = list(itertools.islice(watcher.changes(), 8))
    assert seen == ["a", "b",  # first list
                    "c", "a",  # watch, then 410 Gone
                    "a", "b", "c",  # second list; its watch drops
                    "c"]  # third list
    assert watcher.relists == 3
    lists = [r.query for r in stand_in.requests if "watch" not in r.query]
    watches = [r.query for r in stand_in.requests if "watch" in r.query]
    assert all(q["labelSelector"] == "app.kubernetes.io/managed-by=roundhouse" for q in lists)
    assert [w["resourceVersion"] for w in watches] == ["100", "200"]
    assert all(w["allowWatchBookmarks"] == "true" for w in watches)
