"""Evaluations in the job store's database, SQLite and a real PostgreSQL, with the job states,
transitions and leases; and the training service's Worker running them."""

import dataclasses

import pytest

from roundhouse.platform.evaluation.store import EvaluationNotFound, EvaluationStore
from roundhouse.platform.jobs.store import InvalidTransition, Job, LeaseLost
from roundhouse.platform.training.worker import Worker
from roundhouse.platform.jobs.testlib import job_databases, postgres  # noqa: F401  (pytest fixtures)

LEASE = 30.0
SPEC = {"metadata": {"owner": "ana", "team": "risk"}, "workflow": "toy",
        "models": [{"ref": "toy-prod", "model_id": "m-" + "a" * 24}]}


@pytest.fixture
def make_store(job_databases):
    """A factory: each call is another service process on the same database."""
    database = job_databases()
    jobs_stores = []

    def make():
        jobs_stores.append(database())
        return EvaluationStore(jobs_stores[-1])
    make.clock = database.clock
    make.jobs = jobs_stores
    return make


def create(store, owner="ana", team="risk"):
    return store.create(SPEC, owner=owner, team=team, workflow="toy")


def test_create_get_list_with_filters_newest_first(make_store):
    store = make_store()
    a = create(store)
    make_store.clock.advance(1)
    b = create(store, owner="ben", team="growth")
    got = store.get(a.id)
    assert got.state == Job.QUEUED and got.spec == SPEC and got.result is None and got.attempt == 0
    assert (got.owner, got.team, got.workflow) == ("ana", "risk", "toy")
    assert [e.id for e in store.list()] == [b.id, a.id]
    assert [e.id for e in store.list(team="risk")] == [a.id]
    assert [e.id for e in store.list(owner="ben", state="queued")] == [b.id]
    assert store.list(state="succeeded") == []
    with pytest.raises(EvaluationNotFound, match="no evaluation 'nope'"):
        store.get("nope")


def test_the_jobs_table_and_the_evaluations_table_are_separate(make_store):
    store = make_store()
    create(store)
    assert make_store.jobs[0].list() == []  # a training worker never sees an evaluation
    assert make_store.jobs[0].claim("w", LEASE) is None


def test_claim_run_succeed_with_a_result(make_store):
    store = make_store()
    e = create(store)
    claimed = store.claim("w1", LEASE, "local")
    assert claimed.id == e.id and claimed.state == Job.RUNNING and claimed.attempt == 1
    assert store.claim("w2", LEASE) is None
    store.set_executor_ref(e.id, "w1", "local", "/evals/x")
    with pytest.raises(LeaseLost):
        store.transition(e.id, Job.SUCCEEDED, result={"rows": 1}, worker="w2")
    done = store.transition(e.id, Job.SUCCEEDED, result={"rows": 10, "models": []}, worker="w1")
    assert done.state == Job.SUCCEEDED and done.result == {"rows": 10, "models": []}
    assert done.finished_at is not None and done.to_dict()["result"] == {"rows": 10, "models": []}
    assert "result" not in done.to_dict(full=False)
    with pytest.raises(InvalidTransition, match=f"evaluation {e.id} is SUCCEEDED; it cannot become RUNNING"):
        store.transition(e.id, Job.RUNNING)


def test_cancel_queued_at_once_running_through_its_worker(make_store):
    store = make_store()
    queued = create(store)
    assert store.request_cancel(queued.id, "no longer needed").state == Job.CANCELLED
    running = create(store)
    store.claim("w1", LEASE)
    flagged = store.request_cancel(running.id)
    assert flagged.state == Job.RUNNING and flagged.cancel_requested
    assert store.heartbeat(running.id, "w1", LEASE).cancel_requested
    with pytest.raises(InvalidTransition):
        store.request_cancel(queued.id)


def test_a_crashed_workers_evaluation_is_recovered_by_another(make_store):
    first, second = make_store(), make_store()
    e = create(first)
    first.claim("w1", LEASE)
    assert second.recover("w2", LEASE) == []  # w1's lease still runs
    make_store.clock.advance(LEASE + 1)
    assert [x.id for x in second.recover("w2", LEASE)] == [e.id]
    with pytest.raises(LeaseLost):
        first.heartbeat(e.id, "w1", LEASE)
    again = second.requeue(e.id, "w2", "its run was lost", max_attempts=3)
    assert again.state == Job.QUEUED and again.reason == "its run was lost"
    assert second.claim("w2", LEASE).attempt == 2


def test_logs_append_and_read_from_a_position(make_store):
    store = make_store()
    e = create(store)
    p1 = store.append_logs(e.id, "[evaluate] loading\n")
    store.append_logs(e.id, "[evaluate] done\n")
    assert store.read_logs(e.id)[0] == "[evaluate] loading\n[evaluate] done\n"
    assert store.read_logs(e.id, after=p1)[0] == "[evaluate] done\n"


@dataclasses.dataclass
class Status:  # what an executor reports (platform/executors/status.ExecutionStatus)
    state: int
    reason: str = ""
    lost: bool = False

    @property
    def finished(self):
        return self.state in (Job.SUCCEEDED, Job.FAILED, Job.CANCELLED)


class FakeExecutor:
    """Runs nothing: each run finishes when the test says, with the output the test gives."""
    name = "local"

    def __init__(self):
        self.runs, self.outputs, self.states, self.cancelled = {}, {}, {}, []

    def submit(self, evaluation_id, spec):
        self.runs[evaluation_id] = spec
        self.states[evaluation_id] = Job.RUNNING
        return f"ref-{evaluation_id}"

    def status(self, ref):
        return Status(self.states[ref[4:]], "exited with code 1" if self.states[ref[4:]] == Job.FAILED else "")

    def logs(self, ref):
        return self.outputs.get(ref[4:], "")

    def cancel(self, ref):
        self.cancelled.append(ref[4:])


def parse(output):
    return {"rows": int(output.split()[-1])} if output.startswith("rows") else None


def test_the_training_worker_runs_evaluations(make_store):
    store = make_store()
    executor = FakeExecutor()
    worker = Worker(store, executor, "w1", capacity=1, parse_result=parse)
    created = []
    for _ in range(3):
        make_store.clock.advance(1)  # claimed oldest first
        created.append(create(store))
    ok, failing, cancelled = created
    worker.step()
    assert executor.runs == {ok.id: SPEC}  # capacity 1: the oldest first, with its spec
    executor.outputs[ok.id] = "rows 42"
    executor.states[ok.id] = Job.SUCCEEDED
    worker.step()
    assert store.get(ok.id).state == Job.SUCCEEDED and store.get(ok.id).result == {"rows": 42}
    assert store.read_logs(ok.id)[0] == "rows 42"
    executor.states[failing.id] = Job.FAILED
    worker.step()
    assert store.get(failing.id).state == Job.FAILED and "exited with code 1" in store.get(failing.id).reason
    store.request_cancel(cancelled.id)
    worker.step()
    assert store.get(cancelled.id).state == Job.CANCELLED and executor.cancelled == [cancelled.id]
