"""The training service as a user runs it: a real server process, real jobs, real restarts."""

import pathlib
import time

import pytest

from roundhouse.platform.registry import store as store_lib
from roundhouse.platform.training.service_testlib import Service, call, request, toy_data
from roundhouse.testing import postgres_server


@pytest.fixture
def data(tmp_path):
    return toy_data(tmp_path / "toy.parquet")


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
    status, refused = call(service.base, "GET", f"/v1/jobs/{job_id}", token="")  # every call needs a token
    assert status == 401 and refused["reason"] == "missing", refused
    assert call(service.base, "GET", "/healthz", token="")[0] == 200  # but the load balancer's


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
    svc = Service(tmp_path, str(tmp_path / "jobs.sqlite"), time_limit=45).start()
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

        # These run side by side (the service runs two jobs at once).
        limited = call(svc.base, "POST", "/v1/jobs", request(data, sleep_seconds=120))[1]["job_id"]
        status, refused = call(svc.base, "POST", "/v1/jobs", {**request(data), "workflow": "churn"})
        assert status == 400 and refused["field"] == "workflow" and refused["known"] == ["fraud", "toy"], refused
        missing = request(data)
        missing["data"]["parquet"]["uri"] = str(tmp_path / "nope.parquet")
        status, refused = call(svc.base, "POST", "/v1/jobs", missing)  # checked at the door
        assert status == 400 and refused["field"] == "data.parquet.uri", refused
        # No rows pass the filter: only reading the data can tell, so the job fails.
        empty = request(data)
        empty["data"]["parquet"]["filters"] = [{"column": "x1", "op": "GT", "value": 1000}]
        empty = call(svc.base, "POST", "/v1/jobs", empty)[1]["job_id"]

        job = svc.wait(empty)
        assert job["state"] == "FAILED" and "exited with code" in job["reason"], job
        assert "of 0 rows" in job["reason"], job
        job = svc.wait(limited)
        assert job["state"] == "FAILED" and "time limit" in job["reason"]
        assert call(svc.base, "GET", f"/v1/jobs/{empty}/result")[0] == 409
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
        assert job["state"] == "SUCCEEDED", (job["reason"], job)
    logs = call(service.base, "GET", f"/v1/jobs/{running}/logs")[1]["text"]
    assert "[toy] still training" in logs
