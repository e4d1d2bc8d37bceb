"""An S3-compatible server (moto's standalone server) on 127.0.0.1 for tests.

    with s3_server() as endpoint:          # "http://127.0.0.1:PORT"
        boto3.client("s3", endpoint_url=endpoint, **S3_CLIENT_ARGS)

The server runs in a subprocess (not a thread) so it has its own interpreter state and is
killed cleanly on exit; it keeps objects in memory. `reset(endpoint)` empties it between tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from typing import Iterator

from roundhouse.testing.ports import free_port
from roundhouse.testing.process import running

# Dummy credentials: moto accepts any, but boto3 and pyarrow refuse to sign without some.
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"

S3_CLIENT_ARGS = {
    "aws_access_key_id": ACCESS_KEY,
    "aws_secret_access_key": SECRET_KEY,
    "region_name": REGION,
}


def _ready(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def reset(endpoint: str) -> None:
    """Delete every bucket and object held by the server."""
    req = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=10):
        pass


def client_env(endpoint: str) -> dict[str, str]:
    """Environment variables that point AWS SDKs (boto3, pyarrow) at the server."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
    }


@contextlib.contextmanager
def s3_server(startup_timeout: float = 60.0) -> Iterator[str]:
    """Start moto's server on a free loopback port, yield its endpoint URL, stop it on exit."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    # The server's own process must not pick up real credentials or endpoints by accident.
    env.update(client_env(endpoint))
    # Under Bazel the test's imports come from sys.path as set up by the launcher, which a
    # child interpreter would not see; hand it the same path so it finds moto.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    workdir = tempfile.mkdtemp(prefix="rh-moto-")
    try:
        with running([sys.executable, "-S", "-c", "import sys; from moto.server import main; sys.exit(main())",
                      "-H", "127.0.0.1", "-p", str(port)],
                     lambda: _ready(endpoint), name="moto server", env=env, timeout=startup_timeout,
                     log_path=os.path.join(workdir, "server.log"), graceful=True):
            yield endpoint
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
