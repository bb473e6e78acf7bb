"""Time at the edges, on SQLite and PostgreSQL with a manual clock: the scheduler late or
not run at all, extensions stacked and revoked, a scheduled request left undecided past
its window, times given in another offset. Each outcome is one state, audited once."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest
from test_lifecycle import (
    JANE,
    MARK,
    SEC,
    H,
    M,
    _active_prod_grant,
    _allowed,
    _approve_both,
    _chain_ok,
    _create,
    _get,
    _oncall,
    _types,
)

from jitgate.domain.creation import Draft
from jitgate.domain.errors import Conflict, Invalid
from jitgate.domain.states import State
from jitgate.service import lifecycle
from jitgate.service.decisions import approve_request, deny_request, revoke_request
from jitgate.service.requests import create_request, extend_request

SSH_PROD = {"type": "ssh", "environment": "production"}


def test_revoking_an_extension_takes_back_the_ones_after_it(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx, clock, duration=H)
    start = grant.starts_at
    assert start is not None
    first = extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="a")
    _approve_both(ctx, first.id)
    second = extend_request(ctx, request_id=first.id, requester=JANE, duration=H, reason="b")
    _approve_both(ctx, second.id)
    assert _get(ctx, grant.id).ends_at == start + 3 * H

    clock.advance(10 * M)
    revoke_request(ctx, request_id=first.id, actor=JANE, reason="not needed")
    assert _get(ctx, grant.id).ends_at == start + H  # where the revoked one began
    assert _get(ctx, second.id).state is State.REVOKED  # its time followed the first's
    assert "an earlier extension" in (_get(ctx, second.id).close_reason or "")
    clock.set(start + H)
    lifecycle.tick(ctx)
    for later in (H + M, 2 * H + M):
        clock.set(start + later)
        lifecycle.tick(ctx)
        assert not _allowed(ctx, **SSH_PROD)
    _chain_ok(ctx)


def test_revoking_the_last_extension_keeps_the_earlier_ones(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx, clock, duration=H)
    start = grant.starts_at
    assert start is not None
    first = extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="a")
    _approve_both(ctx, first.id)
    second = extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="b")
    _approve_both(ctx, second.id)
    revoke_request(ctx, request_id=second.id, actor=JANE, reason="enough")
    assert _get(ctx, grant.id).ends_at == start + 2 * H
    assert _get(ctx, first.id).state is State.APPROVED
    clock.set(start + H + 30 * M)
    lifecycle.tick(ctx)
    assert _allowed(ctx, **SSH_PROD)


def test_an_ended_grant_is_not_extended_however_late_the_scheduler(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx, clock, duration=H)
    assert grant.ends_at is not None
    clock.set(grant.ends_at)  # no tick: the row still says active
    with pytest.raises(Conflict, match="ended at"):
        extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="late")
    with pytest.raises(Conflict, match="ended at"):
        revoke_request(ctx, request_id=grant.id, actor=SEC, reason="after the fact")
    clock.advance(3 * H)
    lifecycle.tick(ctx)
    ended = _get(ctx, grant.id)
    assert ended.state is State.EXPIRED
    assert ended.closed_at == grant.ends_at  # when it ended, not when the tick ran
    assert _types(ctx, grant.id)[-1] == "access.expired"
    _chain_ok(ctx)


def test_a_waiting_extension_closes_when_its_grant_ends(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx, clock, duration=30 * M)  # ends inside the pending TTL
    assert grant.ends_at is not None
    waiting = extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="x")
    approve_request(ctx, request_id=waiting.id, approver=_oncall(ctx))
    clock.set(grant.ends_at + M)
    assert lifecycle.tick(ctx).expired == 1
    closed = _get(ctx, waiting.id)
    assert closed.state is State.REVOKED
    assert closed.close_reason == "the grant it extends ended"
    with pytest.raises(Conflict):
        approve_request(ctx, request_id=waiting.id, approver=MARK)
    assert _types(ctx, waiting.id)[-1] == "request.revoked"
    _chain_ok(ctx)


def test_waiting_extensions_close_once_the_grant_reaches_its_maximum(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    grant = _active_prod_grant(ctx, clock, duration=6 * H)  # sre-oncall: 8h at most
    one = extend_request(ctx, request_id=grant.id, requester=JANE, duration=2 * H, reason="a")
    two = extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="b")
    _approve_both(ctx, one.id)
    closed = _get(ctx, two.id)
    assert closed.state is State.REVOKED
    assert closed.close_reason == "the grant reached its role's maximum duration"
    with pytest.raises(Invalid, match="maximum"):
        extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="c")
    _chain_ok(ctx)


def test_a_withdrawal_after_the_pending_ttl_finds_it_expired(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    request = _create(ctx, "staging-ssh")
    clock.set(request.expires_at + M)  # no tick
    with pytest.raises(Conflict, match="expired"):
        revoke_request(ctx, request_id=request.id, actor=JANE, reason="never mind")
    expired = _get(ctx, request.id)
    assert expired.state is State.EXPIRED and expired.closed_at == request.expires_at
    assert _types(ctx, request.id) == ["request.created", "request.expired"]
    _chain_ok(ctx)


def test_a_scheduled_request_left_undecided_past_its_window_expires(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    begin = clock.now() + 5 * M
    request = _create(ctx, "sre-oncall", start_at=begin, duration=10 * M)
    assert request.expires_at == begin + 10 * M
    clock.set(begin + 30 * M)
    with pytest.raises(Conflict, match="expired"):
        approve_request(ctx, request_id=request.id, approver=_oncall(ctx))
    assert _get(ctx, request.id).state is State.EXPIRED
    assert "request.approved" not in _types(ctx, request.id)
    _chain_ok(ctx)


def test_a_start_in_another_offset_is_kept_in_utc(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    india = timezone(timedelta(hours=5, minutes=30))
    begin = (clock.now() + H).astimezone(india)
    request = _create(ctx, "sre-oncall", start_at=begin)
    assert request.start_at == begin and request.start_at.utcoffset() == timedelta(0)
    stored = _get(ctx, request.id)
    assert stored.start_at is not None and stored.start_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("reason", ["\u200b", " \u200b\u2060 ", "\x00\x01", "\u00a0"])
def test_an_invisible_reason_is_no_reason(db_url: str, make_ctx, reason: str) -> None:
    ctx, _clock = make_ctx(db_url)
    draft = Draft(roles=("staging-ssh",), reason=reason)
    with pytest.raises(Invalid, match="reason is required"):
        create_request(ctx, requester=JANE, draft=draft)
    request = _create(ctx, "staging-ssh")
    with pytest.raises(Invalid, match="reason is required"):
        deny_request(ctx, request_id=request.id, approver="priya@example.com", reason=reason)
