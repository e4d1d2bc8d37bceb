"""Start a server process for a test, wait until it answers, and always stop it.

    with running(["redis-server", ...], lambda: ping(port), name="redis-server",
                 log_path=os.path.join(workdir, "server.log"), error=RedisUnavailable):
        ...

Shared by the servers in testing/: the log goes to a file (a pipe nobody drains would block
the server), a server that exits while starting fails with its log, and on exit the process is
stopped and waited for, so no test leaves a server behind.
"""
from __future__ import annotations

import contextlib
import subprocess
import time
from typing import Callable, Iterator, Mapping, Sequence


@contextlib.contextmanager
def running(cmd: Sequence[str], ready: Callable[[], bool], *, name: str, log_path: str,
            timeout: float = 20.0, env: Mapping[str, str] | None = None,
            error: type[Exception] = RuntimeError, graceful: bool = False) -> Iterator[subprocess.Popen]:
    """`ready()` is polled until true; `graceful` sends SIGTERM (then SIGKILL after 10 s)
    instead of SIGKILL at once, for servers that must flush something on exit."""
    log = open(log_path, "wb")
    proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                with open(log_path, errors="replace") as f:
                    raise error(f"{name} exited with {proc.returncode}: {f.read()}")
            if time.monotonic() > deadline:
                raise error(f"{name} did not answer within {timeout:g} s")
            time.sleep(0.02)
        yield proc
    finally:
        if graceful:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        else:
            proc.kill()
        proc.wait()
        log.close()
