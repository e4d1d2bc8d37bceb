"""Retraining runs end to end in this process, with a fake clock: real training jobs and
real evaluations (the service's Worker over an in-process executor) on a toy dataset, real
stored models and tags; the gate promoting and keeping; failures; and runs resumed after a
crash between steps."""

import dataclasses
import datetime as dt
import json

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

from roundhouse.platform.api import job_pb2, validate
from roundhouse.platform.build_info import BuildInfo
from roundhouse.platform.evaluation import runner as evaluation_runner
from roundhouse.platform.evaluation import spec as evaluation_spec
from roundhouse.platform.evaluation import summary as evaluation_summary
from roundhouse.platform.evaluation.store import EvaluationStore
from roundhouse.platform.jobs.postgres_store import PostgresJobStore
from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.platform.registry import tags as tags_lib
from roundhouse.platform.registry.store import open_store as open_models
from roundhouse.platform.schedules import runner as runner_lib
from roundhouse.platform.schedules import spec as spec_lib
from roundhouse.platform.schedules.store import ScheduleStore
from roundhouse.platform.training import runner as training_runner
from roundhouse.platform.training.worker import Worker
from roundhouse.platform.training.workflow import Workflow
from roundhouse.testing import postgres_server

Job = job_pb2.Job
NOW = dt.datetime(2026, 12, 2, 3, 0, tzinfo=dt.timezone.utc).timestamp()


def train(train_df, holdout_df, params):
    if params.get("fail"):
        raise RuntimeError("asked to fail")
    y = train_df["y"].to_numpy()
    if params.get("shuffle"):  # a model that learned nothing
        y = np.random.default_rng(int(params.get("seed", 0))).permutation(y)
    return LogisticRegression().fit(train_df[["x1", "x2"]], y)


WORKFLOW = Workflow(name="toy", features=("x1", "x2"), label="y", train=train)


@dataclasses.dataclass(frozen=True)
class ExecutionStatus:  # what an executor reports (platform/executors/status.py's fields)
    state: int
    reason: str = ""
    lost: bool = False

    @property
    def finished(self):
        return self.state in (Job.SUCCEEDED, Job.FAILED, Job.CANCELLED)


class FakeClock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


class InProcess:
    """An executor that runs each submission to its end in this process, at submit."""

    def __init__(self, name, run):
        self.name, self.run, self.done = name, run, {}

    def submit(self, job_id, request):
        try:
            self.done[job_id] = (ExecutionStatus(Job.SUCCEEDED), self.run(request) + "\n")
        except Exception as e:  # noqa: BLE001 - a failed run, as a process's exit would say
            self.done[job_id] = (ExecutionStatus(Job.FAILED, f"error: {e}"), f"{e}\n")
        return job_id

    def status(self, ref):
        return self.done[ref][0]

    def logs(self, ref):
        return self.done[ref][1]

    def cancel(self, ref):
        pass


