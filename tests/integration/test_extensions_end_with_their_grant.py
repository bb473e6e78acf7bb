"""An approved extension is part of the grant it extends (SPEC §3 extension, RFC 10.5.2),
on SQLite and PostgreSQL with a manual clock and the scheduler ticking every few minutes,
late, or not at all until the grant has ended:

- ``access.expiring`` is told once, by the original, ``expiry_warning`` before the grant's
  real end (again if the end moves), never by an extension about the end of the time it
  added while access goes on;
- an extension becomes active when its time begins and ends with the grant, in the state
  the grant ends in: ``access.expired`` at the grant's real end, never while access goes
  on (approved -> active -> expired, as SPEC §3 allows, even when the scheduler never saw
  its time begin);
- an extension's backends are its original's (never "never applied"), and the evidence of
  every request of the family agrees with its audit trail.

Before: each approved extension warned and expired at the end of its own time, as if it
were a grant of its own (three ``access.expiring``, one false, and an ``access.expired``
while access went on, for a grant extended twice).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.clock import ManualClock
from jitgate.adapters.policy import load_policy
from jitgate.domain.creation import Draft
from jitgate.domain.errors import Conflict
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.service import access, decisions, lifecycle
from jitgate.service import requests as use
from jitgate.service.backend_access import backend_status, issue_certificate
from jitgate.service.context import Context
from jitgate.service.evidence import evidence
from jitgate.service.ports import AuditQuery

H, M = timedelta(hours=1), timedelta(minutes=1)
PUBLIC_KEY = (
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    .decode()
)
JANE, SEC = "jane@example.com", "sec@example.com"
POLICY = """
version: 1
settings: {pending_ttl: 1h, expiry_warning: 15m, admins: [security]}
directory:
  users:
    jane@example.com: {groups: [developers]}
    sec@example.com: {groups: [security]}
resources:
  dev-host: {type: ssh, environment: development}
roles:
  dev-ssh:
    grants: [{type: ssh, environment: development}]
    requestable_by: [developers]
    default_duration: 1h
    max_duration: 8h
    extendable: true
    backends: [ssh-dev]
approval:
  - match: {type: ssh, environment: development}
    rule: self
backends:
  ssh-dev: {type: ssh-ca, ca_key_env: JG_EXT_END_CA_KEY, principals: [ubuntu]}
