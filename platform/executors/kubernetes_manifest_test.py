"""Every generated Job manifest validates against the Kubernetes 1.37 schema, offline.

kubernetes-validate (strict) catches misspelled and mistyped fields, but lets bad
quantities and enum values through, so those are checked here too.
"""

import copy
import re

import kubernetes_validate
import pytest
import yaml
from kubernetes.utils import parse_quantity

from roundhouse.platform.api import training_pb2
from roundhouse.platform.executors import kubernetes_manifest as m

K8S_VERSION = "1.37.0"
# What the executor hands build_job: the deployed image, by the digest the registry gave.
IMAGE = "localhost:5000/roundhouse/fraud@sha256:" + "ab" * 32
SHA = "3f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e"

LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

# Enums the schema does not check (see REAL-PARTS.md).
ENUMS = {
    "restartPolicy": {"Never", "OnFailure"},  # a Job's pods may not use Always
    "imagePullPolicy": {"Always", "IfNotPresent", "Never"},
    "terminationMessagePolicy": {"File", "FallbackToLogsOnError"},
    "operator": {"Exists", "Equal"},
    "effect": {"NoSchedule", "PreferNoSchedule", "NoExecute"},
}


def request(type_="CPU", cpu=0.0, memory="", gpu=0, owner="ana", team="fraud",
            description="baseline", workflow="fraud", commit=""):
    r = training_pb2.TrainingRequest(workflow=workflow, commit=commit)
    r.metadata.owner, r.metadata.team, r.metadata.description = owner, team, description
    r.data.parquet.uri = "s3://training/fraud/"
    r.data.parquet.label_columns.append("is_fraud")
    r.holdout.random.fraction = 0.2
    r.resources.type = training_pb2.Resources.Type.Value(type_)
    r.resources.cpu, r.resources.memory, r.resources.gpu = cpu, memory, gpu
    return r


CASES = {
    "cpu defaults": request(),
    "unspecified type is cpu": request(type_="TYPE_UNSPECIFIED"),
    "fractional cpu, custom memory": request(cpu=0.5, memory="1536Mi"),
    "highmem": request(type_="HIGHMEM", memory="200Gi"),
    "gpu default count": request(type_="GPU"),
    "four gpus": request(type_="GPU", gpu=4, cpu=16),
    "awkward owner and team": request(owner="Ana.Lopez+ml@example.com", team="Risk & Fraud (EU)",
                                      description="ünïcödé: " + "long " * 500),
    "long owner": request(owner="x" * 300 + "@example.com"),
}


def walk(node, path=""):
    """Every (path, key, value) in a nested dict/list."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, k, v
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def check_manifest(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert DNS_LABEL.fullmatch(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63
    for path, key, value in walk(doc):
        if key in ("requests", "limits"):
            for resource, quantity in value.items():
                assert isinstance(quantity, str)
                parse_quantity(quantity)  # raises on "two", "8 GB"...
        if key in ENUMS and isinstance(value, str):
            assert value in ENUMS[key], f"{path}.{key}={value!r}"
        if key == "labels":
            for k, v in value.items():
                assert LABEL_KEY.fullmatch(k) and len(k.split("/")[-1]) <= 63, k
                assert LABEL_VALUE.fullmatch(v) and len(v) <= 63, v
        if key == "annotations":
            # The API server's limit on all annotations of one object.
            assert sum(len(k) + len(v) for k, v in value.items()) < 256 * 1024


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_manifest_validates(case):
    doc = m.to_dict(m.build_job("0f3a9c2e7b6d4e1f8a5b3c2d1e0f9a8b", CASES[case],
                                m.KubernetesConfig(), IMAGE))
    check_manifest(doc)


def test_the_validator_is_not_a_rubber_stamp():
    doc = m.to_dict(m.build_job("j1", request(), m.KubernetesConfig(), IMAGE))
    misspelled = copy.deepcopy(doc)
    misspelled["spec"]["template"]["spec"]["restartPolicyy"] = "Never"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelled, K8S_VERSION, strict=True)
    mistyped = copy.deepcopy(doc)
    mistyped["spec"]["backoffLimit"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(mistyped, K8S_VERSION, strict=True)
    bad_quantity = copy.deepcopy(doc)
    bad_quantity["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "two"
    with pytest.raises(ValueError):
        check_manifest(bad_quantity)
    bad_enum = copy.deepcopy(doc)
    bad_enum["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(AssertionError):
        check_manifest(bad_enum)


def test_job_spec_follows_the_platform_rules():
    config = m.KubernetesConfig(namespace="ml", backoff_limit=2, active_deadline_seconds=3600,
                                ttl_seconds_after_finished=7200, env={"MODEL_STORE": "s3://m/"})
    doc = m.to_dict(m.build_job("abc123", request(cpu=3), config, IMAGE))
    spec, pod = doc["spec"], doc["spec"]["template"]["spec"]
    assert doc["metadata"]["namespace"] == "ml"
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"],
            spec["ttlSecondsAfterFinished"]) == (2, 3600, 7200)
    assert pod["restartPolicy"] == "Never"
    (c,) = pod["containers"]
    assert c["image"] == IMAGE
    assert c["command"] == ["/app/train"] and c["args"] == ["--job-id", "abc123"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["MODEL_STORE"] == "s3://m/" and env["ROUNDHOUSE_JOB_ID"] == "abc123"
    # The runner copies it into the model record.
    assert env["ROUNDHOUSE_IMAGE"] == IMAGE
    assert '"workflow":"fraud"' in env["ROUNDHOUSE_REQUEST"].replace(" ", "")
    assert c["resources"] == {"requests": {"cpu": "3", "memory": "8Gi"},
                              "limits": {"memory": "8Gi"}}
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert doc["metadata"]["labels"]["roundhouse.io/job-id"] == "abc123"
    assert spec["template"]["metadata"]["labels"] == doc["metadata"]["labels"]


def test_gpu_and_highmem_rows_of_the_resource_table():
    gpu = m.to_dict(m.build_job("g", request(type_="GPU", gpu=2, cpu=0.25), m.KubernetesConfig(),
                                IMAGE))
    pod = gpu["spec"]["template"]["spec"]
    res = pod["containers"][0]["resources"]
    assert res["requests"] == {"cpu": "250m", "memory": "32Gi", "nvidia.com/gpu": "2"}
    assert res["limits"] == {"memory": "32Gi", "nvidia.com/gpu": "2"}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                   "effect": "NoSchedule"}]
    high = m.to_dict(m.build_job("h", request(type_="HIGHMEM"), m.KubernetesConfig(), IMAGE))
    assert high["spec"]["template"]["spec"]["nodeSelector"] == {"roundhouse.io/pool": "highmem"}
    assert high["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "memory": "64Gi"}


def test_resource_table_from_a_yaml_config():
    config = m.KubernetesConfig.from_dict(yaml.safe_load("""
