"""`bazel run //platform/training:server -- --port N`: the training service.

Embedded defaults: a SQLite job store and the model store under $ROUNDHOUSE_HOME, jobs run
as local processes of the workflow executables built with this binary. Real parts by flag:
--jobs postgresql://..., --store s3://bucket/prefix, --executor kubernetes --kube-config
FILE (a YAML of platform/executors/kubernetes_manifest.KubernetesConfig: namespace, image
registry and the env vars holding its credentials, resource table; the cluster comes from
~/.kube/config or the pod's service account).

Every call but /healthz needs a team token (platform/auth; `bazel run
//platform/training:tokens` makes them, in the job store's database). On a database with no
admin token, the server makes one and writes it to --admin-token-file (default
$ROUNDHOUSE_HOME/token, mode 0600), where the CLI and TrainingClient find it.

Evaluations (POST /v1/evaluations, platform/evaluation) run beside the jobs, as local
processes of the same workflow executables (`train --evaluate`), whatever the executor: an
`evaluations` table in the job store's database, their folders under --evaluations-dir, at
most --evaluation-capacity at once.

Retraining schedules (POST /v1/schedules, platform/schedules) live in the same database; a
loop here makes each due run and advances it (training job, evaluation, tag move), and a
killed service's runs are taken back by whichever process holds their lease next.

Hyperparameter searches (POST /v1/tuning, platform/tuning) live there too: a loop here
advances each search it holds the lease of (tells finished trials, asks new ones through
optuna, queues each trial as an ordinary training job), so a killed service's searches resume.

Requests may read local data only under --data-root folders (default $ROUNDHOUSE_HOME/data,
where `bazel run //workflows/fraud:train` writes its tables), and ask for no more cpu, memory
or GPUs than the executor can give: this machine's, or the largest row of the resource table.
"""

import argparse
import glob
import json
import logging
import os
import pathlib
import socket
import sys
import threading

import waitress

from roundhouse.platform.api import validate
from roundhouse.platform.auth.sql_tokens import open_token_store
from roundhouse.platform.auth.tokens import ensure_local_admin
from roundhouse.platform.data.sources import DataAccess
from roundhouse.platform.evaluation import summary as evaluation_summary
from roundhouse.platform.evaluation.executor import LocalEvaluationExecutor
from roundhouse.platform.evaluation.store import EvaluationStore
from roundhouse.platform.executors.local import LocalExecutor
from roundhouse.platform.jobs.factory import open_store as open_jobs
from roundhouse.platform.training.app import create_app
from roundhouse.platform.home import default_home
from roundhouse.platform.registry import tags as tags_lib
from roundhouse.platform.registry.store import open_store as open_models
from roundhouse.platform.schedules.runner import Runner as ScheduleRunner
from roundhouse.platform.schedules.store import ScheduleStore
from roundhouse.platform.training.worker import Worker
from roundhouse.platform.tuning.search import TuningLoop
from roundhouse.platform.tuning.store import TuningStore

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
    parser.add_argument("--evaluations-dir", default=None,
                        help="working directories of evaluations, run locally (default: an "
                             "`evaluations` folder beside --jobs-dir)")
    parser.add_argument("--evaluation-capacity", type=int, default=1, help="evaluations run at once")
    parser.add_argument("--executor", choices=("local", "kubernetes"), default="local")
    parser.add_argument("--kube-config", type=pathlib.Path, help="executor config (YAML) for --executor kubernetes")
    parser.add_argument("--data-root", action="append", type=pathlib.Path, default=[], metavar="DIR",
                        help="a folder requests may read local data from (repeatable; default HOME/data)")
    parser.add_argument("--admin-token-file", default=str(home / "token"),
                        help="where to write the local admin token the server makes when the database "
                             "has no admin token (default HOME/token; '' makes none)")
    args = parser.parse_args(argv)
    args.data_roots = tuple(args.data_root) or (home / "data",)
    args.evaluations_dir = args.evaluations_dir or str(pathlib.Path(args.jobs_dir).parent / "evaluations")
    workflows = {name: str(path) for name, path in built_workflows().items() if path.exists()}
    for item in args.workflow:
        name, sep, command = item.partition("=")
        if not sep or not name or not command:
            parser.error(f"--workflow {item!r}: expected NAME=COMMAND")
        workflows[name] = command
    args.workflows = workflows
    return args


