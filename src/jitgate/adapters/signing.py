"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

A message is signed as ``base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))`` and sent as
``webhook-id``, ``webhook-timestamp`` (Unix seconds) and ``webhook-signature: v1,<sig>``.
The secret is given in its ``whsec_<base64 key>`` form.

Invariants: the id is the idempotency key of one message and stays the same across retries;
verification compares in constant time and refuses timestamps outside the tolerance; no
function here logs or returns the secret or a signature in an error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping

PREFIX = "whsec_"
TOLERANCE_SECONDS = 5 * 60


class WebhookSignatureError(ValueError):
    """The message is not signed by this secret, or its timestamp is out of tolerance."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (a secret without the prefix is base64 too)."""
    body = secret.strip()
    if body.startswith(PREFIX):
        body = body[len(PREFIX) :]
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret is not in whsec_<base64> form") from None
    if len(key) < 16:
        raise ValueError("webhook secret is shorter than 16 bytes")
    return key


def new_secret() -> str:
    """A fresh random secret in ``whsec_`` form."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sign_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` sent as message ``msg_id``."""
    signature = _signature(secret_key(secret), msg_id, timestamp, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{signature}",
    }


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: int,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """Check the headers of a received message; returns its ``webhook-id`` or raises."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    given = lowered.get("webhook-signature", "")
    if not msg_id or not stamp.isdigit() or not given:
        raise WebhookSignatureError("missing or malformed webhook headers")
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance:
        raise WebhookSignatureError("webhook timestamp is outside the tolerance")
    expected = _signature(secret_key(secret), msg_id, timestamp, body)
    for candidate in given.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return msg_id
    raise WebhookSignatureError("no webhook signature matches")
