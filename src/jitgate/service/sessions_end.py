"""Ending the open sessions of a grant that ended, when they must end (RFC 10.4.4, SPEC §3):
always on early revocation, and at expiry with ``sessions_at_expiry: terminate``.

jitgate cannot end a session by itself: its gateway does (``jitgate ssh reap`` ends the
SSH connection, a gateway holding sessions acts on the ``session.terminate`` webhook).
So the evidence tells two facts apart, each with its real time:

- ``request_termination`` records that the end was *asked for*: the session keeps
  ``ended_at`` empty and gets ``termination_requested_at`` and ``termination_reason``,
  audited as ``session.termination_requested``, in one transaction;
- ``ended_as`` says how the gateway's confirmation (``POST /v1/sessions/{id}/end``) is
  recorded: ``session.ended`` with ``terminated: true`` only when the gateway says it ended
  the session, ``terminated: false`` (reason ``closed``) when it closed by itself, even
  after the end was asked for. A session that ended before is never touched: its row is
  locked before it is read, so an end committing at the same time is never overwritten,
  and a second report of an end is refused (``Conflict``), never audited twice.

A termination asked for and not confirmed within ``CONFIRM_WITHIN`` is a discrepancy in
the evidence (``service.evidence``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from jitgate.domain.events import DomainEvent
from jitgate.service.context import Context
from jitgate.service.ports import Session

#: How long a gateway may take to confirm a termination jitgate asked for (``jitgate ssh
#: reap`` runs every few seconds to a minute) before the evidence calls it unconfirmed.
CONFIRM_WITHIN = timedelta(minutes=5)


def request_termination(ctx: Context, *, request_id: str, reason: str) -> int:
    """Ask for the end of every open session of ``request_id`` (and of its extensions) not
    asked for yet; returns how many were asked for now. The sessions are read locked, so
    an end its gateway reports meanwhile is either waited for (and that session, ended,
    is left alone) or waits for this commit (and is recorded after the request)."""
    now = ctx.clock.now()
    with ctx.uow() as uow:
        ids = [request_id] + [e.id for e in uow.requests.extensions_of(request_id)]
        locked = uow.sessions.open_by_request(ids, for_update=True)
        open_ = [s for sessions in locked.values() for s in sessions]
        asked = [s for s in open_ if s.termination_requested_at is None]
        events = []
        for session in asked:
            session.termination_requested_at, session.termination_reason = now, reason
            uow.sessions.save(session)
            data = {"session_id": session.id, "reason": reason, "opened_by": session.opened_by}
            events.append(
                DomainEvent("session.termination_requested", "system", session.request_id, data)
            )
        ctx.publish(uow, events, None, now)
        uow.commit()
    return len(asked)


def ended_as(
    session: Session, *, terminated: bool | None, reason: str
) -> tuple[str, dict[str, Any]]:
    """``(end_reason, data of session.ended)`` for a session whose end its gateway reports:
    ``terminated`` is what the gateway says (``None``: it did not say); ``reason`` the one
    it gives for a session that closed by itself."""
    asked = session.termination_requested_at
    if terminated:
        why = session.termination_reason if asked else None
        end_reason = why or "terminated by its gateway"
    elif terminated is None and asked is not None:
        end_reason = f"ended after termination was requested ({session.termination_reason})"
    else:
        end_reason = reason
    data: dict[str, Any] = {
        "session_id": session.id,
        "recording_url": session.recording_url,
        "reason": end_reason,
        "terminated": terminated if asked is not None else bool(terminated),
    }
    if asked is not None:
        data["termination_requested_at"] = asked.isoformat()
    return end_reason, data
