"""Approval evaluation (SPEC §2, §3, §9). Pure: every time is passed in.

Invariants, whatever the order of approvals:
- the requester never counts as an approver;
- in an ``any`` rule one person counts once (``threshold`` needs distinct people);
- in an ``all`` rule one person satisfies at most one spec (a maximum matching);
- an ``oncall`` spec is judged at the moment the approval was given;
- after escalation a person named by ``escalate_to`` may stand in for any unsatisfied spec.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from jitgate.domain.policy import ApprovalRule, ApproverSpec, Directory

Decision = Literal["approve", "deny"]
POLICY_ACTOR = "policy"


@dataclass(frozen=True)
class Approval:
    approver: str
    decision: Decision
    at: datetime
    comment: str | None = None
    via: str = "api"


@dataclass(frozen=True)
class Requirement:
    rule: int
    spec: dict[str, Any]
    satisfied_by: str | None


@dataclass(frozen=True)
class Evaluation:
    requirements: tuple[Requirement, ...]

    @property
    def satisfied(self) -> bool:
        return all(r.satisfied_by is not None for r in self.requirements)


def normal_email(email: str) -> str:
    """The form a person's email is stored and compared in: ``" SAM@Example.com"`` is
    ``sam@example.com``."""
    return email.strip().lower()


def same_person(a: str, b: str) -> bool:
    """Emails name people case-insensitively: ``SAM@Example.com`` is ``sam@example.com``."""
    return normal_email(a) == normal_email(b)


def spec_matches(
    spec: ApproverSpec, person: str, *, requester: str, directory: Directory, at: datetime
) -> bool:
    """Whether ``person`` is named by ``spec`` for a request by ``requester`` at time ``at``."""
    if same_person(person, requester):
        return False
    person = person.lower()
    if spec.kind == "group":
        return spec.value in directory.groups_of(person)
    if spec.kind == "team_lead":
        return directory.team_lead_of(requester) == person
    if spec.kind == "manager":
        return directory.manager_of(requester) == person
    if spec.kind == "oncall":
        return directory.on_call(spec.value, at) == person
    return same_person(spec.value, person)


def spec_candidates(
    spec: ApproverSpec, *, requester: str, directory: Directory, at: datetime
) -> frozenset[str]:
    """Everyone ``spec`` names at ``at``, never the requester."""
    if spec.kind == "group":
        found = directory.members(spec.value)
    elif spec.kind == "team_lead":
        found = frozenset(filter(None, [directory.team_lead_of(requester)]))
    elif spec.kind == "manager":
        found = frozenset(filter(None, [directory.manager_of(requester)]))
    elif spec.kind == "oncall":
        found = frozenset(filter(None, [directory.on_call(spec.value, at)]))
    else:
        found = frozenset([spec.value])
    return found - {requester}


def _stand_ins(rule: ApprovalRule, escalated: bool) -> tuple[ApproverSpec, ...]:
    return rule.escalate_to if escalated else ()


def can_decide(
    rules: Sequence[ApprovalRule],
    person: str,
    *,
    requester: str,
    directory: Directory,
    at: datetime,
    escalated: bool,
) -> bool:
    """Whether ``person`` is an eligible approver of a request with ``rules`` at ``at``."""
    if same_person(person, requester):
        return False
    for rule in rules:
        if rule.kind == "self":
            continue
        for spec in rule.specs + _stand_ins(rule, escalated):
            if spec_matches(spec, person, requester=requester, directory=directory, at=at):
                return True
    return False


def candidates(
    rules: Sequence[ApprovalRule],
    *,
    requester: str,
    directory: Directory,
    at: datetime,
    escalated: bool,
) -> frozenset[str]:
    """Everyone who could approve right now."""
    found: set[str] = set()
    for rule in rules:
        if rule.kind == "self":
            continue
        for spec in rule.specs + _stand_ins(rule, escalated):
            found |= spec_candidates(spec, requester=requester, directory=directory, at=at)
    return frozenset(found)


def evaluate(
    rules: Sequence[ApprovalRule],
    approvals: Iterable[Approval],
    *,
    requester: str,
    directory: Directory,
    escalated: bool,
) -> Evaluation:
    """Which requirement each approval satisfies; ``satisfied`` when every rule is met."""
    counted = _first_approvals(approvals, requester)
    rows: list[Requirement] = []
    for rule in rules:
        if rule.kind == "self":
            rows.append(Requirement(rule.index, {"self": True}, POLICY_ACTOR))
        elif rule.kind == "any":
            rows.extend(_evaluate_any(rule, counted, requester, directory, escalated))
        else:
            rows.extend(_evaluate_all(rule, counted, requester, directory, escalated))
    return Evaluation(tuple(rows))


def _first_approvals(approvals: Iterable[Approval], requester: str) -> list[Approval]:
    seen: set[str] = set()
    counted = []
    for approval in sorted(approvals, key=lambda a: a.at):
        if approval.decision != "approve" or same_person(approval.approver, requester):
            continue
        if approval.approver.lower() not in seen:
            seen.add(approval.approver.lower())
            counted.append(approval)
    return counted


def _fits(
    spec: ApproverSpec,
    rule: ApprovalRule,
    approval: Approval,
    requester: str,
    directory: Directory,
    escalated: bool,
) -> bool:
    for candidate in (spec, *_stand_ins(rule, escalated)):
        if spec_matches(
            candidate, approval.approver, requester=requester, directory=directory, at=approval.at
        ):
            return True
    return False


def _evaluate_any(
    rule: ApprovalRule,
    approvals: list[Approval],
    requester: str,
    directory: Directory,
    escalated: bool,
) -> list[Requirement]:
    spec = {"any": [s.as_dict() for s in rule.specs]}
    helpers = [
        a.approver
        for a in approvals
        if any(_fits(s, rule, a, requester, directory, escalated) for s in rule.specs)
    ]
    return [
        Requirement(rule.index, spec, helpers[n] if n < len(helpers) else None)
        for n in range(rule.threshold)
    ]


def _evaluate_all(
    rule: ApprovalRule,
    approvals: list[Approval],
    requester: str,
    directory: Directory,
    escalated: bool,
) -> list[Requirement]:
    fits = [
        [i for i, s in enumerate(rule.specs) if _fits(s, rule, a, requester, directory, escalated)]
        for a in approvals
    ]
    owner = _max_matching(fits, len(rule.specs))
    names = [None if o is None else approvals[o].approver for o in owner]
    return [Requirement(rule.index, spec.as_dict(), names[i]) for i, spec in enumerate(rule.specs)]


def _max_matching(fits: list[list[int]], spec_count: int) -> list[int | None]:
    """Kuhn's augmenting paths: specs -> approval index, each approval used at most once."""
    owner: list[int | None] = [None] * spec_count

    def place(person: int, visited: set[int]) -> bool:
        for spec in fits[person]:
            if spec in visited:
                continue
            visited.add(spec)
            current = owner[spec]
            if current is None or place(current, visited):
                owner[spec] = person
                return True
        return False

    for person in range(len(fits)):
        place(person, set())
    return owner
