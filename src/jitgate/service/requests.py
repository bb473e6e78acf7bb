"""Use cases that open requests: create and extend, both with ``Idempotency-Key``.

Invariant: a replayed ``Idempotency-Key`` with the same body returns the first request and
changes nothing; with another body it is refused. A create's keys are the requester's, an
extension's those of the request it extends: the same key on both never collides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from jitgate.domain.creation import Draft, open_request
from jitgate.domain.errors import Conflict, Forbidden, Invalid, NotFound
from jitgate.domain.request import SYSTEM_ACTOR, AccessRequest
from jitgate.domain.states import State
from jitgate.service.activation import activate_inline, finish_activation, follow_moved_end
from jitgate.service.context import Context
from jitgate.service.ports import UnitOfWork
from jitgate.service.queries import refused


@dataclass(frozen=True)
class Created:
    request: AccessRequest
    replayed: bool = False


def create_request(
    ctx: Context,
    *,
    requester: str,
    draft: Draft,
    idempotency_key: str | None = None,
    body_hash: str | None = None,
) -> Created:
    now = ctx.clock.now()
    policy = ctx.policy.current
    requester = requester.strip().lower()
    request_id = ctx.ids()
    with ctx.uow() as uow:
        if idempotency_key:
            seen = uow.idempotency.claim(
                requester, idempotency_key, body_hash or "", request_id, now
            )
            if seen is not None:
                return _replay(uow.requests.get(seen[1]), seen[0], body_hash)
        request = open_request(policy, draft, requester=requester, request_id=request_id, now=now)
        activate_inline(ctx, request, now)
        ctx.persist_new(uow, request, now)
        uow.commit()
    return Created(finish_activation(ctx, request))


def _replay(request: AccessRequest | None, seen_hash: str, body_hash: str | None) -> Created:
    if seen_hash != (body_hash or ""):
        raise Invalid("this Idempotency-Key was already used with a different body")
    if request is None:
        raise NotFound("the request of this Idempotency-Key no longer exists")
    return Created(request, replayed=True)


def extend_request(
    ctx: Context, *, request_id: str, requester: str, duration: timedelta, reason: str
) -> AccessRequest:
    """``extend_request_with_key`` without an ``Idempotency-Key``: the new request."""
    return extend_request_with_key(
        ctx, request_id=request_id, requester=requester, duration=duration, reason=reason
    ).request


def extend_request_with_key(
    ctx: Context,
    *,
    request_id: str,
    requester: str,
    duration: timedelta,
    reason: str,
    idempotency_key: str | None = None,
    body_hash: str | None = None,
) -> Created:
    """A new request with ``extends`` that goes through the same approval (SPEC §3).

    Extending an extension extends its original: ``extends`` always names the request
    whose grant moves, so the role's maximum counts from that grant's start, and revoking
    the original takes every extension with it. An ``idempotency_key`` is honoured as
    ``create_request`` honours it, scoped to the request extended (``extension_keys``):
    never the key of a create, nor of another request's extension."""
    now = ctx.clock.now()
    policy = ctx.policy.current
    requester = requester.strip().lower()
    extension_id = ctx.ids()
    with ctx.uow() as uow:
        named = uow.requests.get(request_id)
        if named is None:
            raise NotFound(f"no request {request_id}")
        if named.requester != requester:
            raise refused(ctx, named, requester, "only the requester can extend a request")
        if idempotency_key:  # only the requester's own request gets this far
            scope = extension_keys(named.id)
            seen = uow.idempotency.claim(scope, idempotency_key, body_hash or "", extension_id, now)
            if seen is not None:
                return _replay(uow.requests.get(seen[1]), seen[0], body_hash)
        original = _live_original(uow, named, now)
        headroom = _check_extendable(ctx, original)
        draft = Draft(
            roles=original.roles,
            resources=original.resources,
            reason=reason,
            duration=min(duration, headroom),  # what approvers see is what it can add
            urgency=original.urgency,
            purpose=original.purpose,
            cap=True,
        )
        request = open_request(
            policy,
            draft,
            requester=requester,
            request_id=extension_id,
            now=now,
            extends=original.id,
        )
        if request.state is State.APPROVED:
            apply_extension(ctx, uow, original, request, now)
        ctx.persist_new(uow, request, now)
        uow.commit()
    if request.state is State.APPROVED:  # approved at once: the backends hear the new end now
        follow_moved_end(ctx, original.id)
    return Created(request)


def extension_keys(request_id: str) -> str:
    """Whose ``Idempotency-Key`` an extension of ``request_id`` is: the request's own
    scope (a create's is the requester's email, which holds an ``@``; an id never does)."""
    return f"extend:{request_id}"


def _live_original(uow: UnitOfWork, named: AccessRequest, now: datetime) -> AccessRequest:
    """The request whose grant an extension of ``named`` moves, locked; ``Conflict``
    unless both are live and the grant has not ended."""
    original = uow.requests.get(named.extends or named.id, for_update=True)
    assert original is not None, "an extension's original is never deleted"
    for live in {named.id: named, original.id: original}.values():
        if live.state not in (State.APPROVED, State.ACTIVE):
            raise Conflict(f"request {live.id} is {live.state.value}; only a live grant extends")
    assert original.ends_at is not None
    if now >= original.ends_at:  # ended, whether or not the scheduler has recorded it
        raise Conflict(f"grant of {original.id} ended at {original.ends_at.isoformat()}")
    return original


def _check_extendable(ctx: Context, original: AccessRequest) -> timedelta:
    """How much the grant may still grow: the role's maximum counts from its start."""
    policy = ctx.policy.current
    for name in original.roles:
        role = policy.roles.get(name)
        if role is None or not role.extendable:
            raise Forbidden(f"role {name!r} is not extendable")
    assert original.starts_at is not None and original.ends_at is not None
    headroom = original.starts_at + original.max_total - original.ends_at
    if headroom <= timedelta(0):
        raise Invalid("this grant is already at its role's maximum duration")
    return headroom


def apply_extension(
    ctx: Context,
    uow: UnitOfWork,
    original: AccessRequest,
    extension: AccessRequest,
    now: datetime,
) -> None:
    """Move the original's ``ends_at`` out; the extension's own grant is the time it adds,
    activated by the scheduler when that time comes."""
    original.extend(extension, now)
    activate_inline(ctx, extension, now)
    ctx.persist(uow, original, now)
    assert original.starts_at is not None and original.ends_at is not None
    if original.ends_at >= original.starts_at + original.max_total:
        # at its maximum, nothing is left to approve: the other pending extensions close
        waiting = [
            e
            for e in uow.requests.extensions_of(original.id, for_update=True)
            if e.id != extension.id and e.state is State.PENDING
        ]
        reason = "the grant reached its role's maximum duration"
        revoke_all(ctx, uow, waiting, actor=SYSTEM_ACTOR, reason=reason, now=now)


def revoke_all(
    ctx: Context,
    uow: UnitOfWork,
    requests: list[AccessRequest],
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> None:
    """Revoke ``requests`` (extensions closed along with their grant), audited, in one
    round of writes; the caller has them locked and commits."""
    for request in requests:
        request.revoke(actor, reason=reason, now=now, is_admin=True)
    ctx.persist_many(uow, requests, now)
