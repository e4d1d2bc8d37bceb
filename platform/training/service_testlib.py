"""A real training service process for tests, and a toy dataset and request for it."""

import json
import os
import pathlib
import signal
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from roundhouse.platform.auth import tokens
from roundhouse.testing.ports import free_port

HERE = pathlib.Path(__file__).parent
SERVER = HERE / "server"
TOY = HERE / "testdata" / "toy_train"


# base URL -> the admin token of the Service there, which `call` sends unless told otherwise.
_TOKENS: dict[str, str] = {}


def call(base, method, path, body=None, token=None):
    """`token`: the bearer token to send (default: the admin token of the Service at `base`;
    "" sends none)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    token = _TOKENS.get(base, "") if token is None else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Service:
    """`token`: an admin token of the service. Known before the first start: the service keeps
    the token it finds in its --admin-token-file (written here) when its database has none.
    With `home`, the server runs with ROUNDHOUSE_HOME=home and its default token file
    (home/token), so `token` is what it wrote there, known once started."""

    def __init__(self, tmp, jobs_url, time_limit=600, home=None):
        self.tmp = tmp
        self.jobs_url = jobs_url
        self.time_limit = time_limit
        self.home = home
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.token = None
        if home is None:
            self.token_file = tmp / "admin-token"
            if tokens.read_token_file(self.token_file) is None:
                tokens.write_token_file(self.token_file, tokens.generate())
            self.token = self.token_file.read_text().strip()
            _TOKENS[self.base] = self.token
        else:
            self.token_file = home / "token"

    def start(self):
        token_flags = ["--admin-token-file", str(self.token_file)] if self.home is None else []
        env = None if self.home is None else {**os.environ, "ROUNDHOUSE_HOME": str(self.home)}
        self.proc = subprocess.Popen(
            [str(SERVER), "--port", str(self.port), "--jobs", self.jobs_url, "--store", str(self.tmp / "models"),
             "--jobs-dir", str(self.tmp / "jobs"), "--workflow", f"toy={TOY}",
             "--time-limit", str(self.time_limit), "--worker-id", "test-worker",
             "--data-root", str(self.tmp), *token_flags],
            stdout=open(self.tmp / "server.log", "ab"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if call(self.base, "GET", "/healthz")[0] == 200:
                    if self.home is not None:
                        self.token = self.token_file.read_text().strip()
                        _TOKENS[self.base] = self.token
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


def toy_data(path: pathlib.Path) -> pathlib.Path:
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=400), rng.normal(size=400)
    pq.write_table(pa.table({"x1": x1, "x2": x2, "y": (x1 + 0.3 * rng.normal(size=400) > 0).astype(int)}), path)
    return path


def request(data, **params):
    return {"metadata": {"owner": "ana", "team": "risk", "description": "toy"},
            "data": {"parquet": {"uri": str(data), "label_columns": ["y"]}},
            "holdout": {"random": {"fraction": 0.25, "seed": 3}},
            "workflow": "toy", "params": params, "resources": {"type": "CPU", "cpu": 1}}
