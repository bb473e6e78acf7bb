"""PagerDuty on any route (SPEC §6: ``trigger`` with ``dedup_key`` = request id, ``resolve``
once decided): whatever route paged a channel, the request leaving pending resolves it,
once per channel; an event that neither asks nor closes pages nobody."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from jitgate.adapters.notifiers.pagerduty import event_body
from jitgate.domain.creation import Draft, open_request
from jitgate.domain.policy import Notifications, Policy, Route
from jitgate.domain.request import AccessRequest
from jitgate.service.notifications import Message, RoutePlanner
from jitgate.service.ports import Notification

CHANNELS: dict[str, dict[str, Any]] = {
    "slack": {"type": "slack", "webhook_url_env": "SLACK_URL"},
    "mail": {"type": "email", "smtp_host": "127.0.0.1", "sender": "jit@example.com"},
    "pd": {"type": "pagerduty", "routing_key_env": "PD_KEY"},
    "pd2": {"type": "pagerduty", "routing_key_env": "PD_KEY_2"},
}
MARK, SAM, JANE = "mark.lee@example.com", "sam@example.com", "jane.doe@example.com"
Routes = dict[str, tuple[str, tuple[str, ...]]]
#: The reviewer's policy: PagerDuty on the approvers' route, and only there.
CREATED_PAGES: Routes = {
    "request.created": ("approvers", ("slack", "mail", "pd")),
    "request.approved": ("requester", ("slack", "mail")),
    "request.denied": ("requester", ("slack", "mail")),
    "request.expired": ("requester", ("slack",)),
}


def policy_with(base: Policy, routes: Routes) -> Policy:
    written = {k: Route(to, via) for k, (to, via) in routes.items()}
    return replace(
        base,
        notifications=Notifications(channels=CHANNELS, routes=written),
        digest=base.digest + json.dumps(routes, sort_keys=True),
    )


def new_request(
    policy: Policy, now: datetime, urgency: str = "normal", roles: tuple[str, ...] = ("sre-oncall",)
) -> AccessRequest:
    draft = Draft(roles=roles, reason="INC-7 disk full", urgency=urgency)
    return open_request(policy, draft, requester=JANE, request_id="req-pd", now=now)


def plan(planner: RoutePlanner, request: AccessRequest, policy: Policy, now: datetime) -> list[Any]:
    planned = [n for e in request.events for n in planner.plan(e, request, policy, now)]
    request.events.clear()
    return planned


def pages(planned: list[Notification]) -> list[tuple[str, str, str]]:
    """(channel, event, what PagerDuty is sent) for every PagerDuty message planned."""
    out = []
    for note in planned:
        if not note.channel.startswith("pd"):
            continue
        message = Message.from_payload(note.payload, id="n", channel=note.channel, recipient=None)
        out.append((note.channel, note.event, event_body(message, "KEY")["event_action"]))
    return out


def _approve(request: AccessRequest, policy: Policy, now: datetime) -> None:
    for person in (SAM, MARK):
        request.approve(person, directory=policy.directory, now=now)


def _deny(request: AccessRequest, policy: Policy, now: datetime) -> None:
    request.deny(SAM, reason="not now", directory=policy.directory, now=now)


def _withdraw(request: AccessRequest, policy: Policy, now: datetime) -> None:
    request.revoke(JANE, reason="fixed itself", now=now, is_admin=False)


def _expire(request: AccessRequest, policy: Policy, now: datetime) -> None:
    request.expire_pending(request.expires_at)


LEAVING: dict[str, tuple[Callable[[AccessRequest, Policy, datetime], None], str]] = {
    "approved": (_approve, "request.approved"),
    "denied": (_deny, "request.denied"),
    "withdrawn": (_withdraw, "request.revoked"),
    "expired": (_expire, "request.expired"),
}


@pytest.mark.parametrize("how", sorted(LEAVING))
def test_a_page_sent_on_the_created_route_is_resolved_when_the_request_leaves_pending(
    example_policy: Policy, start: datetime, how: str
) -> None:
    policy = policy_with(example_policy, CREATED_PAGES)
    planner = RoutePlanner()
    request = new_request(policy, start)
    assert pages(plan(planner, request, policy, start)) == [("pd", "request.created", "trigger")]
    leave, event = LEAVING[how]
    later = start + timedelta(minutes=5)
    leave(request, policy, later)
    planned = plan(planner, request, policy, later)
    assert pages(planned) == [("pd", event, "resolve")]
    (resolve,) = [n for n in planned if n.channel == "pd"]
    assert resolve.payload["action"] == "resolve" and resolve.request_id == request.id
    assert resolve.recipient is None


def test_a_channel_paged_on_every_asking_route_is_resolved_once(
    example_policy: Policy, start: datetime
) -> None:
    routes: Routes = {
        **CREATED_PAGES,
        "request.urgent": ("oncall", ("pd", "pd2")),
        "request.escalated": ("escalate_to", ("pd", "mail")),
        "request.approved": ("requester", ("pd", "mail")),  # informs, on a paged channel too
    }
    policy = policy_with(example_policy, routes)
    planner = RoutePlanner()
    request = new_request(policy, start, urgency="high")
    assert sorted(pages(plan(planner, request, policy, start))) == [
        ("pd", "request.created", "trigger"),
        ("pd", "request.urgent", "trigger"),
        ("pd2", "request.urgent", "trigger"),
    ]
    later = start + timedelta(minutes=31)
    request.escalate(later)
    assert pages(plan(planner, request, policy, later)) == [("pd", "request.escalated", "trigger")]
    _approve(request, policy, later)
    assert sorted(pages(plan(planner, request, policy, later))) == [
        ("pd", "request.approved", "resolve"),
        ("pd2", "request.approved", "resolve"),
    ]


def test_an_informing_route_to_pagerduty_resolves_and_never_triggers(
    example_policy: Policy, start: datetime
) -> None:
    """request.denied to the requester via PagerDuty: what it sends is the resolve of the
    request's incident (once, though the channel also paged on request.created)."""
    routes: Routes = {**CREATED_PAGES, "request.denied": ("requester", ("pd", "mail"))}
    policy = policy_with(example_policy, routes)
    planner = RoutePlanner()
    request = new_request(policy, start)
    plan(planner, request, policy, start)
    _deny(request, policy, start)
    planned = plan(planner, request, policy, start)
    assert pages(planned) == [("pd", "request.denied", "resolve")]
    assert [(n.channel, n.recipient) for n in planned if n.channel == "mail"] == [("mail", JANE)]


