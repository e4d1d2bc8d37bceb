"""The scheduler client against a real training service: submit, wait, result, failures, retries."""

import threading
import time

import pytest

from roundhouse.platform.training.client import JobFailed, Retry, ServiceError, TrainingClient
from roundhouse.platform.training.service_testlib import Service, request, toy_data


class Sleeps:
    """Records the client's back-off pauses (and really sleeps them)."""

    def __init__(self):
        self.pauses = []

    def __call__(self, seconds):
        self.pauses.append(seconds)
        time.sleep(seconds)


@pytest.fixture
def service(tmp_path):
    svc = Service(tmp_path, str(tmp_path / "jobs.sqlite")).start()
    yield svc
    svc.stop()


def test_train_submits_waits_and_returns_the_result(service, tmp_path):
    client = TrainingClient(service.base, token=service.token)
    result = client.train(request(toy_data(tmp_path / "toy.parquet")), timeout=180, poll=0.2)
    assert result["model_id"].startswith("m-") and result["metrics"]["roc_auc"] > 0.8
    [job] = client.jobs(owner="ana", state="succeeded")
    assert client.result(job["id"]) == result


def test_a_failed_job_raises_with_its_reason_and_wait_reports_it(service, tmp_path):
    client = TrainingClient(service.base, token=service.token)
    bad = request(toy_data(tmp_path / "toy.parquet"), C=-1.0)  # LogisticRegression refuses C <= 0
    with pytest.raises(JobFailed) as failed:
        client.train(bad, timeout=180, poll=0.2)
    assert failed.value.job["state"] == "FAILED" and "C" in str(failed.value)
    lines = []
    job = client.wait(client.submit(bad), timeout=180, poll=0.2, on_log=lines.append)
    assert job["state"] == "FAILED" and any("[toy] training on" in line for line in lines)


def test_client_errors_are_not_retried(service):
    sleeps = Sleeps()
    client = TrainingClient(service.base, token=service.token, sleep=sleeps)
    with pytest.raises(ServiceError) as e:
        client.status("no-such-job")
    assert e.value.status == 404 and sleeps.pauses == []
    with pytest.raises(ServiceError) as e:
        client.submit({"workflow": "nope"})
    assert e.value.status == 400 and sleeps.pauses == []


def test_a_submit_waits_for_a_service_that_is_starting(tmp_path):
    svc = Service(tmp_path, str(tmp_path / "jobs.sqlite"))
    data = toy_data(tmp_path / "toy.parquet")
    starter = threading.Timer(1.0, svc.start)
    starter.start()
    try:
        sleeps = Sleeps()
        client = TrainingClient(svc.base, token=svc.token, retry=Retry(attempts=40, first_delay=0.2, max_delay=0.5),
                                sleep=sleeps)
        job_id = client.submit(request(data))  # refused until the service listens: nothing was sent
        assert sleeps.pauses, "the service was not up yet, so the submit must have retried"
        starter.join()
        assert client.wait(job_id, timeout=180, poll=0.2)["state"] == "SUCCEEDED"
        assert len(client.jobs()) == 1  # retried, yet queued once
    finally:
        starter.join()
        svc.stop()


def test_reads_ride_out_a_service_restart(service, tmp_path):
    client = TrainingClient(service.base, token=service.token, retry=Retry(attempts=40, first_delay=0.2, max_delay=0.5))
    job_id = client.submit(request(toy_data(tmp_path / "toy.parquet")))
    client.wait(job_id, timeout=180, poll=0.2)
    service.kill()
    restarter = threading.Timer(1.0, service.start)
    restarter.start()
    try:
        assert client.status(job_id)["state"] == "SUCCEEDED"  # answered by the restarted service
    finally:
        restarter.join()


def test_without_a_token_the_client_finds_one_or_gets_401(service, monkeypatch, tmp_path):
    home = tmp_path / "home"
    monkeypatch.setenv("ROUNDHOUSE_HOME", str(home))
    monkeypatch.delenv("ROUNDHOUSE_TOKEN", raising=False)
    client = TrainingClient(service.base, sleep=Sleeps())
    with pytest.raises(ServiceError) as e:
        client.jobs()
    assert e.value.status == 401 and "missing bearer token" in e.value.message
    home.mkdir()
    (home / "token").write_text(service.token + "\n")  # where a local server writes its token
    assert client.jobs() == []
    monkeypatch.setenv("ROUNDHOUSE_TOKEN", "rh_0123456789ab_" + "A" * 43)  # the variable comes first
    with pytest.raises(ServiceError) as e:
        client.jobs()
    assert e.value.status == 401 and "unknown token 0123456789ab" in e.value.message
