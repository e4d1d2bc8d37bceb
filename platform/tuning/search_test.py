"""The advance step against real job stores (SQLite and a PostgreSQL server): the test plays
the training worker, finishing each trial's job through the job store with a result carrying
the metric."""

import math

import pytest

from roundhouse.platform.api import job_pb2
from roundhouse.platform.jobs.store import Job, LeaseLost
from roundhouse.platform.tuning import search as search_lib
from roundhouse.platform.tuning import space
from roundhouse.platform.tuning.store import SearchNotFound, TuningStore
from roundhouse.platform.jobs.testlib import job_databases, postgres  # noqa: F401  (pytest fixtures)

LEASE = 30.0
RUNNER = "test-runner"  # the stand-in for the training worker
TEMPLATE = {"metadata": {"owner": "ana", "team": "risk", "description": "toy"},
            "data": {"parquet": {"uri": "s3://bucket/toy.parquet", "label_columns": ["y"]}},
            "holdout": {"random": {"fraction": 0.25, "seed": 3}},
            "workflow": "toy", "params": {"C": 1.0, "sleep_seconds": 0}}
SPACE = {"C": {"type": "float", "low": 0.001, "high": 100.0, "log": True},
         "depth": {"type": "int", "low": 1, "high": 9},
         "solver": {"type": "categorical", "choices": ["lbfgs", "saga", "newton"]}}


@pytest.fixture
def make_db(job_databases):
    """make_db() -> a factory of (TuningStore, JobStore) pairs over one fresh database: each
    call of the factory is another service process."""
    def make_db():
        database = job_databases()

        def process():
            j = database()
            return TuningStore(j), j
        process.clock = database.clock
        return process
    return make_db


def objective(params):
    """A made-up metric with its best at C = 1, depth = 6, solver saga."""
    return (1.0 - 0.05 * math.log10(params["C"]) ** 2 - 0.01 * (params["depth"] - 6) ** 2
            + (0.02 if params["solver"] == "saga" else 0.0))


def create(store, **overrides):
    body = {"template": TEMPLATE, "space": SPACE, "metric": "roc_auc", "direction": "maximize",
            "budget": 10, "parallelism": 2, "seed": 5, "startup_trials": 3, **overrides}
    return store.create(space.parse(body).to_dict(), owner="ana", team="risk")


def run_jobs(jobs, value=objective, fail=()):
    """Finish every queued trial job, in trial-number order: SUCCEEDED with roc_auc = value(params),
    or FAILED for the trial numbers in `fail`."""
    finished = []
    while (job := jobs.claim(RUNNER, LEASE)) is not None:
        finished.append(job)
    for job in sorted(finished, key=lambda j: int(j.request.metadata.description.rsplit(" ", 1)[1].rstrip(")"))):
        number = int(job.request.metadata.description.rsplit(" ", 1)[1].rstrip(")"))
        params = dict(job.request.params)
        params["depth"] = int(params["depth"])
        if number in fail:
            jobs.transition(job.id, Job.FAILED, "out of memory", worker=RUNNER)
            continue
        result = job_pb2.JobResult(model_id=f"m-{job.id[:24]}", git_sha="abc")
        result.metrics.update({"roc_auc": value(params), "pr_auc": 0.5})
        jobs.transition(job.id, Job.SUCCEEDED, result=result, worker=RUNNER)
    return len(finished)


def drive(store, jobs, search_id, worker="svc-1", steps=100, **kw):
    """Advance until the search ends, finishing the jobs between steps; the search."""
    for _ in range(steps):
        store.acquire(worker, LEASE)
        s = search_lib.advance(store, jobs, search_id, worker)
        if s.state != "RUNNING":
            return s
        run_jobs(jobs, **kw)
    raise AssertionError("the search did not end")


def params_of(s):
    return [t.params for t in s.trials]


