"""Warnings about ``approval`` entries that a valid policy can still get wrong.

- an entry whose ``match`` fits no grant of any role is never used: a typo there
  (``environment: prodution``) sends the requests it was meant for to a later, maybe
  weaker entry; the warning suggests the nearest type or environment that is granted;
- an entry that an earlier entry matches wholly (same or wider type and environment) is
  never chosen, since the first fitting entry wins;
- a rule no request can ever satisfy: an ``any`` whose ``threshold`` exceeds the people
  its specs (and ``escalate_to``) can name, or an ``all`` whose specs cannot each get a
  different person (``all: [{manager: true}, {manager: true}]``). Counting is an upper
  bound, so a warning is never wrong: a manager or a team lead is one person per request,
  an on-call schedule at most everyone of its rotation and overrides, a group its members
  (a group with none has its own warning), a named user one person;
- ``escalate_after`` not shorter than ``pending_ttl``: requests expire before they are
  escalated, so no ``escalate_to`` ever applies (there is no per-rule setting).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from jitgate.adapters.policy.checks import Checker, closest
from jitgate.adapters.policy.problems import Path, locate
from jitgate.domain.durations import format_duration
from jitgate.domain.policy import ANY, ApprovalRule, ApproverSpec, Match, Policy, Scope


def approval_warnings(check: Checker, data: dict[str, Any], policy: Policy) -> None:
    _unused_entries(check, policy)
    for rule in policy.approval:
        _unsatisfiable(check, rule, policy)
    _late_escalation(check, data, policy)


def _unused_entries(check: Checker, policy: Policy) -> None:
    """Judged as requests are (``rules_for``): every scope a role grant reaches goes to the
    first entry that fits it."""
    reached = {s for role in policy.roles.values() for g in role.grants for s in policy.reach(g)}
    owner = {scope: policy.rule_for(scope) for scope in reached}
    chosen = {rule.index for rule in owner.values() if rule is not None}
    grants = [g for role in policy.roles.values() for g in role.grants]
    for position, rule in enumerate(policy.approval):
        where: Path = ("approval", rule.index, "match")
        fits = [scope for scope in reached if rule.match.fits(scope)]
        if not fits:
            hint = _hint(rule.match, grants)
            check.warn(
                where, f"no role grants {_label(rule.match)}, so this entry is never used{hint}"
            )
        elif rule.index not in chosen:
            wider = [e for e in policy.approval[:position] if _wider(e.match, rule.match)]
            takers = {r.index: r for r in (owner[s] for s in fits) if r is not None}
            taken = wider[:1] or [takers[i] for i in sorted(takers)]
            check.warn(where, _never_chosen(check, taken, where, whole=bool(wider)))


def _never_chosen(
    check: Checker, taken: Sequence[ApprovalRule], where: Path, *, whole: bool
) -> str:
    if whole:
        (wider,) = taken
        at = f"{_where(check, wider, where)} ({_label(wider.match)})"
        return f"never chosen: the entry at {at} comes first and matches all this one does"
    entries = ", ".join(f"{_where(check, r, where)}: {_label(r.match)}" for r in taken)
    return (
        "never chosen: every granted type/environment it matches goes to an earlier entry "
        f"({entries})"
    )


def _wider(first: Match, then: Match) -> bool:
    """``first`` fits every scope that ``then`` fits."""
    return all(
        (a or ANY) in (ANY, b or ANY)
        for a, b in ((first.type, then.type), (first.environment, then.environment))
    )


def _label(match: Match) -> str:
    return f"{match.type or ANY}/{match.environment or ANY}"


def _hint(match: Match, grants: Sequence[Scope]) -> str:
    types = {g.type for g in grants}
    envs = {g.environment for g in grants} - {ANY}
    for key, value, known in (
        ("type", match.type, types),
        ("environment", match.environment, envs),
    ):
        if value not in (None, ANY) and value not in known:
            near = closest(value, known)
            if near:
                return f" (did you mean {key} {near!r}?)"
    return ""


def _where(check: Checker, rule: ApprovalRule, here: Path) -> str:
    """``line 12``, or ``other.yaml:12`` when ``rule`` was written in another file."""
    them = locate(check.locs, ("approval", rule.index), check.file)
    me = locate(check.locs, here, check.file)
    return f"line {them.line}" if them.file == me.file else f"{them.file}:{them.line}"


def _unsatisfiable(check: Checker, rule: ApprovalRule, policy: Policy) -> None:
    if rule.kind == "self" or _names_an_empty_group(rule, policy):
        return
    extra = _people(rule.escalate_to, policy)
    named = [_people((spec,), policy) | extra for spec in rule.specs]
    after = " and escalate_to" if rule.escalate_to else ""
    if rule.kind == "any":
        most = len(frozenset().union(*named))
        if rule.threshold > most:
            check.warn(
                ("approval", rule.index, "threshold"),
                f"threshold {rule.threshold} needs that many different approvers, but its "
                f"specs{after} can name at most {most}: no request can ever be approved",
            )
        return
    most = _most_distinct(named)
    if most < len(rule.specs):
        check.warn(
            ("approval", rule.index, "all"),
            f"needs {len(rule.specs)} different people (one per spec), but its specs{after} "
            f"can name at most {most}: no request can ever be approved",
        )


def _names_an_empty_group(rule: ApprovalRule, policy: Policy) -> bool:
    specs = (*rule.specs, *rule.escalate_to)
    return any(s.kind == "group" and not policy.directory.members(s.value) for s in specs)


def _people(specs: Collection[ApproverSpec], policy: Policy) -> frozenset[str]:
    """Everyone ``specs`` may ever name for one request (an upper bound); ``<...>`` stands
    for the one person a requester-dependent spec names."""
    found: set[str] = set()
    for spec in specs:
        if spec.kind == "group":
            found |= policy.directory.members(spec.value)
        elif spec.kind == "user":
            found.add(spec.value)
        elif spec.kind == "oncall":
            schedule = policy.directory.oncall[spec.value]
            found.update(schedule.rotation, (o.user for o in schedule.overrides))
        else:
            found.add(f"<{spec.kind}>")
    return frozenset(found)


def _most_distinct(named: Sequence[frozenset[str]]) -> int:
    """How many of the specs can each get a different person (Kuhn's augmenting paths)."""
    owner: dict[str, int] = {}

    def place(spec: int, seen: set[str]) -> bool:
        for person in sorted(named[spec] - seen):
            seen.add(person)
            if person not in owner or place(owner[person], seen):
                owner[person] = spec
                return True
        return False

    return sum(place(spec, set()) for spec in range(len(named)))


def _late_escalation(check: Checker, data: dict[str, Any], policy: Policy) -> None:
    settings = policy.settings
    if settings.escalate_after < settings.pending_ttl:
        return
    written = data.get("settings") or {}
    key = "escalate_after" if "escalate_after" in written else "pending_ttl"
    where: Path = ("settings", key) if key in written else ("settings",)
    check.warn(
        where,
        f"escalate_after ({format_duration(settings.escalate_after)}) is not shorter than "
        f"pending_ttl ({format_duration(settings.pending_ttl)}): a request expires before it "
        "is escalated, so no escalate_to ever applies",
    )
