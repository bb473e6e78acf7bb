"""An approver sees when a scheduled request starts and what an extension extends (SPEC §6:
every approver notice carries the request's facts): a ``Starts`` fact, an ``Extends`` fact,
an extension's title and summary saying so, and ``start_at`` / ``extends`` in the webhook's
``request`` object; on every channel, within its size limits."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime, timedelta
from email import policy as email_policy
from typing import Any

from slack_sdk.models.blocks import Block

from jitgate.adapters.notifiers import email as mail
from jitgate.adapters.notifiers import pagerduty, slack, teams, webhook
from jitgate.adapters.notifiers.render import facts, summary, title
from jitgate.domain.creation import Draft, open_request
from jitgate.domain.policy import Policy
from jitgate.service.notifications import Links, Message, RequestFacts

ORIGINAL = "7c1d2e3f-0000-4000-8000-00000000aaaa"
START = "2026-03-03T09:00:00+00:00"
LINKS = Links(
    view="https://jit.example/l/v1.view.sig",
    approve="https://jit.example/l/v1.approve.sig",
    deny="https://jit.example/l/v1.deny.sig",
)


def message(start_at: str | None = START, extends: str | None = None, **extra: Any) -> Message:
    request = RequestFacts(
        id="2b7f6c1e-0000-4000-8000-000000000001",
        requester="jane.doe@example.com",
        roles=("sre-oncall",),
        resources=("prod-db-01",),
        duration_seconds=7200,
        reason="INC-1 planned failover",
        urgency="normal",
        purpose=None,
        state="pending",
        created_at="2026-03-02T10:00:00+00:00",
        expires_at="2026-03-02T11:00:00+00:00",
        start_at=start_at,
        extends=extends,
    )
    values: dict[str, Any] = {
        "event": "request.created",
        "channel": "c",
        "recipient": "mark.lee@example.com",
        "request": request,
        "actor": "jane.doe@example.com",
        "at": "2026-03-02T10:00:00+00:00",
        "asks_decision": True,
        "approvers": ("mark.lee@example.com",),
        "id": "0c6d1f1a-1111-4111-8111-111111111111",
        "links": LINKS,
    }
    values.update(extra)
    return Message(**values)


def test_the_facts_say_when_a_scheduled_request_starts_and_what_it_extends() -> None:
    rows = dict(facts(message(extends=ORIGINAL)))
    assert rows["Starts"] == "2026-03-03 09:00 UTC"
    assert rows["Extends"] == f"request {ORIGINAL}"
    plain = dict(facts(message(start_at=None)))
    assert "Starts" not in plain and "Extends" not in plain


def test_a_start_in_another_zone_is_shown_in_utc() -> None:
    rows = dict(facts(message(start_at="2026-03-03T10:00:00+01:00")))
    assert rows["Starts"] == "2026-03-03 09:00 UTC"


def test_an_extension_is_not_announced_as_a_new_request() -> None:
    extension = message(start_at=None, extends=ORIGINAL)
    assert title(extension) == "🔐 Access extension request"
    assert "jane.doe@example.com asks to extend sre-oncall by 2 hours" in summary(extension)
    assert title(message(start_at=None)) == "🔐 Access request"
    approved = message(extends=ORIGINAL, event="request.approved", asks_decision=False)
    assert title(approved) == "✅ Access extension request approved"


def test_the_request_facts_carry_start_at_and_extends_and_survive_the_outbox(
    example_policy: Policy,
) -> None:
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    later = now + timedelta(days=1)
    draft = Draft(roles=("sre-oncall",), reason="INC-1 planned failover", start_at=later)
    request = open_request(
        example_policy,
        draft,
        requester="jane.doe@example.com",
        request_id="r-1",
        now=now,
        extends=ORIGINAL,
    )
    found = RequestFacts.of(request)
    assert found.start_at == later.isoformat() and found.extends == ORIGINAL
    sent = message(start_at=found.start_at, extends=found.extends)
    back = Message.from_payload(sent.to_payload(), id="n", channel="c", recipient=None)
    assert back.request.start_at == found.start_at and back.request.extends == ORIGINAL
    older = sent.to_payload()  # a row planned before these facts existed
    del older["request"]["start_at"], older["request"]["extends"]
    old = Message.from_payload(older, id="n", channel="c", recipient=None)
    assert old.request.start_at is None and "Starts" not in dict(facts(old))


def _slack_fact_text(body: dict[str, Any]) -> str:
    block = next(b for b in body["blocks"] if b["type"] == "rich_text")
    return "".join(e["text"] for s in block["elements"] for e in s["elements"])


def test_every_channel_shows_starts_and_extends() -> None:
    m = message(extends=ORIGINAL)
    body = slack.body(m, interactive=False)
    assert [b.to_dict() for b in Block.parse_all(body["blocks"])] == body["blocks"]
    text = _slack_fact_text(body)
    assert "Starts: 2026-03-03 09:00 UTC" in text and f"Extends: request {ORIGINAL}" in text
    assert "asks to extend" in body["text"]

    card = teams.card(m)
    rows = {
        f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]
    }
    assert rows["Starts"] == "2026-03-03 09:00 UTC" and rows["Extends"] == f"request {ORIGINAL}"

    mime = email.message_from_bytes(
        mail.compose(m, "jit@example.com").as_bytes(), policy=email_policy.default
    )
    text_part = mime.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html_part = mime.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Starts: 2026-03-03 09:00 UTC" in text_part
    assert f"Extends: request {ORIGINAL}" in text_part
    assert "<th" in html_part and "Starts</th><td>2026-03-03 09:00 UTC</td>" in html_part
    assert f"Extends</th><td>request {ORIGINAL}</td>" in html_part
    assert "Access extension request" in mime["Subject"]

    details = pagerduty.event_body(m, "KEY")["payload"]["custom_details"]
    assert details["Starts"] == "2026-03-03 09:00 UTC"
    assert details["Extends"] == f"request {ORIGINAL}"


def test_the_webhook_request_object_has_start_at_and_extends() -> None:
    request = webhook.event_body(message(extends=ORIGINAL))["data"]["request"]
    assert request["start_at"] == START and request["extends"] == ORIGINAL
    plain = webhook.event_body(message(start_at=None))["data"]["request"]
    assert plain["start_at"] is None and plain["extends"] is None
    json.dumps(plain)


def test_long_facts_stay_within_the_slack_and_teams_limits() -> None:
    huge = "x" * 5000  # not a real id; the caps hold whatever the value
    m = message(extends=huge)
    block = next(b for b in slack.body(m, interactive=False)["blocks"] if b["type"] == "rich_text")
    values = [e["text"] for s in block["elements"] for e in s["elements"]]
    assert max(len(v) for v in values) <= slack.FACT_LIMIT
    card = teams.card(m)
    facts_set = next(b for b in card["body"] if b["type"] == "FactSet")["facts"]
    assert max(len(f["value"]) for f in facts_set) <= 1000
