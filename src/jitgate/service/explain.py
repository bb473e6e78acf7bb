"""``policy explain``: for a user and roles, which rules apply, who can approve right now
and why, and the default and maximum duration. Reads the policy only; changes nothing.

A spec that names nobody says why in plain words (``nobody``): a requester without a
manager or a team, a group nobody is in, nobody on call, or only the requester."""

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
    nobody: str = "nobody right now"


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


def _nobody(spec: ApproverSpec, requester: str, policy: Policy, now: datetime) -> str:
    """Why ``spec`` names nobody for ``requester`` at ``now``."""
    d = policy.directory
    user = d.user(requester)
    if spec.kind == "manager" and user.manager is None:
        return f"nobody: {requester} has no manager in the directory"
    if spec.kind == "team_lead" and user.team is None:
        return f"nobody: {requester} has no team in the directory"
    if spec.kind == "team_lead" and d.team_lead_of(requester) is None:
        return f"nobody: team {user.team} has no entry in directory.teams"
    if spec.kind == "group" and not d.members(spec.value):
        return f"nobody: no user of the directory is in group {spec.value}"
    if spec.kind == "oncall" and d.on_call(spec.value, now) is None:
        return f"nobody right now: no one is on call for schedule {spec.value}"
    # what is left is the requester alone, who never approves their own request
    return f"nobody: only {requester}, who cannot approve their own request"


def _specs(
    specs: tuple[ApproverSpec, ...], requester: str, policy: Policy, now: datetime
) -> tuple[SpecExplanation, ...]:
    explained = []
    for spec in specs:
        found = spec_candidates(spec, requester=requester, directory=policy.directory, at=now)
        explained.append(
            SpecExplanation(
                spec.label(),
                tuple(sorted(found)),
                _why(spec, requester, policy),
                "" if found else _nobody(spec, requester, policy, now),
            )
        )
    return tuple(explained)


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