def test_a_search_runs_to_its_budget_and_names_the_best_trial(make_db):
    store, jobs = make_db()()
    s = drive(store, jobs, create(store).id)
    assert s.state == "SUCCEEDED" and len(s.trials) == 10
    assert all(t.state == "COMPLETE" for t in s.trials)
    assert [t.number for t in s.trials] == list(range(10))
    best = max(s.trials, key=lambda t: t.value)
    assert s.best() == best and best.model_id == f"m-{best.job_id[:24]}"
    assert best.value == pytest.approx(objective({**best.params}))
    d = s.to_dict()
    assert d["best"]["number"] == best.number and d["best"]["model_id"] == best.model_id
    assert d["trial_counts"] == {"running": 0, "complete": 10, "fail": 0} and len(d["trials"]) == 10
    # every trial is an ordinary job of the search's team, the template's params under the sampled ones
    for t in s.trials:
        job = jobs.get(t.job_id)
        assert job.state == Job.SUCCEEDED and job.request.metadata.team == "risk"
        assert job.request.workflow == "toy" and job.request.params["sleep_seconds"] == 0
        assert job.request.params["C"] == t.params["C"] and job.request.params["solver"] == t.params["solver"]
        assert 0.001 <= t.params["C"] <= 100 and t.params["depth"] in range(1, 10)
    assert len(jobs.list()) == 10


def test_minimize_picks_the_lowest(make_db):
    store, jobs = make_db()()
    s = drive(store, jobs, create(store, direction="minimize", budget=5).id)
    assert s.best() == min(s.trials, key=lambda t: t.value)


def test_suggestions_are_deterministic_for_a_seed(make_db):
    runs = []
    for seed in (5, 5, 6):
        store, jobs = make_db()()
        runs.append(params_of(drive(store, jobs, create(store, seed=seed).id)))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_tpe_uses_the_history(make_db):
    """Past the startup trials, a different history gives different suggestions."""
    a_store, a_jobs = make_db()()
    b_store, b_jobs = make_db()()
    a = drive(a_store, a_jobs, create(a_store).id)
    b = drive(b_store, b_jobs, create(b_store).id, value=lambda p: -objective(p))
    assert params_of(a)[:4] == params_of(b)[:4]  # random until 3 trials finished (asked 2 at a time)
    assert params_of(a)[4:] != params_of(b)[4:]


def test_resume_after_a_restart_asks_what_an_uninterrupted_search_asks(make_db):
    store, jobs = make_db()()
    uninterrupted = drive(store, jobs, create(store).id)

    process = make_db()
    store, jobs = process()
    search_id = create(store).id
    for _ in range(3):  # 6 trials asked, 4 finished, 2 running
        store.acquire("svc-1", LEASE)
        search_lib.advance(store, jobs, search_id, "svc-1")
        run_jobs(jobs)
    store.acquire("svc-1", LEASE)
    before = search_lib.advance(store, jobs, search_id, "svc-1")
    assert [t.state for t in before.trials] == ["COMPLETE"] * 6 + ["RUNNING"] * 2
    running_jobs = {t.number: t.job_id for t in before.trials if t.state == "RUNNING"}
    # The service dies (every object is dropped); another process takes over once the lease runs out.
    store, jobs = process()
    assert store.acquire("svc-2", LEASE) == []  # svc-1's lease still holds
    process.clock.advance(LEASE + 1)
    assert store.acquire("svc-2", LEASE) == [search_id]
    with pytest.raises(LeaseLost):
        search_lib.advance(store, jobs, search_id, "svc-1")
    resumed = search_lib.advance(store, jobs, search_id, "svc-2")
    assert [t.state for t in resumed.trials] == ["COMPLETE"] * 6 + ["RUNNING"] * 2  # nothing re-asked
    assert {t.number: t.job_id for t in resumed.trials if t.state == "RUNNING"} == running_jobs
    run_jobs(jobs)
    s = drive(store, jobs, search_id, worker="svc-2")
    assert params_of(s) == params_of(uninterrupted)
    assert [t.value for t in s.trials] == [t.value for t in uninterrupted.trials]
    for t0, t1 in zip(before.trials[:6], s.trials[:6]):
        assert (t1.job_id, t1.value) == (t0.job_id, t0.value)  # never re-run
    assert len(jobs.list()) == 10  # one job per trial, none repeated


def test_a_trial_recorded_but_never_queued_gets_its_job(make_db):
    store, jobs = make_db()()
    s = create(store, budget=2)
    store.acquire("svc-1", LEASE)
    spec = space.from_dict(s.spec)
    params = search_lib.suggest(spec, [], 0)
    store.add_trial(s.id, "svc-1", 0, params, "job-lost-0")  # then the service died
    s = search_lib.advance(store, jobs, s.id, "svc-1")
    assert jobs.get("job-lost-0").state == Job.QUEUED
    assert jobs.get("job-lost-0").request.params["C"] == params["C"]
    assert [t.job_id for t in s.trials][0] == "job-lost-0" and len(s.trials) == 2
    assert params == search_lib.suggest(spec, [], 0)


