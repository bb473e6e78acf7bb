"""Row <-> aggregate mapping, kept out of the domain (imperative mapping, no ORM classes)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from jitgate.domain.approval import Approval
from jitgate.domain.policy import ApprovalRule, ApproverSpec, Match, Scope
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State


def _spec(data: dict[str, Any]) -> ApproverSpec:
    return ApproverSpec(data["kind"], data.get("value", ""))


def rule_to_json(rule: ApprovalRule) -> dict[str, Any]:
    return {
        "index": rule.index,
        "kind": rule.kind,
        "threshold": rule.threshold,
        "match": {"type": rule.match.type, "environment": rule.match.environment},
        "specs": [{"kind": s.kind, "value": s.value} for s in rule.specs],
        "escalate_to": [{"kind": s.kind, "value": s.value} for s in rule.escalate_to],
    }


def rule_from_json(data: dict[str, Any]) -> ApprovalRule:
    return ApprovalRule(
        index=data["index"],
        kind=data["kind"],
        threshold=data["threshold"],
        match=Match(data["match"]["type"], data["match"]["environment"]),
        specs=tuple(_spec(s) for s in data["specs"]),
        escalate_to=tuple(_spec(s) for s in data["escalate_to"]),
    )


def _approval_to_json(a: Approval) -> dict[str, Any]:
    return {
        "approver": a.approver,
        "decision": a.decision,
        "at": a.at.isoformat(),
        "comment": a.comment,
        "via": a.via,
    }


def _approval_from_json(d: dict[str, Any]) -> Approval:
    return Approval(
        d["approver"],
        d["decision"],
        datetime.fromisoformat(d["at"]),
        d.get("comment"),
        d.get("via", "api"),
    )


#: What can change after creation; ``save`` writes only these (a request is never edited).
MUTABLE = (
    "state",
    "approvals",
    "starts_at",
    "ends_at",
    "decided_at",
    "closed_at",
    "close_reason",
    "escalated",
    "expiry_warned",
)


def changes_row(r: AccessRequest) -> dict[str, Any]:
    return {
        "state": r.state.value,
        "approvals": [_approval_to_json(a) for a in r.approvals],
        "starts_at": r.starts_at,
        "ends_at": r.ends_at,
        "decided_at": r.decided_at,
        "closed_at": r.closed_at,
        "close_reason": r.close_reason,
        "escalated": r.escalated,
        "expiry_warned": r.expiry_warned,
    }


def to_row(r: AccessRequest) -> dict[str, Any]:
    """Every column of a new request: what never changes, plus ``changes_row``."""
    return {
        "id": r.id,
        "requester": r.requester,
        "roles": list(r.roles),
        "resources": list(r.resources),
        "scopes": [{"type": s.type, "environment": s.environment} for s in r.scopes],
        "rules": [rule_to_json(x) for x in r.rules],
        "backends": list(r.backends),
        "duration_seconds": int(r.duration.total_seconds()),
        "max_total_seconds": int(r.max_total.total_seconds()),
        "reason": r.reason,
        "urgency": r.urgency,
        "purpose": r.purpose,
        "created_at": r.created_at,
        "expires_at": r.expires_at,
        "escalate_at": r.escalate_at,
        "start_at": r.start_at,
        "extends": r.extends,
        "version": r.version,
        **changes_row(r),
    }


def from_row(row: Any) -> AccessRequest:
    m = row._mapping
    return AccessRequest(
        id=m["id"],
        requester=m["requester"],
        state=State(m["state"]),
        roles=tuple(m["roles"]),
        resources=tuple(m["resources"]),
        scopes=tuple(Scope(s["type"], s["environment"]) for s in m["scopes"]),
        rules=tuple(rule_from_json(x) for x in m["rules"]),
        approvals=tuple(_approval_from_json(a) for a in m["approvals"]),
        backends=tuple(m["backends"]),
        duration=timedelta(seconds=m["duration_seconds"]),
        max_total=timedelta(seconds=m["max_total_seconds"]),
        reason=m["reason"],
        urgency=m["urgency"],
        purpose=m["purpose"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        escalate_at=m["escalate_at"],
        start_at=m["start_at"],
        starts_at=m["starts_at"],
        ends_at=m["ends_at"],
        decided_at=m["decided_at"],
        closed_at=m["closed_at"],
        close_reason=m["close_reason"],
        escalated=bool(m["escalated"]),
        expiry_warned=bool(m["expiry_warned"]),
        extends=m["extends"],
        version=m["version"],
    )
