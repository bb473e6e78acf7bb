"""Decisions on a request: approve, deny, revoke (SPEC §3, §9).

Invariants: the request row is locked for the whole decision, so racing approvals, a deny
racing an approval, or an approval racing expiry leave exactly one outcome and one audit
trail; the loser gets ``Conflict``. The requester never decides their own request. A
pending request is decided under this replica's policy, and changed for it (new rules, or
closed) only by a replica in step with the policy in force (``service.policy``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jitgate.domain.approval import Evaluation
from jitgate.domain.errors import Conflict, NotFound
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import LIVE_GRANT, State
from jitgate.service.activation import activate_inline, finish_activation, follow_moved_end
from jitgate.service.context import Context
from jitgate.service.policy import NO_LONGER_ALLOWED, Followed, follow_policy, require_in_step
from jitgate.service.ports import UnitOfWork
from jitgate.service.requests import apply_extension, revoke_all


@dataclass(frozen=True)
class Decision:
    request: AccessRequest
    evaluation: Evaluation | None = None


def approve_request(
    ctx: Context,
    *,
    request_id: str,
    approver: str,
    comment: str | None = None,
    via: str = "api",
) -> Decision:
    now = ctx.clock.now()
    directory = ctx.policy.current.directory
    approver = approver.strip().lower()
    with ctx.uow() as uow:
        request, original = _lock_family(uow, request_id)
        _catch_up_timers(ctx, uow, request, now)
        followed = _under_current_policy(ctx, uow, request, approver, now)
        evaluation = request.approve(
            approver, directory=directory, now=now, comment=comment, via=via
        )
        if request.state is State.APPROVED and original is not None:
            apply_extension(ctx, uow, original, request, now)
        activate_inline(ctx, request, now)
        ctx.persist(uow, request, now)
        if followed:
            require_in_step(ctx, uow)  # the audit head locked now: no load slips in
        uow.commit()
    if original is not None and request.state is State.APPROVED:
        follow_moved_end(ctx, original.id)
    return Decision(finish_activation(ctx, request), evaluation)


def deny_request(
    ctx: Context, *, request_id: str, approver: str, reason: str, via: str = "api"
) -> Decision:
    now = ctx.clock.now()
    directory = ctx.policy.current.directory
    approver = approver.strip().lower()
    with ctx.uow() as uow:
        request, _original = _lock_family(uow, request_id)
        _catch_up_timers(ctx, uow, request, now)
        followed = _under_current_policy(ctx, uow, request, approver, now)
        request.deny(approver, reason=reason, directory=directory, now=now, via=via)
        ctx.persist(uow, request, now)
        if followed:
            require_in_step(ctx, uow)  # the audit head locked now: no load slips in
        uow.commit()
    return Decision(request)


def revoke_request(ctx: Context, *, request_id: str, actor: str, reason: str) -> Decision:
    """Withdraw a pending request, or end a live grant early; its extensions go with it,
    and a revoked extension takes back the time it added to its original."""
    now = ctx.clock.now()
    policy = ctx.policy.current
    actor = actor.strip().lower()
    with ctx.uow() as uow:
        request, original = _lock_family(uow, request_id)
        is_admin = policy.is_admin(actor)
        request.check_revoker(actor, is_admin=is_admin)  # before the original is touched
        _catch_up_expiry(ctx, uow, request, now)
        _check_not_over(request, now)
        shortened = original is not None and request.state in LIVE_GRANT
        if original is not None and shortened:
            original.withdraw_extension(request, now)
            ctx.persist(uow, original, now)
            # the extensions approved after it follow it: their time goes with it
            later = [
                e
                for e in uow.requests.extensions_of(original.id, for_update=True)
                if e.id != request.id and e.state in LIVE_GRANT and _after(e, request)
            ]
            why = f"an earlier extension ({request.id}) was revoked: {reason}"
            revoke_all(ctx, uow, later, actor=actor, reason=why, now=now)
        request.revoke(actor, reason=reason, now=now, is_admin=is_admin)
        ctx.persist(uow, request, now)
        cascade = [
            e
            for e in uow.requests.extensions_of(request.id, for_update=True)
            if e.state in LIVE_GRANT or e.state is State.PENDING
        ]
        why = f"extended grant revoked: {reason}"
        revoke_all(ctx, uow, cascade, actor=actor, reason=why, now=now)
        uow.commit()
    ctx.grants.remove(request, now)  # backends, and open sessions (always end here)
    if original is not None and shortened:
        follow_moved_end(ctx, original.id)  # the time the extension added is taken back
    return Decision(request)


def _after(extension: AccessRequest, revoked: AccessRequest) -> bool:
    assert extension.starts_at is not None and revoked.starts_at is not None
    return extension.starts_at > revoked.starts_at


def _check_not_over(request: AccessRequest, now: datetime) -> None:
    """A grant whose window has passed ran its term: it expires (the scheduler records it)
    and is not revoked after the fact, however late the scheduler is."""
    if request.state in LIVE_GRANT and request.ends_at is not None and now >= request.ends_at:
        raise Conflict(f"grant of {request.id} ended at {request.ends_at.isoformat()}")


def _catch_up_expiry(ctx: Context, uow: UnitOfWork, request: AccessRequest, now: datetime) -> None:
    """Past its pending TTL a request has expired, whether or not the scheduler has run."""
    if request.state is State.PENDING and now >= request.expires_at:
        request.expire_pending(now)
        ctx.persist(uow, request, now)
        uow.commit()
        raise Conflict(f"request {request.id} expired at {request.expires_at.isoformat()}")


def _under_current_policy(
    ctx: Context, uow: UnitOfWork, request: AccessRequest, person: str, now: datetime
) -> bool:
    """A reloaded policy governs the decisions still to come on a pending request: its
    rules become the current ones (whether they changed is returned). One the policy no
    longer allows is closed (one outcome, audited) and the decision answers 409; a
    stranger to it still gets only 403. Either change is made only by a replica in step
    with the policy in force; out of step the decision answers 503 and changes nothing
    (``service.policy``). The caller checks the step again before committing new rules."""
    followed = follow_policy(ctx, uow, request, now, person=person)
    if followed is Followed.CLOSED:
        uow.commit()
        reason = (request.close_reason or "").removeprefix(f"{NO_LONGER_ALLOWED}: ")
        raise Conflict(f"request {request.id} was closed: {NO_LONGER_ALLOWED} ({reason})")
    return followed is Followed.RULES


def _lock_family(uow: UnitOfWork, request_id: str) -> tuple[AccessRequest, AccessRequest | None]:
    """The request locked and, for an extension, its original locked before it."""
    request, original = uow.requests.get_family(request_id)
    if request is None:
        raise NotFound(f"no request {request_id}")
    return request, original


def _catch_up_timers(ctx: Context, uow: UnitOfWork, request: AccessRequest, now: datetime) -> None:
    """A decision arriving after the pending TTL expires the request instead (one outcome);
    one arriving after ``escalate_at`` escalates it first, as the scheduler would have.
    Both are judged at the decision's own ``now``."""
    _catch_up_expiry(ctx, uow, request, now)
    if request.state is State.PENDING and not request.escalated and now >= request.escalate_at:
        request.escalate(now)  # due, and the scheduler has not got to it: its stand-ins count
