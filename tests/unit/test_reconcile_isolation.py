"""One backend's unexpected exception (a bug, a plugin's ``ValueError``) never stops a
reconciliation pass: the other backends' orphans are still removed, and the failure is
logged, counted in ``failed`` and named in ``problems`` (by its type only). Real SQLite store,
in-memory backend plugins, the scheduler's own job."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from jitgate.adapters.backends.base import MadeGrant, Receipt, Registry
from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.policy import load_policy
from jitgate.adapters.policy.plugins import PluginCatalog
from jitgate.domain.creation import Draft
from jitgate.service.backend_ports import GrantSpec
from jitgate.service.decisions import revoke_request
from jitgate.service.reconcile import scheduler_jobs
from jitgate.service.requests import create_request

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
    backends: [broken, healthy]
approval:
  - match: {type: database, environment: development}
    rule: self
backends:
  broken: {type: broken}
  healthy: {type: listed}
"""
REMOVED: list[str] = []
ENDED: list[str] = []  # requests whose grants ended: their logins are orphans


class Listed:
    """Holds two logins jitgate made whose requests ended; one of them cannot be
    removed because the plugin trips over it."""

    verifiable = False
    shares_grants = False

    def __init__(self, name: str, config: Any, deps: Any) -> None:
        self.name = name

    def grant(self, spec: GrantSpec) -> Receipt:
        return Receipt(self.name, "grant", changed=True)

    def revoke(self, spec: GrantSpec) -> Receipt:
        return Receipt(self.name, "revoke", changed=True)

    def check(self, spec: GrantSpec) -> bool:
        return True

    def made(self) -> Sequence[MadeGrant]:
        return [
            MadeGrant(ENDED[0], "jane@example.com", "jit_trips"),
            MadeGrant(ENDED[1], "jane@example.com", "jit_orphan"),
        ]

    def remove_made(self, grant: MadeGrant, *, terminate: bool) -> Receipt:
        if grant.key == "jit_trips":
            raise KeyError("a plugin bug, with text that may hold anything: hunter2")
        REMOVED.append(grant.key)
        return Receipt(self.name, "revoke", changed=True)


class Broken(Listed):
    def made(self) -> Sequence[MadeGrant]:
        raise ValueError("not enough values to unpack (expected 3, got 2)")

    def members(self) -> Sequence[str]:
        raise RuntimeError("boom")

    def member_scope(self) -> str | None:
        return "somewhere/readonly"

    def member_name(self, user: str) -> str:
        return user


def _ended(ctx: Any) -> str:
    request = create_request(ctx, requester="jane@example.com", draft=Draft(("dev-db",), "INC-1"))
    revoke_request(ctx, request_id=request.request.id, actor="jane@example.com", reason="done")
    return request.request.id


def test_one_backends_unexpected_exception_never_stops_the_orphan_step(
    make_ctx: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    REMOVED.clear()
    (tmp_path / "policy.yaml").write_text(textwrap.dedent(POLICY))
    backends: dict[str, Any] = {"broken": Broken, "listed": Listed}
    policy = load_policy(tmp_path / "policy.yaml", plugins=PluginCatalog(backends=backends))
    ctx, _ = make_ctx(f"sqlite:///{tmp_path}/jg.db", policy)
    wire_enforcement(ctx, ctx.uow.db, registry=Registry(backends), environ={})
    ENDED[:] = [_ended(ctx), _ended(ctx)]

    periodic = scheduler_jobs(ctx, interval=0.0)[1]
    with caplog.at_level(logging.WARNING):
        report = periodic()
    assert report is not None, "the pass died: " + caplog.text
    assert "reconciliation failed" not in caplog.text
    assert REMOVED == ["jit_orphan"] and report.orphans == 1  # the others still repaired
    assert report.failed == 3
    assert report.problems == [
        "listing what broken holds: unexpected ValueError",
        "removing jit_trips from healthy: unexpected KeyError",
        "listing the members of broken's role: unexpected RuntimeError",
    ]
    assert "hunter2" not in " ".join(report.problems)
    assert report.as_dict()["problems"] == report.problems
