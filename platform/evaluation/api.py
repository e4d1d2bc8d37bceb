"""The evaluation endpoints of the training service (registered by platform/training/app.py).

POST /v1/evaluations               an evaluation request (spec.py) -> 202 {"evaluation_id"}
GET  /v1/evaluations?owner=&team=&state=
GET  /v1/evaluations/<id>          state, spec, timestamps, reason; the result once SUCCEEDED
GET  /v1/evaluations/<id>/logs?after=N   {"text", "next"}
POST /v1/evaluations/<id>/cancel

A request is checked in full before it is queued, as a training request is, and refused with
a 400 naming the field: its JSON and fields (spec.parse, which checks data and holdout with
the training request's own checks), every model (`models[i]`: an unknown ID or tag, a
meta-model, a model that reads columns the data does not have), the workflow (`workflow`:
one this service runs; by default the one that trained the first model), and the data source
(the local paths under the data folders, the files and columns there). Tags are resolved at
submit: the evaluation records which model each tag pointed at.

An evaluation belongs to a team, as a job does: with team tokens (platform/auth, flask.g's
principal), the caller's team (metadata.team may be empty or must name it; an admin token may
name any team), and a caller sees, lists and cancels only its team's evaluations (403
otherwise; an admin token: every team's). Without tokens, the request's metadata.team.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Collection

from flask import Flask, g, jsonify, request

from roundhouse.platform.api import validate
from roundhouse.platform.auth import flask_auth as auth
from roundhouse.platform.data import sources, storage
from roundhouse.platform.evaluation import models as models_lib
from roundhouse.platform.evaluation import spec as spec_lib
from roundhouse.platform.evaluation.store import EvaluationNotFound, EvaluationStore
from roundhouse.platform.jobs.store import InvalidTransition, Job
from roundhouse.platform.registry.store import ModelStore

log = logging.getLogger("roundhouse.training.evaluations")


def _invalid(errors: list[validate.FieldError], **extra):
    e = validate.RequestError(errors)
    return jsonify({**e.to_dict(), "error": f"invalid evaluation request: {e}", **extra}), 400


def _principal():
    """The caller's token when the app checks tokens (platform/auth installed), else None."""
    return g.get("principal")


def _owned(evaluation):
    """The evaluation, if the caller's team may see it (auth.Forbidden: 403)."""
    if _principal() is not None:
        auth.require_team(evaluation.team, f"evaluation {evaluation.id}")
    return evaluation


def _team(metadata_team: str) -> str:
    """Whose the evaluation is: the token's team (an admin's may name any), else metadata.team."""
    p = _principal()
    if p is None:
        return metadata_team
    if not metadata_team:
        return p.team
    if metadata_team != p.team and not p.admin:
        raise auth.Forbidden(f"metadata.team is {metadata_team!r} but token {p.id} is of team {p.team!r}: "
                             f"leave metadata.team empty or set it to {p.team!r}")
    return metadata_team


