"""Every channel's native format, with hostile user text rendered inert (SPEC §6, §9.8).

Block Kit is round-tripped through slack_sdk's model classes; the Adaptive Card is checked
against a JSON Schema of the card elements used (schema 1.4); sending goes through
``httpx.MockTransport``.
"""

from __future__ import annotations

import email
import json
from email import policy as email_policy
from typing import Any

import httpx
import jsonschema_rs
import pytest
from slack_sdk.models.blocks import Block

from jitgate.adapters.notifiers import email as mail
from jitgate.adapters.notifiers import pagerduty, slack, teams, webhook
from jitgate.adapters.notifiers.base import NotifierDeps
from jitgate.adapters.notifiers.render import human_duration, slack_escape, teams_escape
from jitgate.adapters.signing import new_secret, verify_webhook
from jitgate.service.delivery import DeliveryFailed
from jitgate.service.notifications import Links, Message, RequestFacts

INJECTIONS = (
    "<!channel> <https://evil.example|Approve> @here @channel @everyone <b>bold</b>"
    "<script>alert(1)</script> [Approve](https://evil.example) **x** & co\r\n"
    "Bcc: victim@example.com\r\nSubject: forged"
)
LINKS = Links(
    view="https://jit.example/l/v1.view.sig",
    approve="https://jit.example/l/v1.approve.sig",
    deny="https://jit.example/l/v1.deny.sig",
)


def message(
    event: str = "request.created",
    reason: str = INJECTIONS,
    purpose: str | None = "incident-response <@U123>",
    **extra: Any,
) -> Message:
    facts = RequestFacts(
        id="2b7f6c1e-0000-4000-8000-000000000001",
        requester="jane.doe@example.com",
        roles=("sre-oncall",),
        resources=("prod-db-01",),
        duration_seconds=7200,
        reason=reason,
        urgency="high",
        purpose=purpose,
        state="pending",
        created_at="2026-03-02T10:00:00+00:00",
        expires_at="2026-03-02T11:00:00+00:00",
    )
    values: dict[str, Any] = {
        "event": event,
        "channel": "c",
        "recipient": "mark.lee@example.com",
        "request": facts,
        "actor": "jane.doe@example.com",
        "at": "2026-03-02T10:00:00+00:00",
        "asks_decision": event == "request.created",
        "approvers": ("mark.lee@example.com",),
        "id": "0c6d1f1a-1111-4111-8111-111111111111",
        "links": LINKS,
    }
    values.update(extra)
    return Message(**values)


def assert_inert_text(text: str) -> None:
    for raw in (
        "<!channel>",
        "<https://evil",
        "<script>",
        "<b>",
        "@here",
        "@channel",
        "@everyone",
        "\r",
    ):
        assert raw not in text, raw


# -- Slack ------------------------------------------------------------------------------------


def test_slack_escaping() -> None:
    assert slack_escape("a & <b> @here") == "a &amp; &lt;b&gt; @\u200bhere"


def test_slack_block_kit_round_trips_and_is_inert() -> None:
    body = slack.body(message(), interactive=False)
    parsed = [b.to_dict() for b in Block.parse_all(body["blocks"])]
    assert parsed == body["blocks"]
    facts, reason = [b for b in body["blocks"] if b["type"] == "rich_text"]
    rest = {**body, "blocks": [b for b in body["blocks"] if b not in (facts, reason)]}
    text = json.dumps(rest, ensure_ascii=False)
    assert_inert_text(text)
    # the reason is literal text: one plain text element, no mention, link or broadcast one
    (section,) = reason["elements"]
    label, said = section["elements"]
    assert label == {"type": "text", "text": "Reason:\n", "style": {"bold": True}}
    assert said == {"type": "text", "text": INJECTIONS.replace("\r\n", "\n")}
    # so are the facts: bold labels, literal values; no mrkdwn carries user text
    (section,) = facts["elements"]
    assert {e["type"] for e in section["elements"]} == {"text"}
    values = " ".join(e["text"] for e in section["elements"] if "style" not in e)
    for needle in ("jane.doe@example.com", "sre-oncall", "prod-db-01", "2 hours", "high"):
        assert needle in values
    assert "incident-response <@U123>" in values  # as typed: a text element mentions no one
    sections = [b for b in body["blocks"] if b["type"] == "section"]
    assert sections == []
    assert "2b7f6c1e-0000-4000-8000-000000000001" in body["text"]


def test_slack_buttons_link_or_interactive() -> None:
    linked = slack.body(message(), interactive=False)["blocks"]
    actions = next(b for b in linked if b["type"] == "actions")["elements"]
    assert [(a["action_id"], a.get("url")) for a in actions] == [
        (slack.APPROVE, LINKS.approve),
        (slack.DENY, LINKS.deny),
        (slack.VIEW, LINKS.view),
    ]
    interactive = slack.body(message(), interactive=True)["blocks"]
    actions = next(b for b in interactive if b["type"] == "actions")["elements"]
    assert [(a["action_id"], a.get("url"), a.get("value")) for a in actions][:2] == [
        (slack.APPROVE, None, message().request.id),
        (slack.DENY, LINKS.deny, message().request.id),  # its page asks for the reason
    ]
    outcome = slack.body(
        message("request.approved", asks_decision=False, links=Links(view=LINKS.view)),
        interactive=True,
    )["blocks"]
    actions = next(b for b in outcome if b["type"] == "actions")["elements"]
    assert [a["action_id"] for a in actions] == [slack.VIEW]


