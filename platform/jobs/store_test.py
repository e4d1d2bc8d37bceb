"""One suite, run against both job store backends: SQLite and a real PostgreSQL server."""

import threading

import psycopg
import pytest

from roundhouse.platform.api import job_pb2, training_pb2
from roundhouse.platform.jobs.factory import open_store
from roundhouse.platform.jobs.postgres_store import PostgresJobStore
from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.platform.jobs.store import InvalidTransition, Job, JobNotFound, LeaseLost
from roundhouse.platform.jobs.testlib import job_databases, postgres  # noqa: F401  (pytest fixtures)

LEASE = 30.0


@pytest.fixture
def make_store(job_databases):
    """A factory for stores over one fresh database; each call is another service process."""
    return job_databases()


def req(owner="ana", workflow="fraud", team="risk"):
    r = training_pb2.TrainingRequest(workflow=workflow)
    r.metadata.owner, r.metadata.team = owner, team
    r.data.parquet.uri = "s3://bucket/data/"
    r.data.parquet.label_columns.append("is_fraud")
    r.holdout.random.fraction = 0.2
    r.params["max_depth"] = 6
    return r


def test_create_and_get_round_trip_the_request(make_store):
    store = make_store()
    job = store.create(req())
    assert job.state == Job.QUEUED and job.attempt == 0
    assert job.owner == "ana" and job.workflow == "fraud"
    got = store.get(job.id)
    assert got.request == req()
    assert got.created_at.seconds == int(make_store.clock.now)
    assert not got.HasField("started_at")
    with pytest.raises(JobNotFound):
        store.get("nope")


def test_allowed_transitions_and_timestamps(make_store):
    store, clock = make_store(), make_store.clock
    job = store.create(req())
    clock.advance(5)
    running = store.claim("w1", LEASE)
    assert running.id == job.id and running.state == Job.RUNNING and running.attempt == 1
    assert running.started_at.seconds == int(clock.now)
    clock.advance(60)
    result = job_pb2.JobResult(model_id="m-123", git_sha="abc")
    result.metrics["auc"] = 0.93
    done = store.transition(job.id, Job.SUCCEEDED, result=result, worker="w1")
    assert done.state == Job.SUCCEEDED
    assert done.finished_at.seconds - done.started_at.seconds == 60
    assert store.get(job.id).result == result
    for to in (Job.RUNNING, Job.QUEUED, Job.FAILED, Job.CANCELLED):
        with pytest.raises(InvalidTransition, match="SUCCEEDED"):
            store.transition(job.id, to)


def test_a_queued_job_cannot_succeed_without_running(make_store):
    store = make_store()
    job = store.create(req())
    with pytest.raises(InvalidTransition):
        store.transition(job.id, Job.SUCCEEDED)
    failed = store.transition(job.id, "failed", reason="workflow 'frad' does not exist")
    assert failed.state == Job.FAILED and "frad" in failed.reason


def test_logs_append_and_read_incrementally(make_store):
    store = make_store()
    job = store.create(req())
    store.append_logs(job.id, "loading data\n")
    pos = store.append_logs(job.id, "training: 10%\n")
    text, after = store.read_logs(job.id)
    assert text == "loading data\ntraining: 10%\n" and after == pos
    store.append_logs(job.id, "training: 50%\n")
    more, after2 = store.read_logs(job.id, after)
    assert more == "training: 50%\n" and after2 > after
    assert store.read_logs(job.id, after2) == ("", after2)
    assert store.get(job.id, with_logs=True).logs.endswith("50%\n")
    assert store.get(job.id).logs == ""
    with pytest.raises(JobNotFound):
        store.append_logs("nope", "x")


def test_list_filters_by_owner_workflow_and_state(make_store):
    store, clock = make_store(), make_store.clock
    a = store.create(req(owner="ana", workflow="fraud"))
    clock.advance(1)
    b = store.create(req(owner="bo", workflow="fraud"))
    clock.advance(1)
    c = store.create(req(owner="ana", workflow="churn"))
    store.claim("w", LEASE)  # takes the oldest: a
    assert [j.id for j in store.list()] == [c.id, b.id, a.id]
    assert [j.id for j in store.list(owner="ana")] == [c.id, a.id]
    assert [j.id for j in store.list(workflow="fraud")] == [b.id, a.id]
    assert [j.id for j in store.list(state="running")] == [a.id]
    assert [j.id for j in store.list(owner="ana", state=Job.QUEUED)] == [c.id]
    assert [j.id for j in store.list(limit=1)] == [c.id]
    with pytest.raises(ValueError, match="unknown job state 'done'"):
        store.list(state="done")


def test_list_filters_by_team(make_store):
    store, clock = make_store(), make_store.clock
    risk = store.create(req(team="risk"))
    clock.advance(1)
    growth = store.create(req(team="growth"))
    clock.advance(1)
    legacy = store.create(req(team=""))  # submitted before team tokens
    assert [j.id for j in store.list(team="risk")] == [risk.id]
    assert [j.id for j in store.list(team="growth", owner="ana")] == [growth.id]
    assert store.list(team="ops") == []
    assert [j.id for j in store.list(team=None)] == [legacy.id, growth.id, risk.id]


