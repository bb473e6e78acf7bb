"""Process settings: one object, read from the environment and the command line only when
``Settings.from_env`` is called (never at import time). Every ``JITGATE_*`` setting of a
process is read and checked there, before anything runs (no database is opened, migrated
or audited on a setting that would then be refused). A value that cannot be used is
refused with ``ConfigError``, which names the variable: never a traceback, never a silent
default."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

DEFAULT_DB = "sqlite:///./jitgate.db"
DEFAULT_POLICY = "policy.yaml"
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # an HTTP token (RFC 9110 §5.6.2)


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


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """``env[name]`` as on (1, true, yes, on) or off (0, false, no, off), any case;
    ``default`` when unset or empty."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true/false, yes/no, on/off), not {raw!r}")


@dataclass(frozen=True)
class NotifySettings:
    """Notification delivery in this process. ``None``: the delivery's own default
    (``DeliveryOptions``)."""

    enabled: bool = True
    max_attempts: int | None = None
    concurrency: int | None = None
    send_timeout: float | None = None
    web_user_header: str | None = None
    cookie_secure: bool = False  # the link pages' cookie (WebOptions)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NotifySettings:
        def number(name: str, minimum: float, whole: bool) -> float | None:
            if not env.get(name, "").strip():
                return None
            return env_number(env, name, 0.0, minimum=minimum, whole=whole)

        attempts = number("JITGATE_NOTIFY_MAX_ATTEMPTS", 1, True)
        concurrency = number("JITGATE_NOTIFY_CONCURRENCY", 1, True)
        return cls(
            enabled=env_flag(env, "JITGATE_DELIVERY", True),
            max_attempts=None if attempts is None else int(attempts),
            concurrency=None if concurrency is None else int(concurrency),
            send_timeout=number("JITGATE_NOTIFY_TIMEOUT", 0.1, False),
            web_user_header=_header(env, "JITGATE_WEB_USER_HEADER"),
            cookie_secure=env_flag(env, "JITGATE_COOKIE_SECURE", False),
        )


def _header(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if raw and not HEADER_NAME.fullmatch(raw):
        raise ConfigError(f"{name} must be an HTTP header name such as X-Forwarded-Email")
    return raw or None


@dataclass(frozen=True)
class Settings:
    policy_path: str = DEFAULT_POLICY
    database_url: str = DEFAULT_DB
    host: str = "127.0.0.1"
    port: int = 8080
    tick_seconds: float = 1.0
    reconcile_seconds: float = 60.0
    scheduler: bool = True
    notify: NotifySettings = field(default_factory=NotifySettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        base = cls(
            policy_path=env.get("JITGATE_POLICY", DEFAULT_POLICY),
            database_url=env.get("JITGATE_DATABASE_URL", DEFAULT_DB),
            tick_seconds=env_number(env, "JITGATE_TICK_SECONDS", 1.0, minimum=0.01),
            reconcile_seconds=env_number(env, "JITGATE_RECONCILE_SECONDS", 60.0, minimum=1),
            notify=NotifySettings.from_env(env),
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(base, **given)  # type: ignore[arg-type]
