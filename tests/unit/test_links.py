"""Signed link tokens, web sessions and CSRF tokens (``adapters.links``)."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from jitgate.adapters.links import HmacLinkSigner
from jitgate.service.links import BadLink, Link

KEY = b"k" * 32
EXPIRES = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
LINK = Link("req-1", "approve", "mark.lee@example.com", EXPIRES, "mail")


def test_round_trip() -> None:
    signer = HmacLinkSigner(KEY)
    token = signer.mint(LINK)
    assert signer.read(token) == LINK
    assert token.startswith("v1.") and len(token) < 400
    assert all(c.isalnum() or c in "-_." for c in token)


def test_each_action_and_subject_gives_its_own_token() -> None:
    signer = HmacLinkSigner(KEY)
    deny = Link("req-1", "deny", LINK.subject, EXPIRES)
    other = Link("req-1", "approve", "sam@example.com", EXPIRES)
    tokens = {signer.mint(LINK), signer.mint(deny), signer.mint(other)}
    assert len(tokens) == 3


def _claims(token: str) -> dict[str, object]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def _forge(token: str, **changes: object) -> str:
    claims = {**_claims(token), **changes}
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    head, _, sig = token.split(".")
    return f"{head}.{body}.{sig}"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: _forge(t, s="sam@example.com"),
        lambda t: _forge(t, a="deny"),
        lambda t: _forge(t, e=4102444800),
        lambda t: _forge(t, r="req-2"),
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: t.replace("v1.", "v2.", 1),
        lambda t: t + ".x",
        lambda t: t.split(".")[0] + "." + t.split(".")[1],
        lambda t: "",
        lambda t: "v1.%%%.%%%",
        lambda t: "v1." + "A" * 5000 + ".x",
    ],
)
def test_tampered_tokens_are_refused(tamper: object) -> None:
    signer = HmacLinkSigner(KEY)
    token = signer.mint(LINK)
    forged = tamper(token)  # type: ignore[operator]
    with pytest.raises(BadLink) as raised:
        signer.read(forged)
    assert token.split(".")[2] not in str(raised.value)


def test_a_token_of_another_key_is_refused() -> None:
    token = HmacLinkSigner(b"x" * 32).mint(LINK)
    with pytest.raises(BadLink):
        HmacLinkSigner(KEY).read(token)


def test_a_session_cannot_pass_for_a_link_or_the_reverse() -> None:
    signer = HmacLinkSigner(KEY)
    session = signer.session("mark.lee@example.com", 2_000_000_000)
    with pytest.raises(BadLink):
        signer.read("v1." + session)
    assert signer.read_session(signer.mint(LINK), 0) is None


def test_sessions_expire_and_resist_tampering() -> None:
    signer = HmacLinkSigner(KEY)
    cookie = signer.session("mark.lee@example.com", 1000, nonce="n1", requests=("r1", "r2"))
    found = signer.read_session(cookie, 999)
    assert found is not None and found.subject == "mark.lee@example.com" and found.nonce == "n1"
    assert found.requests == ("r1", "r2")
    assert signer.read_session(cookie, 1000) is None
    body, mac = cookie.split(".")
    raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for key, value in (("s", "sam@example.com"), ("r", ["r1", "r2", "r3"])):
        forged_raw = {**raw, key: value}
        forged = base64.urlsafe_b64encode(json.dumps(forged_raw).encode()).rstrip(b"=").decode()
        assert signer.read_session(f"{forged}.{mac}", 0) is None
    assert signer.read_session("garbage", 0) is None
    assert signer.read_session(None, 0) is None


def test_csrf_is_bound_to_the_link_and_the_session() -> None:
    signer = HmacLinkSigner(KEY)
    token = signer.mint(LINK)
    other = signer.mint(Link("req-2", "approve", LINK.subject, EXPIRES))
    csrf = signer.csrf(token, "nonce-a")
    assert signer.check_csrf(token, "nonce-a", csrf)
    assert not signer.check_csrf(token, "nonce-b", csrf)
    assert not signer.check_csrf(other, "nonce-a", csrf)
    assert not signer.check_csrf(token, "nonce-a", "")


def test_from_env_uses_the_secret_or_warns(caplog: pytest.LogCaptureFixture) -> None:
    fixed = {"JITGATE_LINK_SECRET": "a-long-enough-secret-value"}
    token = HmacLinkSigner.from_env(fixed).mint(LINK)
    assert HmacLinkSigner.from_env(fixed).read(token) == LINK
    with caplog.at_level(logging.WARNING, logger="jitgate.links"):
        random_one = HmacLinkSigner.from_env({})
    assert "JITGATE_LINK_SECRET is not set" in caplog.text
    with pytest.raises(BadLink):
        random_one.read(token)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jitgate.links"):
        HmacLinkSigner.from_env({"JITGATE_LINK_SECRET": "short"})
    (said,) = [r.getMessage() for r in caplog.records]  # one warning, and an accurate one
    assert "shorter than 16 bytes, so it is not used" in said and "not set" not in said


def test_expiry_is_kept_to_the_second() -> None:
    signer = HmacLinkSigner(KEY)
    link = Link("r", "view", "", EXPIRES + timedelta(microseconds=999), "")
    assert signer.read(signer.mint(link)).expires_at == EXPIRES