namespace: training
registry: registry.example.com/ml
registry_username_env: RH_REGISTRY_USER
registry_password_env: RH_REGISTRY_PASSWORD
resource_classes:
  cpu: {cpu: "1", memory: 2Gi, limit_cpu: true}
  gpu:
    cpu: "4"
    memory: 24Gi
    gpu: 1
    node_selector: {cloud.google.com/gke-accelerator: nvidia-l4}
    tolerations:
      - {key: nvidia.com/gpu, operator: Equal, value: present, effect: NoSchedule,
         tolerationSeconds: 60}
"""))
    doc = m.to_dict(m.build_job("y", request(type_="GPU"), config, IMAGE))
    check_manifest(doc)
    pod = doc["spec"]["template"]["spec"]
    assert m.image_reference(request(), config) == "registry.example.com/ml/roundhouse/fraud:main"
    assert config.registry_username_env == "RH_REGISTRY_USER" and not config.registry_insecure
    assert pod["tolerations"][0]["tolerationSeconds"] == 60
    cpu = m.to_dict(m.build_job("y", request(), config, IMAGE))
    assert cpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "1", "memory": "2Gi"}
    with pytest.raises(ValueError, match="HIGHMEM has no row"):
        m.build_job("y", request(type_="HIGHMEM"), config, IMAGE)
    with pytest.raises(ValueError, match="unknown kubernetes config keys: namespac"):
        m.KubernetesConfig.from_dict({"namespac": "x"})
    # The old key is refused, not ignored: the image now comes from the registry.
    with pytest.raises(ValueError, match="unknown kubernetes config keys: image_template"):
        m.KubernetesConfig.from_dict({"image_template": "x/{workflow}:latest"})


def test_the_image_is_the_one_deployed_for_the_commit_or_main():
    config = m.KubernetesConfig(registry="127.0.0.1:5000")
    assert m.image_reference(request(commit=SHA), config) == f"127.0.0.1:5000/roundhouse/fraud:{SHA}"
    assert m.image_reference(request(), config) == "127.0.0.1:5000/roundhouse/fraud:main"
    assert m.image_reference(request(workflow="churn"), m.KubernetesConfig()) == \
        "localhost:5000/roundhouse/churn:main"
    # tools/deploy tags full SHAs only: a short one would never be found.
    for bad in (SHA.upper(), SHA[:7], SHA + "0", "main", "v1.2.3", f" {SHA}"):
        with pytest.raises(ValueError, match=f"commit: '{bad}' is not a full git SHA"):
            m.image_reference(request(commit=bad), config)


def test_registry_is_a_host_not_a_url():
    for bad in ("http://127.0.0.1:5000", "registry.example.com/ml/", ""):
        with pytest.raises(ValueError, match=f"registry: '{bad}' is not host"):
            m.KubernetesConfig(registry=bad)


def test_long_and_odd_values_are_sanitized_in_labels_and_kept_in_annotations():
    owner = "Ana.Lopez+ml@example.com"
    doc = m.to_dict(m.build_job("Job_ID.With.Caps", request(owner=owner), m.KubernetesConfig(),
                                IMAGE))
    labels, notes = doc["metadata"]["labels"], doc["metadata"]["annotations"]
    assert labels["roundhouse.io/owner"] == "Ana.Lopez-ml-example.com"
    assert notes["roundhouse.io/owner"] == owner
    assert notes["roundhouse.io/job-id"] == "Job_ID.With.Caps"
    assert doc["metadata"]["name"] == "rh-train-job-id-with-caps"

    a, b = m.label_value("x" * 100 + "a"), m.label_value("x" * 100 + "b")
    assert len(a) <= 63 and LABEL_VALUE.fullmatch(a) and a != b
    assert m.label_value("--ok--") == "ok"
    long_id = m.job_name("Z" * 80)
    assert len(long_id) <= 63 and DNS_LABEL.fullmatch(long_id)
    assert m.cpu_quantity(0.5) == "500m" and m.cpu_quantity(2) == "2"
    assert m.cpu_quantity(1.25) == "1250m"
