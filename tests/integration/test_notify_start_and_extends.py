"""What the receivers see of a scheduled request and of an extension (SPEC §6): Slack, Teams,
PagerDuty and the Standard Webhooks receiver on a real HTTP server, mail through aiosmtpd,
and the link's confirmation page served by uvicorn all say when the grant starts and which
request an extension extends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from notify_sinks import (
    HttpSink,
    Notify,
    ServedApi,
    SmtpSink,
    channels,
    peer_env,
    with_notifications,
)

from jitgate.bootstrap import App
from jitgate.config import Settings
from jitgate.domain.policy import Policy
from jitgate.domain.request import AccessRequest
from jitgate.entrypoints.api.app import create_app
from jitgate.service import decisions
from jitgate.service.links import Link
from jitgate.service.requests import extend_request

pytest_plugins = ["conftest_notify"]

MARK, SAM, JANE = "mark.lee@example.com", "sam@example.com", "jane.doe@example.com"
ROUTES: dict[str, Any] = {
    "request.created": ("approvers", ("slack", "teams", "siem", "mail", "pagerduty")),
}


@pytest.fixture
def wired(
    notify: Callable[..., Notify],
    db_url: str,
    example_policy: Policy,
    http_sink: HttpSink,
    smtp_sink: SmtpSink,
) -> Notify:
    policy = with_notifications(example_policy, channels(http_sink, smtp_sink), ROUTES)
    return notify(db_url, policy, peer_env(http_sink, smtp_sink))


@pytest.fixture
def page_of(wired: Notify, db_url: str) -> Iterator[Callable[[AccessRequest], str]]:
    """The HTML of ``request``'s View link, as Mark's browser gets it from a served app."""
    app = App(Settings(database_url=db_url), None, wired.ctx, notify=wired.rt)  # type: ignore[arg-type]
    served = ServedApi(create_app(app))
    client = httpx.Client(base_url=served.url, timeout=10)

    def get(request: AccessRequest) -> str:
        until = request.created_at + timedelta(days=7)
        token = wired.rt.signer.mint(Link(request.id, "view", MARK, until, "mail"))
        got = client.get(f"/l/{token}")
        assert got.status_code == 200, got.text
        return got.text

    yield get
    client.close()
    served.stop()


def slack_facts(sink: HttpSink, request_id: str) -> str:
    (post,) = [p for p in sink.paths("/slack/webhook") if request_id in p.json()["text"]]
    block = next(b for b in post.json()["blocks"] if b["type"] == "rich_text")
    return "".join(e["text"] for s in block["elements"] for e in s["elements"])


def teams_facts(sink: HttpSink, request_id: str) -> dict[str, str]:
    (post,) = [p for p in sink.paths("/teams/") if request_id in p.body.decode()]
    card = post.json()["attachments"][0]["content"]
    return {
        f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]
    }


def hook_request(sink: HttpSink, request_id: str) -> dict[str, Any]:
    bodies = [p.json() for p in sink.paths("/hook")]
    (found,) = [b["data"]["request"] for b in bodies if b["data"]["request"]["id"] == request_id]
    return found


def pd_details(sink: HttpSink, request_id: str) -> dict[str, str]:
    (page,) = [p.json() for p in sink.paths("/pagerduty/") if p.json()["dedup_key"] == request_id]
    return dict(page["payload"]["custom_details"])


def mails_to(smtp: SmtpSink, who: str, request_id: str) -> list[tuple[str, str, str]]:
    return [
        (
            m["Subject"],
            m.get_body(("plain",)).get_content(),
            m.get_body(("html",)).get_content(),
        )
        for m in smtp.messages
        if m["To"] == who and request_id in m["Subject"]
    ]


def test_a_scheduled_request_says_when_it_starts(
    wired: Notify,
    http_sink: HttpSink,
    smtp_sink: SmtpSink,
    page_of: Callable[[AccessRequest], str],
    start: datetime,
) -> None:
    begins = start.replace(hour=9) + timedelta(days=1)
    request = wired.create(start_at=begins)
    wired.deliver()
    shown = "2026-03-03 09:00 UTC"
    assert f"Starts: {shown}" in slack_facts(http_sink, request.id)
    assert teams_facts(http_sink, request.id)["Starts"] == shown
    assert pd_details(http_sink, request.id)["Starts"] == shown
    sent = hook_request(http_sink, request.id)
    assert datetime.fromisoformat(sent["start_at"]) == begins and sent["extends"] is None
    ((_, text, html),) = mails_to(smtp_sink, MARK, request.id)
    assert f"Starts: {shown}" in text and f"<td>{shown}</td>" in html
    page = page_of(request)
    assert '<th>Starts</th><td id="starts">2026-03-03 09:00 UTC</td>' in page
    assert 'id="extends"' not in page


def test_an_extension_names_the_request_it_extends(
    wired: Notify,
    http_sink: HttpSink,
    smtp_sink: SmtpSink,
    page_of: Callable[[AccessRequest], str],
) -> None:
    grant = wired.create()
    for approver in (SAM, MARK):
        decisions.approve_request(wired.ctx, request_id=grant.id, approver=approver)
    wired.later(600)
    extension = extend_request(
        wired.ctx,
        request_id=grant.id,
        requester=JANE,
        duration=timedelta(hours=1),
        reason="the migration runs late",
    )
    wired.deliver()
    told = f"request {grant.id}"
    facts = slack_facts(http_sink, extension.id)
    assert f"Extends: {told}" in facts
    assert "Starts" not in facts  # not scheduled
    (post,) = [p for p in http_sink.paths("/slack/webhook") if extension.id in p.json()["text"]]
    assert "asks to extend sre-oncall by 1 hour" in post.json()["text"]
    assert teams_facts(http_sink, extension.id)["Extends"] == told
    assert pd_details(http_sink, extension.id)["Extends"] == told
    sent = hook_request(http_sink, extension.id)
    assert sent["extends"] == grant.id and sent["start_at"] is None
    assert hook_request(http_sink, grant.id)["extends"] is None
    ((subject, text, html),) = mails_to(smtp_sink, MARK, extension.id)
    assert "Access extension request" in subject
    assert f"Extends: {told}" in text and f"<td>{told}</td>" in html
    page = page_of(extension)
    assert f'<th>Extends</th><td id="extends">{told}</td>' in page
