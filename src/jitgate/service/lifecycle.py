"""Time-driven use cases run by the scheduler: ``expire_pending``, ``escalate``, ``activate``,
``warn_expiring`` and ``expire_grants``; ``tick`` runs them all once.

Invariants: each batch is one transaction (rows locked, ``SKIP LOCKED`` on PostgreSQL, so
replicas never double-process); every transition writes its audit event in that batch;
a late tick changes nothing about honouring, which checks ``ends_at`` itself; the end of
the sessions of the grants that ended is asked for before any backend is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from jitgate.domain.request import SYSTEM_ACTOR, AccessRequest
from jitgate.domain.states import State
from jitgate.service.activation import activate_request
from jitgate.service.context import Context
from jitgate.service.enforcement import end_sessions, sessions_must_end
from jitgate.service.ports import DueKind, UnitOfWork
from jitgate.service.requests import revoke_all

BATCH = 1000


@dataclass(frozen=True)
class TickReport:
    expired_pending: int = 0
    escalated: int = 0
    activated: int = 0
    warned: int = 0
    expired: int = 0

    @property
    def total(self) -> int:
        return self.expired_pending + self.escalated + self.activated + self.warned + self.expired


def tick(ctx: Context) -> TickReport:
    return TickReport(
        expired_pending=expire_pending(ctx),
        escalated=escalate(ctx),
        activated=activate(ctx),
        warned=warn_expiring(ctx),
        expired=expire_grants(ctx),
    )


def _drain(
    ctx: Context,
    kind: DueKind,
    step: Callable[[UnitOfWork, list[AccessRequest], datetime], None],
) -> int:
    done = 0
    while True:
        now = ctx.clock.now()
        with ctx.uow() as uow:
            due = uow.requests.due(kind, now, BATCH, horizon=_horizon(ctx, kind))
            if not due:
                return done
            step(uow, due, now)
            ctx.persist_many(uow, due, now)
            uow.commit()
        done += len(due)
        if len(due) < BATCH:
            return done


def _horizon(ctx: Context, kind: DueKind) -> datetime | None:
    if kind != "expiring":
        return None
    return ctx.clock.now() + ctx.policy.current.settings.expiry_warning


def expire_pending(ctx: Context) -> int:
    def step(uow: UnitOfWork, due: list[AccessRequest], now: datetime) -> None:
        for request in due:
            request.expire_pending(now)

    return _drain(ctx, "pending_expired", step)


def escalate(ctx: Context) -> int:
    def step(uow: UnitOfWork, due: list[AccessRequest], now: datetime) -> None:
        for request in due:
            request.escalate(now)

    return _drain(ctx, "escalate", step)


def warn_expiring(ctx: Context) -> int:
    def step(uow: UnitOfWork, due: list[AccessRequest], now: datetime) -> None:
        for request in due:
            request.warn_expiring(now)

    return _drain(ctx, "expiring", step)


def expire_grants(ctx: Context) -> int:
    """``active -> expired`` at ``ends_at``; the event lists the sessions still open. An
    approved extension ends with the grant it extends, never at its own end while the
    grant goes on (``AccessRequest.end_with_grant``)."""
    ended: list[AccessRequest] = []

    def step(uow: UnitOfWork, due: list[AccessRequest], now: datetime) -> None:
        open_sessions = uow.sessions.open_by_request([r.id for r in due])
        originals = {r.id: r for r in due if r.extends is None}
        for request in [*originals.values(), *(r for r in due if r.extends is not None)]:
            sessions = [s.as_dict() for s in open_sessions.get(request.id, [])]
            if request.extends is not None:
                grant = originals.get(request.extends) or uow.requests.get(request.extends)
                assert grant is not None, "an extension's original is never deleted"
                request.end_with_grant(grant, now, open_sessions=sessions)
            elif request.state is State.APPROVED:
                request.revoke(
                    SYSTEM_ACTOR,
                    reason="grant window ended before activation",
                    now=now,
                    is_admin=True,
                )
            else:
                request.expire(now, open_sessions=sessions)
            ended.append(request)
        # an extension still waiting when its grant ends has nothing left to extend
        waiting = uow.requests.pending_extensions([r.id for r in due])
        reason = "the grant it extends ended"
        revoke_all(ctx, uow, waiting, actor=SYSTEM_ACTOR, reason=reason, now=now)

    count = _drain(ctx, "ended", step)
    for request in ended:  # first the sessions that must end: no backend call delays them
        if sessions_must_end(ctx, request):
            end_sessions(ctx, request)
    for request in ended:  # then the backends (each retried on its own when it fails)
        ctx.grants.remove(request, ctx.clock.now())
    return count


def activate(ctx: Context) -> int:
    """Scheduled grants whose window began, and grants whose backends failed before."""
    with ctx.uow(write=False) as uow:
        due = uow.requests.due("activate", ctx.clock.now(), BATCH)
    return sum(1 for request in due if activate_request(ctx, request_id=request.id) is not None)
