"""Ending the open sessions of a grant that ended, when they must end (RFC 10.4.4, SPEC §3):
always on early revocation, and at expiry with ``sessions_at_expiry: terminate``.

The backends do the real termination (PostgreSQL connections terminated, a
``session.terminate`` webhook for gateways holding SSH sessions); this marks the sessions
ended, with the reason, and audits ``session.ended`` for each, in one transaction.
Sessions of the grant's extensions go with it.
"""

from __future__ import annotations

from jitgate.domain.events import DomainEvent
from jitgate.service.context import Context


def end_open_sessions(ctx: Context, *, request_id: str, reason: str) -> int:
    """Mark every open session of ``request_id`` (and its extensions) ended; returns how many."""
    now = ctx.clock.now()
    with ctx.uow() as uow:
        ids = [request_id] + [e.id for e in uow.requests.extensions_of(request_id)]
        open_ = [s for sessions in uow.sessions.open_by_request(ids).values() for s in sessions]
        events = []
        for session in open_:
            session.ended_at, session.end_reason = now, reason
            uow.sessions.save(session)
            events.append(
                DomainEvent(
                    "session.ended",
                    "system",
                    session.request_id,
                    {
                        "session_id": session.id,
                        "recording_url": session.recording_url,
                        "reason": reason,
                        "terminated": True,
                    },
                )
            )
        ctx.publish(uow, events, None, now)
        uow.commit()
    return len(open_)
