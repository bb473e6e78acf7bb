"""Planning notifications (SPEC §6, RFC 10.5): which message goes to whom over which channel.

Invariants:
- recipients are resolved when the event happens: ``approvers`` are everyone eligible now,
  ``escalate_to`` the people escalation names, ``requester`` the requester and ``oncall``
  whoever is on call now; the requester is never asked to decide their own request;
- routes come from ``notifications.routes``; when none are written the RFC 10.5.2 defaults
  apply to every configured channel of the named types;
- a channel that addresses people gets one message per recipient; a channel that posts to a
  shared place (a Slack channel, a Teams channel, PagerDuty, a webhook) gets one message;
- PagerDuty is paged only to ask for a decision: a PagerDuty channel on the route of an
  asking event gets a ``trigger`` (``dedup_key`` = request id), whatever the audience; when
  the request leaves pending (approved, denied, expired, withdrawn) each PagerDuty channel
  on the route of an asking event that happened to it, or on the closing event's own route,
  gets exactly one ``resolve``; on any other route (``access.expiring``) it gets nothing;
- payloads hold facts only, never a link token or a secret: links are minted at delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from jitgate.domain.approval import POLICY_ACTOR, same_person, spec_candidates
from jitgate.domain.events import DomainEvent
from jitgate.domain.policy import ApproverSpec, Policy, Route
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.service.ports import Notification

Mode = Literal["person", "channel"]
ModeOf = Callable[[str, Mapping[str, Any]], Mode | None]

#: RFC 10.5.2 (and 10.3.4 for escalation): event -> (audience, channel types).
DEFAULT_ROUTES: dict[str, tuple[str, tuple[str, ...]]] = {
    "request.created": ("approvers", ("slack", "email")),
    "request.approved": ("requester", ("slack", "email")),
    "request.denied": ("requester", ("slack", "email")),
    "request.expired": ("requester", ("slack",)),
    "access.expiring": ("requester", ("slack",)),
    "request.urgent": ("oncall", ("pagerduty",)),
    "request.escalated": ("escalate_to", ("slack", "email", "pagerduty")),
}
#: Events that ask someone to decide: these carry Approve and Deny.
ASKING = frozenset({"request.created", "request.urgent", "request.escalated"})
#: A reloaded policy changed a pending request's rules: those who may now decide it and
#: could not before (``approvers_added``) are asked, on the person channels of the
#: ``request.created`` route (a shared channel already has the request).
RULES_UPDATED = "request.rules_updated"
#: Events after which nobody needs to be paged about the request any more.
CLOSING = frozenset({"request.approved", "request.denied", "request.expired", "request.revoked"})
#: The channel type that opens an incident per request (``trigger``) and must close it.
PAGER = "pagerduty"


@dataclass(frozen=True)
class RequestFacts:
    """What every message says about the request; all user-supplied text is raw here."""

    id: str
    requester: str
    roles: tuple[str, ...]
    resources: tuple[str, ...]
    duration_seconds: int
    reason: str
    urgency: str
    purpose: str | None
    state: str
    created_at: str
    expires_at: str
    starts_at: str | None = None
    ends_at: str | None = None
    approved_by: tuple[str, ...] = ()  # everyone whose approval is recorded, in order
    start_at: str | None = None  # the start asked for (a scheduled request), else None
    extends: str | None = None  # the request whose grant this one extends

    @classmethod
    def of(cls, request: AccessRequest) -> RequestFacts:
        return cls(
            id=request.id,
            requester=request.requester,
            roles=request.roles,
            resources=request.resources,
            duration_seconds=int(request.duration.total_seconds()),
            reason=request.reason,
            urgency=request.urgency,
            purpose=request.purpose,
            state=request.state.value,
            created_at=request.created_at.isoformat(),
            expires_at=request.expires_at.isoformat(),
            starts_at=_iso(request.starts_at),
            ends_at=_iso(request.ends_at),
            approved_by=tuple(a.approver for a in request.approvals if a.decision == "approve"),
            start_at=_iso(request.start_at),
            extends=request.extends,
        )


@dataclass(frozen=True)
class Links:
    """Absolute URLs; approve and deny only on messages that ask for a decision."""

    view: str | None = None
    approve: str | None = None
    deny: str | None = None


@dataclass(frozen=True)
class Message:
    """The immutable value a notifier renders. ``id`` is stable across retries."""

    event: str
    channel: str
    recipient: str | None
    request: RequestFacts
    actor: str
    at: str
    asks_decision: bool = False
    action: Literal["notify", "resolve"] = "notify"
    detail: str | None = None
    approvers: tuple[str, ...] = ()
    id: str = ""
    attempt: int = 0
    links: Links = field(default_factory=Links)

    def to_payload(self) -> dict[str, Any]:
        facts = self.request
        return {
            "v": 1,
            "event": self.event,
            "actor": self.actor,
            "at": self.at,
            "asks_decision": self.asks_decision,
            "action": self.action,
            "detail": self.detail,
            "approvers": list(self.approvers),
            "request": {
                **facts.__dict__,
                "roles": list(facts.roles),
                "resources": list(facts.resources),
                "approved_by": list(facts.approved_by),
            },
        }

    @classmethod
    def from_payload(
        cls,
        payload: Mapping[str, Any],
        *,
        id: str,
        channel: str,
        recipient: str | None,
        attempt: int = 0,
        links: Links | None = None,
    ) -> Message:
        raw = dict(payload["request"])
        raw["roles"] = tuple(raw.get("roles", ()))
        raw["resources"] = tuple(raw.get("resources", ()))
        raw["approved_by"] = tuple(raw.get("approved_by", ()))
        return cls(
            event=str(payload["event"]),
            channel=channel,
            recipient=recipient,
            request=RequestFacts(**raw),
            actor=str(payload.get("actor", "")),
            at=str(payload.get("at", "")),
            asks_decision=bool(payload.get("asks_decision")),
            action="resolve" if payload.get("action") == "resolve" else "notify",
            detail=payload.get("detail"),
            approvers=tuple(payload.get("approvers", ())),
            id=id,
            attempt=attempt,
            links=links or Links(),
        )


def default_mode(name: str, config: Mapping[str, Any]) -> Mode | None:
    """Email and a Slack bot address people; the others post to one shared place."""
    kind = config.get("type")
    if kind == "email" or (kind == "slack" and config.get("bot_token_env")):
        return "person"
    return "channel"


def routes_of(policy: Policy) -> dict[str, Route]:
    """The routes in force: the policy's own, or the RFC 10.5.2 defaults."""
    written = policy.notifications.routes
    if written:
        return dict(written)
    channels = policy.notifications.channels
    out: dict[str, Route] = {}
    for event, (audience, types) in DEFAULT_ROUTES.items():
        via = tuple(name for name, cfg in channels.items() if cfg.get("type") in types)
        if via:
            out[event] = Route(audience, via)
    return out


