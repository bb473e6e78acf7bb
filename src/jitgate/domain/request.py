"""The access request aggregate (SPEC §3). Pure: ``now`` is always an argument.

Invariants:
- every state change goes through ``check_transition`` (the table in ``states``);
- every state change records a ``DomainEvent`` the service must persist with it;
- a request is never edited after creation, only decided, extended (``ends_at`` moves out
  by an approved extension, capped at ``max_total``) or ended;
- ``honoured(now)`` is true only inside ``[starts_at, ends_at)`` of an active grant;
- an approved extension is part of its original's grant: active once the time it adds
  begins, it never warns (the original does, of the grant's real end) and never ends on
  its own, only with the grant and as it ends (``end_with_grant``).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from jitgate.domain import approval as appr
from jitgate.domain.errors import Conflict, Forbidden, Invalid
from jitgate.domain.events import DomainEvent
from jitgate.domain.policy import ApprovalRule, Directory, Scope
from jitgate.domain.states import LIVE_GRANT, State, check_transition

SYSTEM_ACTOR = "system"
MAX_REASON = 2000


@dataclass
class AccessRequest:
    id: str
    requester: str
    roles: tuple[str, ...]
    resources: tuple[str, ...]
    scopes: tuple[Scope, ...]
    rules: tuple[ApprovalRule, ...]
    duration: timedelta
    reason: str
    urgency: str
    purpose: str | None
    created_at: datetime
    expires_at: datetime
    escalate_at: datetime
    max_total: timedelta
    start_at: datetime | None = None
    state: State = State.PENDING
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    approvals: tuple[appr.Approval, ...] = ()
    escalated: bool = False
    extends: str | None = None
    backends: tuple[str, ...] = ()
    decided_at: datetime | None = None
    closed_at: datetime | None = None
    close_reason: str | None = None
    expiry_warned: bool = False
    version: int = 0
    events: list[DomainEvent] = field(default_factory=list, compare=False, repr=False)

    # -- queries ---------------------------------------------------------------------------

    def evaluation(self, directory: Directory) -> appr.Evaluation:
        return appr.evaluate(
            self.rules,
            self.approvals,
            requester=self.requester,
            directory=directory,
            escalated=self.escalated,
        )

    def can_decide(self, person: str, directory: Directory, now: datetime) -> bool:
        return appr.can_decide(
            self.rules,
            person,
            requester=self.requester,
            directory=directory,
            at=now,
            escalated=self.escalated,
        )

    def approvers_now(self, directory: Directory, now: datetime) -> frozenset[str]:
        """Everyone who may still approve at ``now``: eligible, and not already decided."""
        eligible = appr.candidates(
            self.rules,
            requester=self.requester,
            directory=directory,
            at=now,
            escalated=self.escalated,
        )
        return frozenset(p for p in eligible if not self.decided_by(p))

    def decided_by(self, person: str) -> bool:
        """Whether ``person`` has already approved or denied this request."""
        return any(appr.same_person(a.approver, person) for a in self.approvals)

    def honoured(self, now: datetime) -> bool:
        """Whether the grant may be used at ``now``: active and inside its window."""
        return (
            self.state is State.ACTIVE
            and self.starts_at is not None
            and self.ends_at is not None
            and self.starts_at <= now < self.ends_at
        )

    def covers(self, scope: Scope, resource: str | None) -> bool:
        return grant_covers(self.resources, self.scopes, scope, resource)

    # -- decisions -------------------------------------------------------------------------

    def approve(
        self,
        approver: str,
        *,
        directory: Directory,
        now: datetime,
        comment: str | None = None,
        via: str = "api",
    ) -> appr.Evaluation:
        approver = approver.strip().lower()
        self._check_decider(approver, directory, now)
        if self.decided_by(approver):
            raise Conflict(f"{approver} has already approved this request")
        self.approvals += (appr.Approval(approver, "approve", now, comment, via),)
        self._record("approval.recorded", approver, decision="approve", comment=comment, via=via)
        result = self.evaluation(directory)
        if result.satisfied:
            self._approve(now, actor=approver)
        return result

    def deny(
        self, approver: str, *, reason: str, directory: Directory, now: datetime, via: str = "api"
    ) -> None:
        check_reason(reason)
        approver = approver.strip().lower()
        self._check_decider(approver, directory, now)
        check_transition(self.state, State.DENIED)
        self.approvals += (appr.Approval(approver, "deny", now, reason, via),)
        self._record("approval.recorded", approver, decision="deny", comment=reason, via=via)
        self.state, self.decided_at, self.closed_at = State.DENIED, now, now
        self.close_reason = reason
        self._record("request.denied", approver, reason=reason)

    def approve_by_policy(self, now: datetime) -> None:
        """``rule: self``: approved at creation without a person."""
        self._approve(now, actor=appr.POLICY_ACTOR)

    def check_part(self, person: str, directory: Directory, now: datetime) -> tuple[bool, bool]:
        """403 to whoever has no part in the request (not its requester, not able to decide
        it, not having decided it): a stranger learns nothing more about it. Returns
        whether ``person`` is the requester, and whether they may decide it now."""
        requester = appr.same_person(person, self.requester)
        eligible = self.can_decide(person, directory, now)
        if not (requester or eligible or self.decided_by(person)):
            raise Forbidden(f"{person} is not an eligible approver of request {self.id}")
        return requester, eligible

    def follow_rules(
        self, rules: tuple[ApprovalRule, ...], directory: Directory, now: datetime
    ) -> bool:
        """Answer to ``rules`` from now on (a reloaded policy), recorded when they differ,
        with the people who may approve now and could not before (``approvers_added``: they
        are told); the approvals already given count under them as they fit."""
        if rules == self.rules:
            return False
        before = self.approvers_now(directory, now)
        self.rules = rules
        added = self.approvers_now(directory, now) - before
        self._record(
            "request.rules_updated",
            SYSTEM_ACTOR,
            approvers_added=sorted(added),
            rules=[
                {
                    "rule": r.label(),
                    "kind": r.kind,
                    "threshold": r.threshold,
                    "specs": [x.as_dict() for x in r.specs],
                    "escalate_to": [x.as_dict() for x in r.escalate_to],
                }
                for r in rules
            ],
        )
        return True

    def _check_decider(self, person: str, directory: Directory, now: datetime) -> None:
        """403 to whoever has no part in the request, before anything else: a stranger
        learns neither its state nor whether it expired; then 409 when it is not pending."""
        requester, eligible = self.check_part(person, directory, now)
        if self.state is not State.PENDING:
            raise Conflict(f"request {self.id} is {self.state.value}, not pending")
        if now >= self.expires_at:
            raise Conflict(f"request {self.id} expired at {self.expires_at.isoformat()}")
        if requester:
            raise Forbidden("the requester can never approve or deny their own request")
        if not eligible:
            raise Forbidden(f"{person} is not an eligible approver of request {self.id}")

    def _approve(self, now: datetime, *, actor: str) -> None:
        """Fix the grant window: immediate ``[now, now + d)``; scheduled
        ``[start_at, start_at + d)``, shortened (never moved) when approved late. An
        extension's window is set by its original (``extend``), not here."""
        check_transition(self.state, State.APPROVED)
        self.state, self.decided_at = State.APPROVED, now
        if self.extends is not None:
            self._record("request.approved", actor, extends=self.extends)
            return
        begin = max(now, self.start_at) if self.start_at else now
        planned_end = (self.start_at or now) + self.duration
        self.starts_at, self.ends_at = begin, max(begin, planned_end)
        self._record(
            "request.approved",
            actor,
            starts_at=self.starts_at.isoformat(),
            ends_at=self.ends_at.isoformat(),
        )

    # -- lifecycle driven by time ----------------------------------------------------------

    def activate(self, now: datetime) -> None:
        """``approved -> active`` once the window has begun and the backends applied."""
        check_transition(self.state, State.ACTIVE)
        assert self.starts_at is not None and self.ends_at is not None
        if now < self.starts_at:
            raise Conflict(f"grant of {self.id} starts at {self.starts_at.isoformat()}")
        self.state = State.ACTIVE
        self._record(
            "access.granted",
            SYSTEM_ACTOR,
            starts_at=self.starts_at.isoformat(),
            ends_at=self.ends_at.isoformat(),
            roles=list(self.roles),
            resources=list(self.resources),
            scope=[s.__dict__ for s in self.scopes],
        )

    def expire_pending(self, now: datetime) -> None:
        check_transition(self.state, State.EXPIRED)
        if now < self.expires_at:
            raise Conflict(f"request {self.id} is pending until {self.expires_at.isoformat()}")
        # closed when the TTL ended, however late the scheduler records it
        self.state, self.closed_at = State.EXPIRED, self.expires_at
        self.close_reason = "no decision in time"
        self._record("request.expired", SYSTEM_ACTOR, pending_since=self.created_at.isoformat())

    def escalate(self, now: datetime) -> None:
        if self.state is not State.PENDING or self.escalated:
            raise Conflict(f"request {self.id} cannot be escalated now")
        self.escalated = True
        self._record(
            "request.escalated",
            SYSTEM_ACTOR,
            escalate_to=[
                s.as_dict() for s in dict.fromkeys(x for r in self.rules for x in r.escalate_to)
            ],
        )

    def warn_expiring(self, now: datetime) -> None:
        if self.state is not State.ACTIVE or self.expiry_warned:
            raise Conflict(f"request {self.id} is {self.state.value}; nothing is expiring")
        if self.extends is not None:
            raise Conflict(f"extension {self.id} ends with its grant: {self.extends} warns")
        self.expiry_warned = True
        self._record("access.expiring", SYSTEM_ACTOR, ends_at=_iso(self.ends_at))

    def expire(self, now: datetime, *, open_sessions: list[dict[str, Any]]) -> None:
        check_transition(self.state, State.EXPIRED)
        if self.ends_at is None or now < self.ends_at:
            raise Conflict(f"grant of {self.id} has not ended")
        # the grant ended at ``ends_at``, however late the scheduler records it
        self.state, self.closed_at, self.close_reason = State.EXPIRED, self.ends_at, "grant ended"
        self._record(
            "access.expired",
            SYSTEM_ACTOR,
            ends_at=_iso(self.ends_at),
            sessions_open=open_sessions,
        )

    def end_with_grant(
        self, grant: AccessRequest, now: datetime, *, open_sessions: list[dict[str, Any]]
    ) -> None:
        """An approved extension ends when the grant it extends (``grant``, its original)
        does, as that grant ends: expired with a grant that ran (``access.expired`` at the
        grant's real end; activated first if the scheduler never got to it while its time
        ran), revoked with one that was revoked or never became active."""
        if self.extends != grant.id or self.state not in LIVE_GRANT:
            raise Conflict(f"request {self.id} does not end with grant {grant.id}")
        end = grant.ends_at
        if end is None or (grant.state in LIVE_GRANT and now < end):
            raise Conflict(f"grant of {grant.id} goes on; its extension {self.id} with it")
        why = _why_not_run(grant.state, end, self.starts_at)
        if why is not None:
            self.revoke(SYSTEM_ACTOR, reason=why, now=now, is_admin=True)
            return
        if self.state is State.APPROVED:  # its time ran while the scheduler was late
            self.activate(now)
        check_transition(self.state, State.EXPIRED)
        self.state, self.closed_at, self.close_reason = State.EXPIRED, end, "grant ended"
        self._record(
            "access.expired",
            SYSTEM_ACTOR,
            ends_at=end.isoformat(),
            grant=grant.id,
            sessions_open=open_sessions,
        )

    def check_revoker(self, actor: str, *, is_admin: bool) -> None:
        """Only the requester or an admin may revoke (or withdraw) a request."""
        if not appr.same_person(actor, self.requester) and not is_admin:
            raise Forbidden("only the requester or an admin can revoke a request")

    def revoke(self, actor: str, *, reason: str, now: datetime, is_admin: bool) -> None:
        check_reason(reason)
        self.check_revoker(actor, is_admin=is_admin)
        was = self.state
        check_transition(was, State.REVOKED)
        self.state, self.closed_at, self.close_reason = State.REVOKED, now, reason
        if was is State.PENDING:
            self._record("request.revoked", actor, reason=reason, withdrawn=True)
        else:
            self._record("access.revoked", actor, reason=reason, ends_at=_iso(self.ends_at))
            if self.ends_at is not None and now < self.ends_at:
                self.ends_at = max(now, self.starts_at or now)

    def extend(self, extension: AccessRequest, now: datetime) -> timedelta:
        """Move ``ends_at`` out by an approved extension; never past ``max_total`` in all.

        The extension's own grant becomes exactly the time it adds, ``[old end, new end)``:
        it never opens access earlier than the original does, and revoking it takes back
        only what it added."""
        if self.state not in (State.APPROVED, State.ACTIVE) or self.ends_at is None:
            raise Conflict(f"request {self.id} is {self.state.value}; it cannot be extended")
        if now >= self.ends_at:
            raise Conflict(f"grant of {self.id} ended at {self.ends_at.isoformat()}")
        assert self.starts_at is not None
        old_end = self.ends_at
        self.ends_at = min(old_end + extension.duration, self.starts_at + self.max_total)
        if self.ends_at <= old_end:
            raise Conflict(f"grant of {self.id} is already at its maximum duration")
        self.expiry_warned = False
        extension.starts_at, extension.ends_at = old_end, self.ends_at
        self._record(
            "access.extended",
            extension.requester,
            extension=extension.id,
            previous_ends_at=old_end.isoformat(),
            ends_at=self.ends_at.isoformat(),
        )
        return self.ends_at - old_end

    def withdraw_extension(self, extension: AccessRequest, now: datetime) -> None:
        """Take back the time a revoked extension added, and so the time of every extension
        approved after it, which follows it: the grant ends where the revoked extension
        began (never before ``now``). The service revokes those later extensions."""
        if self.ends_at is None or extension.starts_at is None or extension.ends_at is None:
            return
        if self.state not in (State.APPROVED, State.ACTIVE):
            return
        old_end = self.ends_at
        self.ends_at = min(old_end, max(now, self.starts_at or now, extension.starts_at))
        if self.ends_at < old_end:
            self.expiry_warned = False  # a warning given named the later end
        self._record(
            "access.extension_revoked",
            extension.requester,
            extension=extension.id,
            previous_ends_at=old_end.isoformat(),
            ends_at=self.ends_at.isoformat(),
        )

    def _record(self, type_: str, actor: str, **data: Any) -> None:
        self.events.append(DomainEvent(type_, actor, self.id, data))

    def copy(self) -> AccessRequest:
        return replace(self, events=[])


