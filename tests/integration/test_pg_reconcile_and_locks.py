"""The postgres backend and reconciliation against a real PostgreSQL, where a user meets them:

- a login carrying a badly formed jitgate comment (``jitgate:oops``) neither stops
  ``jitgate reconcile`` nor the scheduler's pass: real orphans are still dropped, and the
  bad login is logged once, not on every pass;
- a member of a managed ``db_role`` that no grant of jitgate explains (``GRANT readonly TO
  bob`` by hand, or a membership back after the recheck horizon) is reported as standing
  access (audited once a day, in the CLI's JSON, logged), and left in place;
- another session's uncommitted ``REVOKE``/``GRANT`` on the same membership makes jitgate's
  call fail after ``statement_timeout`` (default 5 s) as a ``backend.failed``, retried once
  the lock is gone, instead of waiting on it for as long as that session likes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pg_target import PgTarget, start_target

from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.clock import ManualClock
from jitgate.adapters.policy import load_policy
from jitgate.domain.creation import Draft
from jitgate.domain.states import State
from jitgate.service import decisions
from jitgate.service import requests as use
from jitgate.service.context import Context
from jitgate.service.ports import AuditQuery
from jitgate.service.reconcile import enforcement_of, reconcile, scheduler_jobs

JITGATE = str(Path(sys.executable).with_name("jitgate"))
POLICY = """
version: 1
settings: {pending_ttl: 1h, sessions_at_expiry: continue, admins: [security]}
directory:
  users:
    jane@example.com: {groups: [dba]}
    jill@example.com: {groups: [dba]}
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
  db-login:
    grants: [{type: database, environment: staging}]
    requestable_by: [dba]
    default_duration: 1h
    max_duration: 8h
    backends: [pg-login]
approval:
  - match: {type: database, environment: any}
    rule: self
backends:
  pg-role: {type: postgres, dsn_env: JG_PG_DSN, db_role: readonly, mode: grant_role}
  pg-login: {type: postgres, dsn_env: JG_PG_DSN, db_role: readonly, mode: ephemeral_user}
