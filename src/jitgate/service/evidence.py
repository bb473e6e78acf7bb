"""The evidence of one request (RFC 10.6.3), built from its hash-chained audit events:
authorized, time-limited, justified and used appropriately, with every table value that
disagrees with the events listed in ``discrepancies``.

A session shows when jitgate asked for its end (``termination_requested_at``, from
``session.termination_requested``) apart from when it ended (``ended_at``, from
``session.ended``, with ``terminated``: whether its gateway ended it); one asked for and
not confirmed within ``sessions_end.CONFIRM_WITHIN`` is a discrepancy."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from jitgate.domain.approval import Approval
from jitgate.domain.audit import AuditRecord
from jitgate.domain.request import AccessRequest
from jitgate.service.context import Context
from jitgate.service.ports import AuditQuery, Session, UnitOfWork
from jitgate.service.queries import visible_request
from jitgate.service.sessions_end import CONFIRM_WITHIN

_STATE_AFTER = {
    "request.created": "pending",
    "request.approved": "approved",
    "access.granted": "active",
    "request.denied": "denied",
    "request.expired": "expired",
    "access.expired": "expired",
    "request.revoked": "revoked",
    "access.revoked": "revoked",
}
#: The close reasons the domain gives when time, not a person, ends a request.
_TIMED_OUT = {"request.expired": "no decision in time", "access.expired": "grant ended"}
Facts = dict[str, Any]


def evidence(ctx: Context, *, request_id: str, viewer: str) -> dict[str, Any]:
    """RFC 10.6.3: authorized (approvals), time-limited (window), justified (reason),
    used appropriately (sessions and their recordings), with the audit trail behind it.

    Every section is read from the request's hash-chained audit events, never from the
    tables (requests, sessions): whoever can write to the database can rewrite a row
    unseen, but not an event without breaking ``audit verify``. Only the approval rules
    and which requests extend this one are not in its events; those come from the
    tables. Every table value that disagrees with the events is listed, with both values,
    in ``discrepancies`` (empty when the tables tell the story the chain does)."""
    directory = ctx.policy.current.directory
    with ctx.uow(write=False) as uow:
        request = visible_request(ctx, uow, request_id, viewer)
        events = _events_of(uow, request_id)
        trail = _Trail(request_id).read(_with_own_window(uow, request_id, events))
        sessions = uow.sessions.of_request(request_id)
        extensions = {
            e.id: (e, _Trail(e.id).read(_events_of(uow, e.id)))
            for e in uow.requests.extensions_of(request_id)
        }
    told = _told(request, trail, extensions)
    stored = _stored(request, sessions, extensions)
    with_chain_approvals = replace(request, approvals=tuple(trail.approvals), events=[])
    evaluation = with_chain_approvals.evaluation(directory)
    return {
        "request_id": request.id,
        **{key: told[key] for key in ("requester", "roles", "resources", "extends", "state")},
        "authorized": {
            "rules": [rule.label() for rule in request.rules],
            "requirements": [r.__dict__ for r in evaluation.requirements],
            "approvals": told["authorized.approvals"],
            "decision": trail.decision,
        },
        "time_limited": {
            **{key: told[f"time_limited.{key}"] for key in _WINDOW},
            "extensions": [
                {"id": id_, "state": state} for id_, state in told["extensions"].items()
            ],
        },
        "justified": {key: told[f"justified.{key}"] for key in ("reason", "purpose", "urgency")},
        "used": {"sessions": list(trail.sessions.values())},
        "discrepancies": [
            *_discrepancies(stored, told),
            *_unconfirmed(trail, ctx.clock.now(), CONFIRM_WITHIN),
        ],
        "audit": [e.as_dict() for e in events],
    }


_WINDOW = ("duration_seconds", "starts_at", "ends_at", "closed_at", "close_reason")
_SESSION_FIELDS: tuple[str, ...] = ("user", "resource", "kind", "started_at", "ended_at")
_SESSION_FIELDS += ("recording_url", "end_reason", "opened_by")
_SESSION_FIELDS += ("termination_requested_at", "termination_reason")


def _events_of(uow: UnitOfWork, request_id: str) -> list[AuditRecord]:
    return uow.audit.find(AuditQuery(request_id=request_id, limit=10_000))


def _with_own_window(
    uow: UnitOfWork, request_id: str, events: list[AuditRecord]
) -> list[AuditRecord]:
    """An extension's window is recorded on its original (``access.extended``): that one
    event joins the extension's own, in chain order."""
    created = next((e.data for e in events if e.type == "request.created"), {})
    original = created.get("extends")
    if not isinstance(original, str):
        return events
    moved = [
        e
        for e in _events_of(uow, original)
        if e.type == "access.extended" and e.data.get("extension") == request_id
    ]
    return sorted([*events, *moved], key=lambda e: e.seq)