@pytest.mark.parametrize("reason", ["<&>" * 1000, "x" * 1000 + "<" * 2500, "&" * 2900])
def test_a_long_reason_stays_within_block_kit_limits(reason: str) -> None:
    body = slack.body(message(reason=reason), interactive=True)
    assert [b.to_dict() for b in Block.parse_all(body["blocks"])] == body["blocks"]
    text = body["blocks"][2]["elements"][0]["elements"][1]["text"]
    if len(reason) <= slack.REASON_LIMIT:  # shown whole, as typed: no escape lengthens it
        assert text == reason
    else:  # cut at the limit, not before it
        assert text == reason[: slack.REASON_LIMIT - 1] + "…"


def _client(handler: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_slack_bot_sends_a_direct_message_to_the_recipient() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if request.url.path.endswith("users.lookupByEmail"):
            return httpx.Response(200, json={"ok": True, "user": {"id": "U42"}})
        return httpx.Response(200, json={"ok": True})

    deps = NotifierDeps(http=_client(handler), env={"BOT": "xoxb-1"})
    notifier = slack.SlackNotifier("s", {"type": "slack", "bot_token_env": "BOT"}, deps)
    notifier.send(message())
    notifier.send(message())
    assert [c.url.path for c in calls] == [
        "/api/users.lookupByEmail",
        "/api/chat.postMessage",
        "/api/chat.postMessage",
    ]
    assert json.loads(calls[1].content)["channel"] == "U42"
    assert calls[1].headers["authorization"] == "Bearer xoxb-1"


@pytest.mark.parametrize(
    ("answer", "retryable"),
    [
        ({"ok": False, "error": "users_not_found"}, False),
        ({"ok": False, "error": "ratelimited"}, True),
    ],
)
def test_slack_api_errors(answer: dict[str, Any], retryable: bool) -> None:
    deps = NotifierDeps(
        http=_client(lambda r: httpx.Response(200, json=answer)), env={"BOT": "xoxb-secret-token"}
    )
    notifier = slack.SlackNotifier("s", {"type": "slack", "bot_token_env": "BOT"}, deps)
    with pytest.raises(DeliveryFailed) as raised:
        notifier.send(message())
    assert raised.value.retryable is retryable
    assert "xoxb" not in raised.value.reason


# -- HTTP failure policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (429, True), (408, True), (400, False), (403, False), (404, False)],
)
def test_http_status_policy(status: int, retryable: bool) -> None:
    secret_url = "https://hooks.slack.example/services/T000/B000/SECRETPART"
    deps = NotifierDeps(
        http=_client(lambda r: httpx.Response(status, headers={"retry-after": "7"})),
        env={"URL": secret_url},
    )
    notifier = slack.SlackNotifier("s", {"type": "slack", "webhook_url_env": "URL"}, deps)
    with pytest.raises(DeliveryFailed) as raised:
        notifier.send(message())
    assert raised.value.retryable is retryable and raised.value.status == status
    assert raised.value.retry_after == 7.0
    assert "SECRETPART" not in raised.value.reason and "hooks" not in raised.value.reason


def test_network_errors_are_retried_without_the_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connect to https://hooks.slack.example/SECRETPART failed")

    deps = NotifierDeps(http=_client(handler), env={"URL": "https://x.example/SECRETPART"})
    notifier = teams.TeamsNotifier("t", {"type": "teams", "webhook_url_env": "URL"}, deps)
    with pytest.raises(DeliveryFailed) as raised:
        notifier.send(message())
    assert raised.value.retryable and "SECRETPART" not in raised.value.reason


# -- Teams ------------------------------------------------------------------------------------

