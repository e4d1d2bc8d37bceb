"""The training service's HTTP API (a Flask application factory).

POST /v1/jobs                  a TrainingRequest as JSON -> 202 {"job_id"}; 400 names the bad field
GET  /v1/jobs?owner=&workflow=&state=
GET  /v1/jobs/<id>             state, timestamps, reason (no logs)
GET  /v1/jobs/<id>/result      model ID, git SHA, metrics (409 until the job succeeded)
GET  /v1/jobs/<id>/logs?after=N   {"text", "next"}
POST /v1/jobs/<id>/cancel
POST /v1/meta-models           a meta-model spec (platform/registry/meta_models.py) -> 201 {"model_id"}
GET  /healthz

A request is checked in full before it is queued: its JSON (UTF-8, bounded nesting), its
fields, its resources against what the executor can give, its local paths against the data
folders, and the columns it names against its Parquet files' schemas.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from google.protobuf import json_format

from roundhouse.platform.api import job_pb2, validate
from roundhouse.platform.data import sources
from roundhouse.platform.jobs.store import InvalidTransition, JobNotFound, JobStore
from roundhouse.platform.registry import meta_models
from roundhouse.platform.registry.store import ModelStore

Job = job_pb2.Job


# A training request is a few KB; a meta-model spec too.
MAX_BODY = 1 << 20


def _job_json(job: Job) -> dict:
    return json_format.MessageToDict(job, preserving_proto_field_name=True)


def create_app(jobs: JobStore, models: ModelStore | None = None,
               workflows: set[str] | None = None, *, limits: validate.ResourceLimits,
               data: sources.DataAccess) -> Flask:
    """`workflows`: the names this service can run (None: any; the executor decides).
    `limits`: the most the executor gives one job; `data`: where requests may read local data."""
    app = Flask("roundhouse.training")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    log = logging.getLogger("roundhouse.training.api")

    def error(status, message, **extra):
        return jsonify({"error": message, **extra}), status

    def invalid_request(e: validate.RequestError):
        return jsonify({**e.to_dict(), "error": f"invalid training request: {e}"}), 400

    @app.errorhandler(JobNotFound)
    def not_found(e):
        return error(404, str(e))

    @app.errorhandler(413)
    def too_large(e):
        return error(413, f"the request body is over the limit of {MAX_BODY} bytes")

    @app.get("/healthz")
    def health():
        jobs.list(limit=1)  # the job store answers
        return jsonify({"status": "ok"})

    @app.post("/v1/jobs")
    def submit():
        try:
            req = validate.parse_request(request.get_data(), limits)
        except validate.RequestError as e:
            return invalid_request(e)
        if workflows is not None and req.workflow not in workflows:
            known = ", ".join(sorted(workflows)) or "none"
            return error(400, f"invalid training request: workflow: unknown workflow {req.workflow!r}; "
                              f"this service runs {known}", field="workflow", known=sorted(workflows))
        try:
            sources.check_source(req.data, "data", data)
            if req.holdout.HasField("dataset"):
                sources.check_source(req.holdout.dataset.source, "holdout.dataset.source", data)
        except sources.DataError as e:
            return invalid_request(validate.RequestError([validate.FieldError(e.field, e.message)]))
        job = jobs.create(req)
        log.info("job %s queued: workflow=%s owner=%s", job.id, req.workflow, req.metadata.owner)
        return jsonify({"job_id": job.id}), 202

    @app.get("/v1/jobs")
    def list_jobs():
        state = request.args.get("state") or None
        if state and state.upper() not in Job.State.keys():
            return error(400, f"state: unknown state {state!r}", field="state")
        found = jobs.list(owner=request.args.get("owner") or None,
                          workflow=request.args.get("workflow") or None,
                          state=state.upper() if state else None)
        return jsonify({"jobs": [_job_json(j) for j in found]})

    @app.get("/v1/jobs/<job_id>")
    def get_job(job_id):
        return jsonify(_job_json(jobs.get(job_id)))

    @app.get("/v1/jobs/<job_id>/result")
    def result(job_id):
        job = jobs.get(job_id)
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
        text, position = jobs.read_logs(job_id, after=after)
        return jsonify({"text": text, "next": position})

    @app.post("/v1/jobs/<job_id>/cancel")
    def cancel(job_id):
        try:
            job = jobs.request_cancel(job_id, "cancelled by request")
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

    return app
