"""A client of the training service for schedulers (Airflow, cron, CI) and the CLI.

    client = TrainingClient("http://training:8080")
    result = client.train(request)          # submit, wait, result; raises JobFailed

Every call carries a team token (`token=`; without one, $ROUNDHOUSE_TOKEN, else the file
$ROUNDHOUSE_HOME/token, ~/.roundhouse/token, that a local server writes on first start).

Reads (status, logs, result) are retried on connection errors and on 502/503/504, with
exponential backoff, so that a service restart in the middle of a nightly run costs a pause,
not the run. A submit is retried only when the request cannot have reached the service
(connection refused, name not resolved, 503 from a proxy): retrying after the service may have
accepted it could queue the job twice.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

from roundhouse.platform.home import default_home

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
_RETRIED_STATUS = (502, 503, 504)


class ServiceError(Exception):
    """The service answered with an error (a 4xx, or a 5xx after the retries)."""

    def __init__(self, method: str, path: str, status: int, message: str):
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.message = message


class Unreachable(Exception):
    """The service did not answer within the retries."""


class JobFailed(Exception):
    """The job ended FAILED or CANCELLED; `job` is its last state from the service."""

    def __init__(self, job: dict):
        super().__init__(f"job {job['id']} {job['state'].lower()}"
                         + (f": {job['reason']}" if job.get("reason") else ""))
        self.job = job


@dataclasses.dataclass(frozen=True)
class Retry:
    attempts: int = 8          # 0.5 + 1 + 2 + 4 + 8 + 8 + 8 s: about half a minute of downtime
    first_delay: float = 0.5
    max_delay: float = 8.0

    def delays(self):
        delay = self.first_delay
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(delay * 2, self.max_delay)


def _not_sent(reason) -> bool:
    """Whether a connection error means the request never reached the service."""
    return isinstance(reason, (ConnectionRefusedError, socket.gaierror))


def default_token() -> str | None:
    """$ROUNDHOUSE_TOKEN, else the token in $ROUNDHOUSE_HOME/token (~/.roundhouse/token)."""
    token = os.environ.get("ROUNDHOUSE_TOKEN", "").strip()
    if token:
        return token
    try:
        return (default_home() / "token").read_text().strip() or None
    except OSError:
        return None


class TrainingClient:
    """`token`: the bearer token to send; None: default_token(), looked up at each call (so a
    client made before a local server first starts finds the token that server writes)."""

    def __init__(self, base_url: str, token: str | None = None, retry: Retry = Retry(),
                 timeout: float = 30.0, sleep: Callable[[float], None] = time.sleep):
        self.base = base_url.rstrip("/")
        self.token = token
        self.retry = retry
        self.timeout = timeout
        self._sleep = sleep

    # ------------------------------------------------------------------ the API

    def submit(self, request: dict) -> str:
        """Queue a TrainingRequest (its JSON form); returns the job ID."""
        return self._call("POST", "/v1/jobs", request, idempotent=False)["job_id"]

    def status(self, job_id: str) -> dict:
        return self._call("GET", _job(job_id))

    def result(self, job_id: str) -> dict:
        """The TrainingResult of a succeeded job (model_id, metrics...)."""
        return self._call("GET", _job(job_id, "result"))

    def logs(self, job_id: str, after: int = 0) -> tuple[str, int]:
        """The job's log from position `after`, and the position to read from next."""
        answer = self._call("GET", _job(job_id, f"logs?after={int(after)}"))
        return answer["text"], answer["next"]

    def jobs(self, owner: str = "", workflow: str = "", state: str = "", team: str = "") -> list[dict]:
        """Jobs of the token's team (an admin token: every team's, or `team`'s)."""
        query = urllib.parse.urlencode({k: v for k, v in (("owner", owner), ("workflow", workflow),
                                                          ("state", state), ("team", team)) if v})
        return self._call("GET", "/v1/jobs" + (f"?{query}" if query else ""))["jobs"]

    def cancel(self, job_id: str) -> dict:
        return self._call("POST", _job(job_id, "cancel"), idempotent=True)

    # Tags: a team moves only the tags it created. Each answers {"tag", "model_id", "team"}.

    def tags(self) -> list[dict]:
        return self._call("GET", "/v1/tags")["tags"]

    def tag(self, tag: str, model_id: str, by: str = "") -> dict:
        return self._call("PUT", _tag(tag), _by({"model_id": model_id}, by), idempotent=True)

    def untag(self, tag: str, by: str = "") -> dict:
        return self._call("DELETE", _tag(tag), _by({}, by), idempotent=False)

    def rollback(self, tag: str, by: str = "") -> dict:
        return self._call("POST", _tag(tag, "rollback"), _by({}, by), idempotent=False)

    def tag_history(self, tag: str) -> list[dict]:
        """Each move: {"model_id" (None: untagged), "at", "by", "team", "token"}, oldest first."""
        return self._call("GET", _tag(tag, "history"))["history"]

    # Evaluations: stored models scored on the same holdout rows (platform/evaluation).

    def evaluate(self, spec: dict) -> str:
        """Queue an evaluation request (platform/evaluation/spec.py); returns its ID."""
        return self._call("POST", "/v1/evaluations", spec, idempotent=False)["evaluation_id"]

    def evaluation(self, evaluation_id: str) -> dict:
        """Its state, spec and, once SUCCEEDED, its "result"."""
        return self._call("GET", _evaluation(evaluation_id))

    def evaluations(self, owner: str = "", team: str = "", state: str = "") -> list[dict]:
        query = urllib.parse.urlencode({k: v for k, v in (("owner", owner), ("team", team),
                                                          ("state", state)) if v})
        return self._call("GET", "/v1/evaluations" + (f"?{query}" if query else ""))["evaluations"]

    def wait_evaluation(self, evaluation_id: str, timeout: float | None = None, poll: float = 1.0) -> dict:
        """Poll until the evaluation ends; returns it (with its result when it SUCCEEDED)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            evaluation = self.evaluation(evaluation_id)
            if evaluation["state"] in TERMINAL:
                return evaluation
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"evaluation {evaluation_id} still {evaluation['state'].lower()} "
                                   f"after {timeout:g} s")
            self._sleep(poll)

    # Hyperparameter searches: each trial an ordinary training job (platform/tuning).

    def tune(self, spec: dict) -> str:
        """Start a search (platform/tuning/space.py: template, space, metric, direction, budget,
        parallelism); returns its ID."""
        return self._call("POST", "/v1/tuning", spec, idempotent=False)["search_id"]

    def search(self, search_id: str) -> dict:
        """Its state, spec, every trial and the best one."""
        return self._call("GET", f"/v1/tuning/{urllib.parse.quote(search_id, safe='')}")

    def searches(self, owner: str = "", team: str = "", state: str = "") -> list[dict]:
        query = urllib.parse.urlencode({k: v for k, v in (("owner", owner), ("team", team),
                                                          ("state", state)) if v})
        return self._call("GET", "/v1/tuning" + (f"?{query}" if query else ""))["searches"]

    def wait_search(self, search_id: str, timeout: float | None = None, poll: float = 1.0) -> dict:
        """Poll until the search ends; returns it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            found = self.search(search_id)
            if found["state"] in TERMINAL:
                return found
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"search {search_id} still {found['state'].lower()} after {timeout:g} s")
            self._sleep(poll)

    # Retraining schedules: a tag retrained on a cron, shipped through a gate (platform/schedules).

    def create_schedule(self, spec: dict) -> dict:
        """Make a schedule (platform/schedules/spec.py: tag, cron, template, window, gate);
        returns it, with its "id"."""
        return self._call("POST", "/v1/schedules", spec, idempotent=False)

    def schedules(self) -> list[dict]:
        return self._call("GET", "/v1/schedules")["schedules"]

    def schedule(self, schedule_id: str) -> dict:
        return self._call("GET", f"/v1/schedules/{urllib.parse.quote(schedule_id, safe='')}")

    def schedule_runs(self, schedule_id: str) -> list[dict]:
        """Its runs, newest first: state, job, evaluation, decision and reason."""
        return self._call("GET", f"/v1/schedules/{urllib.parse.quote(schedule_id, safe='')}/runs")["runs"]

    def run_schedule(self, schedule_id: str) -> dict:
        """Start a run now, outside the cron slots; returns the run."""
        return self._call("POST", f"/v1/schedules/{urllib.parse.quote(schedule_id, safe='')}/run",
                          idempotent=False)

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 1.0,
             on_log: Callable[[str], None] | None = None) -> dict:
        """Poll until the job ends; returns its last state. `on_log` gets each new log line."""
        deadline = None if timeout is None else time.monotonic() + timeout
        position = 0
        while True:
            job = self.status(job_id)
            if on_log is not None:
                text, position = self.logs(job_id, position)
                for line in text.splitlines():
                    on_log(line)
            if job["state"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job['state'].lower()} after {timeout:g} s")
            self._sleep(poll)

    def train(self, request: dict, timeout: float | None = None, poll: float = 1.0) -> dict:
        """Submit, wait, and return the result; raises JobFailed when the job does not succeed."""
        job = self.wait(self.submit(request), timeout=timeout, poll=poll)
        if job["state"] != "SUCCEEDED":
            raise JobFailed(job)
        return self.result(job["id"])

    # ------------------------------------------------------------------ transport

    def _call(self, method: str, path: str, body=None, idempotent: bool = True):
        headers = {"Content-Type": "application/json"}
        token = self.token or default_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        delays = self.retry.delays()
        while True:
            req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as e:
                status, message = e.code, _error_message(e)
                if status not in _RETRIED_STATUS or (not idempotent and status != 503):
                    raise ServiceError(method, path, status, message) from None
                failure = ServiceError(method, path, status, message)
            except urllib.error.URLError as e:
                if not idempotent and not _not_sent(e.reason):
                    raise Unreachable(f"{method} {path}: the connection to {self.base} broke ({e.reason}); "
                                      "the job may have been queued: list the jobs before submitting again"
                                      ) from None
                failure = Unreachable(f"cannot reach the training service at {self.base}: {e.reason}")
            except (ConnectionError, TimeoutError) as e:  # a reset or timeout while reading the answer
                if not idempotent:
                    raise Unreachable(f"{method} {path}: the connection to {self.base} broke ({e}); "
                                      "the job may have been queued: list the jobs before submitting again"
                                      ) from None
                failure = Unreachable(f"{method} {path}: {e}")
            delay = next(delays, None)
            if delay is None:
                raise failure
            self._sleep(delay)


def _job(job_id: str, action: str = "") -> str:
    return f"/v1/jobs/{urllib.parse.quote(job_id, safe='')}" + (f"/{action}" if action else "")


def _evaluation(evaluation_id: str, action: str = "") -> str:
    return f"/v1/evaluations/{urllib.parse.quote(evaluation_id, safe='')}" + (f"/{action}" if action else "")


def _tag(tag: str, action: str = "") -> str:
    return f"/v1/tags/{urllib.parse.quote(tag, safe='')}" + (f"/{action}" if action else "")


def _by(body: dict, by: str) -> dict:
    return {**body, "by": by} if by else body


def _error_message(e: urllib.error.HTTPError) -> str:
    try:
        return json.loads(e.read()).get("error", "") or e.reason
    except ValueError:
        return e.reason
