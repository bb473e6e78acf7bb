"""Readers for ``notifications`` (channels, routes) and ``backends``.

Invariants:
- a channel or backend is a mapping with a ``type``; its other keys stay a plain
  dict for the plugin to read (copied, so the policy owns its data);
- no key at any depth of a channel or backend looks like an inline secret:
  secrets come from the environment through a key ending in ``_env`` whose
  value is an environment variable name (never read here);
- routes are keyed by SPEC §6 events, address one audience and only name
  channels that exist. No routes written means none (the notifier applies the
  RFC 10.5.2 defaults).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from jitgate.adapters.policy.checks import Checker
from jitgate.adapters.policy.problems import Path
from jitgate.domain.policy import Notifications, Route

CHANNEL_TYPES = ("slack", "pagerduty", "email", "teams", "webhook")
EVENTS = (
    "request.created",
    "request.approved",
    "request.denied",
    "request.expired",
    "request.escalated",
    "access.expiring",
    "request.urgent",
)
AUDIENCES = ("approvers", "requester", "oncall", "escalate_to")

# With the suffixes and the words below this catches secret, password, token,
# routing_key, api_key, client_secret, webhook_url, dsn and friends.
_SECRET_NAMES = frozenset(
    {"key", "pass", "passwd", "apikey", "webhook_url", "credentials", "authorization", "dsn"}
)
_SECRET_SUFFIXES = ("_secret", "_password", "_token", "_key", "_webhook_url", "_dsn")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def looks_secret(key: str) -> bool:
    """True for keys that would hold a secret inline (``token``, ``webhook_url``…)."""
    name = key.lower()
    if name.endswith("_env"):
        return False
    return (
        name in _SECRET_NAMES
        or name.endswith(_SECRET_SUFFIXES)
        or any(word in name for word in ("password", "secret", "token"))
    )


def check_no_secrets(check: Checker, data: Any, path: Path) -> None:
    """Walk ``data`` and report inline-secret keys and malformed ``*_env`` values."""
    if isinstance(data, list):
        for index, item in enumerate(data):
            check_no_secrets(check, item, (*path, index))
        return
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        where = (*path, key)
        if looks_secret(key):
            check.error(
                where,
                f"{key!r} looks like an inline secret; secrets never go in the policy: "
                f"use '{key}_env' naming an environment variable that holds it",
            )
        elif key.endswith("_env"):
            if not isinstance(value, str) or not _ENV_NAME.match(value):
                check.error(where, "must name an environment variable (letters, digits, _)")
        else:
            check_no_secrets(check, value, where)


def _plugin(check: Checker, raw: Any, path: Path) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        check.error(path, "must be a mapping with a 'type'")
        return None
    if "type" not in raw:
        check.error((*path, "type"), "'type' is required")
        return None
    check_no_secrets(check, raw, path)
    return copy.deepcopy(raw)


def read_backends(check: Checker, raw: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in check.section(raw, ("backends",)).items():
        path: Path = ("backends", key)
        name = check.name(key, path)
        config = _plugin(check, value, path)
        if name is None or config is None:
            continue
        kind = check.name(config["type"], (*path, "type"))
        if kind is not None:
            out[name] = {**config, "type": kind}
    return out


def read_notifications(check: Checker, raw: Any) -> Notifications:
    if raw is None:
        return Notifications()
    data = check.mapping(raw, ("notifications",), ("channels", "routes"))
    if data is None:
        return Notifications()
    channels = _channels(check, data.get("channels"))
    routes = _routes(check, data.get("routes"), channels)
    return Notifications(channels=channels, routes=routes)


def _channels(check: Checker, raw: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in check.section(raw, ("notifications", "channels")).items():
        path: Path = ("notifications", "channels", key)
        name = check.name(key, path)
        config = _plugin(check, value, path)
        if name is None or config is None:
            continue
        kind = check.choice(config["type"], (*path, "type"), CHANNEL_TYPES)
        if kind is not None:
            out[name] = config
    return out


def _routes(check: Checker, raw: Any, channels: dict[str, dict[str, Any]]) -> dict[str, Route]:
    out: dict[str, Route] = {}
    for key, value in check.section(raw, ("notifications", "routes")).items():
        path: Path = ("notifications", "routes", key)
        if key not in EVENTS:
            check.error(path, f"unknown event {key!r} (events: {', '.join(EVENTS)})")
            continue
        data = check.mapping(value, path, ("to", "via"), required=("to", "via"))
        if data is None or not all(k in data for k in ("to", "via")):
            continue
        to = check.choice(data["to"], (*path, "to"), AUDIENCES)
        via = check.names(data["via"], (*path, "via"), non_empty=True)
        listed = data["via"] if isinstance(data["via"], list) else []
        for index, channel in enumerate(listed):
            if isinstance(channel, str) and channel.strip() in via and channel not in channels:
                known = ", ".join(sorted(channels)) or "none defined"
                check.error((*path, "via", index), f"unknown channel {channel!r} ({known})")
        if to is not None and via and all(c in channels for c in via):
            out[key] = Route(to, via)
    return out
