"""Pure helpers of enforcement: the backoff schedule, the gate that decides whether an
apply may run, how a row is settled, the instruction id a backend call carries, and the
audit events of backend outcomes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jitgate.domain.events import DomainEvent
from jitgate.domain.request import AccessRequest
from jitgate.service.backend_ports import BackendGrant, Receipt, SessionRef

ACTOR = "system"
LEASE = timedelta(minutes=2)
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_MAX = timedelta(minutes=5)


INSTRUCTION = "instruction"  # in ``detail``: the id of the row's next (or retried) call
CERTIFICATE_ISSUED = "ssh.certificate_issued"
CERTIFICATES_REVOKED = "ssh.certificates_revoked"


@dataclass(frozen=True)
class Issued:
    """A certificate as ``ssh.certificate_issued`` records it: enough to know whether it
    outlives its grant."""

    serial: int | None
    valid_before: datetime

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Issued | None:
        before = data.get("valid_before")
        if not isinstance(before, str):
            return None
        serial = data.get("serial")
        return cls(serial if isinstance(serial, int) else None, datetime.fromisoformat(before))


def instruction(row: BackendGrant | None) -> str:
    """The id of the instruction the row's next backend call carries out: kept while it is
    retried, replaced once it succeeded (``next_instruction``), so a new instruction never
    reuses an id even when it repeats an earlier one (an end moved out and back)."""
    value = row.detail.get(INSTRUCTION) if row is not None else None
    return value if isinstance(value, str) else ""


def next_instruction(detail: dict[str, Any]) -> dict[str, Any]:
    """``detail`` with the id of the next instruction, after one succeeded."""
    return {**detail, INSTRUCTION: uuid.uuid4().hex}


def backoff(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s … capped at 5 min."""
    step: timedelta = BACKOFF_BASE * (2 ** min(max(attempts - 1, 0), 16))
    return min(step, BACKOFF_MAX)


def event(kind: str, request_id: str, **data: Any) -> DomainEvent:
    return DomainEvent(kind, ACTOR, request_id, data)


def window_end(request: AccessRequest) -> str | None:
    return request.ends_at.isoformat() if request.ends_at else None


def cut_short(row: BackendGrant, request: AccessRequest) -> bool:
    """Whether the backend was last given a later end than the grant now has (a revoked
    extension): whatever it issued up to that end, such as a certificate, must be revoked
    when the grant ends, as on an early revocation."""
    given = row.detail.get("window_end")
    if not isinstance(given, str) or request.ends_at is None:
        return False
    return datetime.fromisoformat(given) > request.ends_at


def apply_gate(row: BackendGrant | None, now: datetime, window: str | None) -> str:
    """``go``, ``resume`` (an interrupted apply), ``refresh`` (applied, but the window has
    moved since), ``done`` or ``skip`` (in flight, backing off, or the grant ended)."""
    if row is None:
        return "go"
    if row.status == "applied":
        applied_for = row.detail.get("window_end")
        return "done" if applied_for in (None, window) else "refresh"
    if row.status in ("removing", "removed"):
        return "skip"
    due = row.next_attempt_at is None or row.next_attempt_at <= now
    if not due:
        return "skip"
    return "resume" if row.status == "applying" and row.in_flight else "go"


def settle_removed(row: BackendGrant, now: datetime, *, note: str | None = None) -> None:
    row.status, row.in_flight, row.removed_at, row.updated_at = "removed", False, now, now
    row.last_error, row.next_attempt_at = None, None
    if note:
        row.detail = {**row.detail, "note": note}


def refs(sessions: Any) -> list[SessionRef]:
    return [SessionRef(s.id, s.user, s.resource, s.kind, s.started_at) for s in sessions]


def applied_event(request_id: str, row: BackendGrant, receipt: Receipt) -> DomainEvent:
    return event(
        "backend.applied",
        request_id,
        backend=row.backend,
        type=row.backend_type,
        changed=receipt.changed,
        detail=dict(receipt.detail),
    )


def removed_event(request_id: str, row: BackendGrant, receipt: Receipt) -> DomainEvent:
    return event(
        "backend.removed",
        request_id,
        backend=row.backend,
        type=row.backend_type,
        changed=receipt.changed,
        ended_early=row.ended_early,
        sessions_terminated=row.terminate,
        detail=dict(receipt.detail),
    )


def certificates_revoked_event(
    request: AccessRequest, backend: str, outliving: Sequence[Issued]
) -> DomainEvent:
    """``ssh.certificates_revoked``: the grant's key id listed in the KRL while the grant
    runs on, because these certificates were valid past the end it now has."""
    return event(
        CERTIFICATES_REVOKED,
        request.id,
        backend=backend,
        key_id=request.id,
        ends_at=window_end(request),
        certificates=[
            {"serial": c.serial, "valid_before": c.valid_before.isoformat()} for c in outliving
        ],
        reason="the grant's end moved in before these certificates' end",
    )


def reconciled(request_id: str, row: BackendGrant, action: str, reason: str) -> DomainEvent:
    return event(
        "backend.reconciled",
        request_id,
        backend=row.backend,
        type=row.backend_type,
        action=action,
        reason=reason,
    )
