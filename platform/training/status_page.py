"""The training service's status page: server-rendered HTML for people, next to the JSON API.

GET /                          redirects to /status
GET /status                    jobs (state, progress), retraining schedules with their recent runs
                               (state, decision, challenger and champion, the gate's figures),
                               tags with their models, models, tuning searches
GET /status/jobs/<id>          one job: its request, result and log
GET /status/schedules/<id>     one schedule and its runs
GET /status/tags/<tag>         one tag and its history
GET /status/tuning/<id>        one search and its trials

A page needs a token as every call does: the bearer header, or for a browser the HttpOnly
cookie that `?token=<token>` sets (the page then redirects to its URL without the token);
without a usable one it answers 401 with an HTML explanation (platform/auth/flask_auth.pages).
A team sees only its own jobs, schedules, tags and searches; an admin sees every team's.
Templates (templates/status/) are Jinja2 with autoescape: every user string is escaped.
"""

from __future__ import annotations

import datetime as dt
import pathlib

from flask import Blueprint, Flask, abort, redirect, render_template
from google.protobuf import json_format

from roundhouse.platform.api import job_pb2
from roundhouse.platform.auth import flask_auth as auth
from roundhouse.platform.jobs.store import JobNotFound, JobStore

Job = job_pb2.Job
TEMPLATES = pathlib.Path(__file__).parent / "templates"
RECENT_RUNS = 5
LOG_TAIL = 200_000  # characters of a job's log a page shows (its end)


def is_page(path: str) -> bool:
    return path == "/" or path == "/status" or path.startswith("/status/")


def _ts(ts) -> str:
    """A protobuf Timestamp or epoch seconds as UTC ISO text ("" when unset)."""
    if ts is None:
        return ""
    if hasattr(ts, "seconds"):
        if not ts.seconds and not ts.nanos:
            return ""
        ts = ts.seconds + ts.nanos / 1e9
    return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _progress(job: Job) -> str:
    """How far a job is: queued for, running for, or finished after how long."""
    def secs(ts):
        return ts.seconds + ts.nanos / 1e9 if (ts.seconds or ts.nanos) else None
    created, started, finished = secs(job.created_at), secs(job.started_at), secs(job.finished_at)
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    state = Job.State.Name(job.state)
    if state == "QUEUED":
        return f"queued {now - created:.0f}s" if created else "queued"
    if state == "RUNNING":
        return f"running {now - started:.0f}s (attempt {job.attempt})" if started else "running"
    if finished and started:
        return f"took {finished - started:.0f}s"
    return state.lower()


def _job_row(job: Job) -> dict:
    return {"id": job.id, "state": Job.State.Name(job.state), "owner": job.owner, "workflow": job.workflow,
            "team": job.request.metadata.team, "description": job.request.metadata.description,
            "created": _ts(job.created_at), "progress": _progress(job), "reason": job.reason,
            "model_id": job.result.model_id, "metrics": dict(job.result.metrics)}


