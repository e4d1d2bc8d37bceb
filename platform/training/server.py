"""`bazel run //platform/training:server -- --port N`: the training service.

Embedded defaults: a SQLite job store and the model store under $ROUNDHOUSE_HOME, jobs run
as local processes of the workflow executables built with this binary. Real parts by flag:
--jobs postgresql://..., --store s3://bucket/prefix, --executor kubernetes --kube-config
FILE (a YAML of platform/executors/kubernetes_manifest.KubernetesConfig: namespace, image
registry and the env vars holding its credentials, resource table; the cluster comes from
~/.kube/config or the pod's service account).
"""

import argparse
import json
import logging
import os
import pathlib
import socket
import sys
import threading

import waitress

from roundhouse.platform.executors.local import LocalExecutor
from roundhouse.platform.jobs.factory import open_store as open_jobs
from roundhouse.platform.training.app import create_app
from roundhouse.platform.home import default_home
from roundhouse.platform.registry.store import open_store as open_models
from roundhouse.platform.training.worker import Worker

# Workflow executables built into this binary's runfiles: every workflows/<name>/ of the
# build, listed by @workflows (tools/workflows/registry.bzl).
_RUNFILES = pathlib.Path(__file__).parents[3]  # not resolve(): that leads to the source tree
_REGISTRY = _RUNFILES / "workflows" / "registry.json"


def built_workflows() -> dict[str, pathlib.Path]:
    """name -> the workflow's train binary in this binary's runfiles."""
    registry = json.loads(_REGISTRY.read_text()) if _REGISTRY.exists() else {}
    return {name: _RUNFILES / "roundhouse" / path for name, path in registry.items()}


def parse_args(argv):
    home = default_home()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--jobs", default=str(home / "jobs.sqlite"),
                        help="job store: a SQLite path or postgresql://...")
    parser.add_argument("--store", default=os.environ.get("ROUNDHOUSE_STORE", str(home)),
                        help="model store: a directory or s3://bucket/prefix")
    parser.add_argument("--jobs-dir", default=str(home / "jobs"), help="working directories of local jobs")
    parser.add_argument("--workflow", action="append", default=[], metavar="NAME=COMMAND",
                        help="the train command of a workflow (default: the ones built in)")
    parser.add_argument("--time-limit", type=int, default=6 * 3600, help="seconds a job may run")
    parser.add_argument("--worker-id", default=f"{socket.gethostname()}-local",
                        help="stable across restarts, so a restarted service takes its jobs back")
    parser.add_argument("--capacity", type=int, default=2, help="jobs run at once")
    parser.add_argument("--executor", choices=("local", "kubernetes"), default="local")
    parser.add_argument("--kube-config", type=pathlib.Path, help="executor config (YAML) for --executor kubernetes")
    args = parser.parse_args(argv)
    workflows = {name: str(path) for name, path in built_workflows().items() if path.exists()}
    for item in args.workflow:
        name, sep, command = item.partition("=")
        if not sep or not name or not command:
            parser.error(f"--workflow {item!r}: expected NAME=COMMAND")
        workflows[name] = command
    args.workflows = workflows
    return args


def kubernetes_executor(config_path):
    import yaml
    from kubernetes import client, config as kube_config

    from roundhouse.platform.executors.kubernetes import KubernetesExecutor
    from roundhouse.platform.executors.kubernetes_manifest import KubernetesConfig

    settings = yaml.safe_load(config_path.read_text()) if config_path else {}
    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        kube_config.load_kube_config()
    return KubernetesExecutor(KubernetesConfig.from_dict(settings or {}), client.ApiClient())


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    jobs = open_jobs(args.jobs)
    if args.executor == "kubernetes":
        executor = kubernetes_executor(args.kube_config)
        capacity = max(args.capacity, 100)  # the cluster queues and schedules, not this worker
    else:
        executor = LocalExecutor(args.workflows, args.jobs_dir, args.store, args.time_limit)
        capacity = args.capacity
    worker = Worker(jobs, executor, args.worker_id, capacity=capacity)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name="worker", daemon=True)
    thread.start()
    logging.info("training service on http://%s:%d (jobs %s, models %s, workflows %s)",
                 args.host, args.port, args.jobs, args.store, ", ".join(sorted(args.workflows)))
    try:
        waitress.serve(create_app(jobs, open_models(args.store), workflows=set(args.workflows)), host=args.host, port=args.port, threads=8, _quiet=True)
    finally:
        stop.set()
        thread.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
