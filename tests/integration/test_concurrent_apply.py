"""Two schedulers applying the same scheduled grants at once (SPEC §7): each grant reaches
its backend once, with one ``backend.applied`` event (the write-ahead row is created and
claimed by exactly one process, also on the first apply, when there is no row to lock yet).

Two contexts, each with its own engine, enforcement and backend plugin instance, on one
database stand for two ``jitgate`` processes.
"""

from __future__ import annotations

import logging
import textwrap
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jitgate.adapters.backends.base import Receipt, Registry
from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.clock import ManualClock
from jitgate.adapters.policy import load_policy
from jitgate.adapters.policy.plugins import PluginCatalog
from jitgate.domain.creation import Draft
from jitgate.domain.states import State
from jitgate.service import requests as use
from jitgate.service.activation import activate_request
from jitgate.service.backend_ports import GrantSpec
from jitgate.service.context import Context
from jitgate.service.ports import AuditQuery

POLICY = """
version: 1
settings: {pending_ttl: 1h, admins: [security]}
directory:
  users:
    jane@example.com: {groups: [developers]}
resources:
  dev-db: {type: database, environment: development}
roles:
  dev-db:
    grants: [{type: database, environment: development}]
    requestable_by: [developers]
    default_duration: 1h
    max_duration: 8h
    backends: [counted]
approval:
  - match: {type: database, environment: development}
    rule: self
backends:
  counted: {type: counting}
"""
GRANTS = 40
ROUNDS = 3


class Calls:
    """Every ``grant`` any process's backend received, by request id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.grants: Counter[str] = Counter()


CALLS = Calls()


class CountingBackend:
    verifiable = False
    shares_grants = False

    def __init__(self, name: str, config: Any, deps: Any) -> None:
        self.name = name

    def grant(self, spec: GrantSpec) -> Receipt:
        with CALLS.lock:
            CALLS.grants[spec.request_id] += 1
        return Receipt(self.name, "grant", changed=True)

    def revoke(self, spec: GrantSpec) -> Receipt:
        return Receipt(self.name, "revoke", changed=True)

    def check(self, spec: GrantSpec) -> bool:
        return True


def _process(make_ctx: Any, db_url: str, tmp_path: Path) -> tuple[Context, ManualClock]:
    """One jitgate process: its own engine, policy, enforcement and backend instances."""
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(POLICY))
    backends = {"counting": CountingBackend}
    policy = load_policy(path, plugins=PluginCatalog(backends=backends))
    ctx, clock = make_ctx(db_url, policy)
    wire_enforcement(ctx, ctx.uow.db, registry=Registry(backends), environ={})
    return ctx, clock


def _scheduled(ctx: Context, starts_in: timedelta) -> list[str]:
    start_at = ctx.clock.now() + starts_in
    draft = Draft(roles=("dev-db",), reason="INC-7", duration=timedelta(hours=1), start_at=start_at)
    ids = []
    for _ in range(GRANTS):
        request = use.create_request(ctx, requester="jane@example.com", draft=draft).request
        assert request.state is State.APPROVED  # scheduled: nothing applied yet
        ids.append(request.id)
    return ids


def _applied_events(ctx: Context, request_id: str) -> int:
    with ctx.uow(write=False) as uow:
        return len(uow.audit.find(AuditQuery(request_id=request_id, type="backend.applied")))


def _race(contexts: list[Context], request_id: str) -> list[BaseException]:
    """Every context activates ``request_id`` at the same moment, each in its own thread."""
    barrier = threading.Barrier(len(contexts))
    errors: list[BaseException] = []

    def run(ctx: Context) -> None:
        try:
            barrier.wait(10)
            activate_request(ctx, request_id=request_id)
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(ctx,)) for ctx in contexts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def test_two_schedulers_apply_each_grant_once(
    make_ctx: Any, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    CALLS.__init__()  # type: ignore[misc]
    caplog.set_level(logging.WARNING, logger="jitgate")
    first, first_clock = _process(make_ctx, db_url, tmp_path)
    second, second_clock = _process(make_ctx, db_url, tmp_path)
    requested: list[str] = []
    for round_ in range(ROUNDS):
        starts_in = timedelta(minutes=10)
        ids = _scheduled(first, starts_in)
        requested += ids
        for clock in (first_clock, second_clock):
            clock.advance(starts_in)
        for request_id in ids:
            assert _race([first, second], request_id) == [], f"round {round_}"
    doubled = {rid: n for rid, n in CALLS.grants.items() if n != 1}
    assert doubled == {}, f"{len(doubled)} of {len(requested)} grants reached the backend twice"
    assert sorted(CALLS.grants) == sorted(requested)
    for request_id in requested:
        assert _applied_events(first, request_id) == 1
        with first.uow(write=False) as uow:
            request = uow.requests.get(request_id)
        assert request is not None and request.state is State.ACTIVE
    # losing the race is not an error: no "applying request … failed" traceback either
    assert [r.getMessage() for r in caplog.records if r.name.startswith("jitgate")] == []
