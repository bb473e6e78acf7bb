"""Opening a request (SPEC §2, §3): authorization ceiling, scope, rules, duration, schedule.

Invariants:
- deny by default: a role the user may not request, or a type/environment no approval
  entry matches, is ``Forbidden``;
- the scope of a request is its resources if it names any, else its roles' grants, so
  combining roles or resources never grants more than each grants alone;
- the duration is capped by the smaller of the role and purpose maxima; over the cap is
  ``Invalid`` unless the draft says ``cap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from jitgate.domain.durations import format_duration
from jitgate.domain.errors import Forbidden, Invalid
from jitgate.domain.events import DomainEvent
from jitgate.domain.policy import ApprovalRule, Policy, Role, Scope
from jitgate.domain.request import AccessRequest, check_reason

URGENCIES = ("low", "normal", "high")
FALLBACK_DURATION = timedelta(hours=1)
START_SKEW = timedelta(minutes=1)


@dataclass(frozen=True)
class Draft:
    roles: tuple[str, ...]
    reason: str
    resources: tuple[str, ...] = ()
    duration: timedelta | None = None
    urgency: str = "normal"
    purpose: str | None = None
    start_at: datetime | None = None
    cap: bool = False


@dataclass(frozen=True)
class DurationBounds:
    default: timedelta
    maximum: timedelta | None


def open_request(
    policy: Policy,
    draft: Draft,
    *,
    requester: str,
    request_id: str,
    now: datetime,
    extends: str | None = None,
) -> AccessRequest:
    """Validate ``draft`` against ``policy`` and return a new pending (or self-approved) request."""
    roles = resolve_roles(policy, draft.roles, requester)
    scopes = request_scopes(policy, roles, draft.resources)
    rules = rules_for(policy, scopes)
    _check_text(draft)
    bounds = duration_bounds(policy, roles, draft.purpose)
    duration = _duration(draft, bounds)
    start_at = _start(policy, draft.start_at, now)
    settings = policy.settings
    request = AccessRequest(
        id=request_id,
        requester=requester,
        roles=tuple(r.name for r in roles),
        resources=draft.resources,
        scopes=scopes,
        rules=rules,
        duration=duration,
        reason=draft.reason,
        urgency=draft.urgency,
        purpose=draft.purpose,
        created_at=now,
        expires_at=_decide_by(now + settings.pending_ttl, start_at, duration),
        escalate_at=now + settings.escalate_after,
        max_total=bounds.maximum or duration,
        start_at=start_at,
        extends=extends,
        backends=tuple(dict.fromkeys(b for r in roles for b in r.backends)),
    )
    request.events.append(_created_event(request))
    if draft.urgency == "high":
        request._record("request.urgent", requester, urgency="high")
    if all(rule.kind == "self" for rule in rules):
        request.approve_by_policy(now)
    return request


def resolve_roles(policy: Policy, names: tuple[str, ...], requester: str) -> list[Role]:
    if not names:
        raise Invalid("roles must name at least one role")
    if len(set(names)) != len(names):
        raise Invalid("roles must not repeat a role")
    groups = policy.directory.groups_of(requester)
    roles = []
    for name in names:
        role = policy.roles.get(name)
        if role is None:
            raise Invalid(f"unknown role {name!r}")
        if not groups & set(role.requestable_by):
            raise Forbidden(f"{requester} may not request role {name!r}")
        roles.append(role)
    return roles


def request_scopes(
    policy: Policy, roles: list[Role], resources: tuple[str, ...]
) -> tuple[Scope, ...]:
    """What a request reaches: the named resources (each granted by one of ``roles``), or
    without resources every grant of ``roles``."""
    if len(set(resources)) != len(resources):
        raise Invalid("resources must not repeat a resource")
    if not resources:
        return tuple(dict.fromkeys(g for r in roles for g in r.grants))
    scopes = []
    for name in resources:
        resource = policy.resources.get(name)
        if resource is None:
            raise Invalid(f"unknown resource {name!r}")
        if not any(g.covers(resource.scope) for r in roles for g in r.grants):
            raise Forbidden(f"none of the requested roles grants access to resource {name!r}")
        scopes.append(resource.scope)
    return tuple(dict.fromkeys(scopes))


def rules_for(policy: Policy, scopes: tuple[Scope, ...]) -> tuple[ApprovalRule, ...]:
    """Every approval entry that any scope matches (first fit per scope), in policy order.

    A scope of ``environment: any`` reaches every environment, so it needs the rule of
    each (``Policy.reach``): a rule for one environment is never skipped by granting all."""
    found: dict[int, ApprovalRule] = {}
    for reached in (r for scope in scopes for r in policy.reach(scope)):
        rule = policy.rule_for(reached)
        if rule is None:
            raise Forbidden(
                f"no approval rule covers {reached.type}/{reached.environment}: "
                "it cannot be requested"
            )
        found[rule.index] = rule
    return tuple(found[i] for i in sorted(found))


def rules_now(policy: Policy, request: AccessRequest) -> tuple[ApprovalRule, ...]:
    """The approval rules a pending request answers to under ``policy``: a reloaded policy
    governs every decision still to come. ``Forbidden`` or ``Invalid`` when ``policy`` no
    longer lets its requester ask for it (a role removed, no longer requestable by them,
    no longer granting what it asks for, or no longer extendable for an extension)."""
    roles = resolve_roles(policy, request.roles, request.requester)
    granted = request_scopes(policy, roles, request.resources)
    if not all(any(g.covers(s) for g in granted) for s in request.scopes):
        raise Forbidden("its roles no longer grant what it asks for")
    if request.extends is not None:
        for role in roles:
            if not role.extendable:
                raise Forbidden(f"role {role.name!r} is no longer extendable")
    return rules_for(policy, request.scopes)


def duration_bounds(policy: Policy, roles: list[Role], purpose: str | None) -> DurationBounds:
    chosen = None
    if purpose is not None:
        chosen = policy.purposes.get(purpose)
        if chosen is None:
            raise Invalid(f"unknown purpose {purpose!r}")
    maxima = [r.max_duration for r in roles if r.max_duration]
    if chosen and chosen.max:
        maxima.append(chosen.max)
    maximum = min(maxima) if maxima else None
    defaults = [r.default_duration for r in roles if r.default_duration]
    default = (chosen.default if chosen and chosen.default else None) or (
        min(defaults) if defaults else FALLBACK_DURATION
    )
    if maximum is not None:
        default = min(default, maximum)
    return DurationBounds(default, maximum)


def _duration(draft: Draft, bounds: DurationBounds) -> timedelta:
    wanted = draft.duration or bounds.default
    if bounds.maximum is not None and wanted > bounds.maximum:
        if not draft.cap:
            raise Invalid(
                f"duration {format_duration(wanted)} is over the maximum "
                f"{format_duration(bounds.maximum)} "
                "(ask for less, or accept the maximum: cap: true in the API, --cap in the CLI)"
            )
        return bounds.maximum
    return wanted


def _start(policy: Policy, start_at: datetime | None, now: datetime) -> datetime | None:
    if start_at is None:
        return None
    if start_at.tzinfo is None:
        raise Invalid("start_at needs a time zone (use Z or +00:00)")
    if start_at < now - START_SKEW:
        raise Invalid("start_at is in the past")
    if start_at > now + policy.settings.max_schedule_ahead:
        ahead = format_duration(policy.settings.max_schedule_ahead)
        raise Invalid(f"start_at is more than {ahead} ahead (max_schedule_ahead)")
    return start_at.astimezone(UTC) if start_at > now else None


def _decide_by(ttl_end: datetime, start_at: datetime | None, duration: timedelta) -> datetime:
    """A scheduled request left undecided past its whole window has nothing left to approve:
    it expires then, if its pending TTL has not ended it before."""
    return ttl_end if start_at is None else min(ttl_end, start_at + duration)


def _check_text(draft: Draft) -> None:
    check_reason(draft.reason)
    if draft.urgency not in URGENCIES:
        raise Invalid(f"urgency must be one of {', '.join(URGENCIES)}")


def _created_event(request: AccessRequest) -> DomainEvent:
    data = {
        "requester": request.requester,
        "roles": list(request.roles),
        "resources": list(request.resources),
        "reason": request.reason,
        "duration_seconds": int(request.duration.total_seconds()),
        "urgency": request.urgency,
        "purpose": request.purpose,
        "start_at": request.start_at.isoformat() if request.start_at else None,
        "extends": request.extends,
    }
    return DomainEvent("request.created", request.requester, request.id, data)
