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
import tempfile
from typing import Iterator

from roundhouse.testing.ports import free_port
from roundhouse.testing.process import running

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
    try:
        with running([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                      "--daemonize", "no", "--dir", workdir],
                     lambda: _ping(port), name="redis-server", error=RedisUnavailable,
                     log_path=os.path.join(workdir, "server.log")):
            yield f"redis://127.0.0.1:{port}/0"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if pytest is not None:
    @pytest.fixture(scope="module")
    def redis_url():
        with redis_server() as url:
            yield url
