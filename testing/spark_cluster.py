"""A throwaway Spark standalone cluster on 127.0.0.1 for tests, from pyspark's own launcher.

    with spark_cluster() as master:          # "spark://127.0.0.1:PORT"
        SparkSession.builder.master(master)...

Or as a pytest fixture: `from roundhouse.testing.spark_cluster import spark_master` in a test
module makes `spark_master` available to its tests. One master and `workers` workers (two by
default, 1 core and 1 GiB for executors each), all bound to loopback, each started with
`bin/spark-class` of the installed pyspark (which execs the JVM, so the pid is the JVM's) in a
process group of its own. Startup waits until the master's JSON status page (/json) lists
every worker ALIVE. On exit the groups get SIGTERM (a worker stops its executors), then SIGKILL
after 10 s, and every JVM is waited for.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Iterator

from roundhouse.testing.ports import free_port

try:  # the fixture is optional: the context manager works without pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None


class SparkClusterUnavailable(RuntimeError):
    pass


def spark_home() -> str:
    """The installed pyspark package folder: it holds bin/spark-class and jars/."""
    try:
        import pyspark
    except ImportError as exc:  # pragma: no cover
        raise SparkClusterUnavailable(f"pyspark is not installed: {exc}") from None
    home = os.path.dirname(os.path.abspath(pyspark.__file__))
    if not os.path.exists(os.path.join(home, "bin", "spark-class")):
        raise SparkClusterUnavailable(f"{home} has no bin/spark-class")
    return home


def status(webui_port: int) -> dict | None:
    """The master's JSON status (workers, their state, running apps), or None if not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{webui_port}/json/", timeout=2) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, ConnectionError, OSError, ValueError):
        return None


def _stop(procs: list[subprocess.Popen]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, sig)  # its own group (start_new_session): its executors too
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        if all(p.poll() is not None for p in procs):
            return
    for p in procs:
        p.wait()


@contextlib.contextmanager
def spark_cluster(workers: int = 2, cores: int = 1, memory: str = "1g",
                  daemon_memory: str = "256m", startup_timeout: float = 120.0) -> Iterator[str]:
    """Start a master and `workers` workers, yield the master URL, stop them all on exit.

    cores, memory: what each worker offers executors (spark.executor.memory must fit in it).
    daemon_memory: the heap of the master and worker JVMs themselves.
    """
    home = spark_home()
    workdir = tempfile.mkdtemp(prefix="rh-spark-")
    conf_dir = os.path.join(workdir, "conf")  # empty: no spark-defaults from elsewhere
    os.makedirs(conf_dir)
    env = dict(os.environ)
    env.update({
        "SPARK_HOME": home,
        "SPARK_CONF_DIR": conf_dir,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": workdir,
        "SPARK_DAEMON_MEMORY": daemon_memory,
        "SPARK_NO_DAEMONIZE": "1",
    })
    spark_class = os.path.join(home, "bin", "spark-class")
    port, webui = free_port(), free_port()
    master = f"spark://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    logs: list[str] = []

    def start(name: str, args: list[str]) -> None:
        path = os.path.join(workdir, f"{name}.log")
        logs.append(path)
        with open(path, "wb") as log:
            procs.append(subprocess.Popen(["bash", spark_class, *args], stdout=log,
                                          stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True, cwd=workdir))

    def fail(message: str) -> None:
        tails = []
        for path in logs:
            with open(path, errors="replace") as f:
                tails.append(f"--- {os.path.basename(path)}\n" + f.read()[-3000:])
        raise SparkClusterUnavailable(message + "\n" + "\n".join(tails))

    try:
        start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                         "--port", str(port), "--webui-port", str(webui)])
        for i in range(workers):
            wdir = os.path.join(workdir, f"worker{i}")
            os.makedirs(wdir)
            start(f"worker{i}", ["org.apache.spark.deploy.worker.Worker", master,
                                 "--host", "127.0.0.1", "--cores", str(cores),
                                 "--memory", memory, "--webui-port", str(free_port()),
                                 "--work-dir", wdir])
        deadline = time.monotonic() + startup_timeout
        while True:
            s = status(webui)
            alive = [w for w in (s or {}).get("workers", []) if w.get("state") == "ALIVE"]
            if s and s.get("status") == "ALIVE" and len(alive) >= workers:
                break
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                fail(f"a Spark daemon exited with {dead[0].returncode} during startup")
            if time.monotonic() > deadline:
                fail(f"{len(alive)} of {workers} Spark workers registered within "
                     f"{startup_timeout:.0f} s")
            time.sleep(0.25)
        yield master
    finally:
        _stop(procs)
        shutil.rmtree(workdir, ignore_errors=True)


if pytest is not None:
    @pytest.fixture(scope="module")
    def spark_master():
        with spark_cluster() as url:
            yield url
