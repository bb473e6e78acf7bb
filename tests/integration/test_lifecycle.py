"""The service end to end on SQLite and PostgreSQL with the example policy and a manual clock:
create, decide, activate, use, tick, expire, extend, revoke; the audit chain after each."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from jitgate.adapters.clock import ManualClock
from jitgate.domain.creation import Draft, open_request
from jitgate.domain.errors import Conflict, Forbidden, Invalid, NotFound
from jitgate.domain.policy import Policy
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.service import access, lifecycle, queries
from jitgate.service.context import Context
from jitgate.service.decisions import approve_request, deny_request, revoke_request
from jitgate.service.ports import AuditQuery, RequestQuery
from jitgate.service.requests import create_request, extend_request

JANE = "jane.doe@example.com"  # developers; manager mark; team payments (lead priya)
RAVI = "ravi@example.com"  # developers; manager mark
MARK = "mark.lee@example.com"
PRIYA = "priya@example.com"
LEE = "lee@example.com"  # sre-leads: the escalation target of ssh/production
SEC = "sec@example.com"  # security: admin
H, M = timedelta(hours=1), timedelta(minutes=1)
TICK = timedelta(microseconds=1)


def _create(ctx: Context, *roles: str, requester: str = JANE, **draft: object) -> AccessRequest:
    return create_request(
        ctx,
        requester=requester,
        draft=Draft(roles=roles or ("sre-oncall",), reason="INC-1", **draft),  # type: ignore[arg-type]
    ).request


def _get(ctx: Context, request_id: str) -> AccessRequest:
    return queries.get_request(ctx, request_id=request_id, viewer=SEC)


def _types(ctx: Context, request_id: str) -> list[str]:
    return [e.type for e in queries.request_events(ctx, request_id=request_id, viewer=SEC)]


def _chain_ok(ctx: Context) -> int:
    check = queries.audit_verify(ctx, viewer=SEC)
    assert check.ok, check
    return check.events


def _oncall(ctx: Context, at: datetime | None = None) -> str:
    person = ctx.policy.current.directory.on_call("sre", at or ctx.clock.now())
    assert person is not None
    return person


def _allowed(ctx: Context, **target: str) -> bool:
    return access.authorize(ctx, user=JANE, **target).allowed


def _approve_both(ctx: Context, request_id: str) -> AccessRequest:
    """ssh/production's rule: the SRE on call, then Jane's manager; the request after."""
    approve_request(ctx, request_id=request_id, approver=_oncall(ctx))
    return approve_request(ctx, request_id=request_id, approver=MARK).request


def _active_prod_grant(ctx: Context, clock: ManualClock, **draft: object) -> AccessRequest:
    done = _approve_both(ctx, _create(ctx, "sre-oncall", **draft).id)
    assert done.state is State.ACTIVE
    return done


# -- the whole path ------------------------------------------------------------------------


def test_full_lifecycle(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    start = clock.now()
    request = _create(ctx, "sre-oncall", duration=2 * H)
    assert request.state is State.PENDING
    assert not _allowed(ctx, type="ssh", environment="production")

    first = approve_request(ctx, request_id=request.id, approver=_oncall(ctx))
    assert first.request.state is State.PENDING
    assert first.evaluation is not None and not first.evaluation.satisfied
    clock.advance(5 * M)
    done = approve_request(ctx, request_id=request.id, approver=MARK).request
    assert done.state is State.ACTIVE
    assert (done.starts_at, done.ends_at) == (start + 5 * M, start + 5 * M + 2 * H)
    ends_at = done.ends_at
    assert ends_at is not None

    verdict = access.authorize(ctx, user=JANE, type="ssh", environment="production")
    assert verdict.allowed and verdict.request_id == request.id
    assert verdict.role == "sre-oncall" and verdict.ends_at == ends_at
    assert _allowed(ctx, type="kubernetes", environment="production")
    assert _allowed(ctx, resource="prod-bastion")
    assert not _allowed(ctx, resource="prod-db-01")
    assert not _allowed(ctx, type="ssh", environment="staging")
    assert not access.authorize(ctx, user=RAVI, type="ssh", environment="production").allowed

    ssh = access.open_session(ctx, user=JANE, resource="prod-bastion", kind="ssh")
    assert ssh.request_id == request.id
    kubectl = access.open_session(
        ctx, user=JANE, resource=None, kind="kubectl", type="kubernetes", environment="production"
    )
    clock.advance(10 * M)
    access.end_session(ctx, session_id=kubectl.id, recording_url="https://rec/1")
    with pytest.raises(Conflict):
        access.end_session(ctx, session_id=kubectl.id)

    clock.set(ends_at - 10 * M)  # inside expiry_warning (15m)
    assert lifecycle.tick(ctx).warned == 1
    assert lifecycle.tick(ctx).warned == 0

    clock.set(ends_at - TICK)
    assert _allowed(ctx, type="ssh", environment="production")
    clock.set(ends_at)
    assert not _allowed(ctx, type="ssh", environment="production")
    clock.advance(M)
    report = lifecycle.tick(ctx)
    assert report.expired == 1 and report.total == 1
    assert lifecycle.tick(ctx).total == 0

    assert _get(ctx, request.id).state is State.EXPIRED
    assert not _allowed(ctx, type="ssh", environment="production")
    with pytest.raises(Forbidden):
        access.open_session(ctx, user=JANE, resource="prod-bastion", kind="ssh")

    events = queries.request_events(ctx, request_id=request.id, viewer=SEC)
    assert [e.type for e in events] == [
        "request.created",
        "approval.recorded",
        "approval.recorded",
        "request.approved",
        "access.granted",
        "access.used",
        "access.used",
        "session.ended",
        "access.expiring",
        "access.expired",
    ]
    expired = events[-1]
    assert expired.actor == "system"
    assert [s["id"] for s in expired.data["sessions_open"]] == [ssh.id]
    sessions = queries.request_sessions(ctx, request_id=request.id, viewer=JANE)
    assert {s.id for s in sessions} == {ssh.id, kubectl.id}
    _chain_ok(ctx)


def test_deny_ends_the_request_and_later_decisions_are_conflict(db_url: str, make_ctx) -> None:
    ctx, _clock = make_ctx(db_url)
    request = _create(ctx, "staging-ssh")
    with pytest.raises(Invalid):
        deny_request(ctx, request_id=request.id, approver=PRIYA, reason=" ")
    with pytest.raises(Forbidden):
        deny_request(ctx, request_id=request.id, approver=JANE, reason="mine")
    denied = deny_request(ctx, request_id=request.id, approver=PRIYA, reason="use a runbook")
    assert denied.request.state is State.DENIED
    with pytest.raises(Conflict):
        approve_request(ctx, request_id=request.id, approver=_oncall(ctx))
    with pytest.raises(Conflict):
        deny_request(ctx, request_id=request.id, approver=_oncall(ctx), reason="again")
    assert _get(ctx, request.id).state is State.DENIED
    assert _types(ctx, request.id) == ["request.created", "approval.recorded", "request.denied"]
    _chain_ok(ctx)


# -- time-driven ---------------------------------------------------------------------------


def test_pending_request_expires_at_its_ttl_by_tick(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    request = _create(ctx, "staging-ssh")
    clock.set(request.expires_at - TICK)
    early = lifecycle.tick(ctx)
    assert early.expired_pending == 0 and early.escalated == 1  # escalate_after (30m) passed
    clock.set(request.expires_at)
    assert lifecycle.tick(ctx).expired_pending == 1
    stored = _get(ctx, request.id)
    assert stored.state is State.EXPIRED and stored.closed_at == request.expires_at
    with pytest.raises(Conflict):
        approve_request(ctx, request_id=request.id, approver=PRIYA)
    assert _types(ctx, request.id) == ["request.created", "request.escalated", "request.expired"]
    _chain_ok(ctx)


def test_a_decision_after_the_ttl_expires_the_request_even_without_tick(
    db_url: str, make_ctx
) -> None:
    ctx, clock = make_ctx(db_url)
    request = _create(ctx, "staging-ssh")
    clock.set(request.expires_at)
    with pytest.raises(Conflict):
        approve_request(ctx, request_id=request.id, approver=PRIYA)
    assert _get(ctx, request.id).state is State.EXPIRED
    assert lifecycle.tick(ctx).expired_pending == 0
    assert _types(ctx, request.id) == ["request.created", "request.expired"]
    _chain_ok(ctx)


def test_escalation_by_tick_lets_escalate_to_stand_in(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    request = _create(ctx, "sre-oncall")
    with pytest.raises(Forbidden):
        approve_request(ctx, request_id=request.id, approver=LEE)
    clock.set(request.escalate_at - TICK)
    assert lifecycle.tick(ctx).escalated == 0
    clock.set(request.escalate_at)
    assert lifecycle.tick(ctx).escalated == 1
    assert lifecycle.tick(ctx).escalated == 0  # once
    assert _get(ctx, request.id).escalated

    # lee stands in for the manager; the on-call is still needed (and the k8s rule too)
    after = approve_request(ctx, request_id=request.id, approver=LEE).request
    assert after.state is State.PENDING
    done = approve_request(ctx, request_id=request.id, approver=_oncall(ctx)).request
    assert done.state is State.ACTIVE
    assert MARK not in {a.approver for a in done.approvals}
    types = _types(ctx, request.id)
    assert types[:2] == ["request.created", "request.escalated"]
    assert types.count("request.approved") == 1
    _chain_ok(ctx)


def test_a_decision_after_escalate_at_escalates_even_if_the_scheduler_is_late(
    db_url: str, make_ctx
) -> None:
    """No tick ran: a stand-in's approval at ``escalate_at`` escalates the request first
    (audited, notified) and counts, exactly as after the scheduler's escalation."""
    ctx, clock = make_ctx(db_url)
    request = _create(ctx, "sre-oncall")
    clock.set(request.escalate_at - TICK)
    with pytest.raises(Forbidden):
        approve_request(ctx, request_id=request.id, approver=LEE)
    clock.set(request.escalate_at)
    after = approve_request(ctx, request_id=request.id, approver=LEE).request
    assert after.escalated and after.state is State.PENDING
    assert [a.approver for a in after.approvals] == [LEE]
    assert _types(ctx, request.id)[:3] == [
        "request.created",
        "request.escalated",
        "approval.recorded",
    ]
    assert lifecycle.tick(ctx).escalated == 0  # not twice
    _chain_ok(ctx)


