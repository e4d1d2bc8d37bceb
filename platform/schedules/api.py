"""The schedule endpoints of the training service (registered by platform/training/app.py).

POST /v1/schedules                 a schedule (spec.py) -> 201 the schedule
GET  /v1/schedules?team=           the caller's team's schedules (an admin's: any team's)
GET  /v1/schedules/<id>            the schedule, with its next slot
GET  /v1/schedules/<id>/runs       its runs, newest first: jobs, evaluation, decision, reason
POST /v1/schedules/<id>/run        a run now (outside the cron slots) -> 202 the run

A schedule belongs to the caller's team (an admin token may name one with "team") and may
only target a tag of that team, or a tag that does not exist yet (403 otherwise). It is
checked in full at the door, with a 400 naming the field: the cron expression, the window,
the gate, and the template, rendered at the current time and checked exactly as POST
/v1/jobs checks a request (its fields, resources, workflow and data source), its errors'
field paths under `template.`.
"""

from __future__ import annotations

import logging
from typing import Callable, Collection

from flask import Flask, jsonify, request

from roundhouse.platform.api import validate
from roundhouse.platform.auth import flask_auth as auth
from roundhouse.platform.data import sources
from roundhouse.platform.registry import tags as tags_lib
from roundhouse.platform.schedules import runner as runner_lib
from roundhouse.platform.schedules import spec as spec_lib
from roundhouse.platform.schedules.store import ScheduleNotFound, ScheduleStore

log = logging.getLogger("roundhouse.training.schedules")


def _invalid(errors: list[validate.FieldError], **extra):
    e = validate.RequestError(errors)
    return jsonify({**e.to_dict(), "error": f"invalid schedule: {e}", **extra}), 400


def register(app: Flask, schedules: ScheduleStore, tags: tags_lib.TagStore, *,
             limits: validate.ResourceLimits, data: sources.DataAccess,
             workflows: Collection[str] | None, clock: Callable[[], float]) -> None:

    @app.errorhandler(ScheduleNotFound)
    def not_found(e):
        return jsonify({"error": str(e)}), 404

    def owned(schedule_id):
        schedule = schedules.get(schedule_id)
        auth.require_team(schedule.team, f"schedule {schedule_id}")
        return schedule

    def schedule_json(schedule):
        out = schedule.to_dict()
        out["next_slot"] = spec_lib.iso(spec_lib.next_slot(schedule.spec.cron, clock()))
        return out

    @app.post("/v1/schedules")
    def create_schedule():
        try:
            body = validate.load_json(request.get_data())
        except validate.RequestError as e:
            return _invalid(e.errors)
        caller = auth.principal()
        team = caller.team
        if isinstance(body, dict) and "team" in body:
            team = body.pop("team")
            if not isinstance(team, str) or not team:
                return _invalid([validate.FieldError("team", "expected a team name")])
            if team != caller.team and not caller.admin:
                raise auth.Forbidden(f"token {caller.id} is of team {caller.team!r}; it may not make a "
                                     f"schedule for team {team!r}")
        if isinstance(body, dict) and isinstance(body.get("template"), dict):
            metadata = body["template"].get("metadata")
            if isinstance(metadata, dict) and metadata.get("team") not in (None, "", team):
                raise auth.Forbidden(f"template.metadata.team is {metadata['team']!r} but the schedule is "
                                     f"team {team!r}'s: leave it empty or set it to {team!r}")
        try:
            spec = spec_lib.parse(body, limits=limits, now=clock())
        except validate.RequestError as e:
            return _invalid(e.errors)
        rendered = spec.render(clock(), team=team)
        workflow = rendered.get("workflow")
        if workflows is not None and workflow not in workflows:
            known = ", ".join(sorted(workflows)) or "none"
            return _invalid([validate.FieldError("template.workflow", f"unknown workflow {workflow!r}; this "
                                                                      f"service runs {known}")],
                            known=sorted(workflows))
        try:
            sources.check_source(validate.parse_request(rendered, limits).data, "template.data", data)
        except sources.DataError as e:
            return _invalid([validate.FieldError(e.field, e.message)])
        owner = tags.owner(spec.tag)
        if owner is not None and owner != team and not caller.admin:
            whose = f"team {owner!r}" if owner else "no team (it predates team tokens)"
            raise auth.Forbidden(f"tag {spec.tag!r} belongs to {whose}; a schedule of team {team!r} may "
                                 "not move it")
        schedule = schedules.create(spec, team=team, owner=rendered["metadata"].get("owner", ""))
        log.info("schedule %s made: tag=%s cron=%r team=%s token=%s", schedule.id, spec.tag, spec.cron,
                 team, caller.id)
        return jsonify(schedule_json(schedule)), 201

    @app.get("/v1/schedules")
    def list_schedules():
        caller, team = auth.principal(), request.args.get("team") or None
        if not caller.admin:
            if team and team != caller.team:
                raise auth.Forbidden(f"token {caller.id} is of team {caller.team!r}; it lists only that "
                                     f"team's schedules, not team {team!r}'s")
            team = caller.team
        return jsonify({"schedules": [schedule_json(s) for s in schedules.list(team=team)]})

    @app.get("/v1/schedules/<schedule_id>")
    def get_schedule(schedule_id):
        return jsonify(schedule_json(owned(schedule_id)))

    @app.get("/v1/schedules/<schedule_id>/runs")
    def schedule_runs(schedule_id):
        owned(schedule_id)
        return jsonify({"schedule_id": schedule_id,
                        "runs": [r.to_dict() for r in schedules.runs(schedule_id)]})

    @app.post("/v1/schedules/<schedule_id>/run")
    def run_schedule(schedule_id):
        schedule = owned(schedule_id)
        run = runner_lib.run_now(schedules, schedule, clock)
        log.info("schedule %s: run %s now (token %s)", schedule_id, run.id, auth.principal().id)
        return jsonify(run.to_dict()), 202
