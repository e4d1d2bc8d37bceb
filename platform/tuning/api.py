"""The tuning endpoints of the training service (registered by platform/training/app.py).

POST /v1/tuning                 a search request (platform/tuning/space.py) -> 202 {"search_id"}
GET  /v1/tuning?owner=&team=&state=   the caller's team's searches, newest first (no trials)
GET  /v1/tuning/<id>            state, spec, reason, every trial (params, job, state, value,
                                model) and the best trial with its model
POST /v1/tuning/<id>/cancel     stops asking for trials and cancels the running trials' jobs

A request is checked in full before it is stored: the space, metric, direction, budget and
parallelism (400 naming the field), and the template exactly as POST /v1/jobs checks a
training request (the same function; its fields named under `template.`). A search belongs to
the team of its template's metadata.team, filled from the token as for a job, and so does
every trial job; a team sees, lists and cancels only its own searches (an admin: any).
"""

from __future__ import annotations

import logging
from typing import Callable

from flask import Flask, jsonify, request
from google.protobuf import json_format

from roundhouse.platform.api import training_pb2, validate
from roundhouse.platform.auth import flask_auth as auth
from roundhouse.platform.jobs.store import InvalidTransition, JobNotFound, JobStore
from roundhouse.platform.tuning import space as space_lib
from roundhouse.platform.tuning.store import SEARCH_STATES, TuningStore

log = logging.getLogger("roundhouse.training.tuning")


def _invalid(e: validate.RequestError, prefix: str = "", **extra):
    errors = [validate.FieldError(f"{prefix}{f.field}" if f.field else prefix.rstrip("."), f.message)
              for f in e.errors]
    e = validate.RequestError(errors)
    return jsonify({**e.to_dict(), "error": f"invalid tuning request: {e}", **extra}), 400


def register(app: Flask, searches: TuningStore, jobs: JobStore, *,
             check_training_request: Callable[[dict], training_pb2.TrainingRequest]) -> None:
    """Add the endpoints to `app`. `check_training_request`: POST /v1/jobs's checks (app.py)."""

    def owned(search_id):
        search = searches.get(search_id)  # SearchNotFound is a JobNotFound: the app's 404
        auth.require_team(search.team, f"search {search_id}")
        return search

    @app.post("/v1/tuning")
    def submit_search():
        try:
            body = validate.load_json(request.get_data())
            spec = space_lib.parse(body)
        except validate.RequestError as e:
            return _invalid(e)
        try:
            template = check_training_request(spec.template)
        except validate.RequestError as e:
            extra = {"known": e.known} if hasattr(e, "known") else {}
            return _invalid(e, "template.", **extra)
        stored = spec.to_dict()
        stored["template"] = json_format.MessageToDict(template, preserving_proto_field_name=True)
        search = searches.create(stored, owner=template.metadata.owner, team=template.metadata.team)
        log.info("search %s queued: workflow=%s owner=%s team=%s metric=%s budget=%d parallelism=%d",
                 search.id, template.workflow, search.owner, search.team, spec.metric, spec.budget,
                 spec.parallelism)
        return jsonify({"search_id": search.id, "budget": spec.budget, "parallelism": spec.parallelism}), 202

    @app.get("/v1/tuning")
    def list_searches():
        state = request.args.get("state") or None
        if state and state.upper() not in SEARCH_STATES:
            return jsonify({"error": f"state: unknown state {state!r}; one of "
                                     f"{', '.join(s.lower() for s in SEARCH_STATES)}", "field": "state"}), 400
        caller, team = auth.principal(), request.args.get("team") or None
        if not caller.admin:
            if team and team != caller.team:
                raise auth.Forbidden(f"token {caller.id} is of team {caller.team!r}; it lists only that "
                                     f"team's searches, not team {team!r}'s")
            team = caller.team
        found = searches.list(owner=request.args.get("owner") or None, team=team, state=state)
        return jsonify({"searches": [s.to_dict(full=False) for s in found]})

    @app.get("/v1/tuning/<search_id>")
    def get_search(search_id):
        return jsonify(owned(search_id).to_dict())

    @app.post("/v1/tuning/<search_id>/cancel")
    def cancel_search(search_id):
        search = owned(search_id)
        if search.state != "RUNNING":
            return jsonify({"error": f"search {search_id} is {search.state.lower()}; it cannot be cancelled",
                            "state": search.state}), 409
        caller = auth.principal()
        reason = f"cancelled by request (token {caller.id}, team {caller.team})"
        search = searches.cancel(search_id, reason)
        for trial in search.trials:
            if trial.state != "FAIL" or trial.reason != f"cancelled: {reason}":
                continue  # finished before the cancel
            try:
                jobs.request_cancel(trial.job_id, f"{reason}: its search {search_id} was cancelled")
            except (InvalidTransition, JobNotFound):
                pass  # finished meanwhile, or never queued
        log.info("search %s cancelled by token %s", search_id, caller.id)
        return jsonify(searches.get(search_id).to_dict(full=False)), 202