@dataclass
class _Trail:
    """What a request's chained audit events say about it, read in chain order."""

    request_id: str
    created: dict[str, Any] = field(default_factory=dict)
    state: str | None = None
    approvals: list[Approval] = field(default_factory=list)
    decision: dict[str, Any] | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    closed_at: datetime | None = None
    close_reason: str | None = None
    expired_pending_at: datetime | None = None
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    unattributed: set[str] = field(default_factory=set)  # audited before ``opened_by``
    extended_by: list[str] = field(default_factory=list)

    def read(self, events: list[AuditRecord]) -> _Trail:
        for event in events:
            at = datetime.fromisoformat(event.at)
            if event.request_id == self.request_id:
                self.state = _STATE_AFTER.get(event.type, self.state)
            if event.type == "request.created":
                self.created = event.data
            self._decide(event, at)
            self._move(event, at)
            self._close(event, at)
            self._use(event, at)
        return self

    def _decide(self, event: AuditRecord, at: datetime) -> None:
        data = event.data
        if event.type == "approval.recorded":
            decision: Any = data.get("decision")
            via = data.get("via", "api")
            self.approvals.append(Approval(event.actor, decision, at, data.get("comment"), via))
        elif event.type in ("request.approved", "request.denied") and self.decision is None:
            self.decision = {"outcome": _STATE_AFTER[event.type], "by": event.actor, "at": _iso(at)}

    def _move(self, event: AuditRecord, at: datetime) -> None:
        data, kind = event.data, event.type
        if kind in ("request.approved", "access.granted") and "starts_at" in data:
            self.starts_at, self.ends_at = _when(data["starts_at"]), _when(data.get("ends_at"))
        elif kind == "access.extended" and event.request_id != self.request_id:
            # the original's record of this extension: its grant is the time it added
            self.starts_at = _when(data.get("previous_ends_at"))
            self.ends_at = _when(data.get("ends_at"))
        elif kind in ("access.extended", "access.extension_revoked"):
            self.ends_at = _when(data.get("ends_at"))
            if kind == "access.extended":
                self.extended_by.append(str(data.get("extension")))
        elif kind == "access.revoked":  # as ``AccessRequest.revoke``: a grant ends early
            ends_at = _when(data.get("ends_at"))
            if ends_at is not None and at < ends_at:
                ends_at = max(at, self.starts_at or at)
            self.ends_at = ends_at

    def _close(self, event: AuditRecord, at: datetime) -> None:
        if event.type in ("request.denied", "request.revoked", "access.revoked"):
            self.closed_at, self.close_reason = at, event.data.get("reason")
        elif event.type == "access.expired":
            self.closed_at = _when(event.data.get("ends_at"))
            self.close_reason = _TIMED_OUT[event.type]
        elif event.type == "request.expired":
            self.expired_pending_at, self.close_reason = at, _TIMED_OUT[event.type]

    def _use(self, event: AuditRecord, at: datetime) -> None:
        data = event.data
        session_id = data.get("session_id")
        if event.type == "access.used" and isinstance(session_id, str):
            self.sessions[session_id] = {
                "id": session_id,
                "request_id": event.request_id,
                "user": event.actor,
                **{key: data.get(key) for key in ("resource", "kind", "role", "type")},
                "environment": data.get("environment"),
                "opened_by": data.get("opened_by"),
                "started_at": _iso(at),
                "termination_requested_at": None,
                "termination_reason": None,
                "ended_at": None,
                "terminated": None,
                "recording_url": None,
                "end_reason": None,
            }
            if "opened_by" not in data:
                self.unattributed.add(session_id)
        elif event.type == "session.termination_requested" and session_id in self.sessions:
            self.sessions[session_id].update(
                termination_requested_at=_iso(at), termination_reason=data.get("reason")
            )
        elif event.type == "session.ended" and session_id in self.sessions:
            self.sessions[session_id].update(
                ended_at=_iso(at),
                terminated=data.get("terminated"),
                recording_url=data.get("recording_url"),
                end_reason=data.get("reason"),
            )


def _told(
    request: AccessRequest, trail: _Trail, extensions: dict[str, tuple[AccessRequest, _Trail]]
) -> Facts:
    """The facts as the chained events tell them."""
    created = trail.created
    closed_at = trail.closed_at
    if trail.expired_pending_at is not None:
        # the end of the pending TTL is only in the table: shown unless the event refutes it
        stored = _utc(request.closed_at)
        refuted = stored is None or stored > trail.expired_pending_at
        closed_at = trail.expired_pending_at if refuted else stored
    ext_ids = [*extensions, *(i for i in trail.extended_by if i not in extensions)]
    return {
        **{key: created.get(key) for key in ("requester", "roles", "resources", "extends")},
        "state": trail.state,
        "authorized.approvals": [_approval(a) for a in trail.approvals],
        "time_limited.duration_seconds": created.get("duration_seconds"),
        "time_limited.starts_at": _iso(trail.starts_at),
        "time_limited.ends_at": _iso(trail.ends_at),
        "time_limited.closed_at": _iso(closed_at),
        "time_limited.close_reason": trail.close_reason,
        **{f"justified.{key}": created.get(key) for key in ("reason", "purpose", "urgency")},
        "extensions": {i: _extension_state(request.id, extensions.get(i)) for i in ext_ids},
        "sessions": {i: _told_session(trail, i) for i in trail.sessions},
    }


