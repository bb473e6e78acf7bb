"""Faults against a real PostgreSQL: the backend down at expiry (retried until revoked,
authorize refusing from ``ends_at`` regardless), and ``kill -9`` between a backend call and
its commit (a child process dies right after the real GRANT or REVOKE; after the restart,
reconciliation repairs it and audits the repair)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pg_target import PgTarget, TcpProxy, start_target

from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.clock import ManualClock
from jitgate.adapters.policy import load_policy
from jitgate.domain.creation import Draft
from jitgate.domain.states import State
from jitgate.service import access, lifecycle
from jitgate.service import requests as use
from jitgate.service.context import Context
from jitgate.service.enforcement import Enforcement
from jitgate.service.enforcement_rows import LEASE
from jitgate.service.ports import AuditQuery
from jitgate.service.reconcile import reconcile

POLICY = """
version: 1
settings: {pending_ttl: 1h, sessions_at_expiry: continue, admins: [security]}
directory:
  users:
    jane@example.com: {groups: [dba]}
    joe@example.com: {groups: [dba]}
    jack@example.com: {groups: [dba]}
    sec@example.com: {groups: [security]}
resources:
  app-db: {type: database, environment: development}
roles:
  db-role:
    grants: [{type: database, environment: development}]
    requestable_by: [dba]
    default_duration: 1h
    max_duration: 8h
    backends: [pg-role]
approval:
  - match: {type: database, environment: development}
    rule: self
backends:
  pg-role: {type: postgres, dsn_env: JG_PG_DSN, db_role: readonly}
"""

# The child: the same database and policy, a postgres backend that dies (SIGKILL) right
# after its real call returns, before jitgate can commit what it did.
CHILD = """
import os, signal, sys
from datetime import datetime
from jitgate.adapters.backends.base import Registry
from jitgate.adapters.backends.postgres import PostgresBackend
from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.clock import ManualClock
from jitgate.adapters.db.engine import connect
from jitgate.adapters.db.uow import SqlUnitOfWorkFactory
from jitgate.adapters.policy import load_policy
from jitgate.service import decisions, lifecycle
from jitgate.service.context import Context, PolicyHolder

db_url, policy_path, dsn, when, action, request_id = sys.argv[1:]

class DiesAfterTheCall(PostgresBackend):
    def grant(self, spec):
        super().grant(spec)
        os.kill(os.getpid(), signal.SIGKILL)
    def revoke(self, spec):
        super().revoke(spec)
        os.kill(os.getpid(), signal.SIGKILL)

db = connect(db_url)
ctx = Context(uow=SqlUnitOfWorkFactory(db), clock=ManualClock(datetime.fromisoformat(when)),
              policy=PolicyHolder(load_policy(policy_path)))
wire_enforcement(ctx, db, registry=Registry({"postgres": DiesAfterTheCall}),
                 environ={"JG_PG_DSN": dsn})
if action == "activate":
    lifecycle.activate(ctx)
else:
    decisions.revoke_request(ctx, request_id=request_id, actor="sec@example.com", reason="x")
