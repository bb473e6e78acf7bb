"""Notifier plugins by entry point, and the configured channels of the policy in force.

Invariants: a plugin is looked up by the channel's ``type`` in the ``jitgate.notifiers``
entry point group; there is one notifier instance per configured channel, built from the
channel's config when the policy is loaded or replaced and never mutated; a channel whose
``*_env`` variables are missing is disabled (warned about once), not a crash, and is not
``sendable`` here, so this process leaves its notifications to processes that have it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping
from importlib.metadata import entry_points
from typing import Any, cast

from jitgate.adapters.notifiers.base import ChannelConfigError, Mode, NotifierDeps, NotifierType
from jitgate.domain.policy import Policy
from jitgate.service.delivery import Notifier

log = logging.getLogger("jitgate.notifiers")
GROUP = "jitgate.notifiers"


def notifier_types() -> dict[str, NotifierType]:
    """Every installed notifier plugin, by channel type."""
    found: dict[str, NotifierType] = {}
    for entry in entry_points(group=GROUP):
        try:
            found[entry.name] = cast(NotifierType, entry.load())
        except Exception as exc:  # one broken plugin must not take the others down
            log.error("notifier plugin %s failed to load: %s", entry.name, type(exc).__name__)
    return found


class ChannelSet:
    """The notifiers of the channels of one policy, rebuilt when the policy changes."""

    def __init__(self, deps: NotifierDeps, types: Mapping[str, NotifierType] | None = None) -> None:
        self._deps = deps
        self._types = dict(types) if types is not None else notifier_types()
        self._lock = threading.Lock()
        self._built_for: str | None = None
        self._built: dict[str, Notifier] = {}
        self._warned: set[str] = set()

    def mode(self, name: str, config: Mapping[str, Any]) -> Mode | None:
        """How the channel addresses people, or ``None`` when it cannot be used here."""
        kind = self._types.get(str(config.get("type")))
        if kind is None:
            self._warn(name, f"no notifier plugin for type {config.get('type')!r}")
            return None
        missing = kind.missing_env(config, self._deps.env)
        if missing:
            self._warn(name, f"environment variable(s) {', '.join(missing)} not set")
            return None
        return kind.mode(config, self._deps.env)

    def get(self, name: str, policy: Policy) -> Notifier | None:
        return self._for(policy).get(name)

    def sendable(self, policy: Policy) -> Collection[str]:
        """The channels of ``policy`` this process can send: configured and enabled here."""
        return frozenset(self._for(policy))

    def _for(self, policy: Policy) -> dict[str, Notifier]:
        key = policy.digest or str(id(policy))
        with self._lock:
            if self._built_for != key:
                self._built = self._build(policy.notifications.channels)
                self._built_for = key
            return self._built

    def _build(self, channels: Mapping[str, Mapping[str, Any]]) -> dict[str, Notifier]:
        built: dict[str, Notifier] = {}
        for name, config in channels.items():
            kind = self._types.get(str(config.get("type")))
            if kind is None or self.mode(name, config) is None:
                continue
            try:
                built[name] = kind(name, config, self._deps)
            except ChannelConfigError as exc:
                self._warn(name, str(exc))
        return built

    def _warn(self, name: str, why: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            log.warning("notification channel %s is disabled: %s", name, why)