def register(app: Flask, jobs: JobStore, *, tags=None, models=None, schedules=None, tuning=None) -> None:
    """The pages on `app` (after flask_auth.install): `tags` a TagStore, `models` a ModelStore,
    `schedules` a ScheduleStore, `tuning` a TuningStore (None: that section is left out)."""
    auth.pages(app, is_page, _unauthenticated)
    bp = Blueprint("status", __name__, template_folder=str(TEMPLATES))

    def team_filter() -> str | None:
        caller = auth.principal()
        return None if caller.admin else caller.team

    def may_see(team: str) -> bool:
        return auth.principal().may_act_for(team)

    def visible_tags() -> list[dict]:
        if tags is None:
            return []
        out = []
        for tag, (model_id, owner) in sorted(tags.list_with_owners().items()):
            if may_see(owner):
                out.append({"tag": tag, "model_id": model_id or "", "team": owner or ""})
        return out

    def page(template, **context):
        caller = auth.principal()
        return render_template(template, caller=caller, **context)

    @bp.get("/")
    def root():
        return redirect("/status", code=302)

    @bp.get("/status")
    def overview():
        team = team_filter()
        job_rows = [_job_row(j) for j in jobs.list(team=team, limit=50)]
        schedule_rows = []
        if schedules is not None:
            for s in schedules.list(team=team):
                schedule_rows.append({"schedule": s, "runs": [_run_row(r) for r in schedules.runs(s.id, limit=RECENT_RUNS)]})
        tag_rows = visible_tags()
        model_rows = _models(job_rows, tag_rows)
        searches = [_search_row(s) for s in tuning.list(team=team, limit=50)] if tuning is not None else []
        return page("status/overview.html", jobs=job_rows, schedules=schedule_rows, tags=tag_rows,
                    models=model_rows, searches=searches, has_schedules=schedules is not None,
                    has_tags=tags is not None, has_tuning=tuning is not None)

    @bp.get("/status/jobs/<job_id>")
    def job_page(job_id):
        try:
            job = jobs.get(job_id)
        except JobNotFound:
            abort(404)
        if not may_see(job.request.metadata.team):
            abort(404)
        text, _ = jobs.read_logs(job_id)
        cut = len(text) > LOG_TAIL
        request_json = json_format.MessageToJson(job.request, preserving_proto_field_name=True, indent=2)
        return page("status/job.html", job=_job_row(job), request_json=request_json,
                    log=text[-LOG_TAIL:], log_cut=cut)

    @bp.get("/status/schedules/<schedule_id>")
    def schedule_page(schedule_id):
        if schedules is None:
            abort(404)
        try:
            s = schedules.get(schedule_id)
        except KeyError:
            abort(404)
        if not may_see(s.team):
            abort(404)
        return page("status/schedule.html", schedule=s, runs=[_run_row(r) for r in schedules.runs(s.id)])

    @bp.get("/status/tags/<tag>")
    def tag_page(tag):
        if tags is None or tags.owner(tag) is None or not may_see(tags.owner(tag)):
            abort(404)
        history = [{"model_id": e.model_id or "(untagged)", "at": e.at, "by": e.by, "team": e.team,
                    "token": e.token} for e in reversed(tags.history(tag))]
        return page("status/tag.html", tag=tag, model_id=tags.get(tag) or "", team=tags.owner(tag),
                    history=history)

    @bp.get("/status/tuning/<search_id>")
    def search_page(search_id):
        if tuning is None:
            abort(404)
        try:
            s = tuning.get(search_id)
        except JobNotFound:
            abort(404)
        if not may_see(s.team):
            abort(404)
        return page("status/search.html", search=_search_row(s), trials=list(s.trials))

    @bp.app_errorhandler(404)
    def not_found(e):
        from flask import request
        if not is_page(request.path):
            return e
        return render_template("status/error.html", status=404, title="Not found",
                               message="There is nothing here that your token's team may see."), 404

    bp.after_request(_headers)
    app.register_blueprint(bp)

    def _models(job_rows, tag_rows):
        """The models the caller's jobs produced and its tags point at, newest first."""
        by_tag: dict[str, list[str]] = {}
        for t in tag_rows:
            if t["model_id"]:
                by_tag.setdefault(t["model_id"], []).append(t["tag"])
        seen, out = set(), []
        for j in job_rows:
            if j["model_id"] and j["model_id"] not in seen:
                seen.add(j["model_id"])
                out.append({"model_id": j["model_id"], "job_id": j["id"], "metrics": j["metrics"],
                            "tags": by_tag.get(j["model_id"], [])})
        for model_id, names in by_tag.items():
            if model_id not in seen:
                seen.add(model_id)
                out.append({"model_id": model_id, "job_id": "", "metrics": {}, "tags": names})
        return out


def _run_row(run) -> dict:
    gate = (run.details or {}).get("gate") or {}
    return {"id": run.id, "slot": run.slot, "kind": run.kind, "at": _ts(run.at), "state": run.state,
            "decision": run.decision, "reason": run.reason, "job_id": run.job_id,
            "evaluation_id": run.evaluation_id, "challenger_id": run.challenger_id,
            "champion_id": run.champion_id, "gate": gate,
            "decided": _ts(run.decided_at) if run.decided_at else ""}


def _search_row(search) -> dict:
    d = search.to_dict(full=False)
    d["created"] = _ts(search.created_at)
    return d


def _headers(resp):
    resp.headers.setdefault("Cache-Control", "no-store")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
    return resp


def _unauthenticated(e):
    html = render_template("status/error.html", status=401, title="A token is needed",
                           message=f"This page needs a Roundhouse token ({e}). Open it as "
                                   "/status?token=<your token> once: the token is then kept in an "
                                   "HttpOnly cookie and removed from the address. Or send "
                                   "'Authorization: Bearer <token>'. `tokens create --team TEAM` "
                                   "makes one.")
    return html, 401, {"WWW-Authenticate": 'Bearer realm="roundhouse"', "Content-Type": "text/html; charset=utf-8",
                       "Cache-Control": "no-store"}
