"""Process settings: one object, read from the environment and the command line only when
``Settings.from_env`` is called (never at import time). A value that cannot be used is
refused with ``ConfigError``, which names the variable: never a traceback, never a silent
default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

DEFAULT_DB = "sqlite:///./jitgate.db"
DEFAULT_POLICY = "policy.yaml"


class ConfigError(ValueError):
    """A setting from the environment that cannot be used; the message says which."""


def env_number(
    env: Mapping[str, str], name: str, default: float, *, minimum: float, whole: bool = False
) -> float:
    """``env[name]`` as a number >= ``minimum`` (a whole one if ``whole``), or ``default``
    when unset or empty."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if not value >= minimum:  # also refuses nan
        raise ConfigError(f"{name} must be at least {minimum:g}, not {raw!r}")
    if value == float("inf") or (whole and not value.is_integer()):
        kind = "a whole number" if whole else "a finite number"
        raise ConfigError(f"{name} must be {kind}, not {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    policy_path: str = DEFAULT_POLICY
    database_url: str = DEFAULT_DB
    host: str = "127.0.0.1"
    port: int = 8080
    tick_seconds: float = 1.0
    reconcile_seconds: float = 60.0
    scheduler: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        base = cls(
            policy_path=env.get("JITGATE_POLICY", DEFAULT_POLICY),
            database_url=env.get("JITGATE_DATABASE_URL", DEFAULT_DB),
            tick_seconds=env_number(env, "JITGATE_TICK_SECONDS", 1.0, minimum=0.01),
            reconcile_seconds=env_number(env, "JITGATE_RECONCILE_SECONDS", 60.0, minimum=1),
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(base, **given)  # type: ignore[arg-type]
