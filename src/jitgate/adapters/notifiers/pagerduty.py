"""PagerDuty Events API v2: ``trigger`` for a message that asks for a decision (a pending
request on the route of ``request.created``, ``request.urgent`` or ``request.escalated``),
``resolve`` for any other (the planner sends one when the request is decided, expires or is
withdrawn, to every PagerDuty channel that may hold its incident).

Configuration: ``routing_key_env``; ``events_url`` (or ``events_url_env``) overrides
``https://events.pagerduty.com/v2/enqueue``.

Invariants: ``dedup_key`` is the request id, so a repeat (a retry, an escalation after an
urgent page) updates the one incident and ``resolve`` closes it; the routing key never
appears in an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from jitgate.adapters.notifiers.base import (
    ChannelConfigError,
    Mode,
    NotifierDeps,
    dumps,
    send_http,
    setting,
    unset,
)
from jitgate.adapters.notifiers.render import facts, one_line, plain, summary
from jitgate.adapters.plugin_config import ConfigProblem, url_problems
from jitgate.service.delivery import Sent
from jitgate.service.notifications import Message

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SOURCE = "jitgate"


def event_body(message: Message, routing_key: str) -> dict[str, Any]:
    """The Events API v2 body of ``message`` (trigger when it asks for a decision)."""
    rid = message.request.id
    if not message.asks_decision:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": rid}
    severity = "critical" if message.request.urgency == "high" else "error"
    details = {label: plain(value) for label, value in facts(message)}
    details["Reason"] = plain(message.request.reason)
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": rid,
        "payload": {
            "summary": one_line(summary(message), 1024),
            "source": SOURCE,
            "severity": severity,
            "timestamp": message.at,
            "component": ", ".join(message.request.roles)[:200],
            "group": "access-requests",
            "class": message.event,
            "custom_details": details,
        },
        "client": "jitgate",
    }
    if message.links.view:
        body["client_url"] = message.links.view
        body["links"] = [{"href": message.links.view, "text": f"View request {rid}"}]
    return body


class PagerDutyNotifier:
    CONFIG_KEYS: ClassVar[tuple[str, ...]] = ("routing_key_env", "events_url", "events_url_env")

    def __init__(self, name: str, config: Mapping[str, Any], deps: NotifierDeps) -> None:
        self.name = name
        self._http = deps.http
        key = setting(config, "routing_key", deps.env)
        if not key:
            raise ChannelConfigError("a pagerduty channel needs routing_key_env")
        self._key = key
        self._url = setting(config, "events_url", deps.env, EVENTS_URL) or EVENTS_URL

    @classmethod
    def mode(cls, config: Mapping[str, Any], env: Mapping[str, str]) -> Mode:
        return "channel"

    @classmethod
    def config_problems(cls, config: Mapping[str, Any]) -> list[ConfigProblem]:
        return url_problems(config, "events_url")

    @classmethod
    def missing_env(cls, config: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
        return unset(config, env, "routing_key", "events_url")

    def send(self, message: Message) -> Sent:
        response = send_http(self._http, self._url, body=dumps(event_body(message, self._key)))
        return Sent(response.status_code)
