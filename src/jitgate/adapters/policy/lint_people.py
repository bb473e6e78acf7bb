"""Warnings about people a policy names who are not users of its directory.

A manager, a team lead, a ``{user: ...}`` approver (in ``any``, ``all`` or
``escalate_to``), a rotation member or an override's user that ``directory.users`` does
not list is most often a typo, and then nobody can approve as them (or the schedule has
nobody reachable on call). Each warning points at where the email is written, with the
nearest user of the directory when one is close. Emails compare case-insensitively.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from jitgate.adapters.policy.checks import Checker, near_email_hint
from jitgate.adapters.policy.problems import Path


def people_warnings(check: Checker, data: dict[str, Any], users: Collection[str]) -> None:
    """Warn about each email of ``data`` (a valid policy) not among ``users``."""
    known = set(users)
    for where, role, email in _named_people(data):
        if email not in known:
            check.warn(
                where, f"{role} {email!r} is not in directory.users{near_email_hint(email, known)}"
            )


def _named_people(data: dict[str, Any]) -> Iterator[tuple[Path, str, str]]:
    directory = _mapping(data.get("directory"))
    for key, user in _mapping(directory.get("users")).items():
        manager = _mapping(user).get("manager")
        if isinstance(manager, str):
            yield ("directory", "users", key, "manager"), "manager", _email(manager)
    for key, team in _mapping(directory.get("teams")).items():
        lead = _mapping(team).get("lead")
        if isinstance(lead, str):
            yield ("directory", "teams", key, "lead"), "team lead", _email(lead)
    for key, schedule in _mapping(directory.get("oncall")).items():
        yield from _schedule_people(("directory", "oncall", key), _mapping(schedule))
    for index, entry in enumerate(_items(data.get("approval"))):
        for kind in ("any", "all", "escalate_to"):
            for spec_index, spec in enumerate(_items(_mapping(entry).get(kind))):
                user = _mapping(spec).get("user")
                if isinstance(user, str):
                    yield ("approval", index, kind, spec_index, "user"), "approver", _email(user)


def _schedule_people(path: Path, schedule: dict[str, Any]) -> Iterator[tuple[Path, str, str]]:
    for index, member in enumerate(_items(schedule.get("rotation"))):
        if isinstance(member, str):
            yield (*path, "rotation", index), "on-call", _email(member)
    for index, override in enumerate(_items(schedule.get("overrides"))):
        user = _mapping(override).get("user")
        if isinstance(user, str):
            yield (*path, "overrides", index, "user"), "on-call cover", _email(user)


def _email(text: str) -> str:
    return text.strip().lower()


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
