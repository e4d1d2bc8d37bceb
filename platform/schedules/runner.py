"""Advancing retraining runs: a state machine over the schedule store, one idempotent step
at a time, driven by a clock (the service's loop, or a test's fake clock).

    PENDING     record the champion (the model the tag points at), queue the challenger's
                training job (ID `<run>-train`)                                -> TRAINING
    TRAINING    wait for the job; failed -> DECIDED failed; no champion -> move the tag
                (DECIDED promoted); else queue an evaluation of [champion, challenger] on
                the run's fresh holdout (ID `<run>-eval`)                        -> EVALUATING
    EVALUATING  wait for the evaluation; apply the gate: challenger - champion >=
                min_improvement moves the tag (DECIDED promoted), else DECIDED kept

Every step can be repeated after a crash at any point: the job and evaluation IDs are derived
from the run's, so a step that created one before dying finds it again; a tag move is
recognised in the tag's history by its `by` ("schedule <id> run <run id>"); the run's row
moves only from the state the step read. The job and the evaluation are ordinary ones, run
by the service's workers.
"""

from __future__ import annotations

import logging
from typing import Callable

from google.protobuf import json_format

from roundhouse.platform.api import validate
from roundhouse.platform.evaluation.store import EvaluationNotFound, EvaluationStore
from roundhouse.platform.jobs.store import Job, JobNotFound, JobStore
from roundhouse.platform.registry import tags as tags_lib
from roundhouse.platform.schedules import spec as spec_lib
from roundhouse.platform.schedules.store import Run, Schedule, ScheduleStore

log = logging.getLogger("roundhouse.schedules")
Clock = Callable[[], float]


def by(run: Run) -> str:
    """Who moves the tag, as its history shows it."""
    return f"schedule {run.schedule_id} run {run.id}"


# ---- which runs exist ----

def enqueue_due(store: ScheduleStore, clock: Clock, schedules: list[Schedule] | None = None) -> list[Run]:
    """Make the run of each schedule's due slot: the latest cron slot after its last cron run
    (or after it was created). After downtime that is one run, for the latest missed slot.
    A slot another process made the run of already is skipped (None from create_run)."""
    now = clock()
    made = []
    for schedule in store.list() if schedules is None else schedules:
        since = store.last_cron_at(schedule.id)
        slot = spec_lib.due_slot(schedule.spec.cron, now, schedule.created_at if since is None else since)
        if slot is None:
            continue
        run = store.create_run(schedule.id, spec_lib.iso(slot), kind="cron", at=slot)
        if run is not None:
            log.info("schedule %s: run %s for slot %s", schedule.id, run.id, run.slot)
            made.append(run)
    return made


def run_now(store: ScheduleStore, schedule: Schedule, clock: Clock) -> Run:
    """A run at this moment, outside the cron slots (POST /v1/schedules/<id>/run)."""
    now = clock()
    run = store.create_run(schedule.id, f"manual {spec_lib.iso(now)} {int(now * 1e6) % 1_000_000:06d}",
                           kind="manual", at=now)
    assert run is not None
    return run


# ---- advancing ----