def grant_covers(
    resources: tuple[str, ...], scopes: tuple[Scope, ...], scope: Scope, resource: str | None
) -> bool:
    """Whether a grant gives ``scope`` (or ``resource``). A grant that names resources gives
    exactly those, so combining roles or resources never gives more than each alone."""
    if resources:
        return resource is not None and resource in resources
    return any(mine.covers(scope) for mine in scopes)


def check_reason(reason: str) -> None:
    """A reason someone can read: not empty, not only blanks, controls or invisible
    format characters (a zero-width space is no reason), and not over ``MAX_REASON``."""
    if not reason or not any(_visible(c) for c in reason):
        raise Invalid("a reason is required")
    if len(reason) > MAX_REASON:
        raise Invalid(f"reason is longer than {MAX_REASON} characters")


def _visible(char: str) -> bool:
    return not char.isspace() and unicodedata.category(char) not in ("Cc", "Cf", "Zs")


def _why_not_run(grant: State, end: datetime, extension_starts: datetime | None) -> str | None:
    """Why an extension's time never ran in a grant that ended at ``end`` in state
    ``grant`` (the extension is then revoked with it), or ``None`` if it ran (expired)."""
    if grant is State.REVOKED:
        return "the grant it extends was revoked"
    if grant not in (State.ACTIVE, State.EXPIRED):
        return "the grant it extends ended before it became active"
    if extension_starts is None or end <= extension_starts:
        return "the grant it extends ended before this extension's time began"
    return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
