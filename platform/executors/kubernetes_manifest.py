"""One batch/v1 Job manifest per training job, built with the official client's models.

What a job gets comes from a resource table in config: each resource type (cpu, highmem,
gpu) names default requests, node selectors and tolerations; the request may ask for more
cpu, memory or GPUs. Retries are the job store's business, not Kubernetes': restartPolicy
Never and a small backoffLimit, with a deadline and a time-to-live so nothing lingers.

The image is the one tools/deploy pushed for the request's commit,
<registry>/roundhouse/<workflow>:<commit> (`main` when the request names no commit). The
executor asks the registry for that tag's digest and hands build_job the image by digest, so
every pod of the Job runs the same image even when the tag moves; the container gets it as
$ROUNDHOUSE_IMAGE too, for the model record.

Labels carry the job id, owner, team and workflow, sanitized to Kubernetes' label rules so
they can be selected on; the exact values (an owner's email, the description, the request)
go in annotations, which have no such rules.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any, Mapping

from google.protobuf import json_format
from kubernetes import client

from roundhouse.platform.api import training_pb2, validate

CONTAINER = "train"
GPU_RESOURCE = "nvidia.com/gpu"

LABEL_PREFIX = "roundhouse.io/"
JOB_ID_LABEL = LABEL_PREFIX + "job-id"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "roundhouse"


@dataclasses.dataclass(frozen=True)
class ResourceClass:
    """A row of the resource table: what a job of this type gets unless it asks for more."""

    cpu: str
    memory: str
    gpu: int = 0
    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    # CPU limits throttle a job below what the node could give it; memory limits make an
    # out-of-memory kill predictable. So by default only memory (and GPUs) are limited.
    limit_cpu: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ResourceClass":
        return cls(cpu=str(d["cpu"]), memory=str(d["memory"]), gpu=int(d.get("gpu", 0)),
                   node_selector=dict(d.get("node_selector", {})),
                   tolerations=tuple(dict(t) for t in d.get("tolerations", ())),
                   limit_cpu=bool(d.get("limit_cpu", False)))


DEFAULT_RESOURCE_CLASSES: dict[str, ResourceClass] = {
    "cpu": ResourceClass(cpu="2", memory="8Gi"),
    "highmem": ResourceClass(
        cpu="4", memory="64Gi",
        node_selector={"roundhouse.io/pool": "highmem"},
        tolerations=({"key": "roundhouse.io/pool", "operator": "Equal", "value": "highmem",
                      "effect": "NoSchedule"},)),
    "gpu": ResourceClass(
        cpu="8", memory="32Gi", gpu=1,
        node_selector={"nvidia.com/gpu.present": "true"},
        tolerations=({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},)),
}


@dataclasses.dataclass(frozen=True)
class KubernetesConfig:
    namespace: str = "roundhouse"
    # Where tools/deploy pushes the images: host[:port], optionally with a path prefix
    # (registry.example.com/ml); images are <registry>/roundhouse/<workflow>:<tag>.
    registry: str = "localhost:5000"
    # Plain HTTP instead of HTTPS (a registry on loopback, as in tests).
    registry_insecure: bool = False
    # Names of the environment variables holding the registry's username and password, for
    # the executor's digest look-ups (the cluster pulls with image_pull_secrets); both empty:
    # anonymous. The credentials themselves are never in a config file.
    registry_username_env: str = ""
    registry_password_env: str = ""
    # Images are run by digest, which never changes what it names: no need to pull again.
    image_pull_policy: str = "IfNotPresent"
    # Formatted with {workflow} and {job_id}. The request itself travels in the environment.
    command: tuple[str, ...] = ("/app/train",)
    args: tuple[str, ...] = ("--job-id", "{job_id}")
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    service_account: str = ""
    image_pull_secrets: tuple[str, ...] = ()
    resource_classes: Mapping[str, ResourceClass] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_RESOURCE_CLASSES))
    # One retry inside Kubernetes for a pod lost with its node; real retries are the job
    # store's (a re-queued job is a new Kubernetes Job).
    backoff_limit: int = 1
    active_deadline_seconds: int = 6 * 3600
    # Long enough for the executor to copy the logs off the pod after the end.
    ttl_seconds_after_finished: int = 24 * 3600
    # A pod unschedulable for this long fails the job (a cluster autoscaler may need a while).
    unschedulable_grace_seconds: float = 600.0

    def __post_init__(self):
        if "://" in self.registry or not self.registry or self.registry.endswith("/"):
            raise ValueError(f"registry: {self.registry!r} is not host[:port][/prefix] (no scheme, "
                             "no trailing /; registry_insecure: true selects plain HTTP)")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "KubernetesConfig":
        """From a parsed config file (YAML/JSON); unknown keys are an error, not ignored."""
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown kubernetes config keys: {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        if "resource_classes" in d:
            d["resource_classes"] = {name: ResourceClass.from_dict(row)
                                     for name, row in d["resource_classes"].items()}
        for key in ("command", "args", "image_pull_secrets"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


# ---- the image ----

# A full git SHA or an abbreviated one, as `git rev-parse --short` prints it.
def image_repository(workflow: str, config: KubernetesConfig) -> str:
    return f"{config.registry}/roundhouse/{workflow}"


def image_reference(request: training_pb2.TrainingRequest, config: KubernetesConfig) -> str:
    """The tagged image tools/deploy pushed for the request's commit (`main` when it names none)."""
    if request.commit and not validate.COMMIT.fullmatch(request.commit):
        raise ValueError(f"commit: {request.commit!r} is not a full git SHA (40 lower-case hex "
                         "digits)")
    return f"{image_repository(request.workflow, config)}:{request.commit or 'main'}"


