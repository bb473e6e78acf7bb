"""Every channel against a real local peer: payload shape, signatures, dedup, inert text.

Slack (webhook and bot DMs), Teams, PagerDuty and a Standard Webhooks receiver are one
``HttpSink`` on 127.0.0.1; e-mail goes to aiosmtpd requiring STARTTLS (self-signed
certificate trusted through the channel's ``ca_file``) and AUTH LOGIN.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from notify_sinks import (
    INJECTIONS,
    LINK_SECRET,
    HttpSink,
    Notify,
    SmtpSink,
    channels,
    peer_env,
    slack_id,
    with_notifications,
)
from slack_sdk.models.blocks import Block

from jitgate.adapters.links import HmacLinkSigner
from jitgate.adapters.signing import verify_webhook
from jitgate.domain.policy import Policy
from jitgate.service import decisions
from jitgate.service.delivery import list_notifications

pytest_plugins = ["conftest_notify"]

ROUTES = {
    "request.created": ("approvers", ("slack", "slack-dm", "teams", "siem", "mail")),
    "request.urgent": ("oncall", ("pagerduty",)),
    "request.approved": ("requester", ("slack", "mail", "siem")),
    "request.denied": ("requester", ("slack", "mail")),
}
APPROVERS = ["mark.lee@example.com", "sam@example.com"]


def inert(text: str) -> None:
    for raw in ("<!channel>", "<https://evil", "<script>", "@here", "\r\nBcc"):
        assert raw not in text, raw


def slack_inert(body: dict[str, Any]) -> None:
    """mrkdwn text is escaped; the facts and the reason are literal ``text`` elements of
    rich_text blocks (where a mention or a link could only be an element of its own)."""
    literal = [b for b in body["blocks"] if b["type"] == "rich_text"]
    inert(json.dumps({**body, "blocks": [b for b in body["blocks"] if b not in literal]}))
    kinds = {e["type"] for b in literal for s in b["elements"] for e in s["elements"]}
    assert len(literal) == 2 and kinds == {"text"}


@pytest.fixture
def wired(
    notify: Callable[..., Notify],
    db_url: str,
    example_policy: Policy,
    http_sink: HttpSink,
    smtp_sink: SmtpSink,
) -> Callable[..., Notify]:
    """``wired(routes=ROUTES)``: the service with every channel pointed at the sinks."""

    def make(routes: dict[str, Any] = ROUTES) -> Notify:
        policy = with_notifications(example_policy, channels(http_sink, smtp_sink), routes)
        return notify(db_url, policy, peer_env(http_sink, smtp_sink))

    return make


def test_every_channel_speaks_its_peer_format(
    wired: Callable[..., Notify], http_sink: HttpSink, smtp_sink: SmtpSink
) -> None:
    n = wired()
    request = n.create(reason=INJECTIONS, urgency="high")
    n.deliver()
    signer = HmacLinkSigner(LINK_SECRET.encode())

    (webhook_post,) = http_sink.paths("/slack/webhook")
    body = webhook_post.json()
    assert [b.to_dict() for b in Block.parse_all(body["blocks"])] == body["blocks"]
    assert request.id in body["text"] and body["channel"] == "#access"
    slack_inert(body)
    actions = next(b for b in body["blocks"] if b["type"] == "actions")["elements"]
    assert [a["text"]["text"] for a in actions] == ["Approve", "Deny", "View details"]
    assert signer.read(actions[0]["url"].rsplit("/", 1)[1]).subject == ""  # a shared channel

    lookups = http_sink.paths("/slack/api/users.lookupByEmail")
    posts = http_sink.paths("/slack/api/chat.postMessage")
    assert len(lookups) == 2 and len(posts) == 2
    assert sorted(p.json()["channel"] for p in posts) == sorted(slack_id(a) for a in APPROVERS)
    for post in posts:
        slack_inert(post.json())
    dm_actions = next(b for b in posts[0].json()["blocks"] if b["type"] == "actions")["elements"]
    # Approve is interactive; Deny opens its page, which asks for the reason a deny needs
    assert [a.get("url") is None for a in dm_actions] == [True, False, False]
    deny = signer.read(dm_actions[1]["url"].rsplit("/", 1)[1])
    assert deny.action == "deny" and slack_id(deny.subject) == posts[0].json()["channel"]

    (card_post,) = http_sink.paths("/teams/")
    card = card_post.json()["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard" and card["content"]["version"] == "1.4"
    inert(card_post.body.decode())
    assert "[Approve](https" not in card_post.body.decode()

    (page,) = http_sink.paths("/pagerduty/")
    event = page.json()
    assert event["event_action"] == "trigger" and event["dedup_key"] == request.id
    assert event["routing_key"] == peer_env(http_sink)["PD_KEY"]
    assert event["payload"]["severity"] == "critical"

    (hook,) = http_sink.paths("/hook")
    secret = n.rt.env["HOOK_SECRET"]
    assert verify_webhook(
        secret, hook.headers, hook.body, now=int(hook.headers["webhook-timestamp"])
    )
    assert hook.json()["data"]["request"]["id"] == request.id

    mails = {m["To"]: m for m in smtp_sink.messages}
    assert sorted(mails) == APPROVERS and smtp_sink.logins == ["jit", "jit"]
    for who, mime in mails.items():
        assert request.id in mime["Subject"] and mime["Bcc"] is None
        text = mime.get_body(("plain",)).get_content()
        html = mime.get_body(("html",)).get_content()
        assert "<script>" not in html and "&lt;script&gt;" in html
        urls = [
            line.split()[-1]
            for line in text.splitlines()
            if line.startswith(("Approve:", "Deny:", "View:"))
        ]
        assert len(urls) == 3
        links = [signer.read(u.rsplit("/", 1)[1]) for u in urls]
        assert {link.subject for link in links} == {who}
        assert [link.action for link in links] == ["approve", "deny", "view"]
        assert links[0].expires_at == request.expires_at.replace(microsecond=0)

    sent = [
        i
        for i in list_notifications(n.ctx.uow, n.rt.delivery.store_of, failed_only=False)
        if i.status == "sent"
    ]
    assert len(sent) == 8


def test_pagerduty_resolves_once_when_decided(
    wired: Callable[..., Notify], http_sink: HttpSink, smtp_sink: SmtpSink
) -> None:
    n = wired()
    request = n.create(urgency="high")
    n.deliver()
    n.later(60)
    for approver in APPROVERS:
        decisions.approve_request(n.ctx, request_id=request.id, approver=approver)
    n.deliver(3)
    events = [r.json() for r in http_sink.paths("/pagerduty/")]
    assert [(e["event_action"], e["dedup_key"]) for e in events] == [
        ("trigger", request.id),
        ("resolve", request.id),
    ]
    outcome = [m for m in smtp_sink.messages if m["To"] == "jane.doe@example.com"]
    assert len(outcome) == 1 and "approved" in outcome[0]["Subject"]


def test_audit_rows_carry_no_link_or_secret(
    wired: Callable[..., Notify], http_sink: HttpSink, smtp_sink: SmtpSink
) -> None:
    n = wired()
    request = n.create()
    n.deliver()
    from jitgate.service.ports import AuditQuery

    with n.ctx.uow(write=False) as uow:
        rows = uow.audit.find(AuditQuery(type="notification.sent", limit=100))
    assert len(rows) == 7
    dumped = json.dumps([r.data for r in rows])
    env = peer_env(http_sink, smtp_sink)
    for secret in ("/l/", "v1.", env["PD_KEY"], "xoxb", LINK_SECRET, "whsec_", http_sink.url):
        assert secret not in dumped
    data: dict[str, Any] = rows[0].data
    assert set(data) == {"notification", "channel", "recipient", "event", "attempt", "status"}
    assert all(r.request_id == request.id for r in rows)


def test_a_later_escalation_pages_the_same_incident(
    wired: Callable[..., Notify], http_sink: HttpSink, smtp_sink: SmtpSink
) -> None:
    routes = {**ROUTES, "request.escalated": ("escalate_to", ("pagerduty", "mail"))}
    n = wired(routes)
    request = n.create(urgency="high")
    n.deliver()
    n.clock.advance(timedelta(minutes=31))
    from jitgate.service import lifecycle

    lifecycle.escalate(n.ctx)
    n.deliver()
    decisions.deny_request(
        n.ctx, request_id=request.id, approver="lee@example.com", reason="not now"
    )
    n.deliver(2)
    events = [r.json() for r in http_sink.paths("/pagerduty/")]
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
    assert {e["dedup_key"] for e in events} == {request.id}
    assert [m["To"] for m in smtp_sink.messages][-2:] == ["lee@example.com", "jane.doe@example.com"]
