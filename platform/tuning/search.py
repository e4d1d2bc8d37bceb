"""The advance step of a hyperparameter search: a function over the tuning store and job store.

Each step, for a search this service process holds (TuningStore.acquire's lease):

1. tell: every RUNNING trial whose training job has finished is recorded COMPLETE with its
   metric's value and model, or FAIL (a failed or cancelled job, or a result without the
   metric); a trial whose job was recorded but never queued (the service died in between)
   gets its job queued now, under the recorded job ID;
2. ask: while fewer than `parallelism` trials run and fewer than `budget` were asked, the next
   trial's params come from optuna's TPE sampler, on a study rebuilt from the recorded
   finished trials (study.add_trial(create_trial(...)) in trial-number order) and seeded from
   the search's seed and the trial's number; the trial is recorded, then its job queued
   (an ordinary training job: the template with the sampled params over its own);
3. once `budget` trials were asked and none runs: SUCCEEDED (FAILED if every trial failed).

No optuna study outlives a step: the database rows are the search's whole state, and a trial's
suggestion is a function of (seed, trial number, the finished trials before it). So a search
resumed by a restarted service (or another process, once the lease runs out) asks exactly what
an uninterrupted one would have, never re-runs a finished trial, and keeps a running trial's job.
"""

from __future__ import annotations

import logging
import threading
import uuid

import optuna
from google.protobuf import json_format

from roundhouse.platform.api import training_pb2
from roundhouse.platform.jobs.store import TERMINAL, Job, JobNotFound, JobStore, LeaseLost
from roundhouse.platform.tuning import space as space_lib
from roundhouse.platform.tuning.store import Search, Trial, TuningStore

log = logging.getLogger("roundhouse.tuning")
optuna.logging.set_verbosity(optuna.logging.WARNING)


def distributions(space: dict[str, space_lib.Param]) -> dict[str, optuna.distributions.BaseDistribution]:
    out = {}
    for name, p in space.items():
        if p.kind == "int":
            out[name] = optuna.distributions.IntDistribution(p.low, p.high, log=p.log, step=p.step)
        elif p.kind == "float":
            out[name] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)
        else:
            out[name] = optuna.distributions.CategoricalDistribution(p.choices)
    return out


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial `number` of a search seeded `seed`."""
    return (seed * 1_000_003 + number) % 2**32


def study(spec: space_lib.SearchSpec, finished: list[Trial], number: int) -> optuna.Study:
    """The study trial `number` is asked from: every finished trial, in number order."""
    dists = distributions(spec.space)
    s = optuna.create_study(direction=spec.direction,
                            sampler=optuna.samplers.TPESampler(
                                seed=trial_seed(spec.seed, number), n_startup_trials=spec.startup_trials))
    for t in sorted(finished, key=lambda t: t.number):
        if t.state == "COMPLETE":
            s.add_trial(optuna.trial.create_trial(params=t.params, distributions=dists, value=t.value))
        else:
            s.add_trial(optuna.trial.create_trial(params=t.params, distributions=dists,
                                                  state=optuna.trial.TrialState.FAIL))
    return s


def suggest(spec: space_lib.SearchSpec, finished: list[Trial], number: int) -> dict:
    """The params of trial `number`, given the trials finished before it was asked."""
    trial = study(spec, finished, number).ask(distributions(spec.space))
    return {name: trial.params[name] for name in spec.space}


def trial_request(search: Search, spec: space_lib.SearchSpec, number: int,
                  params: dict) -> training_pb2.TrainingRequest:
    """The training request of a trial: the template with `params` over its own."""
    request = json_format.ParseDict(spec.template, training_pb2.TrainingRequest())
    request.params.update(params)
    request.metadata.team = search.team  # the search's team owns its jobs
    note = f"tuning {search.id} trial {number}"
    request.metadata.description = f"{request.metadata.description} ({note})" if request.metadata.description else note
    return request


def _tell(store: TuningStore, jobs: JobStore, search: Search, spec: space_lib.SearchSpec,
          worker: str) -> None:
    for t in search.trials:
        if t.state != "RUNNING":
            continue
        try:
            job = jobs.get(t.job_id)
        except JobNotFound:  # recorded, then the service died before queueing it
            log.info("search %s trial %d: queueing its job %s", search.id, t.number, t.job_id)
            jobs.create(trial_request(search, spec, t.number, t.params), job_id=t.job_id)
            continue
        if job.state not in TERMINAL:
            continue
        if job.state == Job.SUCCEEDED:
            metrics = job.result.metrics
            if spec.metric in metrics:
                store.finish_trial(search.id, worker, t.number, "COMPLETE", value=float(metrics[spec.metric]),
                                   model_id=job.result.model_id)
                log.info("search %s trial %d: %s=%s (model %s)", search.id, t.number, spec.metric,
                         metrics[spec.metric], job.result.model_id)
            else:
                store.finish_trial(search.id, worker, t.number, "FAIL", model_id=job.result.model_id,
                                   reason=f"job {job.id}'s result has no metric {spec.metric!r} "
                                          f"(it has {', '.join(sorted(metrics)) or 'none'})")
        else:
            state = Job.State.Name(job.state)
            store.finish_trial(search.id, worker, t.number, "FAIL",
                               reason=f"job {job.id} {state.lower()}: {job.reason}".rstrip(": "))
            log.info("search %s trial %d: job %s %s", search.id, t.number, job.id, state)


def advance(store: TuningStore, jobs: JobStore, search_id: str, worker: str) -> Search:
    """One step of search `search_id`, which `worker` holds (else LeaseLost); its new state."""
    search = store.get(search_id)
    if search.state != "RUNNING":
        return search
    store.check_lease(search_id, worker)
    spec = space_lib.from_dict(search.spec)
    _tell(store, jobs, search, spec, worker)
    search = store.get(search_id)
    trials = list(search.trials)
    running = sum(t.state == "RUNNING" for t in trials)
    while len(trials) < spec.budget and running < spec.parallelism:
        number = len(trials)
        params = suggest(spec, [t for t in trials if t.state != "RUNNING"], number)
        job_id = uuid.uuid4().hex
        trials.append(store.add_trial(search.id, worker, number, params, job_id))  # first the record,
        jobs.create(trial_request(search, spec, number, params), job_id=job_id)   # then the job
        running += 1
        log.info("search %s trial %d: job %s with %s", search.id, number, job_id, params)
    if len(trials) >= spec.budget and running == 0:
        search = store.get(search_id)
        if search.best() is None:
            search = store.finish(search_id, worker, "FAILED", f"all {len(trials)} trials failed")
        else:
            search = store.finish(search_id, worker, "SUCCEEDED")
            best = search.best()
            log.info("search %s succeeded: best trial %d, %s=%s, model %s", search_id, best.number,
                     spec.metric, best.value, best.model_id)
        return search
    return store.get(search_id)


class TuningLoop:
    """The service's background loop: every `poll_seconds`, lease the searches nobody else
    holds and advance each (as the worker's loop moves jobs)."""

    def __init__(self, store: TuningStore, jobs: JobStore, worker_id: str, *, lease_seconds: float = 30.0):
        self.store, self.jobs, self.worker_id, self.lease_seconds = store, jobs, worker_id, lease_seconds

    def step(self) -> None:
        for search_id in self.store.acquire(self.worker_id, self.lease_seconds):
            try:
                advance(self.store, self.jobs, search_id, self.worker_id)
            except LeaseLost as e:
                log.warning("search %s: %s", search_id, e)
            except Exception:  # one broken search must not stop the others
                log.exception("search %s: advance failed", search_id)

    def run(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("tuning step failed")
            stop.wait(poll_seconds)
