"""What peers see across retries and what they ask of us (SPEC §6): a mail keeps its
``Message-ID`` on every attempt; ``Retry-After`` is honoured as seconds or as an HTTP date
(capped); in Slack a deny reason in the outcome arrives as typed, never as mrkdwn. Sending
goes through ``httpx.MockTransport``."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from slack_sdk.models.blocks import Block

from jitgate.adapters.notifiers import slack
from jitgate.adapters.notifiers.base import retry_after, send_http
from jitgate.adapters.notifiers.email import compose
from jitgate.service.delivery import DeliveryFailed, DeliveryOptions, retry_delay
from jitgate.service.notifications import Links, Message, RequestFacts

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
OUTBOX_ID = "0c6d1f1a-1111-4111-8111-111111111111"


def message(event: str = "request.created", **extra: object) -> Message:
    facts = RequestFacts(
        id="2b7f6c1e-0000-4000-8000-000000000001",
        requester="jane.doe@example.com",
        roles=("sre-oncall",),
        resources=("prod-db-01",),
        duration_seconds=7200,
        reason="INC-12345",
        urgency="high",
        purpose=None,
        state="pending",
        created_at="2026-03-02T10:00:00+00:00",
        expires_at="2026-03-02T11:00:00+00:00",
    )
    values: dict[str, object] = {
        "event": event,
        "channel": "mail",
        "recipient": "mark.lee@example.com",
        "request": facts,
        "actor": "jane.doe@example.com",
        "at": "2026-03-02T10:00:00+00:00",
        "id": OUTBOX_ID,
        "links": Links(view="https://jit.example.com:8443/l/v1.view.sig"),
    }
    values.update(extra)
    return Message(**values)  # type: ignore[arg-type]


# -- Message-ID ------------------------------------------------------------------------------


def test_every_attempt_of_a_mail_has_the_same_message_id() -> None:
    first = compose(replace(message(), attempt=1), "jit@example.org")
    second = compose(replace(message(), attempt=2), "jit@example.org")
    assert first["Message-ID"] == second["Message-ID"]
    assert first["Message-ID"] == f"<{OUTBOX_ID}@jitgate.jit.example.com>"  # public_url's host


def test_without_a_view_link_the_message_id_names_the_senders_domain() -> None:
    mail = compose(message(links=Links()), "Jitgate <jit@mail.example.org>")
    assert mail["Message-ID"] == f"<{OUTBOX_ID}@jitgate.mail.example.org>"
    hostile = compose(message(id="a>b\r\nBcc: x@y", links=Links()), "jit@ex<ample.org")
    assert hostile["Message-ID"] == "<abBccxy@jitgate.example.org>"


# -- Retry-After -----------------------------------------------------------------------------


def answer(value: str) -> httpx.Response:
    return httpx.Response(503, headers={"retry-after": value})


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after(answer("120"), NOW) == 120.0
    assert retry_after(answer(format_datetime(NOW + timedelta(seconds=90), usegmt=True)), NOW) == 90
    assert retry_after(answer("Mon, 02 Mar 2026 10:01:30 GMT"), NOW) == 90  # IMF-fixdate
    assert retry_after(answer("Monday, 02-Mar-26 10:00:45 GMT"), NOW) == 45  # RFC 850
    assert retry_after(answer("Mon Mar  2 10:00:30 2026"), NOW) == 30  # asctime, GMT
    assert retry_after(answer(format_datetime(NOW - timedelta(hours=1), usegmt=True)), NOW) == 0
    assert retry_after(answer("-5"), NOW) == 0
    for unreadable in ("soon", "", "Mon, 99 Foo 2026"):
        assert retry_after(answer(unreadable), NOW) is None
    assert retry_after(httpx.Response(503), NOW) is None


def test_a_peer_asking_for_a_date_is_retried_then_and_no_later_than_the_cap() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=40), usegmt=True)
    client = httpx.Client(transport=httpx.MockTransport(lambda _: answer(when)))
    with pytest.raises(DeliveryFailed) as failed:
        send_http(client, "https://hooks.example/x", body=b"{}")
    assert failed.value.retry_after is not None and 35 < failed.value.retry_after <= 40
    rng = random.Random(1)
    options = DeliveryOptions(base_delay=1.0, max_delay=300.0)
    assert 35 < retry_delay(1, failed.value, options, rng) <= 40
    capped = DeliveryOptions(base_delay=1.0, max_delay=8.0)
    assert retry_delay(1, failed.value, capped, rng) == 8.0


# -- Slack: user text is never mrkdwn ----------------------------------------------------------


def test_a_deny_reason_in_slack_arrives_as_typed() -> None:
    reason = "*bold* `code` ~strike~ _it_ <!here> <https://evil.example|click>"
    denied = message(
        "request.denied", actor="mark.lee@example.com", detail=reason, asks_decision=False
    )
    body = slack.body(denied, interactive=False)
    assert [b.to_dict() for b in Block.parse_all(body["blocks"])] == body["blocks"]
    facts = slack.facts_block(denied)
    assert facts in body["blocks"]
    texts = [e for s in facts["elements"] for e in s["elements"]]
    assert {e["type"] for e in texts} == {"text"}  # no link, user or broadcast element
    assert {"type": "text", "text": f"denied by mark.lee@example.com: {reason}"} in texts
    # no mrkdwn anywhere carries it
    mrkdwn = [b for b in body["blocks"] if b["type"] not in ("rich_text", "header")]
    assert "bold" not in json.dumps(mrkdwn) and "strike" not in json.dumps(mrkdwn)
