"""Microsoft Teams: an Adaptive Card (schema 1.4) posted to a Workflows or incoming webhook.

Configuration: ``webhook_url_env`` (or ``url_env``).

Invariants: user-supplied text has ``&<>`` turned into entities and Markdown syntax
backslash-escaped, so ``[Approve](https://evil)`` or ``**bold**`` render as typed; the card
carries the request id, the RFC 10.5.3 facts and Approve, Deny and View actions; the webhook
URL never appears in an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from jitgate.adapters.notifiers.base import (
    AUDIENCES,
    ChannelConfigError,
    Mode,
    NotifierDeps,
    audience_override,
    dumps,
    env_names,
    send_http,
    setting,
    unset,
)
from jitgate.adapters.notifiers.render import clipped, facts, teams_escape, title
from jitgate.adapters.plugin_config import ConfigProblem, choice_problems, url_problems
from jitgate.service.delivery import Sent
from jitgate.service.notifications import Message

CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"


def card(message: Message) -> dict[str, Any]:
    rows = [{"title": k, "value": clipped(v, 1000, teams_escape)} for k, v in facts(message)]
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": teams_escape(title(message)),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        },
        {"type": "FactSet", "facts": rows},
        {
            "type": "TextBlock",
            "text": "Reason",
            "weight": "Bolder",
            "wrap": True,
            "spacing": "Medium",
        },
        {
            "type": "TextBlock",
            "text": clipped(message.request.reason, 2500, teams_escape),
            "wrap": True,
        },
    ]
    actions: list[dict[str, Any]] = []
    links = message.links
    if message.asks_decision and links.approve and links.deny:
        actions.append(
            {
                "type": "Action.OpenUrl",
                "title": "Approve",
                "url": links.approve,
                "style": "positive",
            }
        )
        actions.append(
            {"type": "Action.OpenUrl", "title": "Deny", "url": links.deny, "style": "destructive"}
        )
    if links.view:
        actions.append({"type": "Action.OpenUrl", "title": "View details", "url": links.view})
    out: dict[str, Any] = {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if actions:
        out["actions"] = actions
    return out


def webhook_body(message: Message) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_TYPE, "contentUrl": None, "content": card(message)}],
    }


class TeamsNotifier:
    CONFIG_KEYS: ClassVar[tuple[str, ...]] = ("webhook_url_env", "url", "url_env", "audience")

    def __init__(self, name: str, config: Mapping[str, Any], deps: NotifierDeps) -> None:
        self.name = name
        self._http = deps.http
        url = setting(config, "webhook_url", deps.env) or setting(config, "url", deps.env)
        if not url:
            raise ChannelConfigError("a teams channel needs webhook_url_env or url_env")
        self._url = url

    @classmethod
    def mode(cls, config: Mapping[str, Any], env: Mapping[str, str]) -> Mode:
        return audience_override(config, "channel")

    @classmethod
    def config_problems(cls, config: Mapping[str, Any]) -> list[ConfigProblem]:
        return [*url_problems(config, "url"), *choice_problems(config, "audience", AUDIENCES)]

    @classmethod
    def missing_env(cls, config: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
        missing = unset(config, env, "webhook_url", "url")
        return missing if len(missing) == len(env_names(config, "webhook_url", "url")) else []

    def send(self, message: Message) -> Sent:
        response = send_http(self._http, self._url, body=dumps(webhook_body(message)))
        return Sent(response.status_code)
