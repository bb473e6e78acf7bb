"""The postgres backend against a real PostgreSQL, run as a non-superuser service account
(CREATEROLE, ADMIN OPTION on the role, pg_signal_backend), with jitgate's clock at real
time (``VALID UNTIL`` is checked by the server's clock).

Shows: SELECT works during the grant and gets "permission denied" after; a session that ran
``SET ROLE`` is terminated at revocation (and why: without it, it keeps the privilege);
overlapping grants keep access until the last one ends; an ephemeral login is handed to
the requester only, while active, is refused by PostgreSQL itself after ``ends_at`` and
is dropped at the end; orphaned jitgate logins are removed by reconciliation; no password
reaches the audit trail.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from pg_target import SERVICE, SERVICE_PASSWORD, PgTarget, start_target
from sshd import served

from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.clock import ManualClock
from jitgate.adapters.policy import load_policy
from jitgate.bootstrap import App
from jitgate.config import Settings
from jitgate.domain.creation import Draft
from jitgate.domain.states import State
from jitgate.entrypoints.api.app import create_app
from jitgate.service import decisions, lifecycle
from jitgate.service import requests as use
from jitgate.service.backend_access import credentials
from jitgate.service.context import Context
from jitgate.service.ports import AuditQuery, Principal
from jitgate.service.reconcile import reconcile
from jitgate.service.tokens import create_token

POLICY = """
version: 1
settings: {{pending_ttl: 1h, sessions_at_expiry: {sessions}, admins: [security]}}
directory:
  users:
    jane@example.com: {{groups: [dba]}}
    joe@example.com: {{groups: [dba]}}
    jim@example.com: {{groups: [dba]}}
    jill@example.com: {{groups: [dba]}}
    jack@example.com: {{groups: [dba]}}
    sec@example.com: {{groups: [security]}}
resources:
  app-db: {{type: database, environment: development}}
roles:
  db-role:
    grants: [{{type: database, environment: development}}]
    requestable_by: [dba]
    default_duration: 1h
    max_duration: 8h
    backends: [pg-role]
  db-login:
    grants: [{{type: database, environment: staging}}]
    requestable_by: [dba]
    default_duration: 1h
    max_duration: 8h
    backends: [pg-login]
approval:
  - match: {{type: database, environment: any}}
    rule: self
backends:
  pg-role: {{type: postgres, dsn_env: JG_PG_DSN, db_role: readonly, mode: grant_role}}
  pg-login: {{type: postgres, dsn_env: JG_PG_DSN, db_role: readonly, mode: ephemeral_user}}
