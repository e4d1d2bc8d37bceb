"""One suite, run against both token store backends: SQLite and a real PostgreSQL server."""

import itertools
import stat

import psycopg
import pytest

from roundhouse.platform.auth import tokens as tokens_lib
from roundhouse.platform.auth.sql_tokens import PostgresTokenStore, SqliteTokenStore, open_token_store
from roundhouse.platform.auth.tokens import InvalidToken, TokenError, TokenNotFound
from roundhouse.platform.jobs.factory import open_store as open_jobs
from roundhouse.testing import postgres_server


class FakeClock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def postgres():
    with postgres_server.postgres_server() as dsn:
        yield dsn


_db_numbers = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """A fresh database, as the job store's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "jobs.sqlite")
    server_dsn = request.getfixturevalue("postgres")
    name = f"tokens_{next(_db_numbers)}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_dsn.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def make_store(db_url):
    """Stores over one database; each call is another process (service, admin command)."""
    clock, stores = FakeClock(), []

    def make():
        stores.append(open_token_store(db_url, clock=clock))
        return stores[-1]
    make.clock = clock
    yield make
    for s in stores:
        s.close()


def reason(store, token):
    with pytest.raises(InvalidToken) as e:
        store.authenticate(token)
    return e.value.code, str(e.value)


def test_a_token_is_shown_once_and_stored_only_as_its_hash(make_store, db_url):
    store = make_store()
    record, token = store.create("risk", name="airflow")
    assert tokens_lib.TOKEN_FORMAT.fullmatch(token) and token.startswith(f"rh_{record.id}_")
    assert (record.team, record.admin, record.name, record.revoked) == ("risk", False, "airflow", False)
    assert record.created_at == make_store.clock.now
    stored = store.get(record.id)
    assert stored.secret_sha256 == tokens_lib.digest(token) and token not in repr(stored)
    # Nothing in the database holds the token itself.
    if isinstance(store, SqliteTokenStore):
        import sqlite3
        rows = sqlite3.connect(db_url).execute("SELECT * FROM api_tokens").fetchall()
    else:
        with psycopg.connect(db_url) as conn:
            rows = conn.execute("SELECT * FROM api_tokens").fetchall()
    assert rows and not any(token in str(v) or token.split("_", 2)[2] in str(v) for row in rows for v in row)
    assert store.authenticate(token) == stored


def test_every_bad_token_is_refused_with_its_reason(make_store):
    store = make_store()
    record, token = store.create("risk")
    assert reason(store, None)[0] == "missing" and reason(store, "")[0] == "missing"
    assert reason(store, "hunter2")[0] == "malformed"
    assert reason(store, token + "x")[0] == "malformed"
    other_id = "0" * 12 if record.id != "0" * 12 else "1" * 12
    assert reason(store, token.replace(record.id, other_id)) == ("unknown", f"unknown token {other_id}")
    # Right ID, wrong secret: as unknown as a token never issued.
    forged = f"rh_{record.id}_{'A' * 43}"
    assert reason(store, forged) == ("unknown", f"unknown token {record.id}")
    store.revoke(record.id)
    assert reason(store, token) == ("revoked", f"token {record.id} was revoked")


def test_list_revoke_and_teams(make_store):
    store, clock = make_store(), make_store.clock
    risk, _ = store.create("risk")
    clock.now += 1
    growth, growth_token = store.create("growth", name="nightly")
    clock.now += 1
    admin, _ = store.create("admin")
    clock.now += 1
    ops, _ = store.create("ops", admin=True)
    assert admin.admin and ops.admin and ops.team == "ops" and not growth.admin
    assert [t.id for t in store.list()] == [risk.id, growth.id, admin.id, ops.id]
    clock.now += 5
    revoked = store.revoke(growth.id)
    assert revoked.revoked_at == clock.now
    assert store.revoke(growth.id).revoked_at == revoked.revoked_at  # once revoked, stays as it was
    assert [t.id for t in store.list(include_revoked=False)] == [risk.id, admin.id, ops.id]
    assert store.get(growth.id).revoked
    with pytest.raises(TokenNotFound, match="no token 'nope'"):
        store.revoke("nope")
    with pytest.raises(TokenNotFound):
        store.get("nope")
    for bad in ("", "Risk", "risk team", "-x", "a" * 64):
        with pytest.raises(TokenError, match="bad team name"):
            store.create(bad)
    # The team decides: an admin acts for every team; a team only for itself.
    assert risk.may_act_for("risk") and not risk.may_act_for("growth") and not risk.may_act_for("")
    assert admin.may_act_for("growth") and admin.may_act_for("")


def test_another_process_sees_new_and_revoked_tokens_at_once(make_store):
    service, command = make_store(), make_store()
    record, token = command.create("risk")
    assert service.authenticate(token).team == "risk"
    command.revoke(record.id)
    assert reason(service, token)[0] == "revoked"


def test_tokens_live_beside_the_jobs_in_one_database(make_store, db_url):
    with open_jobs(db_url) as jobs:
        store = make_store()
        _, token = store.create("risk")
        assert jobs.list() == []
    with open_jobs(db_url):  # a job store opened after does not disturb the table
        assert make_store().authenticate(token).team == "risk"
    assert isinstance(make_store(), PostgresTokenStore if db_url.startswith("postgresql") else SqliteTokenStore)


def test_the_local_admin_token_is_made_once_and_written_private(make_store, tmp_path):
    store, path = make_store(), tmp_path / "home" / "token"
    made = tokens_lib.ensure_local_admin(store, path)
    assert made.admin and made.team == "admin"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert store.authenticate(token).id == made.id
    # A restart finds an admin token: nothing changes.
    assert tokens_lib.ensure_local_admin(make_store(), path) is None
    assert path.read_text().strip() == token
    # A revoked admin token does not count.
    store.revoke(made.id)
    again = tokens_lib.ensure_local_admin(store, path)
    assert again is not None and again.id != made.id  # the revoked token in the file is not reused
    assert store.authenticate(path.read_text().strip()).id == again.id
    assert reason(store, token)[0] == "revoked"


def test_no_local_token_when_an_admin_made_one_with_the_command(make_store, tmp_path):
    store = make_store()
    store.create("ops", admin=True)
    assert tokens_lib.ensure_local_admin(store, tmp_path / "token") is None
    assert not (tmp_path / "token").exists()


def test_a_fresh_database_keeps_the_token_already_in_the_file(make_store, tmp_path):
    path = tmp_path / "token"
    token = tokens_lib.generate()
    tokens_lib.write_token_file(path, token)
    made = tokens_lib.ensure_local_admin(make_store(), path)
    assert made.id == tokens_lib.token_id(token) and path.read_text().strip() == token
    assert make_store().authenticate(token).admin


def test_a_token_file_others_can_read_is_replaced_not_trusted(make_store, tmp_path):
    path = tmp_path / "token"
    leaked = tokens_lib.generate()
    path.write_text(leaked)
    path.chmod(0o644)
    store = make_store()
    made = tokens_lib.ensure_local_admin(store, path)
    assert made.id != tokens_lib.token_id(leaked)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text().strip() != leaked
    assert reason(store, leaked)[0] == "unknown"


def test_postgres_token_store_reconnects_after_the_server_drops_it(postgres):
    store = PostgresTokenStore(postgres)
    try:
        _, token = store.create("risk")
        with psycopg.connect(postgres, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                          "AND backend_type = 'client backend'")
        assert store.authenticate(token).team == "risk"
    finally:
        store.close()
