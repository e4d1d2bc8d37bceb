"""The training service's HTTP API (a Flask application factory).

POST /v1/jobs                  a TrainingRequest as JSON -> 202 {"job_id"}; 400 names the bad field
GET  /v1/jobs?owner=&workflow=&state=&team=   the caller's team's jobs (an admin's: any team's)
GET  /v1/jobs/<id>             state, timestamps, reason (no logs)
GET  /v1/jobs/<id>/result      model ID, git SHA, metrics (409 until the job succeeded)
GET  /v1/jobs/<id>/logs?after=N   {"text", "next"}
POST /v1/jobs/<id>/cancel
POST /v1/meta-models           a meta-model spec (platform/registry/meta_models.py) -> 201 {"model_id"}
GET  /v1/tags                  {"tags": [{"tag", "model_id", "team"}]}
GET  /v1/tags/<tag>            {"tag", "model_id", "team"}
PUT  /v1/tags/<tag>            {"model_id", "by"?, "team"?} -> the tag; ships that model
POST /v1/tags/<tag>/rollback   {"by"?} -> the tag, back at the model before
DELETE /v1/tags/<tag>          {"by"?} -> the tag, pointing at no model
GET  /v1/tags/<tag>/history    {"tag", "team", "history": [{"model_id", "at", "by", "team", "token"}]}
GET  /v1/whoami                the caller's token: {"id", "team", "admin", "name"}
GET  /v1/tokens                admin only, as the next two (the `tokens` command does the same)
POST /v1/tokens                {"team", "admin"?, "name"?} -> 201 {"token" (shown once), "id", ...}
POST /v1/tokens/<id>/revoke
POST /v1/evaluations           an evaluation request -> 202 {"evaluation_id"}; GET /v1/evaluations,
                               /v1/evaluations/<id>, /logs, POST /cancel (platform/evaluation/api.py)
POST /v1/schedules             a retraining schedule -> 201; GET /v1/schedules, /v1/schedules/<id>,
                               /runs, POST /run (platform/schedules/api.py)
POST /v1/tuning                a hyperparameter search -> 202 {"search_id"}; GET /v1/tuning,
                               /v1/tuning/<id>, POST /cancel (platform/tuning/api.py)
GET  /, /status, /status/...    the status page, HTML for people (platform/training/status_page.py);
                               a browser's token may come as ?token= once, then an HttpOnly cookie
GET  /healthz                  the only path open without a token

Every other call needs `Authorization: Bearer <token>` (platform/auth): 401 with the reason
when it is missing, malformed, unknown or revoked. A job belongs to the team of its request's
metadata.team, which a submit fills from the token when empty and must otherwise equal the
token's team (else 403); a team sees, lists and cancels only its own jobs, and moves only
the tags it created (403 otherwise). Everyone reads every tag. An admin token does anything,
and may submit for any team or hand a tag to one (PUT's "team").

A request is checked in full before it is queued: its JSON (UTF-8, bounded nesting), its
fields, its resources against what the executor can give, its local paths against the data
folders, and the columns it names against its Parquet files' schemas.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

from flask import Flask, jsonify, request
from google.protobuf import json_format

from roundhouse.platform.api import job_pb2, training_pb2, validate
from roundhouse.platform.auth import flask_auth as auth
from roundhouse.platform.auth.tokens import TokenError, TokenStore, check_team
from roundhouse.platform.data import sources
from roundhouse.platform.evaluation import api as evaluation_api
from roundhouse.platform.evaluation.store import EvaluationStore
from roundhouse.platform.jobs.store import InvalidTransition, JobNotFound, JobStore
from roundhouse.platform.registry import meta_models
from roundhouse.platform.registry import tags as tags_lib
from roundhouse.platform.registry.store import ModelNotFound, ModelStore
from roundhouse.platform.schedules import api as schedules_api
from roundhouse.platform.schedules.store import ScheduleStore
from roundhouse.platform.training import status_page
from roundhouse.platform.tuning import api as tuning_api
from roundhouse.platform.tuning.store import TuningStore

Job = job_pb2.Job


# A training request is a few KB; a meta-model spec too.
MAX_BODY = 1 << 20


def _job_json(job: Job) -> dict:
    return json_format.MessageToDict(job, preserving_proto_field_name=True)


def create_app(jobs: JobStore, models: ModelStore | None = None,
               workflows: set[str] | None = None, *, limits: validate.ResourceLimits,
               data: sources.DataAccess, tokens: TokenStore,
               evaluations: EvaluationStore | None = None,
               schedules: ScheduleStore | None = None,
               tuning: TuningStore | None = None) -> Flask:
    """`workflows`: the names this service can run (None: any; the executor decides).
    `limits`: the most the executor gives one job; `data`: where requests may read local data;
    `tokens`: who may call (every path but /healthz needs one of its tokens); `evaluations`:
    where evaluations are queued (None: no evaluation endpoints); `schedules`: retraining
    schedules (None: no schedule endpoints); `tuning`: hyperparameter searches (None: no
    tuning endpoints)."""
    app = Flask("roundhouse.training")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    auth.install(app, tokens)  # first: it runs before anything else looks at a request
    tags = tags_lib.TagStore(models) if models is not None else None
    log = logging.getLogger("roundhouse.training.api")

    def error(status, message, **extra):
        return jsonify({"error": message, **extra}), status

    def invalid_request(e: validate.RequestError):
        known = {"known": e.known} if hasattr(e, "known") else {}
        return jsonify({**e.to_dict(), "error": f"invalid training request: {e}", **known}), 400

    @app.errorhandler(JobNotFound)
    def not_found(e):
        return error(404, str(e))

    def owned_job(job_id) -> Job:
        """The job, if the caller's team may see it (JobNotFound: 404; else 403)."""
        job = jobs.get(job_id)
        auth.require_team(job.request.metadata.team, f"job {job_id}")
        return job

    @app.errorhandler(413)
    def too_large(e):
        return error(413, f"the request body is over the limit of {MAX_BODY} bytes")

    @app.get("/healthz")
    def health():
        jobs.list(limit=1)  # the job store answers
        return jsonify({"status": "ok"})

    def check_training_request(body) -> training_pb2.TrainingRequest:
        """POST /v1/jobs's checks of a training request (also the tuning template's): its JSON
        and fields, the workflow, the data source; RequestError naming the field (`known`: the
        workflows, when it names another), auth.Forbidden for another team's metadata.team.
        An empty metadata.team becomes the caller's: the job belongs to the submitting token's team."""
        req = validate.parse_request(body, limits)
        caller = auth.principal()
        if not req.metadata.team:
            req.metadata.team = caller.team
        elif req.metadata.team != caller.team and not caller.admin:
            raise auth.Forbidden(f"metadata.team is {req.metadata.team!r} but token {caller.id} is of team "
                                 f"{caller.team!r}: leave metadata.team empty or set it to {caller.team!r}")
        if workflows is not None and req.workflow not in workflows:
            known = ", ".join(sorted(workflows)) or "none"
            e = validate.RequestError([validate.FieldError(
                "workflow", f"unknown workflow {req.workflow!r}; this service runs {known}")])
            e.known = sorted(workflows)
            raise e
        try:
            sources.check_source(req.data, "data", data)
            if req.holdout.HasField("dataset"):
                sources.check_source(req.holdout.dataset.source, "holdout.dataset.source", data)
        except sources.DataError as e:
            raise validate.RequestError([validate.FieldError(e.field, e.message)]) from None
        return req

    @app.post("/v1/jobs")
    def submit():
        try:
            req = check_training_request(request.get_data())
        except validate.RequestError as e:
            return invalid_request(e)
        caller = auth.principal()
        job = jobs.create(req)
        log.info("job %s queued: workflow=%s owner=%s team=%s token=%s", job.id, req.workflow,
                 req.metadata.owner, req.metadata.team, caller.id)
        return jsonify({"job_id": job.id}), 202

    @app.get("/v1/jobs")
    def list_jobs():
        state = request.args.get("state") or None
        if state and state.upper() not in Job.State.keys():
            return error(400, f"state: unknown state {state!r}", field="state")
        caller, team = auth.principal(), request.args.get("team") or None
        if not caller.admin:
            if team and team != caller.team:
                raise auth.Forbidden(f"token {caller.id} is of team {caller.team!r}; it lists only that "
                                     f"team's jobs, not team {team!r}'s")
            team = caller.team
        found = jobs.list(owner=request.args.get("owner") or None,
                          workflow=request.args.get("workflow") or None,
                          state=state.upper() if state else None, team=team)
        return jsonify({"jobs": [_job_json(j) for j in found]})

    @app.get("/v1/jobs/<job_id>")
    def get_job(job_id):
        return jsonify(_job_json(owned_job(job_id)))

    @app.get("/v1/jobs/<job_id>/result")
    def result(job_id):
        job = owned_job(job_id)
        if job.state != Job.SUCCEEDED:
            return error(409, f"job {job_id} is {Job.State.Name(job.state).lower()}, not succeeded",
                         state=Job.State.Name(job.state), reason=job.reason)
        return jsonify(json_format.MessageToDict(job.result, preserving_proto_field_name=True))

    @app.get("/v1/jobs/<job_id>/logs")
    def logs(job_id):
        try:
            after = int(request.args.get("after", 0))
        except ValueError:
            return error(400, "after: must be an integer log position", field="after")
        owned_job(job_id)
        text, position = jobs.read_logs(job_id, after=after)
        return jsonify({"text": text, "next": position})

    @app.post("/v1/jobs/<job_id>/cancel")
    def cancel(job_id):
        owned_job(job_id)
        try:
            caller = auth.principal()
            job = jobs.request_cancel(job_id, f"cancelled by request (token {caller.id}, team {caller.team})")
        except InvalidTransition as e:
            return error(409, str(e))
        return jsonify(_job_json(job)), 202

    @app.post("/v1/meta-models")
    def create_meta_model():
        if models is None:
            return error(501, "this service has no model store")
        try:
            spec = validate.load_json(request.get_data())
        except validate.RequestError as e:  # field "": meta_models calls the whole spec "(spec)"
            return error(400, f"invalid meta-model spec: {e}", field=e.field or "(spec)")
        try:
            record = meta_models.create(models, spec)
        except meta_models.SpecError as e:
            return error(400, f"invalid meta-model spec: {e}", field=e.field)
        log.info("meta-model %s created (%s)", record.model_id, record.meta.kind)
        return jsonify({"model_id": record.model_id, "kind": record.meta.kind,
                        "children": list(record.meta.children)}), 201

    # ---- tokens: the caller's, and (admin only) everyone's

    def token_json(t) -> dict:
        return {"id": t.id, "team": t.team, "admin": t.admin, "name": t.name,
                "created_at": t.created_at, "revoked_at": t.revoked_at}

    @app.get("/v1/whoami")
    def whoami():
        return jsonify(token_json(auth.principal()))

    @app.get("/v1/tokens")
    def list_tokens():
        auth.require_admin("listing tokens")
        return jsonify({"tokens": [token_json(t) for t in tokens.list()]})

    @app.post("/v1/tokens")
    def create_token():
        caller = auth.require_admin("creating a token")
        try:
            body = validate.load_json(request.get_data())
        except validate.RequestError as e:
            return error(400, f"invalid token request: {e}", field=e.field)
        if not isinstance(body, dict) or set(body) - {"team", "admin", "name"}:
            return error(400, "invalid token request: expected {\"team\", \"admin\"?, \"name\"?}", field="")
        if not isinstance(body.get("admin", False), bool) or not isinstance(body.get("name", ""), str):
            return error(400, "invalid token request: admin is a boolean, name a string", field="")
        try:
            record, token = tokens.create(body.get("team", ""), admin=body.get("admin", False),
                                          name=body.get("name", ""))
        except TokenError as e:
            return error(400, f"invalid token request: team: {e}", field="team")
        log.info("token %s for team %s made by token %s", record.id, record.team, caller.id)
        return jsonify({"token": token, **token_json(record)}), 201

    @app.post("/v1/tokens/<token_id>/revoke")
    def revoke_token(token_id):
        caller = auth.require_admin("revoking a token")
        try:
            record = tokens.revoke(token_id)
        except TokenError as e:
            return error(404, str(e))
        log.info("token %s revoked by token %s", record.id, caller.id)
        return jsonify(token_json(record))

    # ---- tags: shipping a model is moving its tag; a team moves only the tags it created

    def tag_route(handler):
        """A tag endpoint: its errors become 400 (bad name or body), 404 (no such tag or
        model), 409 (no earlier model, already untagged), 501 (no model store)."""
        @functools.wraps(handler)
        def run(tag=None):
            if tags is None:
                return error(501, "this service has no model store")
            try:
                if tag is None:
                    return handler()
                if not tags_lib.TAG_NAME.fullmatch(tag):
                    return error(400, f"bad tag name {tag!r}: use 1-63 of a-z 0-9 . _ - starting with "
                                      "a letter or digit", field="tag")
                return handler(tag)
            except validate.RequestError as e:
                return error(400, f"invalid tag move: {e}", field=e.field)
            except TokenError as e:
                return error(400, f"invalid tag move: team: {e}", field="team")
            except ModelNotFound as e:
                return error(404, str(e))
            except tags_lib.TagForbidden as e:
                caller = auth.principal()
                raise auth.Forbidden(f"{e}; token {caller.id} is of team {caller.team!r}") from None
            except tags_lib.TagError as e:
                return error(409, str(e))
        return run

    def tag_body(allowed) -> dict:
        """The JSON object of a tag move (an empty body is {}), with only `allowed` keys."""
        raw = request.get_data()
        body = validate.load_json(raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise validate.RequestError([validate.FieldError("", "expected a JSON object")])
        for key, value in body.items():
            if key not in allowed:
                raise validate.RequestError([validate.FieldError(
                    key, f"unknown field; expected {', '.join(allowed)}")])
            if not isinstance(value, str) or len(value) > 200:
                raise validate.RequestError([validate.FieldError(
                    key, "expected a string of at most 200 characters")])
        return body

    def move(tag, action, body):
        """One tag move for the caller (`action(by, **who)`); answers the tag's new state."""
        caller = auth.principal()
        owner = body.get("team") or None
        if owner is not None:
            check_team(owner)
            if owner != caller.team and not caller.admin:
                raise auth.Forbidden(f"token {caller.id} is of team {caller.team!r}; only an admin token "
                                     f"may hand tag {tag!r} to team {owner!r}")
        by = body.get("by") or caller.name or caller.id
        action(by, team=caller.team, token=caller.id, check_owner=not caller.admin,
               owner=owner if caller.admin else None)
        log.info("tag %s -> %s by %s (token %s, team %s)", tag, tags.get(tag), by, caller.id, caller.team)
        return tag_json(tag)

    def tag_json(tag):
        return jsonify({"tag": tag, "model_id": tags.get(tag), "team": tags.owner(tag) or ""})

    def no_tag(tag):
        return error(404, f"no tag {tag!r}") if tags.owner(tag) is None else None

    @app.get("/v1/tags")
    @tag_route
    def list_tags():
        return jsonify({"tags": [{"tag": t, "model_id": mid, "team": owner}
                                 for t, (mid, owner) in sorted(tags.list_with_owners().items())]})

    @app.get("/v1/tags/<tag>")
    @tag_route
    def get_tag(tag):
        return no_tag(tag) or tag_json(tag)

    @app.put("/v1/tags/<tag>")
    @tag_route
    def set_tag(tag):
        body = tag_body(("model_id", "by", "team"))
        if not body.get("model_id"):
            return error(400, "invalid tag move: model_id: required", field="model_id")
        return move(tag, lambda by, **who: tags.set(tag, body["model_id"], by, **who), body)

    @app.post("/v1/tags/<tag>/rollback")
    @tag_route
    def rollback_tag(tag):
        body = tag_body(("by",))
        return no_tag(tag) or move(tag, lambda by, **who: tags.rollback(tag, by, **who), body)

    @app.delete("/v1/tags/<tag>")
    @tag_route
    def untag(tag):
        body = tag_body(("by",))
        return no_tag(tag) or move(tag, lambda by, **who: tags.untag(tag, by, **who), body)

    @app.get("/v1/tags/<tag>/history")
    @tag_route
    def tag_history(tag):
        return no_tag(tag) or jsonify({"tag": tag, "team": tags.owner(tag) or "",
                                       "history": [dataclasses.asdict(e) for e in tags.history(tag)]})

    if evaluations is not None and models is not None:
        evaluation_api.register(app, evaluations, models, workflows=workflows, data=data)

    if schedules is not None and tags is not None:  # retraining schedules (platform/schedules)
        schedules_api.register(app, schedules, tags, limits=limits, data=data, workflows=workflows,
                               clock=schedules.clock)

    if tuning is not None:  # hyperparameter searches (platform/tuning): trials are jobs, checked as above
        tuning_api.register(app, tuning, jobs, check_training_request=check_training_request)

    status_page.register(app, jobs, tags=tags, models=models, schedules=schedules, tuning=tuning)
    return app