def test_the_on_call_asking_for_sre_oncall_is_approved_after_escalation(
    db_url: str, make_ctx
) -> None:
    """Every rule of sre-oncall names the SRE on call, who never approves their own
    request: the example policy's escalation to the SRE leads (RFC 10.3.4) lets it through
    instead of leaving it pending until it expires."""
    ctx, clock = make_ctx(db_url)
    on_call = _oncall(ctx)
    request = _create(ctx, "sre-oncall", requester=on_call)
    assert approve_request(ctx, request_id=request.id, approver=MARK).request.state is State.PENDING
    clock.set(request.escalate_at)
    lifecycle.tick(ctx)
    done = approve_request(ctx, request_id=request.id, approver=LEE).request
    assert done.state is State.ACTIVE
    assert {r.satisfied_by for r in done.evaluation(ctx.policy.current.directory).requirements} == {
        MARK,
        LEE,
    }


def test_scheduled_start_is_activated_by_tick(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    begin = clock.now() + 2 * H
    request = _create(ctx, "dev-ssh", start_at=begin)  # rule: self
    assert request.state is State.APPROVED
    assert (request.starts_at, request.ends_at) == (begin, begin + 4 * H)
    assert not _allowed(ctx, type="ssh", environment="development")
    clock.set(begin - TICK)
    assert lifecycle.tick(ctx).activated == 0
    assert not _allowed(ctx, type="ssh", environment="development")
    clock.set(begin)
    assert not _allowed(ctx, type="ssh", environment="development")  # not yet active
    assert lifecycle.tick(ctx).activated == 1
    assert _get(ctx, request.id).state is State.ACTIVE
    assert _allowed(ctx, type="ssh", environment="development")
    clock.set(begin + 4 * H)
    assert not _allowed(ctx, type="ssh", environment="development")
    assert lifecycle.tick(ctx).expired == 1
    assert _types(ctx, request.id) == [
        "request.created",
        "request.approved",
        "access.granted",
        "access.expired",
    ]
    _chain_ok(ctx)


def test_a_grant_past_ends_at_is_never_honoured_without_a_tick(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx, clock, duration=H)
    assert grant.ends_at is not None
    for late in (timedelta(0), TICK, 3 * H, timedelta(days=30)):
        clock.set(grant.ends_at + late)
        assert not _allowed(ctx, type="ssh", environment="production")
        assert not _allowed(ctx, resource="prod-bastion")
        with pytest.raises(Forbidden):
            access.open_session(ctx, user=JANE, resource="prod-bastion", kind="ssh")
    assert _get(ctx, grant.id).state is State.ACTIVE  # no tick ran
    assert "access.used" not in _types(ctx, grant.id)
    _chain_ok(ctx)


# -- extension and revocation --------------------------------------------------------------


def test_extension_moves_ends_at_and_is_capped(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx, clock, duration=2 * H)
    starts_at = grant.starts_at
    assert starts_at is not None

    with pytest.raises(NotFound):  # ravi has no part in jane's grant: to him it does not exist
        extend_request(ctx, request_id=grant.id, requester=RAVI, duration=H, reason="x")
    with pytest.raises(Forbidden, match="only the requester"):  # her approver sees it
        extend_request(ctx, request_id=grant.id, requester=MARK, duration=H, reason="x")
    clock.advance(H)
    ext = extend_request(
        ctx, request_id=grant.id, requester=JANE, duration=4 * H, reason="still burning"
    )
    assert ext.state is State.PENDING and ext.extends == grant.id
    assert _get(ctx, grant.id).ends_at == starts_at + 2 * H  # unchanged until approved
    approved = _approve_both(ctx, ext.id)
    # the extension's own grant is exactly the time it adds: [old end, new end)
    assert approved.state is State.APPROVED
    assert (approved.starts_at, approved.ends_at) == (starts_at + 2 * H, starts_at + 6 * H)
    assert _get(ctx, grant.id).ends_at == starts_at + 6 * H

    ext2 = extend_request(ctx, request_id=grant.id, requester=JANE, duration=4 * H, reason="more")
    assert ext2.duration == 2 * H  # approvers are asked for what it can add: 8h in all
    _approve_both(ctx, ext2.id)
    assert _get(ctx, grant.id).ends_at == starts_at + 8 * H  # sre-oncall max_duration

    with pytest.raises(Invalid):
        extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="more")
    clock.set(starts_at + 7 * H)
    assert _allowed(ctx, type="ssh", environment="production")
    clock.set(starts_at + 8 * H)
    assert not _allowed(ctx, type="ssh", environment="production")
    assert _types(ctx, grant.id).count("access.extended") == 2
    _chain_ok(ctx)


