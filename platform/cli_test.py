"""The CLI against a real training service and model store."""

import json
import os
import pathlib
import re
import stat
import subprocess

import pytest
import yaml

from roundhouse.platform.training.service_testlib import Service, request, toy_data

CLI = pathlib.Path(__file__).with_name("cli")
TOKENS = pathlib.Path(__file__).parent / "training" / "tokens"


@pytest.fixture
def service(tmp_path):
    svc = Service(tmp_path, str(tmp_path / "jobs.sqlite")).start()
    yield svc
    svc.stop()


def cli(service, *args, ok=True):
    proc = subprocess.run([str(CLI), "--server", service.base, "--store", str(service.tmp / "models"), *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "USER": "ana", "ROUNDHOUSE_TOKEN": service.token})
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_submit_yaml_watch_then_tag_rollback_untag(service, tmp_path):
    data = toy_data(tmp_path / "toy.parquet")
    req = tmp_path / "request.yaml"
    req.write_text(yaml.safe_dump(request(data)))
    out = cli(service, "submit", str(req), "--watch")
    assert "running" in out and "succeeded" in out and "[toy] training on" in out  # progress and logs
    first = json.loads(out[out.index("{\n"):])["model_id"]

    req.write_text(yaml.safe_dump(request(data, C=0.01)))
    job_id = cli(service, "submit", str(req)).strip().splitlines()[0]
    watched = cli(service, "watch", job_id)
    second = json.loads(watched[watched.index("{\n"):])["model_id"]
    assert json.loads(cli(service, "result", job_id))["model_id"] == second
    assert second != first

    assert re.search(rf"{first} .*roc_auc=", cli(service, "models"))
    cli(service, "tag", "toy-prod", first)
    cli(service, "tag", "toy-prod", second)
    assert f"toy-prod  {second}" in cli(service, "tags")
    assert f"toy-prod -> {first}" in cli(service, "rollback", "toy-prod")
    assert f"toy-prod  {first}" in cli(service, "tags")
    history = cli(service, "history", "toy-prod").splitlines()
    assert [line.split()[1] for line in history] == [first, second, first] and all("ana" in h for h in history)
    cli(service, "untag", "toy-prod")
    assert "toy-prod" not in cli(service, "tags")
    assert "toy-prod" not in cli(service, "models") and first in cli(service, "models")


def test_submit_wait_exits_non_zero_when_the_job_fails(service, tmp_path):
    data = toy_data(tmp_path / "toy.parquet")
    req = tmp_path / "request.json"
    req.write_text(json.dumps(request(data)))
    out = cli(service, "submit", str(req), "--wait")
    job_id, result = out.split("\n", 1)
    assert json.loads(result)["model_id"].startswith("m-") and "[toy]" not in out  # quiet: no logs
    req.write_text(json.dumps(request(data, C=-1.0)))
    out = cli(service, "submit", str(req), "--wait", ok=False)
    failed_id = out.splitlines()[0]
    assert failed_id != job_id and f"job {failed_id} failed" in out


def test_errors_are_clear(service, tmp_path):
    assert "no model 'm-nope'" in cli(service, "tag", "x", "m-nope", ok=False)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"workflow": "toy", "colour": "red"}))
    assert "400" in (out := cli(service, "submit", str(bad), ok=False)) and "colour" in out
    bad.write_text("{nope")
    assert "not valid JSON" in cli(service, "submit", str(bad), ok=False)
    assert "cannot reach the training service" in subprocess.run(
        [str(CLI), "--server", "http://127.0.0.1:9", "jobs"], capture_output=True, text=True).stderr


