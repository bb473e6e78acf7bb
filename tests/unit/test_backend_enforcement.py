"""Enforcement on a real (SQLite) store with an in-memory backend plugin and a manual clock:
apply -> active, failures retried with backoff and audited, removal at expiry and early
revocation, overlapping grants, interrupted calls resumed, drift repaired, sessions ended."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jitgate.adapters.backends.base import BackendError, Receipt, Registry
from jitgate.adapters.backends.ssh_ca import SshCaBackend
from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.clock import ManualClock
from jitgate.adapters.policy import load_policy
from jitgate.adapters.policy.plugins import PluginCatalog
from jitgate.domain.creation import Draft
from jitgate.domain.states import State
from jitgate.service import access, decisions, lifecycle
from jitgate.service import requests as use
from jitgate.service.backend_ports import GrantSpec
from jitgate.service.context import Context
from jitgate.service.decisions import revoke_request
from jitgate.service.enforcement import Enforcement
from jitgate.service.enforcement_rows import LEASE
from jitgate.service.ports import AuditQuery, RequestQuery
from jitgate.service.reconcile import reconcile, scheduler_jobs

POLICY = """
version: 1
settings: {{pending_ttl: 1h, sessions_at_expiry: {sessions}, admins: [security]}}
directory:
  users:
    jane@example.com: {{groups: [developers]}}
    sec@example.com: {{groups: [security]}}
resources:
  dev-db: {{type: database, environment: development}}
roles:
  dev-db:
    grants: [{{type: database, environment: development}}]
    requestable_by: [developers]
    default_duration: 1h
    max_duration: 8h
    extendable: true
    backends: [{backend}]
approval:
  - match: {{type: database, environment: development}}
    rule: self
backends:
  shared: {{type: fake, shares: true}}
  per-request: {{type: fake, shares: false}}
  no-ca: {{type: ssh-ca, ca_key_file_env: JG_TEST_UNSET_CA, principals: [ubuntu]}}
