"""The notification planner: routes, RFC 10.5.2 defaults, recipients, PagerDuty resolve-once."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from jitgate.adapters.notifiers.render import outcome_line
from jitgate.domain.creation import Draft, open_request
from jitgate.domain.policy import Notifications, Policy, Route
from jitgate.domain.request import AccessRequest
from jitgate.service.notifications import Message, RoutePlanner, audience, routes_of
from jitgate.service.ports import Notification

CHANNELS: dict[str, dict[str, Any]] = {
    "slack": {"type": "slack", "webhook_url_env": "SLACK_URL"},
    "mail": {"type": "email", "smtp_host": "127.0.0.1", "sender": "jit@example.com"},
    "pd": {"type": "pagerduty", "routing_key_env": "PD_KEY"},
    "teams": {"type": "teams", "webhook_url_env": "TEAMS_URL"},
    "siem": {"type": "webhook", "url": "https://siem.example/h", "secret_env": "S"},
}


def policy_with(
    base: Policy,
    routes: Mapping[str, tuple[str, tuple[str, ...]]] | None = None,
    channels: dict[str, dict[str, Any]] | None = None,
) -> Policy:
    written = {k: Route(to, via) for k, (to, via) in (routes or {}).items()}
    return replace(
        base,
        notifications=Notifications(channels=channels or CHANNELS, routes=written),
        digest=base.digest + json.dumps(sorted(written)),
    )


def request_of(
    policy: Policy,
    now: datetime,
    roles: tuple[str, ...] = ("sre-oncall",),
    urgency: str = "normal",
    requester: str = "jane.doe@example.com",
) -> AccessRequest:
    draft = Draft(roles=roles, reason="INC-1 <!channel>", urgency=urgency)
    return open_request(policy, draft, requester=requester, request_id="req-1", now=now)


def plan_all(
    planner: RoutePlanner, request: AccessRequest, policy: Policy, now: datetime
) -> list[Notification]:
    planned = [n for e in request.events for n in planner.plan(e, request, policy, now)]
    request.events.clear()
    return planned


def test_defaults_follow_rfc_10_5_2(example_policy: Policy) -> None:
    routes = routes_of(policy_with(example_policy))
    assert routes["request.created"] == Route("approvers", ("slack", "mail"))
    assert routes["request.approved"] == Route("requester", ("slack", "mail"))
    assert routes["request.denied"] == Route("requester", ("slack", "mail"))
    assert routes["request.expired"] == Route("requester", ("slack",))
    assert routes["access.expiring"] == Route("requester", ("slack",))
    assert routes["request.urgent"] == Route("oncall", ("pd",))
    assert "siem" not in {c for r in routes.values() for c in r.via}


def test_created_goes_to_every_eligible_approver_personally_and_once_to_the_channel(
    example_policy: Policy, start: datetime
) -> None:
    policy = policy_with(example_policy)
    request = request_of(policy, start)
    planned = plan_all(RoutePlanner(), request, policy, start)
    by_channel = sorted((n.channel, n.recipient) for n in planned)
    assert by_channel == [
        ("mail", "mark.lee@example.com"),
        ("mail", "sam@example.com"),
        ("slack", None),
    ]
    for note in planned:
        assert note.request_id == "req-1" and note.event == "request.created"
        assert note.payload["request"]["id"] == "req-1"
        assert note.payload["asks_decision"] is True
        assert note.payload["approvers"] == ["mark.lee@example.com", "sam@example.com"]
        assert "http" not in json.dumps(note.payload)  # links are minted at delivery
        message = Message.from_payload(
            note.payload, id="x", channel=note.channel, recipient=note.recipient
        )
        assert message.request.reason == "INC-1 <!channel>"


def test_the_requester_is_never_an_approver_recipient(
    example_policy: Policy, start: datetime
) -> None:
    policy = policy_with(example_policy)
    # sam is on call; sam asks for sre-oncall: sam is not asked to approve it
    request = request_of(policy, start, requester="sam@example.com")
    assert "sam@example.com" not in audience("approvers", request, policy, start)
    planned = plan_all(RoutePlanner(), request, policy, start)
    assert all(n.recipient != "sam@example.com" for n in planned)


def test_self_approved_requests_ask_nobody_and_page_nobody(
    example_policy: Policy, start: datetime
) -> None:
    policy = policy_with(example_policy)
    request = request_of(policy, start, roles=("dev-ssh",), urgency="high")
    planned = plan_all(RoutePlanner(), request, policy, start)
    assert {n.event for n in planned} == {"request.approved"}
    assert {n.channel for n in planned} == {"slack", "mail"}
    assert all(n.recipient in (None, "jane.doe@example.com") for n in planned)


def test_urgent_pages_and_a_decision_resolves_once(example_policy: Policy, start: datetime) -> None:
    policy = policy_with(example_policy)
    planner = RoutePlanner()
    request = request_of(policy, start, urgency="high")
    planned = plan_all(planner, request, policy, start)
    pages = [n for n in planned if n.channel == "pd"]
    assert len(pages) == 1 and pages[0].event == "request.urgent"
    assert pages[0].payload["action"] == "notify" and pages[0].payload["asks_decision"]
    later = start + timedelta(minutes=1)
    request.approve("sam@example.com", directory=policy.directory, now=later)
    assert plan_all(planner, request, policy, later) == []  # one of two approvals: no outcome
    request.approve("mark.lee@example.com", directory=policy.directory, now=later)
    planned = plan_all(planner, request, policy, later)
    resolves = [n for n in planned if n.channel == "pd"]
    assert len(resolves) == 1 and resolves[0].payload["action"] == "resolve"
    assert resolves[0].request_id == request.id
    assert sorted(n.recipient or "-" for n in planned if n.channel != "pd") == [
        "-",
        "jane.doe@example.com",
    ]


def test_the_approved_notice_names_every_approver(example_policy: Policy, start: datetime) -> None:
    policy = policy_with(example_policy)
    planner = RoutePlanner()
    request = request_of(policy, start)  # sre-oncall: the on-call and the manager
    plan_all(planner, request, policy, start)
    later = start + timedelta(minutes=1)
    request.approve("sam@example.com", directory=policy.directory, now=later)
    request.approve("mark.lee@example.com", directory=policy.directory, now=later)
    notice = next(n for n in plan_all(planner, request, policy, later) if n.recipient)
    message = Message.from_payload(
        notice.payload, id="n-1", channel="mail", recipient=notice.recipient
    )
    line = outcome_line(message) or ""
    assert line.startswith("approved by sam@example.com, mark.lee@example.com; access ")


def test_escalation_reaches_escalate_to_and_resolve_stays_single(
    example_policy: Policy, start: datetime
) -> None:
    routes = {
        "request.urgent": ("oncall", ("pd",)),
        "request.escalated": ("escalate_to", ("pd", "mail")),
        "request.expired": ("requester", ("mail",)),
    }
    policy = policy_with(example_policy, routes)
    planner = RoutePlanner()
    request = request_of(policy, start, urgency="high")
    plan_all(planner, request, policy, start)
    request.escalate(start + timedelta(minutes=30))
    planned = plan_all(planner, request, policy, start)
    assert sorted((n.channel, n.recipient) for n in planned) == [
        ("mail", "lee@example.com"),
        ("pd", None),
    ]
    request.expire_pending(request.expires_at)
    planned = plan_all(planner, request, policy, request.expires_at)
    assert sorted((n.channel, n.recipient, n.payload["action"]) for n in planned) == [
        ("mail", "jane.doe@example.com", "notify"),
        ("pd", None, "resolve"),
    ]


def test_withdrawal_resolves_the_page(example_policy: Policy, start: datetime) -> None:
    policy = policy_with(example_policy)
    planner = RoutePlanner()
    request = request_of(policy, start, urgency="high")
    plan_all(planner, request, policy, start)
    request.revoke("jane.doe@example.com", reason="fixed", now=start, is_admin=False)
    planned = plan_all(planner, request, policy, start)
    assert [(n.channel, n.payload["action"]) for n in planned] == [("pd", "resolve")]


def test_no_page_no_resolve(example_policy: Policy, start: datetime) -> None:
    policy = policy_with(example_policy)
    planner = RoutePlanner()
    request = request_of(policy, start)
    plan_all(planner, request, policy, start)
    request.deny("sam@example.com", reason="no", directory=policy.directory, now=start)
    planned = plan_all(planner, request, policy, start)
    assert all(n.channel != "pd" for n in planned)
    assert {n.payload["detail"] for n in planned} == {"no"}


def test_written_routes_replace_the_defaults(example_policy: Policy, start: datetime) -> None:
    policy = policy_with(example_policy, {"request.created": ("approvers", ("teams", "siem"))})
    planned = plan_all(RoutePlanner(), request_of(policy, start), policy, start)
    assert sorted((n.channel, n.recipient) for n in planned) == [("siem", None), ("teams", None)]


def test_a_disabled_channel_gets_nothing(example_policy: Policy, start: datetime) -> None:
    policy = policy_with(example_policy)

    def mode(name: str, config: Mapping[str, Any]) -> Any:
        return None if name == "mail" else "channel"

    planned = plan_all(RoutePlanner(mode), request_of(policy, start), policy, start)
    assert [(n.channel, n.recipient) for n in planned] == [("slack", None)]


@pytest.mark.parametrize("to", ["requester", "approvers", "oncall", "escalate_to"])
def test_audiences(example_policy: Policy, start: datetime, to: str) -> None:
    request = request_of(example_policy, start)
    expected = {
        "requester": ["jane.doe@example.com"],
        "approvers": ["mark.lee@example.com", "sam@example.com"],
        "oncall": ["sam@example.com"],
        "escalate_to": ["lee@example.com"],
    }[to]
    assert audience(to, request, example_policy, start) == expected


def test_people_a_reload_makes_approvers_are_asked_personally_and_nobody_else(
    example_policy: Policy, start: datetime
) -> None:
    """A reloaded policy adds dana as an approver of a pending request: she is asked, on
    the person channels of the request.created route, with Approve and Deny; those who
    could already decide, the shared channel and the requester are not asked again."""
    from jitgate.domain.policy import ApproverSpec

    policy = policy_with(example_policy)
    request = request_of(policy, start)
    plan_all(RoutePlanner(), request, policy, start)
    dana = ApproverSpec("user", "dana@example.com")
    jane = ApproverSpec("user", "jane.doe@example.com")  # the requester: never asked
    widened = tuple(replace(r, specs=(*r.specs, dana, jane)) for r in request.rules)
    later = start + timedelta(minutes=5)
    assert request.follow_rules(widened, policy.directory, later)
    assert request.events[-1].data["approvers_added"] == ["dana@example.com"]
    planned = plan_all(RoutePlanner(), request, policy, later)
    assert [(n.channel, n.recipient, n.event) for n in planned] == [
        ("mail", "dana@example.com", "request.rules_updated")
    ]
    assert planned[0].payload["asks_decision"] is True
    assert "dana@example.com" in planned[0].payload["approvers"]
    narrowed = tuple(replace(r, specs=r.specs[:1]) for r in request.rules)
    assert request.follow_rules(narrowed, policy.directory, later)
    assert request.events[-1].data["approvers_added"] == []
    assert plan_all(RoutePlanner(), request, policy, later) == []
