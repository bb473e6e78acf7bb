"""What every notifier shares: its dependencies, reading ``*_env`` settings, sending HTTP.

A notifier class may declare ``CONFIG_KEYS`` (the channel keys it reads besides ``type``)
and a ``config_problems(config)`` classmethod; the policy loader then refuses unknown keys
and bad values (``jitgate.adapters.policy.plugins``). Both are optional for third parties.

Invariants: a URL or secret read from the environment is never put in an error, a log line
or a ``DeliveryFailed`` reason; a 2xx answer is success, 408/425/429/5xx and network errors
are retried (``Retry-After`` honoured, in seconds or as an HTTP date), any other 4xx is
permanent; a send ends by its deadline (``deadline.DeadlineTransport``), as
``timed out after Ns``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol

import httpx

from jitgate.service.delivery import DeliveryFailed, Notifier
from jitgate.service.delivery_deadline import timeout_reason, within

Mode = Literal["person", "channel"]
AUDIENCES: tuple[Mode, ...] = ("person", "channel")
RETRYABLE = frozenset({408, 425, 429})
USER_AGENT = "jitgate-notifier/1"


@dataclass(frozen=True)
class NotifierDeps:
    http: httpx.Client
    env: Mapping[str, str]
    smtp_timeout: float = 10.0


class NotifierType(Protocol):
    """A notifier class as the registry sees it (the class object itself)."""

    def __call__(self, name: str, config: Mapping[str, Any], deps: NotifierDeps) -> Notifier: ...
    def mode(self, config: Mapping[str, Any], env: Mapping[str, str]) -> Mode: ...
    def missing_env(self, config: Mapping[str, Any], env: Mapping[str, str]) -> list[str]: ...


class ChannelConfigError(ValueError):
    """A channel's configuration is incomplete (e.g. its ``*_env`` variable is not set)."""


def audience_override(config: Mapping[str, Any], default: Mode) -> Mode:
    value = config.get("audience")
    return value if value in AUDIENCES else default


def setting(
    config: Mapping[str, Any], key: str, env: Mapping[str, str], default: str | None = None
) -> str | None:
    """``key`` inline, or from the variable named by ``key_env``; inline wins when both."""
    inline = config.get(key)
    if isinstance(inline, str) and inline:
        return inline
    name = config.get(f"{key}_env")
    if isinstance(name, str) and name:
        value = env.get(name, "")
        if not value:
            raise ChannelConfigError(f"environment variable {name} is not set")
        return value
    return default


def env_names(config: Mapping[str, Any], *keys: str) -> list[str]:
    """The environment variables ``config`` names for ``keys`` (for startup checks)."""
    return [
        str(config[f"{k}_env"])
        for k in keys
        if isinstance(config.get(f"{k}_env"), str) and not config.get(k)
    ]


def unset(config: Mapping[str, Any], env: Mapping[str, str], *keys: str) -> list[str]:
    """The variables named for ``keys`` that are not set in ``env``."""
    return [name for name in env_names(config, *keys) if not env.get(name)]


def send_http(
    http: httpx.Client,
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> httpx.Response:
    """POST ``body``; raise ``DeliveryFailed`` on anything but a 2xx answer."""
    all_headers = {"content-type": "application/json", "user-agent": USER_AGENT}
    all_headers.update(headers or {})
    try:
        response = http.post(url, content=body, headers=all_headers, timeout=within(timeout))
    except httpx.HTTPError as exc:
        raise http_failure(exc) from None
    check_status(response)
    return response


def http_failure(exc: httpx.HTTPError) -> DeliveryFailed:
    """What went wrong, without the URL (``str(exc)`` may hold it)."""
    if isinstance(exc, httpx.TimeoutException):
        return DeliveryFailed(timeout_reason())
    if isinstance(exc, httpx.TransportError):
        return DeliveryFailed(f"connection failed ({type(exc).__name__})")
    return DeliveryFailed(f"HTTP error ({type(exc).__name__})")


def check_status(response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    retryable = status in RETRYABLE or status >= 500
    raise DeliveryFailed(
        f"HTTP {status}", status=status, retryable=retryable, retry_after=retry_after(response)
    )


def retry_after(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Seconds the peer asks us to wait: ``Retry-After`` as seconds or as an HTTP date
    (RFC 9110 §10.2.3); ``None`` when absent or unreadable. The caller caps it."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 850 and asctime dates carry no zone: they are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