def test_extending_an_extension_extends_the_original_within_its_max(db_url: str, make_ctx) -> None:
    """An extension's id names the grant it extends: the new request extends the original,
    the role's maximum (sre-oncall: 8h) counts from the original's start, and revoking the
    original takes back every extension."""
    ctx, clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx, clock, duration=4 * H)
    starts_at = grant.starts_at
    assert starts_at is not None
    first = extend_request(ctx, request_id=grant.id, requester=JANE, duration=3 * H, reason="a")
    _approve_both(ctx, first.id)

    second = extend_request(ctx, request_id=first.id, requester=JANE, duration=3 * H, reason="b")
    assert second.extends == grant.id
    approved = _approve_both(ctx, second.id)
    assert _get(ctx, grant.id).ends_at == starts_at + 8 * H
    assert (approved.starts_at, approved.ends_at) == (starts_at + 7 * H, starts_at + 8 * H)
    with pytest.raises(Invalid, match="maximum"):
        extend_request(ctx, request_id=second.id, requester=JANE, duration=H, reason="c")
    clock.set(starts_at + 8 * H)
    assert not _allowed(ctx, type="ssh", environment="production")

    clock.set(starts_at + H)
    revoke_request(ctx, request_id=grant.id, actor=SEC, reason="incident closed")
    assert {_get(ctx, r.id).state for r in (grant, first, second)} == {State.REVOKED}
    for later in (2 * H, 5 * H, 7 * H + M):
        clock.set(starts_at + later)
        lifecycle.tick(ctx)
        assert not _allowed(ctx, type="ssh", environment="production")
    _chain_ok(ctx)


