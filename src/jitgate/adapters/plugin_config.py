"""The configuration contract between a plugin (a notifier or a backend) and the policy
loader, and the value checks a plugin's ``config_problems`` may use.

A plugin class may declare ``CONFIG_KEYS`` (the keys of its policy entry it reads besides
``type``): ``jitgate policy check`` then reports any other key, with a suggestion. It may
also declare a ``config_problems(config)`` classmethod returning ``ConfigProblem``s (a
path inside the entry and a message), reported with the entry's file and line. A plugin
that declares neither is taken as written.

Invariant: a check never quotes a URL (it may carry a token) and never reads the
environment; a key written with no value (``key:``) is taken as unset. Whether a URL
carries a credential (``url_credentials``) the policy loader judges for every value of
every entry, so ``url_problems`` need not.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import date
from email.utils import parseaddr
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qsl, urlsplit

#: What a plugin's ``config_problems`` returns: (path inside the entry, message).
ConfigProblem = tuple[tuple[str | int, ...], str]
# A backend call must end well inside the lease its enforcement row takes before calling
# (``service.enforcement_rows.LEASE``, 2 minutes), or a second replica could repeat it.
MAX_SECONDS = 60.0
WITHIN_LEASE = ": a backend call must end well within the 2-minute lease of its retry row"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")  # an address, as the policy loader takes one


def short(value: object) -> str:
    """``value`` as quoted in a message: its repr (ISO for dates), cut at 60 characters."""
    text = value.isoformat() if isinstance(value, date) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class DeclaresConfig(Protocol):
    """What a plugin class may declare so that the policy loader checks its entries."""

    CONFIG_KEYS: ClassVar[tuple[str, ...]]

    @classmethod
    def config_problems(cls, config: Mapping[str, Any]) -> list[ConfigProblem]: ...


#: Query parameter names that carry a credential (compared lower-case, ``-`` read as ``_``),
#: besides any name with token, secret, password or signature in it or ending in _key or _sig.
SECRET_PARAMS = frozenset(
    {"key", "apikey", "sig", "auth", "code", "pass", "passwd", "pwd", "credential", "credentials"}
)
_SECRET_PARAM_WORDS = ("token", "secret", "password", "signature", "authorization")


def secret_param(name: str) -> bool:
    """True for a query parameter named like a credential: ``token``, ``api_key``, ``sig``…"""
    name = name.strip().lower().replace("-", "_")
    return (
        name in SECRET_PARAMS
        or name.endswith(("_key", "_sig", "_auth", "_pass", "_pwd"))
        or any(word in name for word in _SECRET_PARAM_WORDS)
    )


def url_credentials(value: object) -> str | None:
    """What makes ``value`` a URL that carries a credential (a password in its user part, or
    a query or fragment parameter named like a secret), in words that never quote the
    credential; ``None`` for a URL without one and for anything that is not a URL."""
    if not isinstance(value, str) or "://" not in value:
        return None
    try:
        parts = urlsplit(value.strip())
        password = parts.password
    except ValueError:
        return None
    if password:
        return "a password (user:password@)"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    pairs += parse_qsl(parts.fragment, keep_blank_values=True)
    named = sorted({short(name) for name, _ in pairs if secret_param(name)})
    if named:
        return f"a credential in its query ({', '.join(named)})"
    return None


def url_problems(config: Mapping[str, Any], *keys: str) -> list[ConfigProblem]:
    """Each of ``keys`` an http(s) URL (the value is not quoted: URLs may carry tokens)."""
    out: list[ConfigProblem] = []
    for key in _written(config, keys):
        value = config[key]
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            out.append(((key,), "must be an http:// or https:// URL"))
    return out


def text_problems(config: Mapping[str, Any], *keys: str) -> list[ConfigProblem]:
    """Each of ``keys`` a non-empty string."""
    return [
        ((key,), f"must be a non-empty string, not {short(config[key])}")
        for key in _written(config, keys)
        if not isinstance(config[key], str) or not config[key].strip()
    ]


def flag_problems(config: Mapping[str, Any], *keys: str) -> list[ConfigProblem]:
    """Each of ``keys`` true or false (a string such as "false" would read as true)."""
    return [
        ((key,), f"must be true or false, not {short(config[key])}")
        for key in _written(config, keys)
        if not isinstance(config[key], bool)
    ]


def whole_problems(
    config: Mapping[str, Any], key: str, *, minimum: int, maximum: int | None = None
) -> list[ConfigProblem]:
    """``key`` a whole number in ``[minimum, maximum]``."""
    if not _written(config, (key,)):
        return []
    value = config[key]
    whole = isinstance(value, int) and not isinstance(value, bool)
    if whole and value >= minimum and (maximum is None or value <= maximum):
        return []
    bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
    return [((key,), f"must be a whole number {bounds}, not {short(value)}")]


def seconds_problems(
    config: Mapping[str, Any], key: str, *, maximum: float | None = None, why: str = ""
) -> list[ConfigProblem]:
    """``key`` a number of seconds above zero, and at most ``maximum`` (``why`` says why)."""
    if not _written(config, (key,)):
        return []
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return [((key,), f"must be a number of seconds above 0, not {short(value)}")]
    if maximum is not None and value > maximum:
        return [((key,), f"must be at most {maximum:g} seconds, not {short(value)}{why}")]
    return []


def choice_problems(
    config: Mapping[str, Any], key: str, choices: Collection[str]
) -> list[ConfigProblem]:
    if _written(config, (key,)) and config[key] not in choices:
        return [((key,), f"must be one of {', '.join(choices)}, not {short(config[key])}")]
    return []


def email_problems(config: Mapping[str, Any], key: str) -> list[ConfigProblem]:
    """``key`` an address (``jit@example.com`` or ``Jitgate <jit@example.com>``)."""
    if not _written(config, (key,)):
        return []
    value = config[key]
    address = parseaddr(value)[1] if isinstance(value, str) else ""
    if not EMAIL.match(address):
        return [((key,), f"{short(value)} is not an email address")]
    return []


def text_list_problems(
    config: Mapping[str, Any], key: str, *, non_empty: bool = False
) -> list[ConfigProblem]:
    """``key`` a list of non-empty strings (not a bare string)."""
    if not _written(config, (key,)):
        return []
    value = config[key]
    if not isinstance(value, list):
        return [((key,), f"must be a list of strings, not {short(value)}")]
    if non_empty and not value:
        return [((key,), "must not be empty")]
    return [
        ((key, index), f"must be a non-empty string, not {short(item)}")
        for index, item in enumerate(value)
        if not isinstance(item, str) or not item.strip()
    ]


def _written(config: Mapping[str, Any], keys: Collection[str]) -> list[str]:
    """The ``keys`` present with a value (``key:`` with nothing after it reads as unset)."""
    return [key for key in keys if config.get(key) is not None]