"""


@pytest.fixture(scope="module")
def target() -> Iterator[PgTarget]:
    server = start_target()
    yield server
    server.server.stop()


def jitgate(
    make_ctx: Any, tmp_path: Path, dsn: str, sessions: str = "continue"
) -> tuple[Context, ManualClock]:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(sessions=sessions))
    start = datetime.now(UTC).replace(microsecond=0)
    ctx, clock = make_ctx(f"sqlite:///{tmp_path}/jg.db", load_policy(path), start=start)
    wire_enforcement(ctx, ctx.uow.db, environ={"JG_PG_DSN": dsn})
    return ctx, clock


def grant(ctx: Context, user: str, role: str = "db-role", duration: timedelta | None = None) -> str:
    draft = Draft(roles=(role,), reason="INC-7", duration=duration or timedelta(hours=1))
    request = use.create_request(ctx, requester=user, draft=draft).request
    assert request.state is State.ACTIVE, _events(ctx, request.id)
    return request.id


def _events(ctx: Context, request_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    with ctx.uow(write=False) as uow:
        found = uow.audit.find(AuditQuery(request_id=request_id, limit=1000))
    return [(e.type, e.data) for e in found]


def test_the_service_account_is_not_a_superuser(target: PgTarget) -> None:
    with target.admin() as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = %s", (SERVICE,)
        ).fetchone()
        signal = conn.execute("SELECT pg_has_role(%s, 'pg_signal_backend', 'MEMBER')", (SERVICE,))
        assert row == (False, True) and signal.fetchone() == (True,)


def test_select_works_during_the_grant_and_is_denied_after(
    target: PgTarget, make_ctx: Any, tmp_path: Path
) -> None:
    target.fresh_login("jane", "pw-jane-1")
    ctx, clock = jitgate(make_ctx, tmp_path, target.service_dsn())
    assert not target.can_read("jane", "pw-jane-1")
    rid = grant(ctx, "jane@example.com")
    assert target.can_read("jane", "pw-jane-1")
    clock.advance(timedelta(hours=1))
    lifecycle.tick(ctx)
    with (
        target.login("jane", "pw-jane-1") as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"),
    ):
        conn.execute("SELECT v FROM secrets")
    assert ("backend.removed", "pg-role") in [(t, d.get("backend")) for t, d in _events(ctx, rid)]


def test_a_set_role_session_is_terminated_at_early_revocation(
    target: PgTarget, make_ctx: Any, tmp_path: Path
) -> None:
    target.fresh_login("joe", "pw-joe-1")
    ctx, _ = jitgate(make_ctx, tmp_path, target.service_dsn())
    rid = grant(ctx, "joe@example.com")
    session = target.login("joe", "pw-joe-1")
    session.execute("SET ROLE readonly")
    assert session.execute("SELECT v FROM secrets").fetchone() == ("the crown jewels",)
    decisions.revoke_request(ctx, request_id=rid, actor="sec@example.com", reason="compromised")
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT v FROM secrets")
    session.close()
    assert not target.can_read("joe", "pw-joe-1")
    removed = next(d for t, d in _events(ctx, rid) if t == "backend.removed")
    assert removed["detail"]["sessions_terminated"] == 1 and removed["ended_early"] is True


@pytest.mark.parametrize("policy", ["continue", "terminate"])
def test_at_expiry_a_set_role_session_follows_sessions_at_expiry(
    target: PgTarget, make_ctx: Any, tmp_path: Path, policy: str
) -> None:
    target.fresh_login("jack", "pw-jack-1")
    ctx, clock = jitgate(make_ctx, tmp_path, target.service_dsn(), sessions=policy)
    grant(ctx, "jack@example.com")
    session = target.login("jack", "pw-jack-1")
    session.execute("SET ROLE readonly")
    clock.advance(timedelta(hours=1))
    lifecycle.tick(ctx)
    assert not target.can_read("jack", "pw-jack-1")  # new connections: denied either way
    if policy == "continue":  # SET ROLE keeps the privilege: why terminate exists
        assert session.execute("SELECT v FROM secrets").fetchone() == ("the crown jewels",)
    else:
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT v FROM secrets")
    session.close()


def test_overlapping_grants_keep_access_until_the_last_one_ends(
    target: PgTarget, make_ctx: Any, tmp_path: Path
) -> None:
    target.fresh_login("jim", "pw-jim-1")
    ctx, clock = jitgate(make_ctx, tmp_path, target.service_dsn(), sessions="terminate")
    first = grant(ctx, "jim@example.com", duration=timedelta(hours=1))
    grant(ctx, "jim@example.com", duration=timedelta(hours=2))
    session = target.login("jim", "pw-jim-1")
    clock.advance(timedelta(hours=1))
    lifecycle.tick(ctx)
    assert target.can_read("jim", "pw-jim-1")  # the second grant still covers it
    assert session.execute("SELECT 1").fetchone() == (1,)  # and its sessions are not killed
    kept = next(d for t, d in _events(ctx, first) if t == "backend.removed")
    assert kept["changed"] is False
    clock.advance(timedelta(hours=1))
    lifecycle.tick(ctx)
    assert not target.can_read("jim", "pw-jim-1")
    session.close()


def test_an_ephemeral_login_goes_to_the_requester_only_while_active(
    target: PgTarget, make_ctx: Any, tmp_path: Path
) -> None:
    ctx, _ = jitgate(make_ctx, tmp_path, target.service_dsn())
    app = App(Settings(), ctx.uow.db, ctx)  # type: ignore[attr-defined]
    with served(create_app(app)) as url, httpx.Client(base_url=url) as client:
        _credentials_flow(target, ctx, client)


def _credentials_flow(target: PgTarget, ctx: Context, client: httpx.Client) -> None:
    tokens = {
        who: create_token(ctx, principal=Principal("user", who))
        for who in ("jill@example.com", "sec@example.com")
    }
    rid = grant(ctx, "jill@example.com", role="db-login")
    path = f"/v1/requests/{rid}/credentials"
    auth = {"Authorization": f"Bearer {tokens['sec@example.com']}"}
    assert client.get(path, headers=auth).status_code == 403
    auth = {"Authorization": f"Bearer {tokens['jill@example.com']}"}
    answer = client.get(path, headers=auth)
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    (login,) = answer.json()
    assert login["backend"] == "pg-login" and login["username"].startswith("jit_jill_")
    connection = psycopg.connect(login["dsn"], password=login["password"], autocommit=True)
    assert connection.execute("SELECT v FROM secrets").fetchone() == ("the crown jewels",)

    every_event = repr(_events(ctx))
    assert login["password"] not in every_event and SERVICE_PASSWORD not in every_event
    assert ("credentials.issued", rid) in [(t, rid) for t, _ in _events(ctx, rid)]

    decisions.revoke_request(ctx, request_id=rid, actor="jill@example.com", reason="done")
    with pytest.raises(psycopg.OperationalError):
        connection.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(login["dsn"], password=login["password"])
    with target.admin() as conn:
        gone = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login["username"],))
        assert gone.fetchone() is None  # dropped at the end
    assert client.get(path, headers=auth).status_code == 409


def test_postgres_itself_refuses_the_ephemeral_login_after_ends_at(
    target: PgTarget, make_ctx: Any, tmp_path: Path
) -> None:
    ctx, clock = jitgate(make_ctx, tmp_path, target.service_dsn())
    rid = grant(ctx, "jill@example.com", role="db-login", duration=timedelta(seconds=3))
    (login,) = credentials(ctx, request_id=rid, requester="jill@example.com")
    psycopg.connect(login.dsn, password=login.password).close()
    with target.admin() as conn:
        (until,) = conn.execute(
            "SELECT rolvaliduntil FROM pg_roles WHERE rolname = %s", (login.username,)
        ).fetchone() or (None,)
    with ctx.uow(write=False) as uow:
        request = uow.requests.get(rid)
    assert request is not None and request.ends_at is not None and until == request.ends_at
    deadline = time.monotonic() + 10
    while datetime.now(UTC) < request.ends_at + timedelta(seconds=1):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # jitgate has not run its expiry yet: the login still exists, PostgreSQL refuses it anyway
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(login.dsn, password=login.password)
    clock.set(datetime.now(UTC))
    lifecycle.tick(ctx)
    with target.admin() as conn:
        assert (
            conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login.username,)).fetchone()
            is None
        )


def test_reconciliation_removes_jitgate_logins_that_should_not_exist(
    target: PgTarget, make_ctx: Any, tmp_path: Path
) -> None:
    ctx, clock = jitgate(make_ctx, tmp_path, target.service_dsn())
    rid = grant(ctx, "jill@example.com", role="db-login")
    (login,) = credentials(ctx, request_id=rid, requester="jill@example.com")
    clock.advance(timedelta(hours=1))
    lifecycle.tick(ctx)
    with target.admin() as conn:  # a crashed process, a restored backup: it is back
        conn.execute(f"CREATE ROLE \"{login.username}\" LOGIN PASSWORD 'x-Secret-1'")
        conn.execute(f"COMMENT ON ROLE \"{login.username}\" IS 'jitgate:{rid}:jill@example.com'")
        conn.execute(
            "CREATE ROLE jit_ghost_000000000000 LOGIN IN ROLE readonly PASSWORD 'x-Secret-2'"
        )
        conn.execute(
            "COMMENT ON ROLE jit_ghost_000000000000 IS 'jitgate:no-such-request:ghost@example.com'"
        )
        conn.execute("CREATE ROLE jit_someone_else LOGIN")  # no marker: not ours, left alone
    report = reconcile(ctx)
    assert report.orphans == 1 and report.failed == 0
    # a request this database does not hold: another jitgate's, reported and left alone
    assert [u["member"] for u in report.unknown] == ["jit_ghost_000000000000"]
    with target.admin() as conn:
        left = {
            r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'jit\\_%'")
        }
        conn.execute("DROP ROLE jit_someone_else")
        conn.execute("DROP ROLE jit_ghost_000000000000")
    assert left == {"jit_someone_else", "jit_ghost_000000000000"}
    repairs = [d for t, d in _events(ctx) if t == "backend.reconciled"]
    assert sorted(r["action"] for r in repairs) == ["removed", "reported"]


@pytest.mark.parametrize("until", ["infinity", "2999-01-01 00:00:00+00"])
def test_reconciliation_puts_back_an_ephemeral_login_s_end(
    target: PgTarget, make_ctx: Any, tmp_path: Path, until: str
) -> None:
    """A login's ``VALID UNTIL`` moved past the grant's end (by hand, by a restored backup)
    would outlive the grant if jitgate failed to drop it: reconciliation sets it back."""
    ctx, _ = jitgate(make_ctx, tmp_path, target.service_dsn())
    rid = grant(ctx, "jack@example.com", role="db-login")
    (login,) = credentials(ctx, request_id=rid, requester="jack@example.com")
    with target.admin() as conn:
        conn.execute(f"ALTER ROLE \"{login.username}\" VALID UNTIL '{until}'")
    report = reconcile(ctx)
    assert report.reapplied == 1 and report.failed == 0, report
    with ctx.uow(write=False) as uow:
        request = uow.requests.get(rid)
    with target.admin() as conn:
        (now_until,) = conn.execute(
            "SELECT rolvaliduntil FROM pg_roles WHERE rolname = %s", (login.username,)
        ).fetchone() or (None,)
    assert request is not None and now_until == request.ends_at
    repairs = [d for t, d in _events(ctx, rid) if t == "backend.reconciled"]
    assert [r["action"] for r in repairs] == ["reapplied"]
    assert reconcile(ctx).reapplied == 0  # in place now: nothing more to repair
