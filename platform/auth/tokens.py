"""Team tokens: bearer tokens that say which team a caller acts for.

A token reads `rh_<id>_<secret>`: `id` is 12 hex digits, not secret, shown by `list` and
named by `revoke`; `secret` is 32 random bytes (base64url). Only the SHA-256 of the whole
token is stored, so the token is shown once, when it is created, and a copy of the database
gives no usable token. A token belongs to one team; an admin token may act for every team
and is the only kind that may create or revoke tokens (the admin command works on the
database directly, so only someone with the database can make the first one; the training
service makes a local one on first start, see `ensure_local_admin`).

One interface, two backends over the job store's database (SQLite or PostgreSQL), in
sql_tokens.py; the HTTP check is flask_auth.py.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import hmac
import logging
import os
import pathlib
import re
import secrets
import time
from typing import Callable

PREFIX = "rh_"
TOKEN_FORMAT = re.compile(r"rh_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
TEAM_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
ADMIN_TEAM = "admin"

log = logging.getLogger("roundhouse.auth")


class TokenError(Exception):
    pass


class TokenNotFound(TokenError, KeyError):
    def __init__(self, token_id: str):
        super().__init__(f"no token {token_id!r}")

    def __str__(self) -> str:
        return self.args[0]


class InvalidToken(TokenError):
    """The caller's token cannot be used; `code` is missing, malformed, unknown or revoked."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class Token:
    id: str
    team: str
    admin: bool
    name: str
    created_at: float
    revoked_at: float | None = None
    secret_sha256: str = dataclasses.field(default="", repr=False)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def may_act_for(self, team: str) -> bool:
        """Whether this token may see or change what belongs to `team`."""
        return self.admin or (bool(team) and team == self.team)


def check_team(team: str) -> str:
    if not isinstance(team, str) or not TEAM_NAME.fullmatch(team):
        raise TokenError(f"bad team name {team!r}: use 1-63 of a-z 0-9 . _ - starting with a letter or digit")
    return team


def generate() -> str:
    """A new token string (not stored anywhere yet)."""
    return f"{PREFIX}{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def token_id(token: str) -> str:
    """The ID part of a well-formed token; raises InvalidToken("malformed")."""
    match = TOKEN_FORMAT.fullmatch(token or "")
    if match is None:
        raise InvalidToken("malformed", "malformed token: expected rh_<12 hex digits>_<43 base64url characters>")
    return match.group(1)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore(abc.ABC):
    """Where tokens live. Backends store rows; creating and checking is done here, once."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock

    @abc.abstractmethod
    def _insert(self, token: Token) -> None:
        """Store a new row (its ID is new)."""

    @abc.abstractmethod
    def get(self, token_id: str) -> Token:
        """The token's row, revoked or not; raises TokenNotFound."""

    @abc.abstractmethod
    def list(self, *, include_revoked: bool = True) -> list[Token]:
        """Every token, oldest first."""

    @abc.abstractmethod
    def revoke(self, token_id: str) -> Token:
        """Revoke a token for good (revoking a revoked token changes nothing); TokenNotFound."""

    def create(self, team: str, *, admin: bool = False, name: str = "",
               token: str | None = None) -> tuple[Token, str]:
        """A new token for `team`: its row and the token itself, which is not stored.

        `token`: a token string to record instead of a new one (`ensure_local_admin` keeps
        the one already in the token file). Team "admin" is always an admin token.
        """
        check_team(team)
        token = token or generate()
        record = Token(id=token_id(token), team=team, admin=bool(admin) or team == ADMIN_TEAM,
                       name=str(name)[:200], created_at=self._clock(), secret_sha256=digest(token))
        self._insert(record)
        return dataclasses.replace(record, secret_sha256=""), token

    def authenticate(self, token: str | None) -> Token:
        """The unrevoked token row `token` stands for; raises InvalidToken saying why not."""
        if not token:
            raise InvalidToken("missing", "missing bearer token: send Authorization: Bearer <token>")
        tid = token_id(token)
        try:
            record = self.get(tid)
        except TokenNotFound:
            raise InvalidToken("unknown", f"unknown token {tid}") from None
        if not hmac.compare_digest(record.secret_sha256, digest(token)):
            # Same ID, other secret: a forged or mistyped token. Say no more than for a
            # token this store never issued.
            raise InvalidToken("unknown", f"unknown token {tid}")
        if record.revoked:
            raise InvalidToken("revoked", f"token {tid} was revoked")
        return record

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- the local admin token


def read_token_file(path: pathlib.Path) -> str | None:
    """The token in `path`, if the file exists, only its owner can read it, and it is
    well formed; else None."""
    try:
        st = path.stat()
        text = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    if st.st_mode & 0o077 or not TOKEN_FORMAT.fullmatch(text):
        return None
    return text


def write_token_file(path: pathlib.Path, token: str) -> None:
    """Write `token` to `path`, mode 0600 from the start (never readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask cannot widen it, but an old file's mode could linger
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_local_admin(store: TokenStore, path: pathlib.Path) -> Token | None:
    """On a database with no unrevoked admin token, make one and write it to `path` (0600).

    The token already in `path` is kept when it is well formed, private and not a token
    the store knows (a revoked token stays revoked): a fresh database then keeps the CLI
    working. Returns the new token's row, or None when an admin token already existed.
    """
    if any(t.admin and not t.revoked for t in store.list(include_revoked=False)):
        return None
    existing = read_token_file(path)
    if existing is not None:
        try:
            store.get(token_id(existing))
            existing = None  # known to the store (so revoked, or not admin): never reuse it
        except TokenNotFound:
            pass
    record, token = store.create(ADMIN_TEAM, admin=True, name="local admin (written by the server)",
                                 token=existing)
    if existing is None:
        write_token_file(path, token)
    log.info("no admin token in the database: made %s, in %s", record.id, path)
    return record