class Env:
    def __init__(self, tmp_path, open_jobs=None):
        self.tmp = tmp_path
        self.open_jobs = open_jobs or (lambda clock: SqliteJobStore(str(tmp_path / "jobs.sqlite"), clock=clock))
        self.clock = FakeClock(NOW)
        self.models = open_models(str(tmp_path / "models"))
        self.tags = tags_lib.TagStore(self.models)
        self.data = tmp_path / "events.parquet"
        rng = np.random.default_rng(0)
        n = 3000
        x1, x2 = rng.normal(size=n), rng.normal(size=n)
        times = NOW - rng.uniform(0, 120 * 86400, size=n)
        y = (x1 + 0.5 * x2 + 0.5 * rng.normal(size=n) > 0).astype(int)
        pq.write_table(pa.table({
            "event_time": pa.array((times * 1e6).astype("int64"), pa.timestamp("us", tz="UTC")),
            "x1": x1, "x2": x2, "y": y}), self.data)
        self.open()

    def open(self):
        """The stores and workers of one service process on the same database."""
        self.jobs = self.open_jobs(self.clock)
        self.evaluations = EvaluationStore(self.jobs)
        self.schedules = ScheduleStore(self.jobs)
        self.trainer = Worker(self.jobs, InProcess("train", self._train), "w")
        self.evaluator = Worker(self.evaluations, InProcess("evaluate", self._evaluate), "w",
                                parse_result=evaluation_summary.parse)

    def runner(self, worker="scheduler"):
        return runner_lib.Runner(self.schedules, jobs=self.jobs, evaluations=self.evaluations, tags=self.tags,
                                 clock=self.clock, worker=worker)

    def _train(self, request):
        stored = training_runner.run(request, WORKFLOW, self.models, BuildInfo(False, None, None), "//test:toy")
        return json.dumps(training_runner.summary(stored))

    def _evaluate(self, spec):
        result = evaluation_runner.run(evaluation_spec.parse(spec), self.models, WORKFLOW,
                                       progress=lambda _: None)
        return evaluation_summary.line(result.to_dict())

    def template(self, **params):
        return {"metadata": {"owner": "ana"},
                "data": {"parquet": {"uri": str(self.data), "label_columns": ["y"]}},
                "workflow": "toy", "params": params, "resources": {"type": "CPU", "cpu": 1}}

    def schedule(self, min_improvement=0.0, tag="toy-prod", **params):
        spec = spec_lib.parse({"tag": tag, "cron": "0 3 * * *", "template": self.template(**params),
                               "window": {"column": "event_time", "days": 90, "holdout_days": 14},
                               "gate": {"metric": "roc_auc", "min_improvement": min_improvement,
                                        "bootstrap": {"resamples": 100, "seed": 1}}})
        return self.schedules.create(spec, team="risk", owner="ana")

    def champion(self, **params):
        """A model trained outside any schedule, shipped by a person."""
        request = spec_lib.render(self.template(**params), spec_lib.Window("event_time", 90, 14), NOW - 30 * 86400,
                                  team="risk")
        stored = training_runner.run(validate.parse_request(request), WORKFLOW, self.models,
                                     BuildInfo(False, None, None), "//test:toy")
        self.tags.set("toy-prod", stored.record.model_id, "ana", team="risk")
        return stored.record.model_id

    def drive(self, run, runner=None, steps=20):
        runner = runner or self.runner()
        for _ in range(steps):
            runner.store.claim_runs(runner.worker, 60)
            run = runner.advance(self.schedules.get_run(run.id))
            if run.state == "DECIDED":
                return run
            self.trainer.step()
            self.evaluator.step()
            self.clock.now += 1
        raise AssertionError(f"run {run.id} still {run.state}")


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


@pytest.fixture(scope="module")
def postgres():
    with postgres_server.postgres_server() as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgres"])
def any_env(request, tmp_path):
    """An Env on SQLite, or on a database of a real PostgreSQL."""
    if request.param == "sqlite":
        return Env(tmp_path)
    server = request.getfixturevalue("postgres")
    name = f"runs_{tmp_path.name.lower().replace('-', '_')[-40:]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = server.rsplit("/", 1)[0] + "/" + name
    return Env(tmp_path, lambda clock: PostgresJobStore(dsn, clock=clock))


def test_first_run_promotes_when_the_tag_has_no_model(env):
    schedule = env.schedule()
    run = env.drive(runner_lib.run_now(env.schedules, schedule, env.clock))
    assert (run.decision, run.evaluation_id) == ("promoted", "")
    assert run.reason.startswith("the tag pointed at no model")
    assert env.tags.get("toy-prod") == run.challenger_id
    assert env.tags.owner("toy-prod") == "risk"
    [event] = env.tags.history("toy-prod")
    assert event.by == f"schedule {schedule.id} run {run.id}" and event.team == "risk"
    job = env.jobs.get(run.job_id)
    assert job.state == Job.SUCCEEDED and job.request.metadata.team == "risk"
    assert job.request.holdout.time_cutoff.column == "event_time"


def test_gate_promotes_a_better_challenger(env):
    champion = env.champion(shuffle=True)  # learned nothing: roc_auc near 0.5
    schedule = env.schedule(min_improvement=0.05)
    run = env.drive(runner_lib.run_now(env.schedules, schedule, env.clock))
    assert run.decision == "promoted", run.reason
    assert run.champion_id == champion and run.challenger_id != champion
    gate = run.details["gate"]
    assert gate["improvement"] >= 0.05 and gate["passed"] and gate["low"] <= gate["improvement"] <= gate["high"]
    evaluation = env.evaluations.get(run.evaluation_id)
    assert [m["model_id"] for m in evaluation.spec["models"]] == [champion, run.challenger_id]
    assert evaluation.spec["holdout"]["time_cutoff"]["cutoff"] == spec_lib.iso(run.at - 14 * 86400)
    assert env.tags.get("toy-prod") == run.challenger_id
    assert [e.by for e in env.tags.history("toy-prod")] == ["ana", runner_lib.by(run)]