TEXT = {"type": "string", "minLength": 1}
CARD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["type", "attachments"],
    "properties": {
        "type": {"const": "message"},
        "attachments": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["contentType", "content"],
                "properties": {
                    "contentType": {"const": "application/vnd.microsoft.card.adaptive"},
                    "contentUrl": {"type": "null"},
                    "content": {"$ref": "#/$defs/card"},
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
    "$defs": {
        "card": {
            "type": "object",
            "required": ["type", "version", "body"],
            "properties": {
                "$schema": {"const": "http://adaptivecards.io/schemas/adaptive-card.json"},
                "type": {"const": "AdaptiveCard"},
                "version": {"enum": ["1.4", "1.5"]},
                "body": {
                    "type": "array",
                    "items": {
                        "oneOf": [{"$ref": "#/$defs/textBlock"}, {"$ref": "#/$defs/factSet"}]
                    },
                },
                "actions": {"type": "array", "maxItems": 6, "items": {"$ref": "#/$defs/openUrl"}},
            },
            "additionalProperties": False,
        },
        "textBlock": {
            "type": "object",
            "required": ["type", "text"],
            "properties": {
                "type": {"const": "TextBlock"},
                "text": TEXT,
                "wrap": {"type": "boolean"},
                "weight": {"enum": ["Default", "Lighter", "Bolder"]},
                "size": {"enum": ["Default", "Small", "Medium", "Large", "ExtraLarge"]},
                "spacing": {
                    "enum": ["None", "Small", "Default", "Medium", "Large", "ExtraLarge", "Padding"]
                },
            },
            "additionalProperties": False,
        },
        "factSet": {
            "type": "object",
            "required": ["type", "facts"],
            "properties": {
                "type": {"const": "FactSet"},
                "facts": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["title", "value"],
                        "properties": {"title": TEXT, "value": TEXT},
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
        "openUrl": {
            "type": "object",
            "required": ["type", "url"],
            "properties": {
                "type": {"const": "Action.OpenUrl"},
                "title": TEXT,
                "url": {"type": "string", "pattern": "^https?://"},
                "style": {"enum": ["default", "positive", "destructive"]},
            },
            "additionalProperties": False,
        },
    },
}


def test_teams_card_matches_the_schema_and_is_inert() -> None:
    body = teams.webhook_body(message())
    validator = jsonschema_rs.validator_for(CARD_SCHEMA)
    assert [str(e) for e in validator.iter_errors(body)] == []
    text = json.dumps(body, ensure_ascii=False)
    assert_inert_text(text)
    assert "[Approve](https" not in text and "**x**" not in text
    assert (
        r"\[Approve\]\(https://evil.example\)"
        in body["attachments"][0]["content"]["body"][3]["text"]
    )
    card = body["attachments"][0]["content"]
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Duration"] == "2 hours" and facts["Urgency"] == "high"
    assert "2b7f6c1e" in facts["Request"]
    assert [a["title"] for a in card["actions"]] == ["Approve", "Deny", "View details"]


def test_teams_escaping() -> None:
    assert teams_escape("[a](b) **c** <d> &") == r"\[a\]\(b\) \*\*c\*\* &lt;d&gt; &amp;"
    # list and heading marks only where they would start one; addresses and versions stay
    assert teams_escape("jane.doe@example.com on prod-db-01, v1.2") == (
        "jane.doe@example.com on prod-db-01, v1.2"
    )
    assert teams_escape("- a") == r"\- a" and teams_escape("+ a") == r"\+ a"
    assert teams_escape("# INC-1") == r"\# INC-1" and teams_escape("12. item") == r"12\. item"


# -- e-mail -----------------------------------------------------------------------------------


def test_email_is_multipart_with_safe_headers_and_escaped_html() -> None:
    mime = mail.compose(
        message(recipient="mark.lee@example.com\r\nBcc: x@example.com"), "jit@example.com"
    )
    raw = mime.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email_policy.default)
    assert parsed["Bcc"] is None
    assert "\n" not in str(parsed["Subject"]) and "\r" not in str(parsed["To"])
    assert "2b7f6c1e-0000-4000-8000-000000000001" in str(parsed["Subject"])
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert LINKS.approve in text and LINKS.deny in text and LINKS.view in text
    assert "<script>" not in html and "&lt;script&gt;" in html and "<b>bold" not in html
    assert f'href="{LINKS.approve}"' in html and "2 hours" in html
    assert "\r" not in text.replace("\r\n", "\n")


# -- PagerDuty --------------------------------------------------------------------------------


def test_pagerduty_trigger_and_resolve() -> None:
    trigger = pagerduty.event_body(message(), "R" * 32)
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == message().request.id
    payload = trigger["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "jitgate"
    assert len(payload["summary"]) <= 1024 and "\r" not in payload["summary"]
    assert message().request.id in payload["summary"]
    assert trigger["links"] == [
        {"href": LINKS.view, "text": f"View request {message().request.id}"}
    ]
    assert LINKS.approve not in json.dumps(trigger)
    resolve = pagerduty.event_body(
        message("request.approved", asks_decision=False, action="resolve"), "R" * 32
    )
    assert resolve == {
        "routing_key": "R" * 32,
        "event_action": "resolve",
        "dedup_key": message().request.id,
    }


# -- webhook ----------------------------------------------------------------------------------


def test_webhook_is_signed_json_without_links() -> None:
    sent: list[httpx.Request] = []
    secret = new_secret()

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    deps = NotifierDeps(http=_client(handler), env={"S": secret})
    notifier = webhook.WebhookNotifier(
        "w",
        {"type": "webhook", "url": "https://siem.example/h", "secret_env": "S"},
        deps,
        clock=lambda: 1_800_000_000.0,
    )
    notifier.send(message())
    notifier.send(message(attempt=2))
    first, second = sent
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == message().id
    assert verify_webhook(secret, dict(first.headers), first.content, now=1_800_000_000)
    body = json.loads(first.content)
    assert body["type"] == "request.created" and body["data"]["request"]["reason"] == INJECTIONS
    assert "/l/" not in first.content.decode()


def test_human_durations() -> None:
    assert human_duration(7200) == "2 hours"
    assert human_duration(5400) == "1 hour 30 minutes"
    assert human_duration(45) == "45 seconds"