"""


class Crash(BaseException):
    """Stands for the process dying between a backend call and its commit."""


@dataclass
class World:
    held: set[tuple[str, str]] = field(default_factory=set)
    calls: list[tuple[str, GrantSpec]] = field(default_factory=list)
    fail: set[str] = field(default_factory=set)
    crash_after: set[str] = field(default_factory=set)


WORLD = World()


class FakeBackend:
    verifiable = True

    def __init__(self, name: str, config: Any, deps: Any) -> None:
        self.name = name
        self.shares_grants = bool(config.get("shares"))

    def _key(self, spec: GrantSpec) -> tuple[str, str]:
        return (self.name, spec.user if self.shares_grants else spec.request_id)

    def _act(self, action: str, spec: GrantSpec) -> None:
        WORLD.calls.append((action, spec))
        if action in WORLD.fail:
            raise BackendError(f"fake {action} refused: backend down")

    def grant(self, spec: GrantSpec) -> Receipt:
        self._act("grant", spec)
        WORLD.held.add(self._key(spec))
        if "grant" in WORLD.crash_after:
            raise Crash
        return Receipt(self.name, "grant", changed=True, detail={"login": "jane"})

    def revoke(self, spec: GrantSpec) -> Receipt:
        self._act("revoke", spec)
        WORLD.held.discard(self._key(spec))
        if "revoke" in WORLD.crash_after:
            raise Crash
        return Receipt(self.name, "revoke", changed=True)

    def check(self, spec: GrantSpec) -> bool:
        return self._key(spec) in WORLD.held


@pytest.fixture(autouse=True)
def world() -> Iterator[World]:
    WORLD.__init__()  # type: ignore[misc]
    yield WORLD


def _ctx(
    make_ctx: Any, tmp_path: Path, backend: str = "shared", sessions: str = "continue"
) -> tuple[Context, ManualClock]:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(POLICY.format(backend=backend, sessions=sessions)))
    backends = {"fake": FakeBackend, "ssh-ca": SshCaBackend}
    policy = load_policy(path, plugins=PluginCatalog(backends=backends))
    ctx, clock = make_ctx(f"sqlite:///{tmp_path}/jg.db", policy)
    db = ctx.uow.db  # type: ignore[attr-defined]
    wire_enforcement(ctx, db, registry=Registry(backends), environ={})
    return ctx, clock


def _request(ctx: Context, hours: int = 1) -> str:
    draft = Draft(roles=("dev-db",), reason="INC-1", duration=timedelta(hours=hours))
    return use.create_request(ctx, requester="jane@example.com", draft=draft).request.id


def _state(ctx: Context, request_id: str) -> State:
    with ctx.uow(write=False) as uow:
        request = uow.requests.get(request_id)
    assert request is not None
    return request.state


def _events(ctx: Context, request_id: str, kind: str | None = None) -> list[dict[str, Any]]:
    with ctx.uow(write=False) as uow:
        found = uow.audit.find(AuditQuery(request_id=request_id, type=kind, limit=500))
    return [{**e.data, "event": e.type} for e in found]


def _row(ctx: Context, request_id: str, backend: str = "shared") -> Any:
    assert isinstance(ctx.grants, Enforcement)
    with ctx.grants.uow(write=False) as uow:
        return uow.backend_grants.get(request_id, backend)


def test_applied_on_its_backend_before_it_becomes_active(make_ctx: Any, tmp_path: Path) -> None:
    ctx, _ = _ctx(make_ctx, tmp_path)
    rid = _request(ctx)
    assert _state(ctx, rid) is State.ACTIVE
    assert ("shared", "jane@example.com") in WORLD.held
    types = [e["event"] for e in _events(ctx, rid)]
    assert types.index("backend.applied") < types.index("access.granted")
    spec = WORLD.calls[0][1]
    assert spec.request_id == rid and spec.user == "jane@example.com"
    with pytest.raises(TypeError):
        spec.config["type"] = "x"  # type: ignore[index]


def test_a_failing_backend_keeps_the_request_approved_loud_and_retried(
    make_ctx: Any, tmp_path: Path
) -> None:
    ctx, clock = _ctx(make_ctx, tmp_path)
    WORLD.fail.add("grant")
    rid = _request(ctx)
    assert _state(ctx, rid) is State.APPROVED
    failed = _events(ctx, rid, "backend.failed")
    assert failed[0]["error"] == "fake grant refused: backend down"
    assert failed[0]["action"] == "grant" and failed[0]["attempt"] == 1
    row = _row(ctx, rid)
    assert row.status == "failed" and row.last_error == "fake grant refused: backend down"
    assert not access.authorize(ctx, user="jane@example.com", resource="dev-db").allowed

    clock.advance(timedelta(seconds=2))
    lifecycle.tick(ctx)  # inside the 5 s backoff: no new attempt
    assert len(WORLD.calls) == 1
    clock.advance(timedelta(seconds=4))
    lifecycle.tick(ctx)
    assert len(WORLD.calls) == 2 and _row(ctx, rid).next_attempt_at == clock.now() + timedelta(
        seconds=10
    )
    WORLD.fail.clear()
    clock.advance(timedelta(seconds=11))
    lifecycle.tick(ctx)
    assert _state(ctx, rid) is State.ACTIVE
    assert access.authorize(ctx, user="jane@example.com", resource="dev-db").allowed


def test_an_unconfigured_backend_fails_with_a_clear_reason(make_ctx: Any, tmp_path: Path) -> None:
    ctx, _ = _ctx(make_ctx, tmp_path, backend="no-ca")
    rid = _request(ctx)
    assert _state(ctx, rid) is State.APPROVED
    error = _events(ctx, rid, "backend.failed")[0]["error"]
    assert "JG_TEST_UNSET_CA" in error and "not set" in error


def test_expiry_removes_and_a_down_backend_is_retried_until_done(
    make_ctx: Any, tmp_path: Path
) -> None:
    ctx, clock = _ctx(make_ctx, tmp_path)
    rid = _request(ctx)
    WORLD.fail.add("revoke")
    clock.advance(timedelta(hours=1))
    lifecycle.tick(ctx)
    assert _state(ctx, rid) is State.EXPIRED
    assert ("shared", "jane@example.com") in WORLD.held  # still there: the backend is down
    assert not access.authorize(ctx, user="jane@example.com", resource="dev-db").allowed
    assert _row(ctx, rid).status == "removing"
    assert _events(ctx, rid, "backend.failed")[0]["action"] == "revoke"

    enf = ctx.grants
    assert isinstance(enf, Enforcement)
    assert enf.retry_removals() == 0  # backing off
    clock.advance(timedelta(seconds=6))
    assert enf.retry_removals() == 0  # still down
    WORLD.fail.clear()
    clock.advance(timedelta(seconds=11))
    assert enf.retry_removals() == 1
    assert ("shared", "jane@example.com") not in WORLD.held
    assert _row(ctx, rid).status == "removed"
    assert _events(ctx, rid, "backend.removed")


def test_overlapping_grants_keep_access_until_the_last_ends(make_ctx: Any, tmp_path: Path) -> None:
    ctx, clock = _ctx(make_ctx, tmp_path)
    first, second = _request(ctx, hours=1), _request(ctx, hours=2)
    clock.advance(timedelta(hours=1))
    lifecycle.tick(ctx)
    assert _state(ctx, first) is State.EXPIRED
    assert ("shared", "jane@example.com") in WORLD.held
    kept = _events(ctx, first, "backend.removed")[0]
    assert kept["changed"] is False and kept["kept_for"] == second
    assert [a for a, _ in WORLD.calls].count("revoke") == 0
    clock.advance(timedelta(hours=1))
    lifecycle.tick(ctx)
    assert ("shared", "jane@example.com") not in WORLD.held


def test_per_request_backends_remove_each_grant_on_its_own(make_ctx: Any, tmp_path: Path) -> None:
    ctx, clock = _ctx(make_ctx, tmp_path, backend="per-request")
    first, second = _request(ctx, hours=1), _request(ctx, hours=2)
    clock.advance(timedelta(hours=1))
    lifecycle.tick(ctx)
    assert ("per-request", first) not in WORLD.held
    assert ("per-request", second) in WORLD.held


def test_early_revocation_asks_for_the_end_of_open_sessions(make_ctx: Any, tmp_path: Path) -> None:
    ctx, _ = _ctx(make_ctx, tmp_path)
    rid = _request(ctx)
    session = access.open_session(ctx, user="jane@example.com", resource="dev-db", kind="psql")
    decisions.revoke_request(ctx, request_id=rid, actor="sec@example.com", reason="incident over")
    action, spec = WORLD.calls[-1]
    assert action == "revoke" and spec.ended_early and spec.terminate_sessions
    assert [s.id for s in spec.sessions] == [session.id]
    with ctx.uow(write=False) as uow:
        asked = uow.sessions.get(session.id)
    assert asked is not None and asked.ended_at is None  # ended once its gateway says so
    assert asked.termination_reason == "terminated: grant revoked"
    assert _events(ctx, rid, "session.termination_requested")[0]["session_id"] == session.id
    assert _events(ctx, rid, "session.ended") == []


@pytest.mark.parametrize("policy, ends", [("continue", False), ("terminate", True)])
def test_sessions_at_expiry_follow_the_policy(
    make_ctx: Any, tmp_path: Path, policy: str, ends: bool
) -> None:
    ctx, clock = _ctx(make_ctx, tmp_path, sessions=policy)
    rid = _request(ctx)
    session = access.open_session(ctx, user="jane@example.com", resource="dev-db", kind="psql")
    clock.advance(timedelta(hours=1))
    lifecycle.tick(ctx)
    expired = _events(ctx, rid, "access.expired")[0]
    assert [s["id"] for s in expired["sessions_open"]] == [session.id]
    assert WORLD.calls[-1][1].terminate_sessions is ends
    with ctx.uow(write=False) as uow:
        after = uow.sessions.get(session.id)
    assert after is not None and after.ended_at is None  # until its gateway ends it
    assert (after.termination_requested_at is not None) is ends


def test_an_interrupted_apply_is_resumed_and_audited(make_ctx: Any, tmp_path: Path) -> None:
    ctx, clock = _ctx(make_ctx, tmp_path)
    WORLD.crash_after.add("grant")
    with pytest.raises(Crash):
        _request(ctx)
    WORLD.crash_after.clear()
    with ctx.uow(write=False) as uow:
        (request,) = uow.requests.find(RequestQuery())
    rid = request.id
    assert request.state is State.APPROVED and _row(ctx, rid).in_flight
    clock.advance(timedelta(seconds=30))
    reconcile(ctx)  # another worker's lease is still running: left alone
    assert _state(ctx, rid) is State.APPROVED
    clock.advance(LEASE)
    report = reconcile(ctx)
    assert report.activated == 1 and _state(ctx, rid) is State.ACTIVE
    repaired = _events(ctx, rid, "backend.reconciled")
    assert repaired[0]["action"] == "resumed"


def test_an_interrupted_removal_is_resumed_and_audited(make_ctx: Any, tmp_path: Path) -> None:
    ctx, clock = _ctx(make_ctx, tmp_path)
    rid = _request(ctx)
    WORLD.crash_after.add("revoke")
    with pytest.raises(Crash):
        decisions.revoke_request(ctx, request_id=rid, actor="jane@example.com", reason="done")
    WORLD.crash_after.clear()
    assert _row(ctx, rid).status == "removing"
    clock.advance(LEASE + timedelta(seconds=1))
    reconcile(ctx)
    assert _row(ctx, rid).status == "removed"
    assert _events(ctx, rid, "backend.reconciled")[0]["action"] == "resumed"


def test_reconcile_repairs_drift_both_ways(make_ctx: Any, tmp_path: Path) -> None:
    ctx, clock = _ctx(make_ctx, tmp_path)
    live = _request(ctx, hours=2)
    WORLD.held.clear()  # someone removed the grant by hand
    report = reconcile(ctx)
    assert report.reapplied == 1 and ("shared", "jane@example.com") in WORLD.held
    assert _events(ctx, live, "backend.reconciled")[0]["action"] == "reapplied"

    decisions.revoke_request(ctx, request_id=live, actor="jane@example.com", reason="done")
    WORLD.held.add(("shared", "jane@example.com"))  # and someone put it back
    clock.advance(timedelta(minutes=1))
    report = reconcile(ctx)
    assert report.orphans == 1 and not WORLD.held
    assert _events(ctx, live, "backend.reconciled")[-1]["action"] == "removed"
    assert reconcile(ctx).repairs == 0  # nothing left to repair


def test_an_extension_rides_on_its_original_grant_refreshed_to_the_new_end(
    make_ctx: Any, tmp_path: Path
) -> None:
    ctx, clock = _ctx(make_ctx, tmp_path)
    rid = _request(ctx)
    extension = use.extend_request(
        ctx, request_id=rid, requester="jane@example.com", duration=timedelta(hours=1), reason="x"
    )
    assert extension.state is State.APPROVED  # its own window starts at the old end
    clock.advance(timedelta(hours=1))
    lifecycle.tick(ctx)
    assert _state(ctx, rid) is State.ACTIVE and _state(ctx, extension.id) is State.ACTIVE
    assert [a for a, _ in WORLD.calls] == ["grant", "grant"]  # refreshed, not a new grant
    assert WORLD.calls[-1][1].ends_at == clock.now() + timedelta(hours=1)
    assert any("refreshed_to" in e for e in _events(ctx, rid, "backend.applied"))
    clock.advance(timedelta(hours=1))
    lifecycle.tick(ctx)
    assert not WORLD.held
    assert [a for a, _ in WORLD.calls] == ["grant", "grant", "revoke"]


def test_revoking_an_extension_brings_the_backends_back_to_the_shortened_end(
    make_ctx: Any, tmp_path: Path
) -> None:
    ctx, clock = _ctx(make_ctx, tmp_path)
    rid = _request(ctx, hours=2)
    extension = use.extend_request(
        ctx, request_id=rid, requester="jane@example.com", duration=timedelta(hours=3), reason="x"
    )
    clock.advance(timedelta(hours=2, minutes=5))
    lifecycle.tick(ctx)  # the extension's time has begun: the backend now runs to +5h
    assert WORLD.calls[-1][0] == "grant"
    assert WORLD.calls[-1][1].ends_at == clock.now() + timedelta(hours=2, minutes=55)
    clock.advance(timedelta(minutes=5))
    revoke_request(ctx, request_id=extension.id, actor="jane@example.com", reason="done early")
    with ctx.uow(write=False) as uow:
        original = uow.requests.get(rid)
    assert original is not None and original.ends_at == clock.now()  # the 3h taken back
    refreshed = [spec for action, spec in WORLD.calls if action == "grant"][-1]
    assert refreshed.request_id == rid and refreshed.ends_at == clock.now()


def test_the_scheduler_retries_every_tick_and_reconciles_every_interval(
    make_ctx: Any, tmp_path: Path
) -> None:
    ctx, clock = _ctx(make_ctx, tmp_path)
    retry, periodic = scheduler_jobs(ctx, interval=3600)
    rid = _request(ctx)
    WORLD.held.clear()
    assert periodic() is not None  # the first pass runs at once (startup repairs)
    assert ("shared", "jane@example.com") in WORLD.held
    assert periodic() is None  # then once per interval
    WORLD.fail.add("revoke")
    decisions.revoke_request(ctx, request_id=rid, actor="jane@example.com", reason="done")
    WORLD.fail.clear()
    clock.advance(timedelta(seconds=6))
    assert retry() == 1 and not WORLD.held


def test_a_reconcile_pass_checks_every_live_grant_page_by_page(
    make_ctx: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Live grants are read a page at a time (``BATCH``); a pass goes through every page,
    not the first one again and again."""
    monkeypatch.setattr("jitgate.service.reconcile.BATCH", 2)
    ctx, _ = _ctx(make_ctx, tmp_path, backend="per-request")
    ids = [_request(ctx) for _ in range(5)]
    WORLD.held.clear()  # all five removed by hand
    report = reconcile(ctx)
    assert report.checked == 5 and report.reapplied == 5, report
    assert all(_events(ctx, rid, "backend.reconciled") for rid in ids)
    assert reconcile(ctx).repairs == 0
