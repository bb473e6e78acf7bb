"""The backend port for plugin authors, and the registry that finds plugins by entry point.

A third party ships a backend as its own package::

    [project.entry-points."jitgate.backends"]
    my-thing = "my_package.backend:MyThingBackend"

``MyThingBackend(name, config, deps)`` gets its configured name, a read-only copy of its
policy entry, and ``BackendDeps`` (the shared ``httpx.Client`` and the environment); it must
implement ``Backend`` (``grant``/``revoke``/``check``, idempotent, each taking a ``GrantSpec``).
It may declare ``CONFIG_KEYS`` (the keys it reads besides ``type``) and a
``config_problems(config)`` classmethod, so that the policy loader refuses unknown keys and
bad values (``jitgate.adapters.policy.plugins.DeclaresConfig``).

Invariants: nothing is loaded or read at import time; one instance per configured backend
(rebuilt only when its policy entry changes); a backend that cannot be built raises
``BackendUnavailable`` with a message that names the missing piece, never a secret.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import httpx

from jitgate.service.backend_ports import (
    Backend,
    BackendError,
    BackendUnavailable,
    CertificateAuthority,
    Credential,
    CredentialIssuer,
    GrantSpec,
    Inventory,
    IssuedCertificate,
    MadeGrant,
    Receipt,
    Revocation,
    SessionRef,
    frozen_config,
)

__all__ = [
    "GROUP",
    "Backend",
    "BackendDeps",
    "BackendError",
    "BackendSet",
    "BackendUnavailable",
    "CertificateAuthority",
    "Credential",
    "CredentialIssuer",
    "GrantSpec",
    "Inventory",
    "IssuedCertificate",
    "MadeGrant",
    "Receipt",
    "Registry",
    "Revocation",
    "SessionRef",
    "env_secret",
    "frozen_config",
]

GROUP = "jitgate.backends"


@dataclass(frozen=True)
class BackendDeps:
    """What every backend may use: outbound HTTP and the process environment."""

    http: httpx.Client
    environ: Mapping[str, str]


Factory = Callable[[str, Mapping[str, Any], BackendDeps], Backend]


class Registry:
    """Backend types by name, from the ``jitgate.backends`` entry points (or given)."""

    def __init__(self, factories: Mapping[str, Factory] | None = None) -> None:
        self._given = dict(factories) if factories is not None else None
        self._loaded: dict[str, Factory] = {}
        self._lock = threading.Lock()

    def types(self) -> list[str]:
        if self._given is not None:
            return sorted(self._given)
        return sorted(ep.name for ep in entry_points(group=GROUP))

    def factory(self, kind: str) -> Factory:
        if self._given is not None:
            if kind in self._given:
                return self._given[kind]
            raise BackendUnavailable(f"unknown backend type {kind!r} ({self._known()})")
        with self._lock:
            if kind not in self._loaded:
                found = [ep for ep in entry_points(group=GROUP) if ep.name == kind]
                if not found:
                    raise BackendUnavailable(f"unknown backend type {kind!r} ({self._known()})")
                try:
                    self._loaded[kind] = found[0].load()
                except Exception as exc:
                    raise BackendUnavailable(
                        f"backend type {kind!r} failed to load: {type(exc).__name__}"
                    ) from exc
            return self._loaded[kind]

    def _known(self) -> str:
        return "installed: " + (", ".join(self.types()) or "none")


class BackendSet:
    """One instance per configured backend; an instance is rebuilt when its config changes."""

    def __init__(self, registry: Registry, deps: BackendDeps) -> None:
        self.registry = registry
        self.deps = deps
        self._instances: dict[str, tuple[str, Backend]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, config: Mapping[str, Any]) -> Backend:
        digest = json.dumps(config, sort_keys=True, default=str)
        with self._lock:
            cached = self._instances.get(name)
            if cached is not None and cached[0] == digest:
                return cached[1]
        kind = str(config.get("type", ""))
        factory = self.registry.factory(kind)
        try:
            instance = factory(name, frozen_config(config), self.deps)
        except BackendError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendUnavailable(f"backend {name!r} is misconfigured: {exc}") from None
        with self._lock:
            self._instances[name] = (digest, instance)
        return instance


def env_secret(
    config: Mapping[str, Any], key: str, environ: Mapping[str, str], *, backend: str
) -> str:
    """The value of the environment variable that ``config[key]`` names; loud when unset."""
    var = config.get(key)
    if not isinstance(var, str) or not var:
        raise BackendUnavailable(f"backend {backend!r} needs {key!r} (an environment variable)")
    value = environ.get(var)
    if not value:
        raise BackendUnavailable(
            f"backend {backend!r} is not configured: environment variable {var} "
            f"(from {key}) is not set"
        )
    return value