class RoutePlanner:
    """The ``NotificationPlanner`` of the service context."""

    def __init__(self, mode_of: ModeOf = default_mode) -> None:
        self._mode_of = mode_of
        self._routes: tuple[str, dict[str, Route]] | None = None

    def _routes_for(self, policy: Policy) -> dict[str, Route]:
        cached = self._routes
        if cached is not None and cached[0] == policy.digest and policy.digest:
            return cached[1]
        routes = routes_of(policy)
        self._routes = (policy.digest, routes)
        return routes

    def plan(
        self, event: DomainEvent, request: AccessRequest | None, policy: Policy, now: datetime
    ) -> Sequence[Notification]:
        if request is None or event.request_id is None:
            return ()
        routes = self._routes_for(policy)
        planned: list[Notification] = []
        route = routes.get(event.type)
        asking = event.type in ASKING
        if route is not None and not (asking and request.state is not State.PENDING):
            base = _message(event, request, policy, now, asking)
            recipients = audience(route.to, request, policy, now)
            via = route.via if asking else _not_paging(route.via, policy)
            planned.extend(self._fan_out(base, via, recipients, policy))
        if event.type == RULES_UPDATED and request.state is State.PENDING:
            planned.extend(self._newly_asked(event, request, policy, routes, now))
        if event.type in CLOSING and not _withdrawn_after_decision(event):
            planned.extend(self._resolves(event, request, policy, routes, now))
        return planned

    def _newly_asked(
        self,
        event: DomainEvent,
        request: AccessRequest,
        policy: Policy,
        routes: Mapping[str, Route],
        now: datetime,
    ) -> list[Notification]:
        route = routes.get("request.created")
        added = event.data.get("approvers_added") or []
        people = sorted(
            {p for p in added if isinstance(p, str) and not same_person(p, request.requester)}
        )
        if route is None or not people:
            return []
        base = _message(event, request, policy, now, True)
        channels = policy.notifications.channels
        return [
            _note(replace(base, channel=channel), channel, person)
            for channel in route.via
            if channel in channels and self._mode_of(channel, channels[channel]) == "person"
            for person in people
        ]

    def _fan_out(
        self,
        base: Message,
        via: Sequence[str],
        recipients: Sequence[str],
        policy: Policy,
    ) -> list[Notification]:
        out: list[Notification] = []
        for channel in via:
            config = policy.notifications.channels.get(channel)
            mode = self._mode_of(channel, config) if config is not None else None
            if mode is None:
                continue
            message = replace(base, channel=channel)
            if mode == "person":
                out.extend(_note(message, channel, person) for person in recipients)
            else:
                out.append(_note(message, channel, None))
        return out

    def _resolves(
        self,
        event: DomainEvent,
        request: AccessRequest,
        policy: Policy,
        routes: Mapping[str, Route],
        now: datetime,
    ) -> list[Notification]:
        """One ``resolve`` per PagerDuty channel that may hold the request's incident: those
        on the routes of the asking events that happened to it, and those on the closing
        event's own route; each once, however many of those routes name it."""
        if event.actor == POLICY_ACTOR:  # approved as it was created: nobody was asked
            return []
        events = (*_asked(request), event.type)
        named = [c for e in events if (route := routes.get(e)) is not None for c in route.via]
        channels = policy.notifications.channels
        base = replace(_message(event, request, policy, now, False), action="resolve")
        return [
            _note(replace(base, channel=channel), channel, None)
            for channel in dict.fromkeys(named)
            if _pages(channels.get(channel)) and self._mode_of(channel, channels[channel])
        ]