def test_a_role_that_is_not_extendable_cannot_be_extended(db_url: str, make_ctx) -> None:
    ctx, _clock = make_ctx(db_url)
    request = _create(ctx, "dev-ssh")  # dev-ssh: extendable false
    with pytest.raises(Forbidden):
        extend_request(ctx, request_id=request.id, requester=JANE, duration=H, reason="x")


def test_revoke_cascades_to_extensions(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx, clock, duration=2 * H)
    live = extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="a")
    _approve_both(ctx, live.id)
    waiting = extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="b")
    assert _get(ctx, live.id).state is State.APPROVED  # its added time is still ahead
    assert _get(ctx, waiting.id).state is State.PENDING

    with pytest.raises(Forbidden):
        revoke_request(ctx, request_id=grant.id, actor=MARK, reason="not mine")
    clock.advance(30 * M)
    revoked = revoke_request(ctx, request_id=grant.id, actor=SEC, reason="suspicious")
    assert revoked.request.state is State.REVOKED
    assert revoked.request.ends_at == clock.now()
    assert _get(ctx, live.id).state is State.REVOKED
    assert _get(ctx, waiting.id).state is State.REVOKED
    assert not _allowed(ctx, type="ssh", environment="production")
    with pytest.raises(Conflict):
        approve_request(ctx, request_id=waiting.id, approver=MARK)
    assert _types(ctx, grant.id)[-1] == "access.revoked"
    assert _types(ctx, live.id)[-1] == "access.revoked"
    assert _types(ctx, waiting.id)[-1] == "request.revoked"
    _chain_ok(ctx)


