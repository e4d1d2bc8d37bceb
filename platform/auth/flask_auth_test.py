"""The bearer check on any Flask app: what the training service and the scorer install."""

import pytest
from flask import Flask, jsonify

from roundhouse.platform.auth import flask_auth
from roundhouse.platform.auth.sql_tokens import SqliteTokenStore


@pytest.fixture
def tokens(tmp_path):
    store = SqliteTokenStore(str(tmp_path / "jobs.sqlite"))
    yield store
    store.close()


def make_app(tokens, **kwargs):
    app = Flask("t")
    flask_auth.install(app, tokens, **kwargs)

    @app.get("/healthz")
    def health():
        return jsonify({"status": "ok"})

    @app.get("/me")
    def me():
        p = flask_auth.principal()
        return jsonify({"id": p.id, "team": p.team, "admin": p.admin})

    @app.get("/teams/<team>/thing")
    def thing(team):
        flask_auth.require_team(team, f"thing of {team}")
        return jsonify({"ok": True})

    @app.post("/admin")
    def admin():
        flask_auth.require_admin("this")
        return jsonify({"ok": True})

    return app.test_client()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_only_the_open_paths_need_no_token(tokens):
    client = make_app(tokens)
    assert client.get("/healthz").status_code == 200
    for path in ("/me", "/nowhere", "/teams/risk/thing"):
        resp = client.get(path)
        assert resp.status_code == 401 and resp.json["reason"] == "missing", (path, resp.json)
        assert "missing bearer token" in resp.json["error"]
        assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="roundhouse", error="invalid_token"')


def test_401_says_why(tokens):
    client = make_app(tokens)
    record, token = tokens.create("risk")
    assert client.get("/me", headers=bearer(token)).json == {"id": record.id, "team": "risk", "admin": False}
    assert client.get("/me", headers={"Authorization": f"bearer  {token} "}).status_code == 200
    cases = [
        ({"Authorization": f"Basic {token}"}, "malformed", "expected 'Bearer <token>'"),
        ({"Authorization": "Bearer"}, "malformed", "expected 'Bearer <token>'"),
        (bearer("not-a-token"), "malformed", "malformed token"),
        (bearer(token[:-1] + ("A" if token[-1] != "A" else "B")), "unknown", f"unknown token {record.id}"),
    ]
    for headers, code, words in cases:
        resp = client.get("/me", headers=headers)
        assert resp.status_code == 401 and resp.json["reason"] == code and words in resp.json["error"], resp.json
    tokens.revoke(record.id)
    resp = client.get("/me", headers=bearer(token))
    assert resp.status_code == 401 and resp.json["reason"] == "revoked"
    assert f"token {record.id} was revoked" in resp.json["error"]


def test_403_when_the_team_may_not(tokens):
    client = make_app(tokens)
    _, risk = tokens.create("risk")
    _, admin = tokens.create("admin")
    assert client.get("/teams/risk/thing", headers=bearer(risk)).status_code == 200
    resp = client.get("/teams/growth/thing", headers=bearer(risk))
    assert resp.status_code == 403 and resp.json["team"] == "risk"
    assert "thing of growth belongs to team 'growth'" in resp.json["error"] and "of team 'risk'" in resp.json["error"]
    assert client.get("/teams/growth/thing", headers=bearer(admin)).status_code == 200
    resp = client.post("/admin", headers=bearer(risk))
    assert resp.status_code == 403 and "needs an admin token" in resp.json["error"]
    assert client.post("/admin", headers=bearer(admin)).status_code == 200


def test_a_cache_spares_the_database_but_never_remembers_a_refusal(tokens):
    client = make_app(tokens, cache_seconds=60)
    record, token = tokens.create("risk")
    assert client.get("/me", headers=bearer(token)).status_code == 200
    tokens.revoke(record.id)
    # Remembered for up to cache_seconds: the scorer's trade-off, not the training service's.
    assert client.get("/me", headers=bearer(token)).status_code == 200
    _, other = tokens.create("growth")
    other_id = other.split("_")[1]
    tokens.revoke(other_id)
    assert client.get("/me", headers=bearer(other)).status_code == 401
    assert make_app(tokens).get("/me", headers=bearer(token)).status_code == 401  # no cache: at once
