"""Readers for ``notifications`` (channels, routes) and ``backends``, and the config contract
of the plugins that channels and backends name.

Invariants:
- a channel or backend is a mapping whose ``type`` names an installed plugin (entry point
  groups ``jitgate.notifiers`` and ``jitgate.backends``, looked up on first use during a
  load, never at import time); its other keys stay a plain dict for the plugin to read
  (copied, so the policy owns its data);
- a plugin class that declares ``CONFIG_KEYS`` (the keys it reads besides ``type``) gets
  every other key reported as unknown; one with a ``config_problems(config)`` classmethod
  gets the problems it returns reported under the entry's path. A plugin that declares
  neither (or fails to load) is taken as written;
- no key at any depth of a channel or backend looks like an inline secret, and no value
  is a URL carrying a credential (a password, or a query parameter such as ``token`` or
  ``sig``): secrets come from the environment through a key ending in ``_env`` whose
  value is an environment variable name (never read here), such as ``url_env`` holding a
  whole URL;
- routes are keyed by SPEC §6 events, address one audience and only name
  channels that exist. No routes written means none (the notifier applies the
  RFC 10.5.2 defaults).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Collection, Mapping
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any, Literal

from jitgate.adapters.plugin_config import ConfigProblem, url_credentials
from jitgate.adapters.policy.checks import Checker, closest
from jitgate.adapters.policy.problems import Path
from jitgate.domain.policy import Notifications, Route

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

Kind = Literal["channel", "backend"]


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


def check_no_secrets(
    check: Checker, data: Any, path: Path, keys: Collection[str] | None = None
) -> None:
    """Walk ``data`` and report inline-secret keys, URLs carrying a credential and malformed
    ``*_env`` values. ``keys``: what the entry's plugin reads (``CONFIG_KEYS``), to name the
    ``*_env`` form of a URL setting only where there is one (``None``: not declared)."""
    if isinstance(data, list):
        for index, item in enumerate(data):
            check_no_secrets(check, item, (*path, index), ())
        return
    if not isinstance(data, dict):
        _check_url(check, data, path, None)
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
        elif isinstance(value, str):
            offered = keys is None or f"{key}_env" in keys
            _check_url(check, value, where, f"{key}_env" if offered else None)
        else:
            check_no_secrets(check, value, where, ())


def _check_url(check: Checker, value: Any, where: Path, env_key: str | None) -> None:
    """A URL carrying a credential is an error that names the ``env_key`` to use instead."""
    what = url_credentials(value)
    if what is None:
        return
    fix = (
        f"use '{env_key}' naming an environment variable that holds the whole URL"
        if env_key
        else "take the credential out of the URL (this setting has no *_env form)"
    )
    check.error(where, f"a URL holding {what}; secrets never go in the policy: {fix}")


class PluginCatalog:
    """Plugin classes by type name, for channels and for backends.

    Given mappings are used as they are (tests, tools); otherwise the installed plugins are
    found by entry point the first time a kind is asked for. A type whose plugin fails to
    load maps to ``None``: it exists, but its entries cannot be checked.
    """

    def __init__(
        self,
        *,
        channels: Mapping[str, object | None] | None = None,
        backends: Mapping[str, object | None] | None = None,
    ) -> None:
        self._given: dict[Kind, Mapping[str, object | None] | None] = {
            "channel": channels,
            "backend": backends,
        }
        self._types: dict[Kind, dict[str, object | None]] = {}

    def types(self, kind: Kind) -> Mapping[str, object | None]:
        if kind not in self._types:
            given = self._given[kind]
            self._types[kind] = dict(given) if given is not None else _installed(kind)
        return self._types[kind]


def _installed(kind: Kind) -> dict[str, object | None]:
    from jitgate.adapters.backends.base import GROUP as BACKENDS
    from jitgate.adapters.notifiers.registry import GROUP as NOTIFIERS

    found: dict[str, object | None] = {}
    for entry in entry_points(group=NOTIFIERS if kind == "channel" else BACKENDS):
        if entry.name in found:
            continue
        try:
            found[entry.name] = entry.load()
        except Exception:  # broken plugins are reported where they are used, not here
            found[entry.name] = None
    return found


def _plugin(check: Checker, raw: Any, path: Path) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        check.error(path, "must be a mapping with a 'type'")
        return None
    if "type" not in raw:
        check.error((*path, "type"), "'type' is required")
        return None
    return copy.deepcopy(raw)


def _entry(
    check: Checker, key: Any, raw: Any, path: Path, plugins: PluginCatalog, kind: Kind
) -> tuple[str, dict[str, Any]] | None:
    """``(name, config)`` of one channel or backend, its type resolved and its keys checked.

    An entry of an unknown type is still returned (after its problem is recorded), so that
    roles and routes naming it add no second problem.
    """
    name = check.name(key, path)
    config = _plugin(check, raw, path)
    if config is None:
        return None
    written = check.name(config["type"], (*path, "type"))
    types = plugins.types(kind) if written is not None else {}
    keys = getattr(types.get(written or ""), "CONFIG_KEYS", None)
    check_no_secrets(check, config, path, keys)
    if name is None or written is None:
        return None
    if written in types:
        _check_config(check, config, path, types[written], written)
    else:
        check.error((*path, "type"), _unknown_type(written, types, kind))
    return name, {**config, "type": written}


def _unknown_type(written: str, types: Collection[str], kind: Kind) -> str:
    near = closest(written, types)
    hint = f"; did you mean {near!r}?" if near else ""
    installed = ", ".join(sorted(types)) or "none"
    return f"unknown {kind} type {written!r}{hint} (installed: {installed})"


def _check_config(
    check: Checker, config: dict[str, Any], path: Path, plugin: object, kind: str
) -> None:
    """Unknown keys and bad values, as far as the plugin declares them."""
    keys = getattr(plugin, "CONFIG_KEYS", None)
    if keys is not None:
        written = {k: v for k, v in config.items() if not looks_secret(str(k))}
        check.known_keys(written, path, ("type", *keys))  # inline secrets are reported already
    judge = getattr(plugin, "config_problems", None)
    if callable(judge):
        for sub, message in _problems_of(judge, config, kind):
            check.error((*path, *sub), message)


def _problems_of(
    judge: Callable[..., Any], config: dict[str, Any], kind: str
) -> list[ConfigProblem]:
    try:
        found = [(tuple(sub), str(message)) for sub, message in judge(_frozen(config))]
    except Exception as exc:  # a third-party check must not take the loader down
        return [((), f"the {kind!r} plugin failed to check this entry ({type(exc).__name__})")]
    return found


def _frozen(config: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(copy.deepcopy(config))


def read_backends(
    check: Checker, raw: Any, plugins: PluginCatalog | None = None
) -> dict[str, dict[str, Any]]:
    catalog = plugins or PluginCatalog()
    out: dict[str, dict[str, Any]] = {}
    for key, value in check.section(raw, ("backends",)).items():
        found = _entry(check, key, value, ("backends", key), catalog, "backend")
        if found is not None:
            out[found[0]] = found[1]
    return out


def read_notifications(
    check: Checker, raw: Any, plugins: PluginCatalog | None = None
) -> Notifications:
    if raw is None:
        return Notifications()
    data = check.mapping(raw, ("notifications",), ("channels", "routes"))
    if data is None:
        return Notifications()
    channels = _channels(check, data.get("channels"), plugins or PluginCatalog())
    routes = _routes(check, data.get("routes"), channels)
    return Notifications(channels=channels, routes=routes)


def _channels(check: Checker, raw: Any, plugins: PluginCatalog) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in check.section(raw, ("notifications", "channels")).items():
        path: Path = ("notifications", "channels", key)
        found = _entry(check, key, value, path, plugins, "channel")
        if found is not None:
            out[found[0]] = found[1]
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