def test_requester_withdraws_a_pending_request(db_url: str, make_ctx) -> None:
    ctx, _clock = make_ctx(db_url)
    request = _create(ctx, "staging-ssh")
    revoke_request(ctx, request_id=request.id, actor=JANE, reason="fixed it myself")
    assert _get(ctx, request.id).state is State.REVOKED
    with pytest.raises(Conflict):
        approve_request(ctx, request_id=request.id, approver=PRIYA)
    _chain_ok(ctx)


# -- idempotency ---------------------------------------------------------------------------


def test_idempotency_key_replays_the_same_body_and_refuses_another(db_url: str, make_ctx) -> None:
    ctx, _clock = make_ctx(db_url)
    draft = Draft(roles=("staging-ssh",), reason="INC-9")
    first = create_request(ctx, requester=JANE, draft=draft, idempotency_key="k-1", body_hash="h-1")
    again = create_request(ctx, requester=JANE, draft=draft, idempotency_key="k-1", body_hash="h-1")
    assert not first.replayed and again.replayed
    assert again.request.id == first.request.id
    with pytest.raises(Invalid):
        create_request(ctx, requester=JANE, draft=draft, idempotency_key="k-1", body_hash="h-2")
    other = create_request(ctx, requester=RAVI, draft=draft, idempotency_key="k-1", body_hash="h-1")
    assert other.request.id != first.request.id
    created = queries.audit_events(
        ctx, viewer=SEC, query=AuditQuery(type="request.created", limit=100)
    )
    assert sorted(e.request_id for e in created) == sorted([first.request.id, other.request.id])
    _chain_ok(ctx)


