"""Activation: ``approved -> active`` once the window has begun and the grant is in place.

Invariant: a request with backends becomes active only after every backend applied it;
backend I/O never runs while a transaction holds the request's lock.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime

from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.service.context import Context


def due_for_activation(request: AccessRequest, now: datetime) -> bool:
    return (
        request.state is State.APPROVED
        and request.starts_at is not None
        and request.ends_at is not None
        and request.starts_at <= now < request.ends_at
    )


def activate_inline(ctx: Context, request: AccessRequest, now: datetime) -> None:
    """Inside the caller's transaction: activate at once when there is nothing to apply."""
    if due_for_activation(request, now) and not request.backends:
        request.activate(now)


def finish_activation(ctx: Context, request: AccessRequest) -> None:
    """After commit: apply backends of a request that is due, then activate it; the
    caller's copy is refreshed so that what it answers shows the activation."""
    due = request.backends and due_for_activation(request, ctx.clock.now())
    if due and activate_request(ctx, request_id=request.id):
        with ctx.uow(write=False) as uow:
            stored = uow.requests.get(request.id)
        for item in fields(AccessRequest):
            if stored is not None and item.name != "events":
                setattr(request, item.name, getattr(stored, item.name))


def activate_request(ctx: Context, *, request_id: str) -> bool:
    """Apply the grant on its backends, then mark it active; ``False`` if it is not yet in place."""
    with ctx.uow(write=False) as uow:
        request = uow.requests.get(request_id)
    if request is None or not due_for_activation(request, ctx.clock.now()):
        return False
    if request.backends and not ctx.grants.apply(request, ctx.clock.now()):
        return False
    now = ctx.clock.now()
    with ctx.uow() as uow:
        locked = uow.requests.get(request_id, for_update=True)
        if locked is None or not due_for_activation(locked, now):
            return False
        locked.activate(now)
        ctx.persist(uow, locked, now)
        uow.commit()
    return True