# ---- label rules ----

_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def label_value(value: str) -> str:
    """`value` made a valid label value: at most 63 of [A-Za-z0-9-_.], alphanumeric ends.

    Characters outside the set become "-". A value cut short gets a hash suffix so that two
    long values that share a prefix stay distinct.
    """
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value)
    if len(cleaned) > 63:
        suffix = hashlib.sha256(value.encode()).hexdigest()[:8]
        cleaned = cleaned[:54].rstrip("-_.") + "-" + suffix
    cleaned = cleaned.strip("-_.")
    assert _LABEL_VALUE.fullmatch(cleaned), cleaned
    return cleaned


def job_name(job_id: str) -> str:
    """The Kubernetes Job's name: a DNS label (the controller copies it into a pod label)."""
    base = re.sub(r"[^a-z0-9-]", "-", job_id.lower())
    name = f"rh-train-{base}".strip("-")
    if len(name) > 63:
        name = name[:54].rstrip("-") + "-" + hashlib.sha256(job_id.encode()).hexdigest()[:8]
    assert _DNS_LABEL.fullmatch(name), name
    return name


# ---- quantities ----

def cpu_quantity(cores: float) -> str:
    """Cores as a Kubernetes quantity: whole cores plainly ("4"), fractions in millicores."""
    millis = round(cores * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def resources_for(request: training_pb2.TrainingRequest,
                  classes: Mapping[str, ResourceClass]) -> tuple[ResourceClass, client.V1ResourceRequirements]:
    res = request.resources
    type_name = (training_pb2.Resources.Type.Name(res.type).lower()
                 if res.type != training_pb2.Resources.TYPE_UNSPECIFIED else "cpu")
    if type_name not in classes:
        raise ValueError(f"resources.type {type_name.upper()} has no row in the resource table "
                         f"(configured: {', '.join(sorted(classes))})")
    row = classes[type_name]
    cpu = cpu_quantity(res.cpu) if res.cpu else row.cpu
    memory = res.memory or row.memory
    gpu = res.gpu or row.gpu
    requests = {"cpu": cpu, "memory": memory}
    limits = {"memory": memory}
    if row.limit_cpu:
        limits["cpu"] = cpu
    if gpu:
        # Extended resources cannot be overcommitted: request and limit must be equal.
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(gpu)
    return row, client.V1ResourceRequirements(requests=requests, limits=limits)


# ---- the manifest ----

def build_job(job_id: str, request: training_pb2.TrainingRequest, config: KubernetesConfig,
              image: str) -> client.V1Job:
    """The Job for `request`, running `image`: <registry>/roundhouse/<workflow>@sha256:..., as
    the executor resolved image_reference(request, config)."""
    name = job_name(job_id)
    meta = request.metadata
    labels = {
        "app.kubernetes.io/name": "roundhouse-training",
        MANAGED_BY_LABEL: MANAGED_BY,
        JOB_ID_LABEL: label_value(job_id),
        LABEL_PREFIX + "workflow": label_value(request.workflow),
        LABEL_PREFIX + "owner": label_value(meta.owner),
    }
    if meta.team:
        labels[LABEL_PREFIX + "team"] = label_value(meta.team)
    request_json = json_format.MessageToJson(request, indent=None, sort_keys=True)
    annotations = {
        LABEL_PREFIX + "job-id": job_id,
        LABEL_PREFIX + "owner": meta.owner,
        LABEL_PREFIX + "team": meta.team,
        LABEL_PREFIX + "description": meta.description,
        LABEL_PREFIX + "request": request_json,
    }
    row, resources = resources_for(request, config.resource_classes)
    fmt = {"workflow": request.workflow, "job_id": job_id}
    env = [client.V1EnvVar(name=k, value=v) for k, v in sorted(config.env.items())]
    env += [
        client.V1EnvVar(name="ROUNDHOUSE_JOB_ID", value=job_id),
        client.V1EnvVar(name="ROUNDHOUSE_WORKFLOW", value=request.workflow),
        client.V1EnvVar(name="ROUNDHOUSE_REQUEST", value=request_json),
        client.V1EnvVar(name="ROUNDHOUSE_IMAGE", value=image),
    ]
    container = client.V1Container(
        name=CONTAINER,
        image=image,
        image_pull_policy=config.image_pull_policy,
        command=[c.format(**fmt) for c in config.command] or None,
        args=[a.format(**fmt) for a in config.args] or None,
        env=env,
        resources=resources,
        # On a crash the end of the log becomes the termination message, which status()
        # reports as the failure reason.
        termination_message_policy="FallbackToLogsOnError",
        security_context=client.V1SecurityContext(allow_privilege_escalation=False),
    )
    pod_spec = client.V1PodSpec(
        containers=[container],
        restart_policy="Never",
        node_selector=dict(row.node_selector) or None,
        tolerations=[client.V1Toleration(**_snake(t)) for t in row.tolerations] or None,
        service_account_name=config.service_account or None,
        image_pull_secrets=[client.V1LocalObjectReference(name=s)
                            for s in config.image_pull_secrets] or None,
    )
    return client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(name=name, namespace=config.namespace, labels=labels,
                                     annotations=annotations),
        spec=client.V1JobSpec(
            backoff_limit=config.backoff_limit,
            active_deadline_seconds=config.active_deadline_seconds,
            ttl_seconds_after_finished=config.ttl_seconds_after_finished,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels, annotations={
                    LABEL_PREFIX + "job-id": job_id}),
                spec=pod_spec,
            ),
        ),
    )


def to_dict(job: client.V1Job) -> dict:
    """The manifest as the API server receives it (camelCase keys, no nulls)."""
    return client.ApiClient().sanitize_for_serialization(job)


def to_json(job: client.V1Job) -> str:
    return json.dumps(to_dict(job), indent=2, sort_keys=True)


def _snake(d: Mapping[str, Any]) -> dict:
    """Tolerations are written camelCase in config (as in YAML manifests); models want snake."""
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): v for k, v in d.items()}