def test_meta_models_through_the_cli_and_the_api(service, tmp_path):
    from roundhouse.platform.api import model_pb2
    from roundhouse.platform.registry.store import open_store
    from roundhouse.platform.training.service_testlib import call

    store = open_store(str(service.tmp / "models"))
    ids = []
    for seed in (1, 2):
        record = model_pb2.ModelRecord(bazel_target="//x:train")
        record.artifact.format = "joblib"
        record.metrics["seed"] = seed
        record.feature_set.definitions = "fraud.feat"
        record.feature_set.columns.append("amount")
        record.feature_set.hashes["amount"] = "h1"
        ids.append(store.put(b"model %d" % seed, record).record.model_id)
    spec = tmp_path / "gate.yaml"
    spec.write_text(yaml.safe_dump({"kind": "threshold", "model": ids[0], "threshold": 0.8}))
    gate = cli(service, "meta-model", str(spec)).strip()
    assert gate.startswith("m-") and json.loads(cli(service, "model", gate))["meta"]["kind"] == "threshold"
    status, out = call(service.base, "POST", "/v1/meta-models",
                       {"kind": "combination", "method": "max", "models": [gate, ids[1]]})
    assert status == 201 and out["children"] == [gate, ids[1]], out
    cli(service, "tag", "fraud-max", out["model_id"])  # tagged like any model
    status, out = call(service.base, "POST", "/v1/meta-models", {"kind": "threshold", "model": "m-x"})
    assert status == 400 and out["field"] == "threshold", out
    spec.write_text(json.dumps({"kind": "threshold", "model": "m-0", "threshold": 0.5}))
    spec = spec.rename(tmp_path / "missing.json")
    assert "no model m-0" in cli(service, "meta-model", str(spec), ok=False)


def test_the_first_start_makes_an_admin_token_the_cli_finds_by_itself(tmp_path):
    home = tmp_path / "home"
    svc = Service(tmp_path, str(tmp_path / "jobs.sqlite"), home=home).start()
    env = {k: v for k, v in os.environ.items() if k != "ROUNDHOUSE_TOKEN"}
    env.update(ROUNDHOUSE_HOME=str(home), USER="ana")

    def run(*args, ok=True, **extra_env):
        proc = subprocess.run([str(CLI), "--server", svc.base, "--store", str(tmp_path / "models"), *args],
                              capture_output=True, text=True, timeout=300, env={**env, **extra_env})
        assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    try:
        token_file = home / "token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        req = tmp_path / "request.json"
        req.write_text(json.dumps(request(toy_data(tmp_path / "toy.parquet"))))
        job_id, result = run("submit", str(req), "--wait").split("\n", 1)  # no flag, no variable
        model_id = json.loads(result)["model_id"]
        run("tag", "toy-prod", model_id)
        assert f"toy-prod  {model_id}  admin" in run("tags")
        svc.stop()
        svc.start()  # a restart finds its admin token in the database: the file stays as it was
        assert token_file.read_text().strip() == svc.token and job_id in run("jobs")

        made = subprocess.run([str(TOKENS), "--jobs", str(tmp_path / "jobs.sqlite"), "create", "--team", "growth"],
                              capture_output=True, text=True, env=env, check=True)
        growth = made.stdout.strip()
        assert run("jobs", ROUNDHOUSE_TOKEN=growth).strip() == ""  # the risk team's job is not growth's
        out = run("status", job_id, ok=False, ROUNDHOUSE_TOKEN=growth)
        assert "403" in out and f"job {job_id} belongs to team 'risk'" in out
        out = run("untag", "toy-prod", ok=False, ROUNDHOUSE_TOKEN=growth)
        assert "403" in out and "tag 'toy-prod' belongs to team 'admin'" in out
        growth_id = growth.split("_")[1]
        subprocess.run([str(TOKENS), "--jobs", str(tmp_path / "jobs.sqlite"), "revoke", growth_id],
                       capture_output=True, text=True, env=env, check=True)
        out = run("jobs", ok=False, ROUNDHOUSE_TOKEN=growth)
        assert "401" in out and f"token {growth_id} was revoked" in out
        out = run("jobs", ok=False, ROUNDHOUSE_HOME=str(tmp_path / "elsewhere"))
        assert "401" in out and "missing bearer token" in out and "--token" in out
    finally:
        svc.stop()