def test_parallelism_is_respected(make_db):
    store, jobs = make_db()()
    search_id = create(store, budget=7, parallelism=3).id
    seen = []
    for _ in range(20):
        store.acquire("svc-1", LEASE)
        s = search_lib.advance(store, jobs, search_id, "svc-1")
        running = [t for t in s.trials if t.state == "RUNNING"]
        assert len(running) <= 3
        assert len(jobs.list(state="QUEUED")) == len(running)
        seen.append(len(running))
        if s.state != "RUNNING":
            break
        # finish only the oldest running trial each round
        while jobs.claim(RUNNER, LEASE) is not None:
            pass
        for other in jobs.list(state="RUNNING"):
            if other.id != running[0].job_id:
                jobs.requeue(other.id, RUNNER, "put back", max_attempts=100)
        result = job_pb2.JobResult(model_id="m-x")
        result.metrics["roc_auc"] = 0.5
        jobs.transition(running[0].job_id, Job.SUCCEEDED, result=result, worker=RUNNER)
    assert s.state == "SUCCEEDED" and len(s.trials) == 7
    assert max(seen) == 3 and seen[0] == 3


def test_failed_trials_count_against_the_budget(make_db):
    store, jobs = make_db()()
    s = drive(store, jobs, create(store, budget=4).id, fail={1, 2})
    assert s.state == "SUCCEEDED" and len(s.trials) == 4
    assert [t.state for t in s.trials] == ["COMPLETE", "FAIL", "FAIL", "COMPLETE"]
    assert "out of memory" in s.trials[1].reason
    assert s.best().number in (0, 3)


def test_a_result_without_the_metric_fails_the_trial_and_all_failed_fails_the_search(make_db):
    store, jobs = make_db()()
    s = drive(store, jobs, create(store, budget=2, metric="recall_at_1pct_fpr").id)
    assert [t.state for t in s.trials] == ["FAIL", "FAIL"]
    assert "no metric 'recall_at_1pct_fpr'" in s.trials[0].reason
    assert s.state == "FAILED" and s.best() is None and "all 2 trials failed" in s.reason


def test_one_owner_at_a_time(make_db):
    process = make_db()
    (a, a_jobs), (b, b_jobs) = process(), process()
    s = create(a)
    assert a.acquire("svc-1", LEASE) == [s.id]
    assert b.acquire("svc-2", LEASE) == []
    with pytest.raises(LeaseLost):
        search_lib.advance(b, b_jobs, s.id, "svc-2")
    assert a.acquire("svc-1", LEASE) == [s.id]  # renewed
    process.clock.advance(LEASE / 2)
    assert b.acquire("svc-2", LEASE) == []
    process.clock.advance(LEASE)
    assert b.acquire("svc-2", LEASE) == [s.id]
    assert a.acquire("svc-1", LEASE) == []


def test_the_loop_advances_and_cancel_stops(make_db):
    store, jobs = make_db()()
    s = create(store, budget=3, parallelism=1)
    loop = search_lib.TuningLoop(store, jobs, "svc-1", lease_seconds=LEASE)
    loop.step()
    assert len(store.get(s.id).trials) == 1
    store.cancel(s.id, "cancelled by test")
    loop.step()
    got = store.get(s.id)
    assert got.state == "CANCELLED" and len(got.trials) == 1 and got.reason == "cancelled by test"
    assert got.trials[0].state == "FAIL" and got.trials[0].reason == "cancelled: cancelled by test"


def test_get_list_and_not_found(make_db):
    process = make_db()
    store, _ = process()
    a = create(store)
    process.clock.advance(1)
    b = store.create(space.parse({"template": TEMPLATE, "space": SPACE, "metric": "pr_auc", "budget": 1}).to_dict(),
                     owner="ben", team="growth")
    assert [x.id for x in store.list()] == [b.id, a.id]  # newest first
    assert [x.id for x in store.list(team="growth")] == [b.id]
    assert [x.id for x in store.list(state="running", owner="ana")] == [a.id]
    with pytest.raises(SearchNotFound):
        store.get("nope")
