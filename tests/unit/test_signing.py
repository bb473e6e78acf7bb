"""Standard Webhooks signing: the published test vector, round trips, refusals."""

from __future__ import annotations

import pytest

from jitgate.adapters.signing import (
    WebhookSignatureError,
    new_secret,
    secret_key,
    sign_webhook,
    verify_webhook,
)

# The example of the Standard Webhooks specification.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STAMP = 1614265330
BODY = b'{"test": 2432232314}'


def test_the_specification_vector() -> None:
    headers = sign_webhook(SECRET, MSG_ID, STAMP, BODY)
    assert headers == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(STAMP),
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    assert verify_webhook(SECRET, headers, BODY, now=STAMP + 10) == MSG_ID


def test_round_trip_with_a_fresh_secret_and_several_signatures() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret_key(secret)) == 32
    headers = sign_webhook(secret, "msg_1", 1000, b"{}")
    headers["webhook-signature"] = "v1,bm90IGl0 " + headers["webhook-signature"]
    assert verify_webhook(secret, headers, b"{}", now=1000) == "msg_1"


@pytest.mark.parametrize(
    ("change", "now"),
    [
        ({"body": b'{"test": 2432232315}'}, STAMP),
        ({"webhook-id": "msg_other"}, STAMP),
        ({"webhook-timestamp": str(STAMP + 1)}, STAMP),
        ({}, STAMP + 301),
        ({}, STAMP - 301),
        ({"webhook-signature": "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}, STAMP),
        ({"webhook-signature": ""}, STAMP),
    ],
)
def test_refusals(change: dict[str, object], now: int) -> None:
    headers = sign_webhook(SECRET, MSG_ID, STAMP, BODY)
    body = change.pop("body", BODY)
    headers.update({k: str(v) for k, v in change.items()})
    with pytest.raises(WebhookSignatureError) as raised:
        verify_webhook(SECRET, headers, body, now=now)  # type: ignore[arg-type]
    assert "g0hM9" not in str(raised.value)


def test_other_secret_is_refused() -> None:
    headers = sign_webhook(SECRET, MSG_ID, STAMP, BODY)
    with pytest.raises(WebhookSignatureError):
        verify_webhook(new_secret(), headers, BODY, now=STAMP)


@pytest.mark.parametrize("bad", ["whsec_not base64!", "whsec_c2hvcnQ=", ""])
def test_malformed_secrets(bad: str) -> None:
    with pytest.raises(ValueError) as raised:
        secret_key(bad)
    assert "not base64" not in str(raised.value)
