"""PagerDuty paged on any route is resolved (SPEC §6), as the Events API receiver sees it.

A policy that routes ``request.created`` to PagerDuty (not only ``request.urgent`` or
``request.escalated``) opens an incident per request; approving, denying, withdrawing or
letting the request expire must close that incident: one ``resolve`` with the same
``dedup_key``, however many routes paged the channel.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from notify_sinks import HttpSink, Notify, channels, peer_env, with_notifications

from jitgate.domain.policy import Policy
from jitgate.service import decisions, lifecycle

pytest_plugins = ["conftest_notify"]

MARK, SAM, JANE = "mark.lee@example.com", "sam@example.com", "jane.doe@example.com"
CREATED_PAGES: dict[str, Any] = {
    "request.created": ("approvers", ("slack", "pagerduty", "siem")),
    "request.approved": ("requester", ("slack", "siem")),
    "request.denied": ("requester", ("slack", "siem")),
    "request.expired": ("requester", ("slack",)),
}


@pytest.fixture
def wired(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> Callable[..., Notify]:
    def make(routes: dict[str, Any]) -> Notify:
        policy = with_notifications(example_policy, channels(http_sink), routes)
        return notify(db_url, policy, peer_env(http_sink))

    return make


def pagerduty_saw(sink: HttpSink, request_id: str) -> list[dict[str, Any]]:
    return [r.json() for r in sink.paths("/pagerduty/") if r.json()["dedup_key"] == request_id]


def _approve(n: Notify, request_id: str) -> None:
    for approver in (SAM, MARK):
        decisions.approve_request(n.ctx, request_id=request_id, approver=approver)


def _deny(n: Notify, request_id: str) -> None:
    decisions.deny_request(n.ctx, request_id=request_id, approver=SAM, reason="not now")


def _withdraw(n: Notify, request_id: str) -> None:
    decisions.revoke_request(n.ctx, request_id=request_id, actor=JANE, reason="fixed itself")


def _expire(n: Notify, request_id: str) -> None:
    n.later(3600)
    assert lifecycle.expire_pending(n.ctx) == 1


LEAVE = {"approve": _approve, "deny": _deny, "withdraw": _withdraw, "expire": _expire}


@pytest.mark.parametrize("how", sorted(LEAVE))
def test_an_incident_opened_by_the_created_route_is_resolved(
    wired: Callable[..., Notify], http_sink: HttpSink, how: str
) -> None:
    n = wired(CREATED_PAGES)
    request = n.create()
    n.deliver()
    (trigger,) = pagerduty_saw(http_sink, request.id)
    assert trigger["event_action"] == "trigger" and trigger["payload"]["class"] == "request.created"
    n.later(60)
    LEAVE[how](n, request.id)
    n.deliver(3)
    events = pagerduty_saw(http_sink, request.id)
    assert [e["event_action"] for e in events] == ["trigger", "resolve"]
    assert events[1] == {
        "routing_key": peer_env(http_sink)["PD_KEY"],
        "event_action": "resolve",
        "dedup_key": request.id,
    }


def test_a_channel_paged_by_three_routes_gets_one_resolve(
    wired: Callable[..., Notify], http_sink: HttpSink
) -> None:
    routes = {
        **CREATED_PAGES,
        "request.urgent": ("oncall", ("pagerduty",)),
        "request.escalated": ("escalate_to", ("pagerduty", "slack")),
        "request.approved": ("requester", ("pagerduty", "slack")),  # informing, same channel
        "access.expiring": ("requester", ("pagerduty", "slack")),  # nothing to page for
    }
    n = wired(routes)
    request = n.create(urgency="high")
    n.deliver()
    n.clock.advance(timedelta(minutes=31))
    assert lifecycle.escalate(n.ctx) == 1
    n.deliver()
    decisions.approve_request(n.ctx, request_id=request.id, approver="lee@example.com")
    decisions.approve_request(n.ctx, request_id=request.id, approver=SAM)
    n.deliver(3)
    lifecycle.tick(n.ctx)  # active
    n.clock.advance(timedelta(hours=1, minutes=50))
    lifecycle.tick(n.ctx)  # access.expiring
    n.deliver(3)
    events = pagerduty_saw(http_sink, request.id)
    assert [(e["event_action"], e.get("payload", {}).get("class")) for e in events] == [
        ("trigger", "request.created"),
        ("trigger", "request.urgent"),
        ("trigger", "request.escalated"),
        ("resolve", None),
    ]
    assert len(http_sink.paths("/pagerduty/")) == 4
    slack_titles = [r.json()["text"] for r in http_sink.paths("/slack/webhook")]
    assert any("Access expiring soon" in t for t in slack_titles), slack_titles
