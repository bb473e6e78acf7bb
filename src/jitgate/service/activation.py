"""Activation: ``approved -> active`` once the window has begun and the grant is in place;
and the backends of a live grant following its end when an extension moves it.

Invariants: a request with backends becomes active only after every backend applied it;
every commit that moves a live grant's end (an extension approved, or revoked) is followed
by ``follow_moved_end``, so the backends hold the new end before the old one comes;
backend I/O never runs while a transaction holds the request's lock. An approved
extension becomes active once the time it adds has begun, for as long as the grant it
extends runs (its own end is no deadline: it ends with that grant).
"""

from __future__ import annotations

from datetime import datetime

from jitgate.domain.request import AccessRequest
from jitgate.domain.states import LIVE_GRANT, State
from jitgate.service.context import Context


def due_for_activation(
    request: AccessRequest, now: datetime, original: AccessRequest | None = None
) -> bool:
    """Whether ``request`` is approved and its time is running at ``now``; an extension's
    runs from its own start to the end of its grant (``original``, needed for one)."""
    if request.extends is None:
        end = request.ends_at
    elif original is not None and original.state in LIVE_GRANT:
        end = original.ends_at
    else:
        end = None
    return (
        request.state is State.APPROVED
        and request.starts_at is not None
        and end is not None
        and request.starts_at <= now < end
    )


def activate_inline(ctx: Context, request: AccessRequest, now: datetime) -> None:
    """Inside the caller's transaction: activate at once when there is nothing to apply."""
    if due_for_activation(request, now) and not request.backends:
        request.activate(now)


def finish_activation(ctx: Context, request: AccessRequest) -> AccessRequest:
    """After commit: apply the backends of a request that is due, then activate it.
    Returns the request as it now stands (activated, or unchanged)."""
    if request.backends and due_for_activation(request, ctx.clock.now()):
        return activate_request(ctx, request_id=request.id) or request
    return request


def activate_request(ctx: Context, *, request_id: str) -> AccessRequest | None:
    """Apply the grant on its backends, then mark it active; the activated request, or
    ``None`` if it is not (yet) in place."""
    with ctx.uow(write=False) as uow:
        request = uow.requests.get(request_id)
        original = uow.requests.get(request.extends) if request and request.extends else None
    if request is None or not due_for_activation(request, ctx.clock.now(), original):
        return None
    if request.backends and not ctx.grants.apply(request, ctx.clock.now()):
        return None
    now = ctx.clock.now()
    with ctx.uow() as uow:
        locked, original = uow.requests.get_family(request_id)  # the original locked first
        if locked is None or not due_for_activation(locked, now, original):
            return None
        locked.activate(now)
        ctx.persist(uow, locked, now)
        uow.commit()
    return locked


def follow_moved_end(ctx: Context, original_id: str) -> None:
    """After commit: an extension approved (or withdrawn) moved the end of ``original_id``'s
    grant; its backends follow at once, so the grant runs on without a break past the old
    end (a grant whose window has not begun is left to its activation)."""
    with ctx.uow(write=False) as uow:
        original = uow.requests.get(original_id)
    if original is not None and original.state in LIVE_GRANT:
        ctx.grants.apply(original, ctx.clock.now())