def test_access_expiring_pages_nobody(example_policy: Policy, start: datetime) -> None:
    """An approved grant about to end has no decision to page for, and its incident was
    resolved when it was approved: a PagerDuty channel on access.expiring gets nothing."""
    routes: Routes = {**CREATED_PAGES, "access.expiring": ("requester", ("slack", "pd"))}
    policy = policy_with(example_policy, routes)
    planner = RoutePlanner()
    request = new_request(policy, start)
    plan(planner, request, policy, start)
    _approve(request, policy, start)
    assert pages(plan(planner, request, policy, start)) == [("pd", "request.approved", "resolve")]
    request.activate(start)
    soon = start + timedelta(hours=1, minutes=50)
    request.warn_expiring(soon)
    planned = plan(planner, request, policy, soon)
    assert [(n.channel, n.event) for n in planned] == [("slack", "access.expiring")]


def test_a_request_approved_as_it_was_created_pages_and_resolves_nothing(
    example_policy: Policy, start: datetime
) -> None:
    routes: Routes = {**CREATED_PAGES, "request.urgent": ("oncall", ("pd",))}
    policy = policy_with(example_policy, routes)
    request = new_request(policy, start, urgency="high", roles=("dev-ssh",))  # rule: self
    planned = plan(RoutePlanner(), request, policy, start)
    assert pages(planned) == []
    assert {n.event for n in planned} == {"request.approved"}


def test_a_disabled_pagerduty_channel_gets_no_resolve(
    example_policy: Policy, start: datetime
) -> None:
    policy = policy_with(example_policy, CREATED_PAGES)
    planner = RoutePlanner(lambda name, config: None if name == "pd" else "channel")
    request = new_request(policy, start)
    plan(planner, request, policy, start)
    _withdraw(request, policy, start)
    assert pages(plan(planner, request, policy, start)) == []
