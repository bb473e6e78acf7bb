"""``policy explain``: for a user and roles, which rules apply, who can approve right now
and why, and the default and maximum duration. Reads the policy only; changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from jitgate.domain.approval import spec_candidates
from jitgate.domain.creation import duration_bounds, request_scopes, resolve_roles, rules_for
from jitgate.domain.errors import DomainError
from jitgate.domain.policy import ApproverSpec, Policy, Scope


@dataclass(frozen=True)
class SpecExplanation:
    spec: str
    approvers: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class RuleExplanation:
    label: str
    kind: str
    threshold: int
    specs: tuple[SpecExplanation, ...]
    escalate_to: tuple[SpecExplanation, ...]


@dataclass(frozen=True)
class Explanation:
    user: str
    roles: tuple[str, ...]
    allowed: bool
    refusal: str | None = None
    scopes: tuple[Scope, ...] = ()
    rules: tuple[RuleExplanation, ...] = field(default_factory=tuple)
    default_duration: timedelta | None = None
    max_duration: timedelta | None = None


def _why(spec: ApproverSpec, requester: str, policy: Policy) -> str:
    d = policy.directory
    if spec.kind == "group":
        return f"members of group {spec.value}"
    if spec.kind == "team_lead":
        return f"lead of {requester}'s team ({d.user(requester).team or 'no team'})"
    if spec.kind == "manager":
        return f"{requester}'s manager"
    if spec.kind == "oncall":
        return f"on call now for schedule {spec.value}"
    return "named in the policy"


def _specs(
    specs: tuple[ApproverSpec, ...], requester: str, policy: Policy, now: datetime
) -> tuple[SpecExplanation, ...]:
    return tuple(
        SpecExplanation(
            spec.label(),
            tuple(
                sorted(
                    spec_candidates(spec, requester=requester, directory=policy.directory, at=now)
                )
            ),
            _why(spec, requester, policy),
        )
        for spec in specs
    )


def explain(
    policy: Policy,
    *,
    user: str,
    roles: tuple[str, ...],
    resources: tuple[str, ...],
    purpose: str | None,
    now: datetime,
) -> Explanation:
    user = user.lower()
    try:
        found = resolve_roles(policy, roles, user)
        scopes = request_scopes(policy, found, resources)
        rules = rules_for(policy, scopes)
        bounds = duration_bounds(policy, found, purpose)
    except DomainError as exc:
        return Explanation(user, roles, False, str(exc))
    explained = tuple(
        RuleExplanation(
            rule.label(),
            rule.kind,
            rule.threshold,
            _specs(rule.specs, user, policy, now),
            _specs(rule.escalate_to, user, policy, now),
        )
        for rule in rules
    )
    return Explanation(user, roles, True, None, scopes, explained, bounds.default, bounds.maximum)
