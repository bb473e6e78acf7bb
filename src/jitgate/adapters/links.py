"""Signed one-click link tokens, web sessions and CSRF tokens (HMAC-SHA256).

A link token is ``v1.<base64url JSON claims>.<base64url HMAC>``; the claims name the
request, the action, the person it is bound to, the channel and the expiry. Separate keys
are derived from the one secret for links, sessions and CSRF tokens, so one kind of token
can never be passed off as another.

Invariants: tokens are compared in constant time; an error never echoes a token or a
signature; the secret comes from ``JITGATE_LINK_SECRET`` (read only by ``from_env``), or is
random per process, in which case links die with the process (a warning says so).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jitgate.service.links import BadLink, Link

log = logging.getLogger("jitgate.links")
SECRET_ENV = "JITGATE_LINK_SECRET"  # noqa: S105 (a variable name)
VERSION = "v1"
ACTIONS = ("approve", "deny", "view")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class WebSession:
    """Who a browser has shown itself to be (``subject`` may be empty), for which requests
    (those whose personal link it opened), and its CSRF nonce."""

    subject: str
    nonce: str
    expires: int
    requests: tuple[str, ...] = ()


class HmacLinkSigner:
    """Implements ``service.links.LinkSigner``; also signs web sessions and CSRF tokens."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the link secret must be at least 16 bytes")
        self._links = self._derive(secret, b"links")
        self._sessions = self._derive(secret, b"sessions")
        self._csrf = self._derive(secret, b"csrf")

    @staticmethod
    def _derive(secret: bytes, purpose: bytes) -> bytes:
        return hmac.new(secret, b"jitgate/" + purpose + b"/v1", hashlib.sha256).digest()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HmacLinkSigner:
        env = os.environ if environ is None else environ
        secret = env.get(SECRET_ENV, "")
        if len(secret.encode()) >= 16:
            return cls(secret.encode())
        problem = "is shorter than 16 bytes, so it is not used" if secret else "is not set"
        log.warning(
            "%s %s: one-click links are signed with a random key and stop working when this "
            "process restarts (set at least 16 bytes, the same value on every replica)",
            SECRET_ENV,
            problem,
        )
        return cls(secrets.token_bytes(32))

    # -- links -----------------------------------------------------------------------------

    def mint(self, link: Link) -> str:
        claims = {
            "r": link.request_id,
            "a": link.action,
            "s": link.subject,
            "e": int(link.expires_at.timestamp()),
            "c": link.channel,
        }
        body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        head = f"{VERSION}.{body}"
        return f"{head}.{_b64(self._mac(self._links, head))}"

    def read(self, token: str) -> Link:
        claims = self._verified(token)
        try:
            action = claims["a"]
            if action not in ACTIONS:
                raise BadLink("unknown link action")
            return Link(
                request_id=str(claims["r"]),
                action=action,
                subject=str(claims["s"]),
                expires_at=datetime.fromtimestamp(int(claims["e"]), UTC),
                channel=str(claims.get("c", "")),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            raise BadLink("malformed link") from None

    def _verified(self, token: str) -> dict[str, Any]:
        parts = token.split(".") if isinstance(token, str) and len(token) < 2048 else []
        if len(parts) != 3 or parts[0] != VERSION:
            raise BadLink("not a link of this server")
        expected = self._mac(self._links, f"{parts[0]}.{parts[1]}")
        try:
            given = _unb64(parts[2])
            if not hmac.compare_digest(given, expected):
                raise BadLink("not a link of this server")
            claims = json.loads(_unb64(parts[1]))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise BadLink("not a link of this server") from None
        if not isinstance(claims, dict):
            raise BadLink("malformed link")
        return claims

    @staticmethod
    def _mac(key: bytes, text: str) -> bytes:
        return hmac.new(key, text.encode(), hashlib.sha256).digest()

    # -- web sessions and CSRF -------------------------------------------------------------

    def session(
        self,
        subject: str,
        expires: int,
        nonce: str | None = None,
        requests: tuple[str, ...] = (),
    ) -> str:
        value = {
            "s": subject,
            "n": nonce or secrets.token_urlsafe(16),
            "e": expires,
            "r": list(requests),
        }
        body = _b64(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{_b64(self._mac(self._sessions, body))}"

    def read_session(self, cookie: str | None, now: int) -> WebSession | None:
        if not cookie or len(cookie) > 2048 or cookie.count(".") != 1:
            return None
        body, mac = cookie.split(".")
        try:
            if not hmac.compare_digest(_unb64(mac), self._mac(self._sessions, body)):
                return None
            value = json.loads(_unb64(body))
            requests = tuple(str(r) for r in value.get("r", ()))
            found = WebSession(str(value["s"]), str(value["n"]), int(value["e"]), requests)
        except (binascii.Error, ValueError, UnicodeDecodeError, KeyError, TypeError):
            return None
        return found if found.expires > now else None

    def csrf(self, token: str, nonce: str) -> str:
        """A form token bound to this link and this browser's session nonce."""
        return _b64(self._mac(self._csrf, f"{nonce}|{token}"))

    def check_csrf(self, token: str, nonce: str, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.csrf(token, nonce).encode())