def test_cancel_queued_at_once_running_through_its_worker(make_store):
    store, clock = make_store(), make_store.clock
    running = store.create(req())
    clock.advance(1)
    queued = store.create(req())
    assert store.claim("w", LEASE).id == running.id  # oldest first
    cancelled = store.request_cancel(queued.id, "cancelled by ana")
    assert cancelled.state == Job.CANCELLED and cancelled.reason == "cancelled by ana"
    flagged = store.request_cancel(running.id, "cancelled by ana")
    assert flagged.state == Job.RUNNING and flagged.cancel_requested
    # The worker learns of it on its heartbeat, stops the run, then records the cancel.
    assert store.heartbeat(running.id, "w", LEASE).cancel_requested
    done = store.transition(running.id, Job.CANCELLED, "cancelled by ana", worker="w")
    assert done.state == Job.CANCELLED
    with pytest.raises(InvalidTransition):
        store.request_cancel(done.id)


def test_claim_hands_each_job_to_exactly_one_of_many_workers(make_store):
    stores = [make_store() for _ in range(4)]
    created = {stores[0].create(req()).id for _ in range(40)}
    claimed: dict[str, list[str]] = {}

    def work(i, store):
        mine = claimed.setdefault(f"w{i}", [])
        while (job := store.claim(f"w{i}", LEASE)) is not None:
            mine.append(job.id)

    threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [j for jobs in claimed.values() for j in jobs]
    assert sorted(everything) == sorted(created)
    assert all(j.state == Job.RUNNING and j.attempt == 1 for j in stores[0].list(limit=100))


def test_after_a_crash_running_jobs_are_reattached_or_requeued_never_stuck(make_store):
    clock = make_store.clock
    before = make_store()
    attached = before.create(req())
    clock.advance(1)
    lost = before.create(req())
    assert before.claim("host-a", LEASE).id == attached.id
    before.set_executor_ref(attached.id, "host-a", "kubernetes", "rh-train-abc")
    assert before.claim("host-a", LEASE).id == lost.id
    before.close()  # host-a dies with both jobs RUNNING

    other = make_store()
    clock.advance(LEASE / 2)
    assert other.recover("host-b", LEASE) == []  # leases still live: host-a may be alive
    clock.advance(LEASE)
    recovered = {j.id: j for j in other.recover("host-b", LEASE)}
    assert set(recovered) == {attached.id, lost.id}
    # A job with an executor handle is re-attached: same run, new owner.
    assert recovered[attached.id].executor_ref == "rh-train-abc"
    assert other.heartbeat(attached.id, "host-b", LEASE).state == Job.RUNNING
    # One without is run again.
    requeued = other.requeue(lost.id, "host-b", "host-a stopped answering", max_attempts=3)
    assert requeued.state == Job.QUEUED and requeued.executor_ref == ""
    again = other.claim("host-b", LEASE)
    assert again.id == lost.id and again.attempt == 2
    assert other.transition(lost.id, Job.SUCCEEDED, worker="host-b").state == Job.SUCCEEDED

    # host-a comes back and tries to finish what it no longer owns.
    zombie = make_store()
    with pytest.raises(LeaseLost):
        zombie.transition(attached.id, Job.FAILED, "lost", worker="host-a")
    with pytest.raises(LeaseLost):
        zombie.heartbeat(attached.id, "host-a", LEASE)


def test_a_restarted_worker_takes_back_its_own_jobs_at_once(make_store):
    first = make_store()
    job = first.create(req())
    first.claim("svc-1", LEASE)
    first.close()
    restarted = make_store()
    # Same worker id, lease not expired: no need to wait out the lease.
    assert [j.id for j in restarted.recover("svc-1", LEASE)] == [job.id]
    assert restarted.recover("svc-2", LEASE) == []


def test_requeue_gives_up_after_max_attempts_and_honours_cancel(make_store):
    store = make_store()
    job = store.create(req())
    for attempt in (1, 2):
        assert store.claim("w", LEASE).attempt == attempt
        final = store.requeue(job.id, "w", "worker crashed", max_attempts=2)
    assert final.state == Job.FAILED
    assert final.reason == "worker crashed; gave up after 2 attempts"

    other = store.create(req())
    assert store.claim("w", LEASE).id == other.id
    store.request_cancel(other.id, "cancelled by bo")
    assert store.requeue(other.id, "w", "lost", max_attempts=5).state == Job.CANCELLED


def test_set_result_and_open_store_urls(make_store, tmp_path):
    store = make_store()
    job = store.create(req())
    with pytest.raises(InvalidTransition):
        store.set_result(job.id, job_pb2.JobResult(model_id="m"))
    store.claim("w", LEASE)
    assert store.set_result(job.id, job_pb2.JobResult(model_id="m")).result.model_id == "m"

    with open_store(f"sqlite://{tmp_path}/a/b.sqlite") as s:
        assert isinstance(s, SqliteJobStore) and s.path == f"{tmp_path}/a/b.sqlite"
    if isinstance(store, PostgresJobStore):
        with open_store(store.dsn) as s:
            assert isinstance(s, PostgresJobStore)
            assert s.get(job.id).result.model_id == "m"


def test_postgres_store_reconnects_after_the_server_drops_it(postgres):
    store = PostgresJobStore(postgres)
    try:
        job = store.create(req())
        before = store._conn
        with psycopg.connect(postgres, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                "AND backend_type = 'client backend'").fetchall()
        assert killed and all(ok for (ok,) in killed)
        # The store's connection is dead; the next call notices at BEGIN and reconnects.
        assert store.get(job.id).id == job.id
        assert store._conn is not before
    finally:
        store.close()
