"""Schedules: the spec's checks, cron slots and the missed-runs-once rule with a fake clock,
and two runners racing for one slot on SQLite and a real PostgreSQL."""

import datetime as dt
import itertools
import threading

import psycopg
import pytest

from roundhouse.platform.api.validate import RequestError
from roundhouse.platform.jobs.postgres_store import PostgresJobStore
from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.platform.schedules import runner, spec as spec_lib
from roundhouse.platform.schedules.store import ScheduleStore
from roundhouse.testing import postgres_server


def t(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class FakeClock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


TEMPLATE = {"metadata": {"owner": "ana"},
            "data": {"parquet": {"uri": "/data/toy.parquet", "label_columns": ["y"]}},
            "workflow": "toy", "params": {"C": 1.0}, "resources": {"type": "CPU", "cpu": 1}}
BODY = {"tag": "toy-prod", "cron": "0 3 * * *", "template": TEMPLATE,
        "window": {"column": "event_time", "days": 90, "holdout_days": 7},
        "gate": {"metric": "roc_auc", "min_improvement": 0.01, "bootstrap": {"resamples": 50}}}


def fields(body):
    with pytest.raises(RequestError) as e:
        spec_lib.parse(body)
    return {f.field for f in e.value.errors}


def test_parse_and_render():
    spec = spec_lib.parse(BODY)
    assert spec.gate.settings.resamples == 50 and spec.window.days == 90
    request = spec.render(t("2026-12-02T03:00:00Z"), team="risk", description="schedule s run r")
    assert request["holdout"] == {"time_cutoff": {"column": "event_time", "cutoff": "2026-11-25T03:00:00Z"}}
    assert request["data"]["parquet"]["filters"] == [
        {"column": "event_time", "op": "GE", "value": "2026-09-03T03:00:00Z"},
        {"column": "event_time", "op": "LT", "value": "2026-12-02T03:00:00Z"}]
    assert request["metadata"] == {"owner": "ana", "team": "risk", "description": "schedule s run r"}
    assert "filters" not in TEMPLATE["data"]["parquet"]  # the template is not changed
    assert spec_lib.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("change, field", [
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "every day"}, "cron"),
    ({"cron": "0 3 * * * *"}, "cron"),
    ({"tag": "Bad Tag"}, "tag"),
    ({"nope": 1}, "nope"),
    ({"window": {"column": "event_time", "days": 7, "holdout_days": 7}}, "window.holdout_days"),
    ({"window": {"column": "event_time", "days": -1, "holdout_days": 1}}, "window.days"),
    ({"window": {"days": 9, "holdout_days": 1}}, "window.column"),
    ({"gate": {"metric": "accuracy", "min_improvement": 0}}, "gate.metric"),
    ({"gate": {"metric": "roc_auc", "min_improvement": "a lot"}}, "gate.min_improvement"),
    ({"gate": {"metric": "roc_auc", "min_improvement": 0, "bootstrap": {"resamples": -1}}},
     "gate.bootstrap.resamples"),
    ({"template": {**TEMPLATE, "holdout": {"random": {"fraction": 0.2}}}}, "template.holdout"),
    ({"template": {**TEMPLATE, "workflow": ""}}, "template.workflow"),
    ({"template": {**TEMPLATE, "params": 3}}, "template.params"),
    ({"template": {**TEMPLATE, "nonsense": 3}}, "template.nonsense"),
    ({"template": {**TEMPLATE, "metadata": {}}}, "template.metadata.owner"),
])
def test_bad_schedules_name_the_field(change, field):
    assert field in fields({**BODY, **change})


def test_cron_slots():
    cron = "0 3 * * *"
    assert spec_lib.latest_slot(cron, t("2026-12-02T03:00:00Z")) == t("2026-12-02T03:00:00Z")
    assert spec_lib.latest_slot(cron, t("2026-12-02T02:59:59Z")) == t("2026-12-01T03:00:00Z")
    assert spec_lib.next_slot(cron, t("2026-12-02T03:00:00Z")) == t("2026-12-03T03:00:00Z")
    assert spec_lib.latest_slot("*/15 * * * *", t("2026-12-02T10:44:10Z")) == t("2026-12-02T10:30:00Z")
    assert spec_lib.due_slot(cron, t("2026-12-02T04:00:00Z"), since=t("2026-12-02T03:00:00Z")) is None
    assert spec_lib.due_slot(cron, t("2026-12-03T03:00:01Z"), since=t("2026-12-02T03:00:00Z")) == \
        t("2026-12-03T03:00:00Z")


def test_missed_runs_run_once(tmp_path):
    clock = FakeClock(t("2026-12-01T10:00:00Z"))
    store = ScheduleStore(SqliteJobStore(str(tmp_path / "jobs.sqlite"), clock=clock))
    schedule = store.create(spec_lib.parse(BODY), team="risk", owner="ana")
    assert runner.enqueue_due(store, clock) == []  # no slot since it was made
    clock.now = t("2026-12-02T03:00:05Z")
    [first] = runner.enqueue_due(store, clock)
    assert first.slot == "2026-12-02T03:00:00Z" and first.kind == "cron" and first.state == "PENDING"
    assert runner.enqueue_due(store, clock) == []  # the same slot, once
    clock.now = t("2026-12-07T12:00:00Z")  # down for five slots
    [caught_up] = runner.enqueue_due(store, clock)
    assert caught_up.slot == "2026-12-07T03:00:00Z"
    assert runner.enqueue_due(store, clock) == []
    clock.now += 1
    manual = runner.run_now(store, schedule, clock)
    assert manual.kind == "manual" and manual.at == clock.now
    assert runner.enqueue_due(store, clock) == []  # a run now is not a cron slot
    assert [r.slot for r in store.runs(schedule.id)][1:] == ["2026-12-07T03:00:00Z", "2026-12-02T03:00:00Z"]


@pytest.fixture(scope="module")
def postgres():
    with postgres_server.postgres_server() as dsn:
        yield dsn


_numbers = itertools.count()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_runners_race_for_one_slot(backend, tmp_path, request):
    clock = FakeClock(t("2026-12-01T10:00:00Z"))
    if backend == "sqlite":
        def open_jobs():
            return SqliteJobStore(str(tmp_path / "jobs.sqlite"), clock=clock)
    else:
        server = request.getfixturevalue("postgres")
        name = f"schedules_{next(_numbers)}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        dsn = server.rsplit("/", 1)[0] + "/" + name

        def open_jobs():
            return PostgresJobStore(dsn, clock=clock)
    stores = [ScheduleStore(open_jobs()) for _ in range(2)]  # two service processes
    schedule = stores[0].create(spec_lib.parse(BODY), team="risk", owner="ana")
    clock.now = t("2026-12-09T03:00:01Z")
    for _ in range(5):  # a few rounds, each both at once
        made, barrier = [], threading.Barrier(2)

        def race(store):
            barrier.wait()
            made.extend(runner.enqueue_due(store, clock))
        threads = [threading.Thread(target=race, args=(s,)) for s in stores]
        [th.start() for th in threads]
        [th.join() for th in threads]
        assert len(made) <= 1
    runs = stores[1].runs(schedule.id)
    assert [r.slot for r in runs] == ["2026-12-09T03:00:00Z"]
    # the database refuses a second row for the slot, whoever asks
    assert stores[1].create_run(schedule.id, "2026-12-09T03:00:00Z", kind="cron", at=clock.now) is None
    # and only one runner holds the run's lease
    a = stores[0].claim_runs("a", 60)
    b = stores[1].claim_runs("b", 60)
    assert [r.id for r in a] == [runs[0].id] and b == []