# -- scale ---------------------------------------------------------------------------------


def test_one_tick_expires_two_thousand_grants(
    db_url: str, make_ctx, example_policy: Policy
) -> None:
    ctx, clock = make_ctx(db_url)
    now = clock.now()
    grants = []
    for i in range(2000):
        grant = open_request(
            example_policy,
            Draft(roles=("dev-ssh",), reason=f"batch {i}"),
            requester=(JANE, RAVI)[i % 2],
            request_id=f"00000000-0000-0000-0000-{i:012d}",
            now=now,
        )
        grant.activate(now)
        grants.append(grant)
    with ctx.uow() as uow:
        for grant in grants:
            uow.requests.add(grant)
        ctx.persist_many(uow, grants, now)
        uow.commit()
    before = _chain_ok(ctx)
    assert before == 2000 * 3  # created, approved (policy), granted

    clock.set(now + 4 * H)
    report = lifecycle.tick(ctx)
    assert report.expired == 2000

    expired = queries.audit_events(
        ctx, viewer=SEC, query=AuditQuery(type="access.expired", limit=10_000)
    )
    assert len(expired) == 2000
    assert len({e.request_id for e in expired}) == 2000
    assert _chain_ok(ctx) == before + 2000
    with ctx.uow(write=False) as uow:
        assert uow.requests.find(RequestQuery(state="active", limit=10)) == []
    assert lifecycle.tick(ctx).total == 0


def test_extending_a_scheduled_grant_does_not_open_it_early(db_url: str, make_ctx) -> None:
    """BUG (service/requests.py ``apply_extension``): the extension's window is set to
    ``[now, original.ends_at)`` and, being due, it is activated at once, so approving an
    extension of a grant that starts later gives access before the grant's ``starts_at``."""
    ctx, clock = make_ctx(db_url)
    begin = clock.now() + 3 * H
    grant = _create(ctx, "sre-oncall", start_at=begin, duration=2 * H)
    _approve_both(ctx, grant.id)
    assert _get(ctx, grant.id).state is State.APPROVED
    assert not _allowed(ctx, type="ssh", environment="production")

    ext = extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="more")
    _approve_both(ctx, ext.id)
    assert _get(ctx, grant.id).ends_at == begin + 3 * H

    lifecycle.tick(ctx)
    for at in (clock.now(), begin - TICK):
        clock.set(at)
        assert not _allowed(ctx, type="ssh", environment="production"), at
    clock.set(begin)
    lifecycle.tick(ctx)
    assert _allowed(ctx, type="ssh", environment="production")


def test_revoking_an_approved_extension_withdraws_the_extra_time(db_url: str, make_ctx) -> None:
    """BUG (service/decisions.py ``revoke_request``): revoking an active extension ends the
    extension request but leaves the original's ``ends_at`` moved out, so the extra time the
    revoked extension granted is still honoured."""
    ctx, clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx, clock, duration=2 * H)
    original_end = grant.ends_at
    assert original_end is not None
    ext = extend_request(ctx, request_id=grant.id, requester=JANE, duration=2 * H, reason="x")
    _approve_both(ctx, ext.id)
    assert _get(ctx, grant.id).ends_at == original_end + 2 * H

    revoke_request(ctx, request_id=ext.id, actor=SEC, reason="approved by mistake")
    assert _get(ctx, ext.id).state is State.REVOKED
    clock.set(original_end + H)
    assert not _allowed(ctx, type="ssh", environment="production")
