"""Reader for ``approval``: the ordered list of approval rules (RFC 10.3).

Invariants:
- an entry has exactly one of ``rule: self``, ``any: [specs]``, ``all: [specs]``;
- ``threshold`` (N >= 1) only goes with ``any``; ``escalate_to`` never with ``self``;
- an approver spec is a mapping with exactly one of ``group``, ``team_lead: true``,
  ``manager: true``, ``oncall`` (a schedule of ``directory.oncall``) or ``user``
  (an email, lower-cased);
- ``ApprovalRule.index`` is the entry's position in the (merged) list.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

from jitgate.adapters.policy.checks import Checker
from jitgate.adapters.policy.problems import Path
from jitgate.domain.policy import ANY, ApprovalRule, ApproverSpec, Match, RuleKind, SpecKind

_ENTRY_KEYS = ("match", "rule", "any", "all", "threshold", "escalate_to")
_SPEC_KINDS = ("group", "team_lead", "manager", "oncall", "user")
_RULE_KEYS = ("rule", "any", "all")


def read_approval(check: Checker, raw: Any, schedules: Collection[str]) -> tuple[ApprovalRule, ...]:
    if raw is None:
        return ()
    listed = check.items(raw, ("approval",))
    out: list[ApprovalRule] = []
    for index, item in enumerate(listed or []):
        rule = _entry(check, item, index, schedules)
        if rule is not None:
            out.append(rule)
    return tuple(out)


def _entry(check: Checker, raw: Any, index: int, schedules: Collection[str]) -> ApprovalRule | None:
    path: Path = ("approval", index)
    data = check.mapping(raw, path, _ENTRY_KEYS)
    if data is None:
        return None
    match = _match(check, data.get("match"), (*path, "match"))
    kind = _kind(check, data, path)
    specs: tuple[ApproverSpec, ...] = ()
    if kind in ("any", "all"):
        # ``all: [{group: sre}, {group: sre}]`` asks for two different SREs: kept twice
        specs = read_specs(
            check, data[kind], (*path, kind), schedules, non_empty=True, unique=kind == "any"
        )
    threshold = _threshold(check, data, path, kind)
    escalate: tuple[ApproverSpec, ...] = ()
    if "escalate_to" in data:
        escalate = read_specs(check, data["escalate_to"], (*path, "escalate_to"), schedules)
        if kind == "self":
            check.error((*path, "escalate_to"), "has no effect with 'rule: self'")
    if match is None or kind is None:
        return None
    return ApprovalRule(index, match, kind, specs, threshold, escalate)


def _match(check: Checker, raw: Any, path: Path) -> Match | None:
    """``{type?, environment?}``; absent means "every type in every environment"."""
    if raw is None:
        return Match()
    data = check.mapping(raw, path, ("type", "environment"))
    if data is None:
        return None
    kind = check.name(data["type"], (*path, "type")) if "type" in data else None
    env = check.name(data["environment"], (*path, "environment")) if "environment" in data else None
    if ("type" in data and kind is None) or ("environment" in data and env is None):
        return None
    return Match(type=kind, environment=env)


def _kind(check: Checker, data: dict[str, Any], path: Path) -> RuleKind | None:
    present = [key for key in _RULE_KEYS if key in data]
    if len(present) != 1:
        found = ", ".join(present) if present else "none"
        check.error(path, f"needs exactly one of 'rule: self', 'any' or 'all' (found: {found})")
        return None
    if present[0] == "rule":
        if data["rule"] != "self":
            check.error((*path, "rule"), f"the only rule is 'self', not {data['rule']!r}")
            return None
        return "self"
    return cast(RuleKind, present[0])


def _threshold(check: Checker, data: dict[str, Any], path: Path, kind: RuleKind | None) -> int:
    if "threshold" not in data:
        return 1
    where = (*path, "threshold")
    if kind != "any":
        check.error(where, "only goes with 'any'")
        return 1
    return check.integer(data["threshold"], where, minimum=1) or 1


def read_specs(
    check: Checker,
    raw: Any,
    path: Path,
    schedules: Collection[str],
    *,
    non_empty: bool = False,
    unique: bool = True,
) -> tuple[ApproverSpec, ...]:
    """The specs listed at ``path``; a repeated one is kept only if not ``unique``."""
    listed = check.items(raw, path, non_empty=non_empty)
    found = (_spec(check, item, (*path, i), schedules) for i, item in enumerate(listed or []))
    specs = [s for s in found if s is not None]
    return tuple(dict.fromkeys(specs)) if unique else tuple(specs)


def _spec(check: Checker, raw: Any, path: Path, schedules: Collection[str]) -> ApproverSpec | None:
    data = check.mapping(raw, path, _SPEC_KINDS)
    if data is None:
        return None
    if len(data) != 1:
        check.error(path, f"needs exactly one of {', '.join(_SPEC_KINDS)}, found {len(data)}")
        return None
    key, value = next(iter(data.items()))
    if key not in _SPEC_KINDS:
        return None
    kind = cast(SpecKind, key)
    where = (*path, key)
    if kind in ("team_lead", "manager"):
        if value is not True:
            check.error(where, f"must be 'true' ({{{key}: true}}), not {value!r}")
            return None
        return ApproverSpec(kind)
    if kind == "user":
        email = check.email(value, where)
        return ApproverSpec(kind, email) if email else None
    name = check.name(value, where)
    if name is None:
        return None
    if kind == "oncall" and name not in schedules:
        known = ", ".join(sorted(schedules)) or "none defined"
        check.error(where, f"unknown on-call schedule {name!r} (directory.oncall: {known})")
        return None
    if name == ANY:
        check.error(where, f"'{ANY}' is not a {kind} name")
        return None
    return ApproverSpec(kind, name)