def kubernetes_config(config_path):
    import yaml

    from roundhouse.platform.executors.kubernetes_manifest import KubernetesConfig

    settings = yaml.safe_load(config_path.read_text()) if config_path else {}
    return KubernetesConfig.from_dict(settings or {})


def kubernetes_executor(config):
    from kubernetes import client, config as kube_config

    from roundhouse.platform.executors.kubernetes import KubernetesExecutor

    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        kube_config.load_kube_config()
    return KubernetesExecutor(config, client.ApiClient())


def table_limits(classes) -> validate.ResourceLimits:
    """Limits from a resource table (KubernetesConfig.resource_classes): its largest row.

    The table says what each type gets, not what a node could give; its largest row is the
    most that it says any pool is sized for.
    """
    rows = list(classes.values())
    return validate.ResourceLimits(
        max_cpu=max(validate.quantity(r.cpu) for r in rows),
        max_memory_bytes=int(max(validate.quantity(r.memory) for r in rows)),
        max_gpu=max(r.gpu for r in rows))


def machine_limits() -> validate.ResourceLimits:
    """Limits for local jobs: what this machine has (and this process may use)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return validate.ResourceLimits(
        max_cpu=float(len(os.sched_getaffinity(0))),
        max_memory_bytes=memory - memory % 2**20,  # whole Mi, so the 400 can print it exactly
        max_gpu=len(glob.glob("/dev/nvidia[0-9]*")))  # one device node per NVIDIA GPU


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    jobs = open_jobs(args.jobs)
    tokens = open_token_store(args.jobs)  # the same database
    if args.admin_token_file:
        ensure_local_admin(tokens, pathlib.Path(args.admin_token_file))
    if args.executor == "kubernetes":
        config = kubernetes_config(args.kube_config)
        executor = kubernetes_executor(config)
        limits = table_limits(config.resource_classes)
        capacity = max(args.capacity, 100)  # the cluster queues and schedules, not this worker
    else:
        executor = LocalExecutor(args.workflows, args.jobs_dir, args.store, args.time_limit)
        limits = machine_limits()
        capacity = args.capacity
    # Local jobs see this machine's files, so the service can open them to check a request.
    data = DataAccess(roots=args.data_roots, read_files=args.executor == "local")
    worker = Worker(jobs, executor, args.worker_id, capacity=capacity)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name="worker", daemon=True)
    thread.start()
    evaluations = EvaluationStore(jobs)  # the same database, its own table
    evaluator = Worker(evaluations, LocalEvaluationExecutor(LocalExecutor(
        args.workflows, args.evaluations_dir, args.store, args.time_limit)), args.worker_id,
        capacity=args.evaluation_capacity, parse_result=evaluation_summary.parse)
    evaluation_thread = threading.Thread(target=evaluator.run, args=(stop,), name="evaluations", daemon=True)
    evaluation_thread.start()
    schedules = ScheduleStore(jobs)  # the same database, its own tables
    scheduler = ScheduleRunner(schedules, jobs=jobs, evaluations=evaluations,
                               tags=tags_lib.TagStore(open_models(args.store)), clock=schedules.clock,
                               worker=args.worker_id)
    schedule_thread = threading.Thread(target=scheduler.run, args=(stop,), name="schedules", daemon=True)
    schedule_thread.start()
    tuning = TuningStore(jobs)  # hyperparameter searches: the same database, their own tables
    tuner = TuningLoop(tuning, jobs, args.worker_id)
    tuning_thread = threading.Thread(target=tuner.run, args=(stop,), name="tuning", daemon=True)
    tuning_thread.start()
    logging.info("training service on http://%s:%d (jobs %s, models %s, workflows %s, data under %s)",
                 args.host, args.port, args.jobs, args.store, ", ".join(sorted(args.workflows)),
                 ", ".join(map(str, args.data_roots)))
    app = create_app(jobs, open_models(args.store), workflows=set(args.workflows), limits=limits,
                     data=data, tokens=tokens, evaluations=evaluations, schedules=schedules,
                     tuning=tuning)
    try:
        waitress.serve(app, host=args.host, port=args.port, threads=8, _quiet=True)
    finally:
        stop.set()
        thread.join(timeout=5)
        evaluation_thread.join(timeout=5)
        schedule_thread.join(timeout=5)
        tuning_thread.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