def test_gate_keeps_the_champion(env):
    champion = env.champion()
    schedule = env.schedule(min_improvement=0.0, shuffle=True, seed=5)  # a worse challenger
    run = env.drive(runner_lib.run_now(env.schedules, schedule, env.clock))
    assert run.decision == "kept", run.reason
    assert not run.details["gate"]["passed"] and run.details["gate"]["improvement"] < 0
    assert env.tags.get("toy-prod") == champion
    assert [e.by for e in env.tags.history("toy-prod")] == ["ana"]


def test_a_failed_job_fails_the_run(env):
    champion = env.champion()
    schedule = env.schedule(fail=True)
    run = env.drive(runner_lib.run_now(env.schedules, schedule, env.clock))
    assert run.decision == "failed" and "training job" in run.reason and "asked to fail" in run.reason
    assert env.tags.get("toy-prod") == champion


def test_another_teams_tag_fails_the_run(env):
    env.champion()
    schedule = env.schedules.create(env.schedule().spec, team="growth", owner="bo")
    run = env.drive(runner_lib.run_now(env.schedules, schedule, env.clock))
    assert run.decision == "failed" and "belongs to team 'risk'" in run.reason


class Crash(Exception):
    pass


def test_a_run_resumes_after_crashes_between_steps(any_env, monkeypatch):
    env = any_env
    champion = env.champion(shuffle=True)
    schedule = env.schedule()
    run = runner_lib.run_now(env.schedules, schedule, env.clock)
    crashing = env.runner("first")
    real_update = env.schedules.update_run

    def crash_when(state):
        def update(run_id, **fields):
            if fields.get("state") == state:
                raise Crash(state)
            return real_update(run_id, **fields)
        monkeypatch.setattr(env.schedules, "update_run", update)

    # 1. dies after queueing the job, before the run says TRAINING
    crash_when("TRAINING")
    [claimed] = env.schedules.claim_runs("first", 60)
    with pytest.raises(Crash):
        crashing.advance(claimed)
    assert env.schedules.get_run(run.id).state == "PENDING"
    assert [j.id for j in env.jobs.list()] == [f"{run.id}-train"]

    # 2. a restarted service (another process, another worker ID) takes the run once the lease ran out
    monkeypatch.setattr(env.schedules, "update_run", real_update)
    env.open()
    assert env.schedules.claim_runs("second", 60) == []  # the first one's lease holds
    env.clock.now += 61
    [claimed] = env.schedules.claim_runs("second", 60)
    resumed = env.runner("second")
    assert resumed.advance(claimed).state == "TRAINING"
    assert [j.id for j in env.jobs.list()] == [f"{run.id}-train"]  # the same job, not a second

    # 3. dies after moving the tag, before the run says DECIDED
    for _ in range(10):
        env.trainer.step()
        env.evaluator.step()
        if resumed.advance(env.schedules.get_run(run.id)).state == "EVALUATING":
            break
    real_update = env.schedules.update_run
    crash_when("DECIDED")
    for _ in range(10):
        env.evaluator.step()
        try:
            resumed.advance(env.schedules.get_run(run.id))
        except Crash:
            break
    else:
        raise AssertionError("never reached the decision")
    assert env.schedules.get_run(run.id).state == "EVALUATING"
    challenger = env.schedules.get_run(run.id).challenger_id
    assert env.tags.get("toy-prod") == challenger

    # 4. resumed: decided once, the tag moved once
    monkeypatch.setattr(env.schedules, "update_run", real_update)
    done = resumed.advance(env.schedules.get_run(run.id))
    assert done.state == "DECIDED" and done.decision == "promoted", done.reason
    assert [e.model_id for e in env.tags.history("toy-prod")] == [champion, challenger]
    assert len(env.evaluations.list()) == 1


def test_tick_runs_the_due_slot_once(env):
    schedule = env.schedule()
    env.clock.now = NOW + 2 * 86400 + 60  # two slots since it was made: one run, the latest
    runner = env.runner()
    for _ in range(10):
        runner.tick()
        env.trainer.step()
        env.evaluator.step()
    [run] = env.schedules.runs(schedule.id)
    assert run.slot == spec_lib.iso(NOW + 2 * 86400) and run.decision == "promoted"