def _told_session(trail: _Trail, session_id: str) -> dict[str, Any]:
    """A session's facts; ``opened_by`` only where its event could name the gateway."""
    shown = trail.sessions[session_id]
    keys = [k for k in _SESSION_FIELDS if k != "opened_by" or session_id not in trail.unattributed]
    return {key: shown[key] for key in keys}


def _extension_state(request_id: str, found: tuple[AccessRequest, _Trail] | None) -> str | None:
    """The state of an extension by its own events; ``None`` when its events do not say it
    extends ``request_id`` (or it is not in the table at all)."""
    if found is None or found[1].created.get("extends") != request_id:
        return None
    return found[1].state


def _stored(
    request: AccessRequest,
    sessions: list[Session],
    extensions: dict[str, tuple[AccessRequest, _Trail]],
) -> Facts:
    """The same facts as the editable tables hold them."""
    return {
        "requester": request.requester,
        "roles": list(request.roles),
        "resources": list(request.resources),
        "extends": request.extends,
        "state": request.state.value,
        "authorized.approvals": [_approval(a) for a in request.approvals],
        "time_limited.duration_seconds": int(request.duration.total_seconds()),
        "time_limited.starts_at": _iso(request.starts_at),
        "time_limited.ends_at": _iso(request.ends_at),
        "time_limited.closed_at": _iso(request.closed_at),
        "time_limited.close_reason": request.close_reason,
        "justified.reason": request.reason,
        "justified.purpose": request.purpose,
        "justified.urgency": request.urgency,
        "extensions": {i: e.state.value for i, (e, _trail) in extensions.items()},
        "sessions": {s.id: _stored_session(s) for s in sessions},
    }


def _stored_session(s: Session) -> dict[str, Any]:
    values = {
        **s.as_dict(),
        "started_at": _iso(s.started_at),
        "ended_at": _iso(s.ended_at),
        "termination_requested_at": _iso(s.termination_requested_at),
    }
    return {key: values[key] for key in _SESSION_FIELDS}


def _discrepancies(stored: Facts, told: Facts) -> list[dict[str, Any]]:
    """Every fact where the tables and the events disagree: ``{field, table, events}``."""
    found = [
        {"field": key, "table": table, "events": told[key]}
        for key, table in stored.items()
        if key not in ("extensions", "sessions") and table != told[key]
    ]
    found += _by_id("time_limited.extensions", stored["extensions"], told["extensions"])
    found += _by_id("used.sessions", stored["sessions"], told["sessions"])
    return found


def _by_id(path: str, stored: dict[str, Any], told: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for id_ in [*stored, *(i for i in told if i not in stored)]:
        table, events = stored.get(id_), told.get(id_)
        if isinstance(table, dict) and isinstance(events, dict):
            found += [
                {"field": f"{path}[{id_}].{k}", "table": table[k], "events": events[k]}
                for k in events  # what the events record: an old one may lack a field
                if table[k] != events[k]
            ]
        elif table != events:
            found.append({"field": f"{path}[{id_}]", "table": table, "events": events})
    return found


def _unconfirmed(trail: _Trail, now: datetime, within: timedelta) -> list[dict[str, Any]]:
    """Sessions whose end jitgate asked for and no gateway confirmed within ``within``: the
    evidence cannot say they ended (their gateway, e.g. ``jitgate ssh reap``, is not
    running, or could not end them)."""
    found = []
    for id_, session in trail.sessions.items():
        asked = _when(session["termination_requested_at"])
        if asked is not None and session["ended_at"] is None and now - asked >= within:
            found.append(
                {
                    "field": f"used.sessions[{id_}].ended_at",
                    "table": None,
                    "events": None,
                    "note": f"termination requested at {_iso(asked)}; no end confirmed "
                    f"by its gateway ({session['opened_by'] or 'unknown'}) within {within}",
                }
            )
    return found


def _approval(a: Approval) -> dict[str, Any]:
    at = _iso(a.at)
    return {
        "approver": a.approver,
        "decision": a.decision,
        "comment": a.comment,
        "at": at,
        "via": a.via,
    }


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _utc(value: datetime | None) -> datetime | None:
    """Table times compared with the chain's, which are UTC (a naive time is taken as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    utc = _utc(value)
    return utc.isoformat() if utc is not None else None