"""
JANE, JILL = "jane@example.com", "jill@example.com"


@pytest.fixture(scope="module")
def target() -> Iterator[PgTarget]:
    server = start_target()
    yield server
    server.server.stop()


@pytest.fixture
def stack(target: PgTarget, make_ctx: Any, tmp_path: Path) -> Iterator[tuple[Context, ManualClock]]:
    (tmp_path / "policy.yaml").write_text(POLICY)
    start = datetime.now(UTC).replace(microsecond=0)
    ctx, clock = make_ctx(
        f"sqlite:///{tmp_path}/jg.db", load_policy(tmp_path / "policy.yaml"), start=start
    )
    wire_enforcement(ctx, ctx.uow.db, environ={"JG_PG_DSN": target.service_dsn()})
    yield ctx, clock
    with target.admin() as conn:  # the roles are the cluster's: leave none to the next test
        for (name,) in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'jit\\_%' OR rolname IN "
            "('jane', 'jill', 'bob', 'analysts')"
        ).fetchall():
            conn.execute(f'DROP ROLE "{name}"')


def grant(ctx: Context, user: str, role: str = "db-role") -> str:
    draft = Draft(roles=(role,), reason="INC-7", duration=timedelta(hours=1))
    request = use.create_request(ctx, requester=user, draft=draft).request
    assert request.state is State.ACTIVE
    return request.id


def members(target: PgTarget) -> set[str]:
    with target.admin() as conn:
        rows = conn.execute(
            "SELECT u.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = 'readonly'"
        ).fetchall()
    return {str(r[0]) for r in rows}


def reported(ctx: Context) -> list[dict[str, Any]]:
    with ctx.uow(write=False) as uow:
        found = uow.audit.find(AuditQuery(type="backend.reconciled", limit=1000))
    return [e.data for e in found if e.data.get("action") == "reported"]


def run_cli(tmp_path: Path, target: PgTarget) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JG_PG_DSN": target.service_dsn()}
    command = [
        JITGATE, "reconcile", "--policy", str(tmp_path / "policy.yaml"),
        "--db", f"sqlite:///{tmp_path}/jg.db",
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


# -- 1. a malformed marker comment ---------------------------------------------------------


def test_a_malformed_jitgate_comment_stops_neither_reconcile_nor_the_orphans_removal(
    target: PgTarget,
    stack: tuple[Context, ManualClock],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx, _ = stack
    ended = grant(ctx, JANE, "db-login")  # the ghosts' request, over in this database
    decisions.revoke_request(ctx, request_id=ended, actor=JANE, reason="done")
    with target.admin() as conn:
        conn.execute("CREATE ROLE jit_evil NOLOGIN")
        conn.execute("COMMENT ON ROLE jit_evil IS 'jitgate:oops'")
        conn.execute("CREATE ROLE jit_ghost_1 LOGIN IN ROLE readonly PASSWORD 'x-Secret-2'")
        conn.execute(f"COMMENT ON ROLE jit_ghost_1 IS 'jitgate:{ended}:ghost@example.com'")

    done = run_cli(tmp_path, target)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "ValueError" not in done.stderr
    assert json.loads(done.stdout)["orphans"] == 1
    assert "jit_ghost_1" not in members(target)  # the real orphan is gone …
    with target.admin() as conn:  # … the login with a comment jitgate cannot read stays
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'jit_evil'").fetchone()

    with target.admin() as conn:  # another orphan, for the scheduler's passes
        conn.execute("CREATE ROLE jit_ghost_2 LOGIN IN ROLE readonly PASSWORD 'x-Secret-3'")
        conn.execute(f"COMMENT ON ROLE jit_ghost_2 IS 'jitgate:{ended}:ghost@example.com'")
    periodic = scheduler_jobs(ctx, interval=0.0)[1]
    with caplog.at_level(logging.WARNING):
        first = periodic()
        second = periodic()
    assert first is not None and first.orphans == 1 and first.failed == 0
    assert second is not None and second.failed == 0
    assert "jit_ghost_2" not in members(target)
    said = [r for r in caplog.records if "jit_evil" in r.getMessage()]
    assert len(said) == 1 and "reconciliation failed" not in caplog.text  # once, not per pass


# -- 2. standing access --------------------------------------------------------------------


def test_a_member_no_grant_explains_is_reported_as_standing_access_and_left_alone(
    target: PgTarget, stack: tuple[Context, ManualClock], tmp_path: Path
) -> None:
    ctx, clock = stack
    target.fresh_login("jane", "pw-jane-1")
    target.fresh_login("bob", "pw-bob-1")
    with target.admin() as conn:
        conn.execute("GRANT readonly TO bob")  # by hand: jitgate never granted it
    grant(ctx, JANE)  # jane's membership is a live grant's
    grant(ctx, JILL, role="db-login")  # an ephemeral login: jitgate's own, not standing

    report = reconcile(ctx)
    assert report.standing == [{"backend": "pg-role", "member": "bob"}], report
    assert report.failed == 0
    assert {"bob", "jane"} <= members(target)  # reported, never removed
    (event,) = reported(ctx)
    assert event["backend"] == "pg-role" and event["member"] == "bob"
    assert "standing access" in event["reason"]

    done = run_cli(tmp_path, target)  # the CLI shows it too; audited once a day, not per pass
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["standing"] == [{"backend": "pg-role", "member": "bob"}]
    assert len(reported(ctx)) == 1
    clock.advance(timedelta(days=1, minutes=1))  # jane's grant ended: the pass removes it
    assert reconcile(ctx).standing == [{"backend": "pg-role", "member": "bob"}]
    assert members(target) & {"bob", "jane"} == {"bob"}
    assert [e["member"] for e in reported(ctx)] == ["bob", "bob"]  # said again a day later


def test_a_membership_back_after_the_recheck_horizon_is_reported_not_silently_kept(
    target: PgTarget, stack: tuple[Context, ManualClock]
) -> None:
    ctx, clock = stack
    target.fresh_login("jane", "pw-jane-1")
    rid = grant(ctx, JANE)
    decisions.revoke_request(ctx, request_id=rid, actor="sec@example.com", reason="done")
    assert "jane" not in members(target)
    with target.admin() as conn:
        conn.execute("GRANT readonly TO jane")
    assert reconcile(ctx).orphans == 1  # within the horizon: drift, removed
    assert "jane" not in members(target)

    clock.advance(timedelta(days=2))
    with target.admin() as conn:
        conn.execute("GRANT readonly TO jane")
    report = reconcile(ctx)
    assert report.orphans == 0 and report.standing == [{"backend": "pg-role", "member": "jane"}]
    assert [e["member"] for e in reported(ctx)] == ["jane"]


# -- 3. another session's lock -------------------------------------------------------------


def _timed(call: Callable[[], object], release: Callable[[], None]) -> float:
    """Seconds ``call`` took; a call still blocked after 15 s has ``release`` run (the other
    session gives its lock up) so that the test ends either way."""
    began = time.monotonic()
    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout=15)
    elapsed = time.monotonic() - began
    release()
    worker.join(timeout=30)
    return elapsed


def _failures(ctx: Context, rid: str) -> list[dict[str, Any]]:
    with ctx.uow(write=False) as uow:
        found = uow.audit.find(AuditQuery(request_id=rid, type="backend.failed"))
    return [e.data for e in found]


def test_a_revoke_held_up_by_another_sessions_lock_fails_fast_and_is_retried(
    target: PgTarget, stack: tuple[Context, ManualClock]
) -> None:
    ctx, clock = stack
    target.fresh_login("jane", "pw-jane-1")
    rid = grant(ctx, JANE)
    dba = psycopg.connect(target.server.url("app"))  # a DBA's transaction, left open
    dba.execute("REVOKE readonly FROM jane")
    try:
        elapsed = _timed(
            lambda: decisions.revoke_request(ctx, request_id=rid, actor=JANE, reason="done"),
            dba.rollback,
        )
    finally:
        dba.close()
    assert elapsed < 12, f"jitgate's REVOKE waited {elapsed:.1f}s on another session's lock"
    (failed,) = _failures(ctx, rid)
    assert failed["action"] == "revoke" and "lock timeout" in failed["error"]
    assert "jane" in members(target)  # the other session rolled back: still to be removed
    enf = enforcement_of(ctx)
    with enf.uow(write=False) as uow:
        row = uow.backend_grants.get(rid, "pg-role")
    assert row is not None and row.status == "removing"  # to be retried, with backoff
    clock.advance(timedelta(seconds=10))
    assert enf.retry_removals() == 1
    assert "jane" not in members(target)


def test_a_grant_held_up_by_another_sessions_lock_fails_fast_and_the_request_waits(
    target: PgTarget, stack: tuple[Context, ManualClock]
) -> None:
    ctx, _ = stack
    target.fresh_login("jane", "pw-jane-1")
    dba = psycopg.connect(target.server.url("app"))
    dba.execute("GRANT readonly TO jane")  # uncommitted
    created: list[str] = []

    def ask() -> None:
        draft = Draft(roles=("db-role",), reason="INC-8", duration=timedelta(hours=1))
        created.append(use.create_request(ctx, requester=JANE, draft=draft).request.id)

    try:
        elapsed = _timed(ask, dba.rollback)
    finally:
        dba.close()
    assert elapsed < 12, f"creating the request waited {elapsed:.1f}s on a lock"
    (rid,) = created
    with ctx.uow(write=False) as uow:
        request = uow.requests.get(rid)
    assert request is not None and request.state is State.APPROVED  # not active: not applied
    assert "lock timeout" in _failures(ctx, rid)[0]["error"]