print("survived")
"""


@pytest.fixture(scope="module")
def target() -> Iterator[PgTarget]:
    server = start_target()
    yield server
    server.server.stop()


class Jitgate:
    def __init__(self, make_ctx: Any, tmp_path: Path, dsn: str) -> None:
        self.policy_path = tmp_path / "policy.yaml"
        self.policy_path.write_text(POLICY)
        self.db_url = f"sqlite:///{tmp_path}/jg.db"
        self.dsn = dsn
        start = datetime.now(UTC).replace(microsecond=0)
        ctx, clock = make_ctx(self.db_url, load_policy(self.policy_path), start=start)
        wire_enforcement(ctx, ctx.uow.db, environ={"JG_PG_DSN": dsn})
        self.ctx: Context = ctx
        self.clock: ManualClock = clock

    def crash(self, action: str, request_id: str = "-") -> None:
        """Run ``action`` in a child process that is killed -9 after its backend call."""
        args = [self.db_url, str(self.policy_path), self.dsn, self.clock.now().isoformat()]
        child = subprocess.run(
            [sys.executable, "-c", CHILD, *args, action, request_id],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr

    def state(self, request_id: str) -> State:
        with self.ctx.uow(write=False) as uow:
            request = uow.requests.get(request_id)
        assert request is not None
        return request.state

    def row(self, request_id: str) -> Any:
        assert isinstance(self.ctx.grants, Enforcement)
        with self.ctx.grants.uow(write=False) as uow:
            return uow.backend_grants.get(request_id, "pg-role")

    def events(self, request_id: str, kind: str) -> list[dict[str, Any]]:
        with self.ctx.uow(write=False) as uow:
            found = uow.audit.find(AuditQuery(request_id=request_id, type=kind, limit=100))
        return [e.data for e in found]


def _grant(jg: Jitgate, user: str, **draft: Any) -> str:
    values: dict[str, Any] = {"roles": ("db-role",), "reason": "INC-9"}
    values.update(draft)
    return use.create_request(jg.ctx, requester=user, draft=Draft(**values)).request.id


def test_backend_down_at_expiry_is_retried_until_revoked(
    target: PgTarget, make_ctx: Any, tmp_path: Path
) -> None:
    proxy = TcpProxy(target.port).start()
    try:
        target.fresh_login("jack", "pw-jack-1")
        jg = Jitgate(make_ctx, tmp_path, target.service_dsn(port=proxy.port))
        rid = _grant(jg, "jack@example.com", duration=timedelta(hours=1))
        assert jg.state(rid) is State.ACTIVE and target.can_read("jack", "pw-jack-1")

        proxy.down()
        jg.clock.advance(timedelta(hours=1))
        lifecycle.tick(jg.ctx)
        assert jg.state(rid) is State.EXPIRED
        verdict = access.authorize(jg.ctx, user="jack@example.com", resource="app-db")
        assert not verdict.allowed  # refused from ends_at on, whatever the backend's state
        assert target.can_read("jack", "pw-jack-1")  # the backend still has it: not reachable
        assert jg.row(rid).status == "removing"
        failed = jg.events(rid, "backend.failed")
        assert failed[0]["action"] == "revoke" and "postgres" in failed[0]["error"]

        enforcement = jg.ctx.grants
        assert isinstance(enforcement, Enforcement)
        jg.clock.advance(timedelta(seconds=6))
        assert enforcement.retry_removals() == 0  # retried, still down, audited again
        assert len(jg.events(rid, "backend.failed")) == 2
        proxy.restore()
        jg.clock.advance(timedelta(seconds=11))
        assert enforcement.retry_removals() == 1
        assert not target.can_read("jack", "pw-jack-1")
        assert jg.row(rid).status == "removed" and jg.events(rid, "backend.removed")
    finally:
        proxy.stop()


def test_kill_9_after_the_grant_is_repaired_after_restart(
    target: PgTarget, make_ctx: Any, tmp_path: Path
) -> None:
    target.fresh_login("jane", "pw-jane-1")
    jg = Jitgate(make_ctx, tmp_path, target.service_dsn())
    start_at = jg.clock.now() + timedelta(minutes=10)
    rid = _grant(jg, "jane@example.com", duration=timedelta(hours=1), start_at=start_at)
    assert jg.state(rid) is State.APPROVED and jg.row(rid) is None

    jg.clock.set(start_at + timedelta(minutes=1))
    jg.crash("activate")
    assert target.can_read("jane", "pw-jane-1")  # granted on the real system …
    row = jg.row(rid)
    assert row.status == "applying" and row.in_flight  # … but never recorded as done
    assert jg.state(rid) is State.APPROVED

    jg.clock.advance(LEASE + timedelta(seconds=1))  # the dead worker's lease runs out
    report = reconcile(jg.ctx)  # what the scheduler runs at startup
    assert report.activated == 1 and jg.state(rid) is State.ACTIVE
    assert jg.row(rid).status == "applied"
    assert jg.events(rid, "backend.reconciled")[0]["action"] == "resumed"
    assert target.can_read("jane", "pw-jane-1")


def test_kill_9_after_the_revoke_is_repaired_after_restart(
    target: PgTarget, make_ctx: Any, tmp_path: Path
) -> None:
    target.fresh_login("joe", "pw-joe-1")
    jg = Jitgate(make_ctx, tmp_path, target.service_dsn())
    rid = _grant(jg, "joe@example.com", duration=timedelta(hours=1))
    assert target.can_read("joe", "pw-joe-1")

    jg.clock.advance(timedelta(minutes=5))
    jg.crash("revoke", rid)
    assert jg.state(rid) is State.REVOKED  # committed before the backend was called
    assert not target.can_read("joe", "pw-joe-1")  # revoked on the real system …
    row = jg.row(rid)
    assert row.status == "removing" and row.in_flight  # … but never recorded as done

    jg.clock.advance(LEASE + timedelta(seconds=1))
    report = reconcile(jg.ctx)
    assert report.retried == 1
    assert jg.row(rid).status == "removed"
    assert jg.events(rid, "backend.reconciled")[0]["action"] == "resumed"
    assert jg.events(rid, "backend.removed")
    assert not target.can_read("joe", "pw-joe-1")


def test_jitgate_reconcile_prints_its_report(target: PgTarget, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    env = {**os.environ, "JG_PG_DSN": target.service_dsn()}
    jitgate = str(Path(sys.executable).with_name("jitgate"))
    db = f"sqlite:///{tmp_path}/jg.db"
    subprocess.run([jitgate, "db", "upgrade", "--db", db], check=True, capture_output=True)
    done = subprocess.run(
        [jitgate, "reconcile", "--db", db, "--policy", str(policy)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["repairs"] == 0 and report["failed"] == 0
