"""Bearer tokens on a Flask app: `install(app, tokens)` before any route is registered.

Every request but the open paths (/healthz, for load balancers) must carry
`Authorization: Bearer <token>`; without a usable one it gets 401 with the reason (missing,
malformed, unknown, revoked) and a WWW-Authenticate header. The caller's token row is then
`principal()` (flask.g.principal), and a route refuses what the caller's team may not do
with `require_team(team, what)` or `require_admin(what)`: 403 with the reason.

Pages for browsers (`pages(app, is_page, unauthenticated)`, the training service's status
page) also take the token from the HttpOnly cookie COOKIE, which `?token=<token>` on a page
sets before redirecting to the same URL without it; a page without a usable token gets
`unauthenticated(error)` (an HTML 401). Only page paths read the cookie, and pages only read.

The training service installs it; the scorer can too, with `cache_seconds` to spare its
hot path a database read per request (a revoked token then works for up to that long).
"""

from __future__ import annotations

import threading
import time

from urllib.parse import urlencode

from flask import Flask, g, jsonify, redirect, request

from roundhouse.platform.auth.tokens import InvalidToken, Token, TokenStore, digest

OPEN_PATHS = frozenset({"/healthz"})
COOKIE = "roundhouse_token"
_PAGES = "roundhouse_auth_pages"


class Forbidden(Exception):
    """The caller's team may not do this (403)."""


class Authenticator:
    """TokenStore.authenticate, optionally remembering answers for `cache_seconds`."""

    def __init__(self, tokens: TokenStore, cache_seconds: float = 0.0, max_entries: int = 4096):
        self.tokens = tokens
        self.cache_seconds = cache_seconds
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, Token]] = {}
        self._lock = threading.Lock()

    def authenticate(self, token: str | None) -> Token:
        if self.cache_seconds <= 0 or not token:
            return self.tokens.authenticate(token)
        key, now = digest(token), time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        record = self.tokens.authenticate(token)  # failures are not cached
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[key] = (now + self.cache_seconds, record)
        return record


def bearer(header: str | None) -> str | None:
    """The token in an Authorization header; InvalidToken when the header is not Bearer."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("malformed", "malformed Authorization header: expected 'Bearer <token>'")
    return token.strip()


def install(app: Flask, tokens: TokenStore, *, open_paths=OPEN_PATHS, cache_seconds: float = 0.0) -> None:
    """Require a token on every request to `app` but `open_paths`."""
    authenticator = Authenticator(tokens, cache_seconds)
    open_paths = frozenset(open_paths)
    pages_ = app.extensions.setdefault(_PAGES, [])

    @app.before_request
    def _authenticate():
        g.principal = None
        if request.path in open_paths:
            return None
        page = next((p for p in pages_ if p[0](request.path)), None)
        try:
            token = bearer(request.headers.get("Authorization"))
            if token is None and page is not None:
                if "token" in request.args:  # a browser's first visit: the cookie, then the clean URL
                    authenticator.authenticate(request.args["token"])
                    rest = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
                    resp = redirect(request.path + ("?" + urlencode(rest) if rest else ""), code=303)
                    resp.set_cookie(COOKIE, request.args["token"], httponly=True, samesite="Lax",
                                    secure=request.is_secure, path="/")
                    resp.headers["Cache-Control"] = "no-store"
                    resp.headers["Referrer-Policy"] = "no-referrer"
                    return resp
                token = request.cookies.get(COOKIE) or None
            g.principal = authenticator.authenticate(token)
        except InvalidToken as e:
            if page is not None:
                return page[1](e)
            resp = jsonify({"error": f"unauthenticated: {e}", "reason": e.code})
            resp.status_code = 401
            description = str(e).replace('"', "'")
            resp.headers["WWW-Authenticate"] = (
                f'Bearer realm="roundhouse", error="invalid_token", error_description="{description}"')
            return resp
        return None

    @app.errorhandler(Forbidden)
    def _forbidden(e):
        return jsonify({"error": f"forbidden: {e}", "team": principal().team}), 403


def pages(app: Flask, is_page, unauthenticated) -> None:
    """Paths where `is_page(path)` also take the token from the cookie (set by `?token=`), and
    answer `unauthenticated(InvalidToken)` without a usable one."""
    app.extensions.setdefault(_PAGES, []).append((is_page, unauthenticated))


def principal() -> Token:
    """The token of the request being served (an open path has none)."""
    found = g.get("principal")
    if found is None:
        raise RuntimeError("no authenticated caller: this path is open, or install() was not called")
    return found


def _holder(p: Token) -> str:
    return f"token {p.id} is of team {p.team!r}"


def require_team(team: str, what: str) -> Token:
    """The caller, if it may act on `what`, which belongs to `team`; else Forbidden."""
    p = principal()
    if not p.may_act_for(team):
        if team:
            raise Forbidden(f"{what} belongs to team {team!r}; {_holder(p)}")
        raise Forbidden(f"{what} belongs to no team (it predates team tokens); only an admin token may touch it")
    return p


def require_admin(what: str) -> Token:
    p = principal()
    if not p.admin:
        raise Forbidden(f"{what} needs an admin token; {_holder(p)}")
    return p
