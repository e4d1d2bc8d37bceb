"""The training service as a user runs it: a real server process, real jobs, real restarts."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roundhouse.platform.registry import store as store_lib
from roundhouse.testing import postgres_server

HERE = pathlib.Path(__file__).parent
SERVER = HERE / "server"
TOY = HERE / "testdata" / "toy_train"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(base + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Service:
    def __init__(self, tmp, jobs_url, time_limit=600):
        self.tmp = tmp
        self.jobs_url = jobs_url
        self.time_limit = time_limit
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [str(SERVER), "--port", str(self.port), "--jobs", self.jobs_url, "--store", str(self.tmp / "models"),
             "--jobs-dir", str(self.tmp / "jobs"), "--workflow", f"toy={TOY}",
             "--time-limit", str(self.time_limit), "--worker-id", "test-worker"],
            stdout=open(self.tmp / "server.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if call(self.base, "GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            assert self.proc.poll() is None, (self.tmp / "server.log").read_text()
            time.sleep(0.1)
        raise AssertionError("server did not start")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def wait(self, job_id, states=("succeeded", "failed", "cancelled"), timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, job = call(self.base, "GET", f"/v1/jobs/{job_id}")
            assert status == 200, job
            if job["state"].lower() in states:
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} still {job['state']}")


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=400), rng.normal(size=400)
    path = tmp_path / "toy.parquet"
    pq.write_table(pa.table({"x1": x1, "x2": x2, "y": (x1 + 0.3 * rng.normal(size=400) > 0).astype(int)}), path)
    return path


def request(data, **params):
    return {"metadata": {"owner": "ana", "team": "risk", "description": "toy"},
            "data": {"parquet": {"uri": str(data), "label_columns": ["y"]}},
            "holdout": {"random": {"fraction": 0.25, "seed": 3}},
            "workflow": "toy", "params": params, "resources": {"type": "CPU", "cpu": 1}}


@pytest.fixture(params=["sqlite", "postgres"])
def service(request, tmp_path):
    if request.param == "sqlite":
        svc = Service(tmp_path, str(tmp_path / "jobs.sqlite"))
        yield svc.start()
        svc.stop()
    else:
        with postgres_server.postgres_server() as dsn:
            svc = Service(tmp_path, dsn)
            yield svc.start()
            svc.stop()


def test_submit_run_result_logs_and_list(service, data):
    status, body = call(service.base, "POST", "/v1/jobs", request(data))
    assert status == 202, body
    job_id = body["job_id"]
    job = service.wait(job_id)
    assert job["state"] == "SUCCEEDED", job
    status, result = call(service.base, "GET", f"/v1/jobs/{job_id}/result")
    assert status == 200 and result["model_id"].startswith("m-")
    assert result["metrics"]["roc_auc"] > 0.8
    record = store_lib.open_store(str(service.tmp / "models")).get(result["model_id"])
    assert record.request.metadata.owner == "ana" and record.git_sha == result["git_sha"]
    status, logs = call(service.base, "GET", f"/v1/jobs/{job_id}/logs")
    assert "[toy] training on 300 rows" in logs["text"] and result["model_id"] in logs["text"]
    status, listed = call(service.base, "GET", "/v1/jobs?owner=ana&workflow=toy&state=succeeded")
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    assert call(service.base, "GET", "/v1/jobs?owner=ben")[1]["jobs"] == []


@pytest.mark.parametrize("change, field", [
    ({"colour": "red"}, "colour"),
    ({"workflow": None}, "workflow"),
    ({"holdout": {"random": {"fraction": "a lot"}}}, "holdout.random.fraction"),
])
def test_bad_requests_get_400_naming_the_field(tmp_path, data, change, field):
    svc = Service(tmp_path, str(tmp_path / "jobs.sqlite")).start()
    try:
        body = {k: v for k, v in {**request(data), **change}.items() if v is not None}
        status, err = call(svc.base, "POST", "/v1/jobs", body)
        assert status == 400 and err["field"] == field and field in err["error"], err
        assert call(svc.base, "POST", "/v1/jobs", b"{not json")[0] == 400
        assert call(svc.base, "GET", "/v1/jobs/nope")[0] == 404
        assert call(svc.base, "GET", "/v1/jobs")[1]["jobs"] == []  # nothing was queued
    finally:
        svc.stop()


def test_cancel_time_limit_and_failures_carry_a_reason(tmp_path, data):
    svc = Service(tmp_path, str(tmp_path / "jobs.sqlite"), time_limit=20).start()
    try:
        slow = call(svc.base, "POST", "/v1/jobs", request(data, sleep_seconds=60))[1]["job_id"]
        svc.wait(slow, states=("running",))
        time.sleep(1)
        status, _ = call(svc.base, "POST", f"/v1/jobs/{slow}/cancel")
        assert status == 202
        job = svc.wait(slow)
        assert job["state"] == "CANCELLED"
        pid = int((tmp_path / "jobs" / slow / "pid").read_text().split()[0])
        assert not pathlib.Path(f"/proc/{pid}").exists() or "Z" in pathlib.Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1]

        limited = call(svc.base, "POST", "/v1/jobs", request(data, sleep_seconds=120))[1]["job_id"]
        job = svc.wait(limited)
        assert job["state"] == "FAILED" and "time limit" in job["reason"]

        broken = call(svc.base, "POST", "/v1/jobs", {**request(data), "workflow": "churn"})[1]["job_id"]
        job = svc.wait(broken)
        assert job["state"] == "FAILED" and "churn" in job["reason"]

        missing = request(data)
        missing["data"]["parquet"]["uri"] = str(tmp_path / "nope.parquet")
        job = svc.wait(call(svc.base, "POST", "/v1/jobs", missing)[1]["job_id"])
        assert job["state"] == "FAILED" and "exited with code" in job["reason"]
        assert call(svc.base, "GET", f"/v1/jobs/{broken}/result")[0] == 409
    finally:
        svc.stop()


def test_a_killed_service_loses_no_job(service, data):
    running = call(service.base, "POST", "/v1/jobs", request(data, sleep_seconds=4))[1]["job_id"]
    service.wait(running, states=("running",))
    queued = [call(service.base, "POST", "/v1/jobs", request(data, C=c))[1]["job_id"] for c in (0.5, 2.0)]
    service.kill()  # SIGKILL: no clean-up at all
    service.start()
    for job_id in [running] + queued:
        job = service.wait(job_id)
        assert job["state"] == "SUCCEEDED", job
    logs = call(service.base, "GET", f"/v1/jobs/{running}/logs")[1]["text"]
    assert "[toy] still training" in logs
