"""Reader for ``directory``: users, teams and on-call rotations.

Invariants:
- users are keyed by lower-cased email; two keys that differ only in case are
  a problem; every email inside the directory is lower-cased too;
- an on-call rotation has at least one person, a positive shift, a start that
  is timezone-aware (naive means UTC) and overrides whose ``from < until``; overrides
  may overlap (``OncallSchedule.on_call``: the one that started latest wins).
"""

from __future__ import annotations

from typing import Any

from jitgate.adapters.policy.checks import Checker
from jitgate.adapters.policy.problems import Path
from jitgate.domain.policy import Directory, OncallSchedule, Override, Team, User

_USER_KEYS = ("team", "manager", "groups")
_ONCALL_KEYS = ("rotation", "shift", "starts", "overrides")
_OVERRIDE_KEYS = ("user", "from", "until")


def read_directory(check: Checker, raw: Any) -> Directory:
    if raw is None:
        return Directory()
    data = check.mapping(raw, ("directory",), ("users", "teams", "oncall"))
    if data is None:
        return Directory()
    return Directory(
        users=_users(check, data.get("users")),
        teams=_teams(check, data.get("teams")),
        oncall=_schedules(check, data.get("oncall")),
    )


def _users(check: Checker, raw: Any) -> dict[str, User]:
    out: dict[str, User] = {}
    for key, value in check.section(raw, ("directory", "users")).items():
        path: Path = ("directory", "users", key)
        email = check.email(key, path)
        data = check.mapping({} if value is None else value, path, _USER_KEYS)
        if email is None or data is None:
            continue
        if email in out:
            check.error(path, f"user {email!r} is listed twice (emails ignore case)")
            continue
        team = check.name(data["team"], (*path, "team")) if data.get("team") is not None else None
        manager = None
        if data.get("manager") is not None:
            manager = check.email(data["manager"], (*path, "manager"))
        groups = check.names(data["groups"], (*path, "groups")) if "groups" in data else ()
        out[email] = User(email, team, manager, groups)
    return out


def _teams(check: Checker, raw: Any) -> dict[str, Team]:
    out: dict[str, Team] = {}
    for key, value in check.section(raw, ("directory", "teams")).items():
        path: Path = ("directory", "teams", key)
        name = check.name(key, path)
        data = check.mapping({} if value is None else value, path, ("lead",))
        if name is None or data is None:
            continue
        lead = check.email(data["lead"], (*path, "lead")) if data.get("lead") is not None else None
        out[name] = Team(name, lead)
    return out


def _schedules(check: Checker, raw: Any) -> dict[str, OncallSchedule]:
    out: dict[str, OncallSchedule] = {}
    for key, value in check.section(raw, ("directory", "oncall")).items():
        path: Path = ("directory", "oncall", key)
        name = check.name(key, path)
        data = check.mapping(value, path, _ONCALL_KEYS, required=("rotation", "shift", "starts"))
        if name is None or data is None:
            continue
        schedule = _schedule(check, name, data, path)
        if schedule is not None:
            out[name] = schedule
    return out


def _schedule(check: Checker, name: str, data: dict[str, Any], path: Path) -> OncallSchedule | None:
    rotation: tuple[str, ...] = ()
    if "rotation" in data:
        rotation = check.emails(data["rotation"], (*path, "rotation"), non_empty=True)
    shift = check.duration(data["shift"], (*path, "shift")) if "shift" in data else None
    starts = check.instant(data["starts"], (*path, "starts")) if "starts" in data else None
    overrides = _overrides(check, data.get("overrides"), (*path, "overrides"))
    if not rotation or shift is None or starts is None:
        return None
    return OncallSchedule(name, rotation, shift, starts, overrides)


def _overrides(check: Checker, raw: Any, path: Path) -> tuple[Override, ...]:
    if raw is None:
        return ()
    listed = check.items(raw, path)
    out: list[Override] = []
    for index, item in enumerate(listed or []):
        where = (*path, index)
        data = check.mapping(item, where, _OVERRIDE_KEYS, required=_OVERRIDE_KEYS)
        if data is None or not all(k in data for k in _OVERRIDE_KEYS):
            continue
        user = check.email(data["user"], (*where, "user"))
        start = check.instant(data["from"], (*where, "from"))
        until = check.instant(data["until"], (*where, "until"))
        if start is not None and until is not None and start >= until:
            check.error((*where, "until"), "must be later than 'from'")
            continue
        if user is not None and start is not None and until is not None:
            out.append(Override(user, start, until))
    return tuple(out)