"""


def jitgate(make_ctx: Any, db_url: str, tmp_path: Path) -> tuple[Context, ManualClock]:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    ctx, clock = make_ctx(db_url, load_policy(path))
    ca = ed25519.Ed25519PrivateKey.generate()
    pem = ca.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    wire_enforcement(ctx, ctx.uow.db, environ={"JG_EXT_END_CA_KEY": pem})
    return ctx, clock


def extended_twice(ctx: Context) -> tuple[str, str, str, datetime]:
    """A 1 h grant and two 1 h extensions, self-approved at once: ``(grant, first, second,
    start)``; the grant runs to start + 3 h."""
    draft = Draft(roles=("dev-ssh",), reason="INC-5", duration=H)
    grant = use.create_request(ctx, requester=JANE, draft=draft).request
    assert grant.state is State.ACTIVE and grant.starts_at is not None
    first = use.extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="a")
    second = use.extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="b")
    assert first.state is State.APPROVED and second.state is State.APPROVED
    assert get(ctx, grant.id).ends_at == grant.starts_at + 3 * H
    return grant.id, first.id, second.id, grant.starts_at


def get(ctx: Context, request_id: str) -> AccessRequest:
    with ctx.uow(write=False) as uow:
        found = uow.requests.get(request_id)
    assert found is not None
    return found


def events(ctx: Context, request_id: str, kind: str) -> list[Any]:
    with ctx.uow(write=False) as uow:
        return uow.audit.find(AuditQuery(request_id=request_id, type=kind, limit=100))


def allowed(ctx: Context) -> bool:
    return access.authorize(ctx, user=JANE, resource="dev-host").allowed


def agrees(ctx: Context, *request_ids: str) -> None:
    for request_id in request_ids:
        shown = evidence(ctx, request_id=request_id, viewer=SEC)
        assert shown["discrepancies"] == [], (request_id, shown["discrepancies"])


def test_a_grant_extended_twice_warns_once_and_ends_once_at_its_real_end(
    db_url: str, make_ctx: Any, tmp_path: Path
) -> None:
    ctx, clock = jitgate(make_ctx, db_url, tmp_path)
    rid, first, second, start = extended_twice(ctx)
    end = start + 3 * H
    family = (rid, first, second)
    at = start
    while at < end:  # the scheduler ticks every 5 minutes while access goes on
        clock.set(at)
        lifecycle.tick(ctx)
        assert allowed(ctx), at
        for request_id in family:
            assert events(ctx, request_id, "access.expired") == [], (request_id, at)
            assert get(ctx, request_id).state is not State.EXPIRED
        at += 5 * M
    assert get(ctx, first).state is State.ACTIVE and get(ctx, second).state is State.ACTIVE

    (warned,) = [e for r in family for e in events(ctx, r, "access.expiring")]
    assert warned.request_id == rid  # the original's, not an extension's
    assert warned.data["ends_at"] == end.isoformat()  # the grant's real end
    assert datetime.fromisoformat(warned.at) == end - 15 * M

    clock.set(end)
    assert lifecycle.tick(ctx).expired == 3
    assert not allowed(ctx)
    for request_id in family:
        ended = get(ctx, request_id)
        assert ended.state is State.EXPIRED and ended.closed_at == end
        (expired,) = events(ctx, request_id, "access.expired")
        assert expired.data["ends_at"] == end.isoformat()
        assert datetime.fromisoformat(expired.at) == end
    assert [e.data["grant"] for e in events(ctx, first, "access.expired")] == [rid]
    # each extension's own window stays the time it added
    assert (get(ctx, first).starts_at, get(ctx, first).ends_at) == (start + H, start + 2 * H)
    agrees(ctx, *family)
    assert lifecycle.tick(ctx).total == 0


def test_an_extensions_backends_are_its_originals(
    db_url: str, make_ctx: Any, tmp_path: Path
) -> None:
    ctx, clock = jitgate(make_ctx, db_url, tmp_path)
    rid, first, _second, start = extended_twice(ctx)
    clock.set(start + H + M)
    lifecycle.tick(ctx)
    (row,) = backend_status(ctx, request_id=first, viewer=JANE)
    assert (row.backend, row.status, row.request_id) == ("ssh-dev", "applied", rid)
    with pytest.raises(Conflict, match=f"ask for the certificate or credentials of {rid}"):
        issue_certificate(ctx, request_id=first, requester=JANE, public_key=PUBLIC_KEY)
    assert issue_certificate(ctx, request_id=rid, requester=JANE, public_key=PUBLIC_KEY)
    clock.set(start + 3 * H)
    lifecycle.tick(ctx)
    (row,) = backend_status(ctx, request_id=first, viewer=JANE)
    assert row.status == "removed" and row.removed_at == start + 3 * H  # not "never applied"


def test_with_the_scheduler_late_an_extension_still_becomes_active_while_its_grant_runs(
    db_url: str, make_ctx: Any, tmp_path: Path
) -> None:
    ctx, clock = jitgate(make_ctx, db_url, tmp_path)
    rid, first, second, start = extended_twice(ctx)
    clock.set(start + 2 * H + 30 * M)  # the first extension's own time has passed unseen
    report = lifecycle.tick(ctx)
    assert report.activated == 2 and report.expired == 0
    assert {get(ctx, r).state for r in (rid, first, second)} == {State.ACTIVE}
    assert events(ctx, first, "access.expiring") == []
    agrees(ctx, rid, first, second)


def test_extensions_whose_time_ran_unseen_end_expired_with_the_grant(
    db_url: str, make_ctx: Any, tmp_path: Path
) -> None:
    ctx, clock = jitgate(make_ctx, db_url, tmp_path)
    rid, first, second, start = extended_twice(ctx)
    clock.set(start + 3 * H + 10 * M)  # no tick ran at all while the grant ran
    assert lifecycle.tick(ctx).expired == 3
    for request_id in (first, second):
        ended = get(ctx, request_id)
        assert ended.state is State.EXPIRED and ended.closed_at == start + 3 * H
        with ctx.uow(write=False) as uow:
            kinds = [e.type for e in uow.audit.find(AuditQuery(request_id=request_id))]
        assert kinds[-2:] == ["access.granted", "access.expired"]  # approved -> active -> expired
    agrees(ctx, rid, first, second)


def test_an_extension_revoked_with_its_grant_never_expires(
    db_url: str, make_ctx: Any, tmp_path: Path
) -> None:
    ctx, clock = jitgate(make_ctx, db_url, tmp_path)
    rid, first, second, start = extended_twice(ctx)
    clock.set(start + H + 30 * M)
    lifecycle.tick(ctx)
    decisions.revoke_request(ctx, request_id=rid, actor=SEC, reason="incident closed")
    assert {get(ctx, r).state for r in (rid, first, second)} == {State.REVOKED}
    clock.set(start + 4 * H)
    assert lifecycle.tick(ctx).expired == 0
    for request_id in (rid, first, second):
        assert events(ctx, request_id, "access.expired") == []
    agrees(ctx, rid, first, second)


def test_taking_back_an_extension_after_the_warning_warns_of_the_end_it_moved_back_to(
    db_url: str, make_ctx: Any, tmp_path: Path
) -> None:
    ctx, clock = jitgate(make_ctx, db_url, tmp_path)
    draft = Draft(roles=("dev-ssh",), reason="INC-6", duration=H)
    grant = use.create_request(ctx, requester=JANE, draft=draft).request
    assert grant.starts_at is not None
    start = grant.starts_at
    clock.set(start + 40 * M)
    short = use.extend_request(
        ctx, request_id=grant.id, requester=JANE, duration=10 * M, reason="a little more"
    )
    clock.set(start + 56 * M)
    lifecycle.tick(ctx)
    (told,) = events(ctx, grant.id, "access.expiring")
    assert told.data["ends_at"] == (start + H + 10 * M).isoformat()

    clock.set(start + 57 * M)
    decisions.revoke_request(ctx, request_id=short.id, actor=JANE, reason="not needed")
    assert get(ctx, grant.id).ends_at == start + H
    clock.set(start + 58 * M)
    lifecycle.tick(ctx)
    told_again = events(ctx, grant.id, "access.expiring")[-1]
    assert told_again.data["ends_at"] == (start + H).isoformat()  # the real end now
    assert events(ctx, short.id, "access.expiring") == []