def _asked(request: AccessRequest) -> tuple[str, ...]:
    """The asking events that happened to ``request`` (each sent its route a ``trigger``
    then): it was created; it was urgent; it was escalated."""
    happened = {
        "request.created": True,
        "request.urgent": request.urgency == "high",
        "request.escalated": request.escalated,
    }
    return tuple(e for e, yes in happened.items() if yes)


def _pages(config: Mapping[str, Any] | None) -> bool:
    return config is not None and config.get("type") == PAGER


def _not_paging(via: Sequence[str], policy: Policy) -> tuple[str, ...]:
    """``via`` without its PagerDuty channels: an event that asks for no decision pages
    nobody (one that closes the request resolves its incident instead: ``_resolves``)."""
    channels = policy.notifications.channels
    return tuple(c for c in via if not _pages(channels.get(c)))


def _withdrawn_after_decision(event: DomainEvent) -> bool:
    return event.type == "request.revoked" and not event.data.get("withdrawn", False)


def _note(message: Message, channel: str, recipient: str | None) -> Notification:
    return Notification(
        event=message.event,
        request_id=message.request.id,
        channel=channel,
        recipient=recipient,
        payload=replace(message, recipient=recipient).to_payload(),
    )


def _message(
    event: DomainEvent, request: AccessRequest, policy: Policy, now: datetime, asking: bool
) -> Message:
    approvers = request.approvers_now(policy.directory, now) if asking else frozenset()
    return Message(
        event=event.type,
        channel="",
        recipient=None,
        request=RequestFacts.of(request),
        actor=event.actor,
        at=now.isoformat(),
        asks_decision=asking,
        detail=_detail(event, request),
        approvers=tuple(sorted(approvers)),
    )


def _detail(event: DomainEvent, request: AccessRequest) -> str | None:
    if event.type == "request.denied":
        return str(event.data.get("reason") or "")
    if event.type in ("request.revoked", "request.expired"):
        return request.close_reason
    if event.type == "access.expiring":
        return str(event.data.get("ends_at") or "")
    return None


def audience(to: str, request: AccessRequest, policy: Policy, now: datetime) -> list[str]:
    """Who ``to`` names for ``request`` at ``now``; never the requester for a decision."""
    directory = policy.directory
    if to == "requester":
        return [request.requester]
    if to == "approvers":
        found = set(request.approvers_now(directory, now))
    elif to == "escalate_to":
        specs = [s for rule in request.rules for s in rule.escalate_to]
        found = _named(specs, request, policy, now) or set(request.approvers_now(directory, now))
    else:
        found = _on_call(request, policy, now)
    found.discard(request.requester)
    return sorted(found)


def _named(
    specs: Sequence[ApproverSpec], request: AccessRequest, policy: Policy, now: datetime
) -> set[str]:
    found: set[str] = set()
    for spec in specs:
        found |= spec_candidates(
            spec, requester=request.requester, directory=policy.directory, at=now
        )
    return found


def _on_call(request: AccessRequest, policy: Policy, now: datetime) -> set[str]:
    """The on-call people of the schedules the request's rules name; else of every schedule."""
    specs = [
        s for rule in request.rules for s in (*rule.specs, *rule.escalate_to) if s.kind == "oncall"
    ]
    schedules = {s.value for s in specs} or set(policy.directory.oncall)
    people = (policy.directory.on_call(name, now) for name in sorted(schedules))
    return {p for p in people if p}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