def register(app: Flask, evaluations: EvaluationStore, models: ModelStore, *,
             workflows: Collection[str] | None, data: sources.DataAccess) -> None:
    """Add the endpoints to `app`. `workflows`: the ones this service runs (None: any);
    `data`: where requests may read local data (evaluations run on this machine, so their
    files are checked here whatever the training executor is)."""
    access = dataclasses.replace(data, read_files=True)

    @app.errorhandler(EvaluationNotFound)
    def not_found(e):
        return jsonify({"error": str(e)}), 404

    @app.post("/v1/evaluations")
    def submit_evaluation():
        try:
            spec = spec_lib.parse(request.get_data())
        except validate.RequestError as e:
            return _invalid(e.errors)
        team = _team(spec.metadata.team)  # 403 before anything else when it is another team's
        ids, records, errors = [], [], []
        for i, ref in enumerate(spec.models):
            field = f"models[{i}]"
            try:
                model_id = models_lib.resolve(models, ref.ref, field)
                if ref.model_id and ref.model_id != model_id:
                    raise models_lib.ModelError(field, f"{ref.ref!r} names {model_id}, not {ref.model_id}")
                record = models.get(model_id)
                models_lib.check_evaluable(record, field)
                if model_id in ids:
                    first = ids.index(model_id)
                    raise models_lib.ModelError(field, f"{ref.ref!r} is {model_id}, which models[{first}] "
                                                       f"({spec.models[first].ref!r}) names already")
            except models_lib.ModelError as e:
                errors.append(validate.FieldError(e.field, e.message))
                continue
            ids.append(model_id)
            records.append(record)
        if errors:
            return _invalid(errors)

        workflow = spec.workflow or records[0].request.workflow
        if not workflow:
            return _invalid([validate.FieldError(
                "workflow", f"model {ids[0]} records no workflow; name the workflow whose evaluate to run")])
        if workflows is not None and workflow not in workflows:
            known = ", ".join(sorted(workflows)) or "none"
            origin = "" if spec.workflow else f" (the workflow that trained {ids[0]})"
            return _invalid([validate.FieldError(
                "workflow", f"unknown workflow {workflow!r}{origin}; this service runs {known}")],
                known=sorted(workflows))
        resolved = spec.resolved(ids, workflow)

        try:
            sources.check_source(resolved.rows.data, "data", access)
            if resolved.rows.holdout.HasField("dataset"):
                sources.check_source(resolved.rows.holdout.dataset.source, "holdout.dataset.source", access)
            available = _columns(resolved.rows.data, access)
        except sources.DataError as e:
            return _invalid([validate.FieldError(e.field, e.message)])
        if available is not None:
            for i, record in enumerate(records):
                wanted = models_lib.input_columns(models, record)
                missing = [c for c in wanted or () if c not in available]
                if missing:
                    errors.append(validate.FieldError(
                        f"models[{i}]", f"model {ids[i]} reads column(s) {', '.join(missing)}, which the "
                                        f"data does not provide (it provides {', '.join(available)})"))
            if errors:
                return _invalid(errors)

        resolved.rows.metadata.team = team  # as a job's request: the team it belongs to
        evaluation = evaluations.create(resolved.to_dict(), owner=resolved.metadata.owner, team=team,
                                        workflow=workflow)
        log.info("evaluation %s queued: workflow=%s owner=%s team=%s models=%s", evaluation.id, workflow,
                 evaluation.owner, team, ",".join(ids))
        return jsonify({"evaluation_id": evaluation.id, "models": resolved.to_dict()["models"],
                        "workflow": workflow}), 202

    @app.get("/v1/evaluations")
    def list_evaluations():
        state = request.args.get("state") or None
        if state and state.upper() not in Job.State.keys():
            return jsonify({"error": f"state: unknown state {state!r}", "field": "state"}), 400
        team = request.args.get("team") or None
        p = _principal()
        if p is not None and not p.admin:
            if team and team != p.team:
                raise auth.Forbidden(f"token {p.id} is of team {p.team!r}; it lists only that team's "
                                     f"evaluations, not team {team!r}'s")
            team = p.team
        found = evaluations.list(owner=request.args.get("owner") or None, team=team,
                                 state=state.upper() if state else None)
        return jsonify({"evaluations": [e.to_dict(full=False) for e in found]})

    @app.get("/v1/evaluations/<evaluation_id>")
    def get_evaluation(evaluation_id):
        return jsonify(_owned(evaluations.get(evaluation_id)).to_dict())

    @app.get("/v1/evaluations/<evaluation_id>/logs")
    def evaluation_logs(evaluation_id):
        _owned(evaluations.get(evaluation_id))
        try:
            after = int(request.args.get("after", 0))
        except ValueError:
            return jsonify({"error": "after: must be an integer log position", "field": "after"}), 400
        text, position = evaluations.read_logs(evaluation_id, after=after)
        return jsonify({"text": text, "next": position})

    @app.post("/v1/evaluations/<evaluation_id>/cancel")
    def cancel_evaluation(evaluation_id):
        _owned(evaluations.get(evaluation_id))
        p = _principal()
        reason = "cancelled by request" + (f" (token {p.id}, team {p.team})" if p is not None else "")
        try:
            evaluation = evaluations.request_cancel(evaluation_id, reason)
        except InvalidTransition as e:
            return jsonify({"error": str(e)}), 409
        return jsonify(evaluation.to_dict(full=False)), 202


def _columns(source, access: sources.DataAccess) -> list[str] | None:
    """The columns a local Parquet source gives, read from its schema (checked already by
    check_source); None where that cannot be known without running anything (SQL, S3)."""
    if source.WhichOneof("kind") != "parquet" or not access.read_files:
        return None
    src = source.parquet
    if storage.is_s3(src.uri):
        return None
    names = list(src.columns) or sources.open_dataset(src.uri, "data.parquet").schema.names
    return list(dict.fromkeys([*names, *src.label_columns]))
