"""Two jitgate deployments granting ephemeral logins on one PostgreSQL server (two teams, or
a staging jitgate next to production), against a real server: each one's reconciliation
drops only the logins of requests its own database says are over. A login made for a
request it does not know is the other's: it is reported (``unknown`` in the pass's report,
``backend.reconciled`` with ``action: reported`` once a day), never dropped, and its
connections keep running."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pg_target import PgTarget, start_target

from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.policy import load_policy
from jitgate.domain.creation import Draft
from jitgate.domain.states import State
from jitgate.service import decisions
from jitgate.service import requests as use
from jitgate.service.backend_access import credentials
from jitgate.service.context import Context
from jitgate.service.ports import AuditQuery
from jitgate.service.reconcile import UNKNOWN, reconcile

POLICY = """
version: 1
settings: {pending_ttl: 1h, admins: [security]}
directory:
  users:
    jane@example.com: {groups: [dba]}
    sec@example.com: {groups: [security]}
resources:
  app-db: {type: database, environment: staging}
roles:
  db-login:
    grants: [{type: database, environment: staging}]
    requestable_by: [dba]
    default_duration: 1h
    max_duration: 8h
    backends: [prod-pg]
approval:
  - match: {type: database, environment: any}
    rule: self
backends:
  prod-pg: {type: postgres, dsn_env: JG_PG_DSN, db_role: readonly, mode: ephemeral_user}
"""
JANE = "jane@example.com"


@pytest.fixture(scope="module")
def target() -> Iterator[PgTarget]:
    server = start_target()
    yield server
    server.server.stop()


@pytest.fixture
def deployments(
    target: PgTarget, make_ctx: Any, tmp_path: Path, pg_db_url: str
) -> Iterator[tuple[Context, Context]]:
    """The first on SQLite, the second on PostgreSQL; one policy, one target server."""
    (tmp_path / "policy.yaml").write_text(POLICY)
    start = datetime.now(UTC).replace(microsecond=0)  # VALID UNTIL is the server's time
    made = []
    for url in (f"sqlite:///{tmp_path}/first.db", pg_db_url):
        ctx, _clock = make_ctx(url, load_policy(tmp_path / "policy.yaml"), start=start)
        wire_enforcement(ctx, ctx.uow.db, environ={"JG_PG_DSN": target.service_dsn()})
        made.append(ctx)
    yield made[0], made[1]
    with target.admin() as conn:
        for (name,) in conn.execute(r"SELECT rolname FROM pg_roles WHERE rolname LIKE 'jit\_%'"):
            conn.execute(f'DROP ROLE "{name}"')


def login_of(ctx: Context) -> tuple[str, Any]:
    """A live grant of jane's and its login: ``(request id, credential)``."""
    draft = Draft(roles=("db-login",), reason="INC-7", duration=timedelta(hours=1))
    request = use.create_request(ctx, requester=JANE, draft=draft).request
    assert request.state is State.ACTIVE
    (login,) = credentials(ctx, request_id=request.id, requester=JANE)
    return request.id, login


def exists(target: PgTarget, login: str) -> bool:
    with target.admin() as conn:
        found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,))
        return found.fetchone() is not None


def reported(ctx: Context) -> list[dict[str, Any]]:
    with ctx.uow(write=False) as uow:
        found = uow.audit.find(AuditQuery(type="backend.reconciled", limit=1000))
    return [e.data for e in found]


def test_a_login_of_another_deployments_live_grant_is_reported_never_dropped(
    target: PgTarget, deployments: tuple[Context, Context]
) -> None:
    first, second = deployments
    rid, login = login_of(first)
    with psycopg.connect(login.dsn, password=login.password, autocommit=True) as connection:
        report = reconcile(second)
        assert report.orphans == 0 and report.failed == 0, report
        entry = {"backend": "prod-pg", "member": login.username, "request_id": rid, "user": JANE}
        assert report.unknown == [entry]
        assert exists(target, login.username)
        assert connection.execute("SELECT v FROM secrets").fetchone() == ("the crown jewels",)

        (said,) = reported(second)
        assert said["action"] == "reported" and said["reason"] == UNKNOWN
        assert said["member"] == login.username
        assert said["detail"] == {"member": login.username, "request_id": rid, "user": JANE}
        assert reconcile(second).unknown == [entry]  # listed on every pass …
        assert len(reported(second)) == 1  # … audited once a day

        # the deployment that made it ends it; the other one no longer lists it
        decisions.revoke_request(first, request_id=rid, actor=JANE, reason="done")
        assert not exists(target, login.username)
        with pytest.raises(psycopg.OperationalError):
            connection.execute("SELECT 1")
        assert reconcile(second).unknown == []


def test_each_deployment_still_drops_its_own_orphans(
    target: PgTarget, deployments: tuple[Context, Context]
) -> None:
    """A login of a request its own database says is over is dropped, next to another
    deployment's live one, which is left alone."""
    first, second = deployments
    theirs, kept = login_of(first)
    mine, gone = login_of(second)
    decisions.revoke_request(second, request_id=mine, actor=JANE, reason="done")
    with target.admin() as conn:  # a restored backup brings the login back
        conn.execute(f"CREATE ROLE \"{gone.username}\" LOGIN IN ROLE readonly PASSWORD 'x-1'")
        conn.execute(f"COMMENT ON ROLE \"{gone.username}\" IS 'jitgate:{mine}:{JANE}'")

    report = reconcile(second)
    assert report.orphans == 1 and report.failed == 0
    assert [u["request_id"] for u in report.unknown] == [theirs]
    assert not exists(target, gone.username) and exists(target, kept.username)
