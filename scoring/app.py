"""The scorer's HTTP API (a Flask application factory).

POST /v1/score/<tag>[?explain=1]   one driver event -> {score, decision, model_id, tag, leaves, seq,
                                    features (explain), took_ms}
POST /v1/score/<tag>/batch         {"events": [...]} -> {"results": [...]}, one per event, in order
POST /v1/events                    one event with its `stream`, or {"events": [...]}: ingested, not scored
GET  /v1/models                    what this process serves, per tag, with load times and its shard
GET  /v1/routing                   the shard table: which shard serves which tag
GET  /healthz                      200 once every model of this shard is loaded and warmed; else 503
GET  /metrics                      Prometheus text format

Every error is JSON {"error", ...}: 400 names each bad field, 404 an unknown tag, 413 a body
over the limit, 421 the shard that serves a tag, 429 past the concurrency limit.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from roundhouse.scoring import events
from roundhouse.scoring.service import Scorer, ScoringError

MAX_BODY = 1 << 20  # bytes
MAX_BATCH = 1000  # events per batch request


def create_app(scorer: Scorer, max_concurrency: int = 64, max_body: int = MAX_BODY) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_body
    log = logging.getLogger("roundhouse.scoring.api")
    slots = threading.BoundedSemaphore(max_concurrency)
    m = scorer.metrics

    def error(status, message, **extra):
        return jsonify({"error": message, **extra}), status

    @app.errorhandler(ScoringError)
    def scoring_error(e):
        return error(e.status, str(e), **e.extra)

    @app.errorhandler(HTTPException)
    def http_error(e):
        if e.code == 413:
            return error(413, f"body over the limit of {max_body} bytes")
        return error(e.code, e.description)

    @app.errorhandler(Exception)
    def unexpected(e):  # a bug, never the client's input: log it, answer JSON, keep the worker
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error(500, f"internal error ({type(e).__name__}); see the scorer's log")

    def body():
        try:
            return events.parse_json(request.get_data(cache=False))
        except ValueError as e:
            raise ScoringError(400, str(e), fields=[{"field": "(body)", "message": str(e)}]) from None

    def limited(tag, fn):
        """Runs fn within the concurrency limit; counts and times the request."""
        t0 = time.perf_counter()
        if not slots.acquire(blocking=False):
            m.rejected.inc()
            m.errors.labels(tag, "overloaded").inc()
            return error(429, f"over this scorer's limit of {max_concurrency} requests at once; retry")
        try:
            payload, model_id = fn()
            status = 200
        except ScoringError as e:
            m.errors.labels(tag, str(e.status)).inc()
            m.requests.labels(tag, "", str(e.status)).inc()
            raise
        finally:
            slots.release()
        took = time.perf_counter() - t0
        payload["took_ms"] = round(took * 1000, 3)
        m.total.labels(tag).observe(took)
        m.requests.labels(tag, model_id, str(status)).inc()
        return jsonify(payload)

    @app.post("/v1/score/<tag>")
    def score(tag):
        explain = _explain()

        def run():
            serving, [event] = scorer.parse(tag, [body()], where_prefix=False)
            out = scorer.score(serving, event, explain)
            return out, out["model_id"]
        return limited(tag, run)

    @app.post("/v1/score/<tag>/batch")
    def score_batch(tag):
        explain = _explain()

        def run():
            items = _events_list(body(), required=True)
            serving, parsed = scorer.parse(tag, items, where_prefix=True)
            results = [scorer.score(serving, e, explain) for e in parsed]
            return {"results": results}, serving.model.model_id
        return limited(tag, run)

    @app.post("/v1/events")
    def ingest():
        return limited("", lambda: (scorer.ingest(_events_list(body(), required=False)), ""))

    @app.get("/v1/models")
    def models():
        return jsonify(scorer.models())

    @app.get("/v1/routing")
    def routing():
        return jsonify(scorer.routing.to_dict())

    @app.get("/healthz")
    def health():
        ready, detail = scorer.health()
        return jsonify(detail), 200 if ready else 503

    @app.get("/metrics")
    def metrics():
        return Response(m.exposition(), mimetype="text/plain; version=0.0.4")

    return app


def _explain() -> bool:
    return request.args.get("explain", "") not in ("", "0", "false")


def _events_list(value, required: bool) -> list:
    """{"events": [...]} -> the list; a bare object is one event unless `required`."""
    if isinstance(value, dict) and "events" in value:
        items = value["events"]
        extra = sorted(set(value) - {"events"})
        if extra:
            raise ScoringError(400, f"{extra[0]}: unknown field beside events",
                               fields=[{"field": extra[0], "message": "unknown field beside events"}])
    elif required:
        raise ScoringError(400, 'events: missing; send {"events": [event, ...]}',
                           fields=[{"field": "events", "message": "missing"}])
    else:
        items = [value]
    if not isinstance(items, list) or not items:
        raise ScoringError(400, "events: expected a non-empty list of events",
                           fields=[{"field": "events", "message": "expected a non-empty list"}])
    if len(items) > MAX_BATCH:
        raise ScoringError(413, f"events: {len(items)} events, over the limit of {MAX_BATCH} per request")
    return items