class Runner:
    def __init__(self, store: ScheduleStore, *, jobs: JobStore, evaluations: EvaluationStore,
                 tags: tags_lib.TagStore, clock: Clock, worker: str = "schedules",
                 lease_seconds: float = 60.0):
        self.store, self.jobs, self.evaluations, self.tags = store, jobs, evaluations, tags
        self.clock, self.worker, self.lease_seconds = clock, worker, lease_seconds

    def tick(self) -> list[Run]:
        """Make due runs, then advance every run this worker may (one step each)."""
        enqueue_due(self.store, self.clock)
        out = []
        for run in self.store.claim_runs(self.worker, self.lease_seconds):
            try:
                out.append(self.advance(run))
            except Exception:  # the run stays where it was; the next tick tries again
                log.exception("run %s: step from %s failed", run.id, run.state)
        return out

    def run(self, stop, poll_seconds: float = 1.0) -> None:
        """The service's loop: a tick every `poll_seconds` until `stop` (a threading.Event)."""
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # keep going; the database keeps the truth for the next tick
                log.exception("schedule tick failed")
            stop.wait(poll_seconds)

    def advance(self, run: Run) -> Run:
        """One step of `run` (re-read); returns the run as it is after it."""
        run = self.store.get_run(run.id)
        schedule = self.store.get(run.schedule_id)
        step = {"PENDING": self._start, "TRAINING": self._after_training,
                "EVALUATING": self._after_evaluation}.get(run.state)
        if step is None:
            return run
        return step(run, schedule) or self.store.get_run(run.id)

    def _decide(self, run: Run, decision: str, reason: str, **fields) -> Run | None:
        log.info("run %s of schedule %s: %s (%s)", run.id, run.schedule_id, decision, reason)
        return self.store.update_run(run.id, expect_state=run.state, worker=self.worker, state="DECIDED",
                                     decision=decision, reason=reason, **fields)

    def _start(self, run: Run, schedule: Schedule) -> Run | None:
        champion = self.tags.get(schedule.tag) or ""
        job_id = f"{run.id}-train"
        try:
            self.jobs.get(job_id)  # made before a crash
        except JobNotFound:
            body = schedule.spec.render(run.at, team=schedule.team,
                                        description=f"{by(run)} ({run.kind} {spec_lib.iso(run.at)})")
            try:
                request = validate.parse_request(body)
            except validate.RequestError as e:
                return self._decide(run, "failed", f"the template rendered at {spec_lib.iso(run.at)} "
                                                   f"is not a valid request: {e}")
            self.jobs.create(request, job_id=job_id)
        return self.store.update_run(run.id, expect_state="PENDING", worker=self.worker, state="TRAINING",
                                     job_id=job_id, champion_id=champion)

    def _after_training(self, run: Run, schedule: Schedule) -> Run | None:
        job = self.jobs.get(run.job_id)
        if job.state not in (Job.SUCCEEDED, Job.FAILED, Job.CANCELLED):
            return None
        if job.state != Job.SUCCEEDED:
            return self._decide(run, "failed", f"training job {job.id} {Job.State.Name(job.state).lower()}: "
                                               f"{job.reason}")
        challenger = job.result.model_id
        metrics = dict(job.result.metrics)
        if not run.champion_id:
            return self._promote(run, schedule, challenger, "the tag pointed at no model; the challenger's "
                                 "job succeeded", challenger_id=challenger,
                                 details={"training_metrics": metrics})
        if challenger == run.champion_id:
            return self._decide(run, "kept", f"the challenger is {challenger}, the model the tag points at "
                                             "already", challenger_id=challenger)
        evaluation_id = f"{run.id}-eval"
        try:
            self.evaluations.get(evaluation_id)
        except EvaluationNotFound:
            request = job.request
            gate = schedule.spec.gate
            spec = {"metadata": {"owner": request.metadata.owner, "team": schedule.team,
                                 "description": f"{by(run)}: {challenger} against {run.champion_id}"},
                    "models": [{"ref": run.champion_id, "model_id": run.champion_id},
                               {"ref": challenger, "model_id": challenger}],
                    "data": json_format.MessageToDict(request.data, preserving_proto_field_name=True),
                    "holdout": json_format.MessageToDict(request.holdout, preserving_proto_field_name=True),
                    "bootstrap": {"resamples": gate.settings.resamples, "seed": gate.settings.seed,
                                  "confidence": gate.settings.confidence},
                    "compare": "first", "workflow": request.workflow}
            self.evaluations.create(spec, owner=request.metadata.owner, team=schedule.team,
                                    workflow=request.workflow, evaluation_id=evaluation_id)
        return self.store.update_run(run.id, expect_state="TRAINING", worker=self.worker, state="EVALUATING",
                                     challenger_id=challenger, evaluation_id=evaluation_id,
                                     details={"training_metrics": metrics})

    def _after_evaluation(self, run: Run, schedule: Schedule) -> Run | None:
        evaluation = self.evaluations.get(run.evaluation_id)
        if evaluation.state not in (Job.SUCCEEDED, Job.FAILED, Job.CANCELLED):
            return None
        if evaluation.state != Job.SUCCEEDED or not evaluation.result:
            return self._decide(run, "failed", f"evaluation {evaluation.id} "
                                               f"{Job.State.Name(evaluation.state).lower()}: {evaluation.reason}")
        gate = schedule.spec.gate
        verdict = gate_verdict(evaluation.result, gate, champion=run.champion_id, challenger=run.challenger_id)
        if verdict.get("error"):
            return self._decide(run, "failed", verdict["error"], details={"gate": verdict})
        if not verdict["passed"]:
            return self._decide(run, "kept", verdict["reason"], details={"gate": verdict})
        current = self.tags.get(schedule.tag)
        if current != run.champion_id and not self._moved(run, schedule):
            return self._decide(run, "kept", f"{verdict['reason']}, but tag {schedule.tag!r} moved to "
                                             f"{current} since the run began", details={"gate": verdict})
        return self._promote(run, schedule, run.challenger_id, verdict["reason"], details={"gate": verdict})

    def _moved(self, run: Run, schedule: Schedule) -> bool:
        return any(e.by == by(run) for e in self.tags.history(schedule.tag))

    def _promote(self, run: Run, schedule: Schedule, model_id: str, reason: str, **fields) -> Run | None:
        if not self._moved(run, schedule):  # moved before a crash: not again
            try:
                self.tags.set(schedule.tag, model_id, by(run), team=schedule.team, token="",
                              check_owner=True)
            except tags_lib.TagForbidden as e:
                return self._decide(run, "failed", str(e), **fields)
        return self._decide(run, "promoted", reason, **fields)


def gate_verdict(result: dict, gate: spec_lib.Gate, *, champion: str, challenger: str) -> dict:
    """Does the challenger beat the champion by the gate's margin on the evaluation's rows?"""
    values = {m["model_id"]: (m["metrics"].get(gate.metric) or {}) for m in result.get("models", [])}
    a, b = values.get(champion, {}).get("value"), values.get(challenger, {}).get("value")
    if a is None or b is None:
        return {"error": f"the evaluation gives no {gate.metric} for "
                         f"{'the champion' if a is None else 'the challenger'} (too few rows of a class?)"}
    improvement = b - a
    out = {"metric": gate.metric, "min_improvement": gate.min_improvement, "champion": a, "challenger": b,
           "improvement": improvement, "passed": improvement >= gate.min_improvement,
           "rows": result.get("rows")}
    for d in result.get("differences", []):
        if (d["metric"], d["model"], d["baseline"]) == (gate.metric, challenger, champion):
            out.update(low=d["low"], high=d["high"], share_positive=d["share_positive"])
    out["reason"] = (f"{gate.metric} {b:.4f} against {a:.4f}: {improvement:+.4f} "
                     f"{'>=' if out['passed'] else '<'} {gate.min_improvement:+.4f}")
    return out
