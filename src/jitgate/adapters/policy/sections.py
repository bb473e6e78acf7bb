"""Readers for ``settings``, ``resources``, ``roles`` and ``purposes``.

Invariants:
- every key of every entry is known (a typo is a problem, with a suggestion);
- every duration goes through ``parse_duration``; ``default <= max`` wherever
  both exist;
- a role's ``backends`` only name keys of the top-level ``backends:`` section;
- settings not written keep the defaults of ``jitgate.domain.policy.Settings``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import timedelta
from typing import Any

from jitgate.adapters.policy.checks import Checker
from jitgate.adapters.policy.problems import Path
from jitgate.domain.policy import ANY, Purpose, Resource, Role, Scope, Settings

_SETTINGS_KEYS = (
    "public_url",
    "pending_ttl",
    "escalate_after",
    "expiry_warning",
    "sessions_at_expiry",
    "max_schedule_ahead",
    "admins",
)
_DURATION_SETTINGS = ("pending_ttl", "escalate_after", "expiry_warning", "max_schedule_ahead")
_SCOPE_KEYS = ("type", "environment")
_ROLE_KEYS = (
    "description",
    "grants",
    "requestable_by",
    "default_duration",
    "max_duration",
    "extendable",
    "backends",
)


def read_settings(check: Checker, raw: Any) -> Settings:
    path: Path = ("settings",)
    settings = Settings()
    if raw is None:
        return settings
    data = check.mapping(raw, path, _SETTINGS_KEYS)
    if data is None:
        return settings
    changes: dict[str, Any] = {}
    if "public_url" in data:
        changes["public_url"] = _url(check, data["public_url"], (*path, "public_url"))
    for key in _DURATION_SETTINGS:
        if key in data:
            changes[key] = check.duration(data[key], (*path, key))
    if "sessions_at_expiry" in data:
        where = (*path, "sessions_at_expiry")
        changes["sessions_at_expiry"] = check.choice(
            data["sessions_at_expiry"], where, ("continue", "terminate")
        )
    if "admins" in data:
        changes["admins"] = check.names(data["admins"], (*path, "admins"))
    return replace(settings, **{k: v for k, v in changes.items() if v is not None})


def _url(check: Checker, value: Any, path: Path) -> str | None:
    text = check.text(value, path)
    if text is not None and not text.startswith(("http://", "https://")):
        check.error(path, f"must be an http:// or https:// URL, not {text!r}")
        return None
    return text.rstrip("/") if text is not None else None


def read_scope(check: Checker, raw: Any, path: Path, *, any_ok: bool) -> Scope | None:
    """``{type, environment}``; ``any`` is allowed for the environment when ``any_ok``."""
    data = check.mapping(raw, path, _SCOPE_KEYS, required=_SCOPE_KEYS)
    if data is None or not all(k in data for k in _SCOPE_KEYS):
        return None
    kind = check.name(data["type"], (*path, "type"))
    env = check.name(data["environment"], (*path, "environment"))
    if kind == ANY:
        check.error((*path, "type"), "must name one access type, not 'any'")
        return None
    if env == ANY and not any_ok:
        check.error((*path, "environment"), "must name one environment, not 'any'")
        return None
    if kind is None or env is None:
        return None
    return Scope(kind, env)


def read_resources(check: Checker, raw: Any) -> dict[str, Resource]:
    out: dict[str, Resource] = {}
    for key, value in check.section(raw, ("resources",)).items():
        path: Path = ("resources", key)
        name = check.name(key, path)
        scope = read_scope(check, value, path, any_ok=False)
        if name is not None and scope is not None:
            out[name] = Resource(name, scope.type, scope.environment)
    return out


def read_purposes(check: Checker, raw: Any) -> dict[str, Purpose]:
    out: dict[str, Purpose] = {}
    for key, value in check.section(raw, ("purposes",)).items():
        path: Path = ("purposes", key)
        name = check.name(key, path)
        data = check.mapping(value, path, ("default", "max"))
        if name is None or data is None:
            continue
        default = check.duration(data["default"], (*path, "default")) if "default" in data else None
        cap = check.duration(data["max"], (*path, "max")) if "max" in data else None
        check.ordered(default, cap, (*path, "default"), "default is longer than max")
        out[name] = Purpose(name, default, cap)
    return out


def read_roles(check: Checker, raw: Any, backends: Collection[str]) -> dict[str, Role]:
    out: dict[str, Role] = {}
    for key, value in check.section(raw, ("roles",)).items():
        path: Path = ("roles", key)
        name = check.name(key, path)
        data = check.mapping(value, path, _ROLE_KEYS, required=("grants",))
        if name is None or data is None:
            continue
        role = _role(check, name, data, path, backends)
        if role is not None:
            out[name] = role
    return out


def _role(
    check: Checker, name: str, data: dict[str, Any], path: Path, backends: Collection[str]
) -> Role | None:
    grants = _grants(check, data.get("grants"), (*path, "grants")) if "grants" in data else ()
    default = _opt(check, data, "default_duration", path)
    cap = _opt(check, data, "max_duration", path)
    check.ordered(
        default, cap, (*path, "default_duration"), "default_duration is longer than max_duration"
    )
    description = ""
    if data.get("description") is not None:
        description = check.text(data["description"], (*path, "description")) or ""
    extendable = False
    if "extendable" in data:
        extendable = bool(check.flag(data["extendable"], (*path, "extendable")))
    requestable: tuple[str, ...] = ()
    if "requestable_by" in data:
        requestable = check.names(data["requestable_by"], (*path, "requestable_by"))
    used = _role_backends(check, data.get("backends"), (*path, "backends"), backends)
    if not grants:
        return None
    return Role(name, grants, requestable, description, default, cap, extendable, used)


def _opt(check: Checker, data: dict[str, Any], key: str, path: Path) -> timedelta | None:
    return check.duration(data[key], (*path, key)) if key in data else None


def _grants(check: Checker, raw: Any, path: Path) -> tuple[Scope, ...]:
    listed = check.items(raw, path, non_empty=True)
    if listed is None:
        return ()
    found = (read_scope(check, item, (*path, i), any_ok=True) for i, item in enumerate(listed))
    return tuple(dict.fromkeys(s for s in found if s is not None))


def _role_backends(
    check: Checker, raw: Any, path: Path, backends: Collection[str]
) -> tuple[str, ...]:
    if raw is None:
        return ()
    names = check.names(raw, path)
    listed = raw if isinstance(raw, list) else []
    for index, item in enumerate(listed):
        if isinstance(item, str) and item.strip() in names and item.strip() not in backends:
            known = ", ".join(sorted(backends)) or "none defined"
            check.error((*path, index), f"unknown backend {item!r} (backends: {known})")
    return tuple(n for n in names if n in backends)
