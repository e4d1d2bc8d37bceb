"""A throwaway Redis server on 127.0.0.1 for tests, using Debian's redis-server.

    with redis_server() as url:          # "redis://127.0.0.1:PORT/0"
        redis.Redis.from_url(url).ping()

Or as a pytest fixture: `from roundhouse.testing.redis_server import redis_url` in a test
module makes `redis_url` available to its tests. No persistence (`--save '' --appendonly no`),
bound to loopback only (without --bind, redis-server listens on every interface).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Iterator

from roundhouse.testing.ports import free_port

try:  # the fixture is optional: the context manager works without pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

_BINARY = "/usr/bin/redis-server"


class RedisUnavailable(RuntimeError):
    pass


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Start a server, yield its URL, kill it (and wait for it) on exit."""
    binary = shutil.which("redis-server") or _BINARY
    if not os.path.exists(binary):
        raise RedisUnavailable("redis-server not found; install Debian's package: "
                               "apt-get install -y redis-server")
    workdir = tempfile.mkdtemp(prefix="rh-redis-")
    port = free_port()
    log = open(os.path.join(workdir, "server.log"), "wb")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--daemonize", "no", "--dir", workdir],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not _ping(port):
            if proc.poll() is not None:
                raise RedisUnavailable(f"redis-server exited with {proc.returncode}: "
                                       + open(log.name).read())
            if time.monotonic() > deadline:
                raise RedisUnavailable("redis-server did not answer PING within 20 s")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


if pytest is not None:
    @pytest.fixture(scope="module")
    def redis_url():
        with redis_server() as url:
            yield url
