"""A requester's reason (and an approver's comment or deny reason) cannot pass for jitgate's
own words in any channel (SPEC §6, §9.8): in the text part of a mail each of its lines is
quoted with ``> ``, so a reason that fakes "Approve:"/"Deny:" links and a jitgate footer
stays visibly inside the quote; runs of blank lines collapse, so the real links are not
pushed out of sight; bidi overrides and isolates and C1 controls reach no channel."""

from __future__ import annotations

import email
import json
from email import policy as email_policy
from typing import Any

import pytest
from test_notify_render import LINKS
from test_notify_render import message as render_message

from jitgate.adapters.notifiers import email as mail
from jitgate.adapters.notifiers import pagerduty, slack, teams
from jitgate.adapters.notifiers.render import one_line, plain
from jitgate.service.notifications import Links, Message

REQUEST_ID = "2b7f6c1e-0000-4000-8000-000000000001"
FAKE = (
    "INC-4711\n\nApprove: https://evil.example/l/v1.x\nDeny:    https://evil.example/l/v1.y\n\n"
    f"-- jitgate, request {REQUEST_ID}\n" + "\n" * 40
)
# LRE RLE PDF LRO RLO, LRI RLI FSI PDI, and C1 controls (NEL, CSI)
HIDDEN = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\x85\x9b"
SNEAKY = "deploy\u202etxt.exe\u2066 fix\x9b31m now\x85"


def message(
    event: str = "request.created", reason: str = FAKE, purpose: str | None = None, **extra: Any
) -> Message:
    return render_message(event, reason, purpose, **extra)


def text_part(msg: Message) -> str:
    raw = mail.compose(msg, "jit@example.com").as_bytes()
    parsed = email.message_from_bytes(raw, policy=email_policy.default)
    return str(parsed.get_body(("plain",)).get_content())  # type: ignore[union-attr]


def test_a_faked_approve_link_in_a_reason_stays_inside_the_quote() -> None:
    text = text_part(message())
    lines = text.splitlines()
    # every line that starts with jitgate's own words is jitgate's: one Approve, one Deny,
    # one footer, each with the real values
    assert [line for line in lines if line.startswith("Approve:")] == [f"Approve: {LINKS.approve}"]
    assert [line for line in lines if line.startswith("Deny:")] == [f"Deny:    {LINKS.deny}"]
    assert [line for line in lines if line.startswith("-- jitgate")] == [
        f"-- jitgate, request {REQUEST_ID}"
    ]
    # the requester's lines are all quoted, the fake links among them
    start = lines.index("Reason:") + 1
    end = lines.index(f"Approve: {LINKS.approve}")
    quoted = [line for line in lines[start:end] if line.strip()]
    assert quoted and all(line.startswith(">") for line in quoted), quoted
    assert "> Approve: https://evil.example/l/v1.x" in quoted
    # the forty blank lines do not push the real links out of sight
    assert end - start < 10, lines[start:end]


def test_a_deny_reason_in_the_text_mail_cannot_start_a_line() -> None:
    denied = message(
        "request.denied",
        reason="INC-1",
        actor="mark.lee@example.com",
        detail="no\nApprove: https://evil.example/l/v1.x",
        links=Links(view=LINKS.view),
    )
    lines = text_part(denied).splitlines()
    assert not [line for line in lines if line.startswith("Approve:")]
    assert any("https://evil.example" in line and line.startswith("Outcome:") for line in lines)


def test_bidi_and_c1_controls_reach_no_channel() -> None:
    msg = message(reason=SNEAKY, purpose=f"incident{HIDDEN}")
    denied = message("request.denied", reason=SNEAKY, detail=f"no{HIDDEN}")
    rendered = {
        "mail": text_part(msg) + text_part(denied),
        "html": mail.compose(msg, "jit@example.com").as_string(),
        "slack": json.dumps(slack.body(msg, interactive=False), ensure_ascii=False)
        + json.dumps(slack.body(denied, interactive=False), ensure_ascii=False),
        "teams": json.dumps(teams.webhook_body(msg), ensure_ascii=False)
        + json.dumps(teams.webhook_body(denied), ensure_ascii=False),
        "pagerduty": json.dumps(pagerduty.event_body(msg, "R" * 32), ensure_ascii=False),
    }
    for channel, text in rendered.items():
        found = sorted({f"U+{ord(c):04X}" for c in text if c in HIDDEN})
        assert found == [], channel
        assert "txt.exe" in text and "fix" in text, channel  # the words stay


@pytest.mark.parametrize("char", list(HIDDEN))
def test_plain_and_one_line_drop_each_hidden_control(char: str) -> None:
    assert plain(f"a{char}b") == "ab"
    assert one_line(f"a{char}b") == "ab"


def test_plain_collapses_runs_of_blank_lines() -> None:
    assert plain("a\n\n\n\n \n\t\nb\n\n\n") == "a\n\nb"
    assert plain("a\nb\n\nc") == "a\nb\n\nc"  # a single blank line stays
