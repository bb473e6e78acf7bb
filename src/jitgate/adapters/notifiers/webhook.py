"""A generic webhook: the event as JSON, signed per Standard Webhooks.

Configuration: ``url`` (or ``url_env``) and ``secret_env`` holding a ``whsec_<base64>`` secret.

Body: ``type`` (the event; ``request.settled`` for a resolve), ``timestamp`` and ``data``:
``request`` (every ``RequestFacts`` field: id, requester, roles, resources, duration, reason,
urgency, purpose, state, times; ``start_at``, the start a scheduled request asks for, and
``extends``, the request an extension extends, ``null`` when not set), ``actor``, ``detail``,
``approvers``, ``asks_decision``, ``channel``.

Invariants: ``webhook-id`` is the outbox id, the same on every retry, so the receiver can
drop repeats; the body carries facts only, never a link token (a webhook usually feeds logs
or a SIEM); the URL's query and the secret never appear in an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
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
from jitgate.adapters.plugin_config import ConfigProblem, url_problems
from jitgate.adapters.signing import secret_key, sign_webhook
from jitgate.service.delivery import DeliveryFailed, Sent
from jitgate.service.notifications import Message


def event_body(message: Message) -> dict[str, Any]:
    facts = message.request
    return {
        "type": message.event if message.action == "notify" else "request.settled",
        "timestamp": message.at,
        "data": {
            "request": {
                **facts.__dict__,
                "roles": list(facts.roles),
                "resources": list(facts.resources),
            },
            "actor": message.actor,
            "detail": message.detail,
            "approvers": list(message.approvers),
            "asks_decision": message.asks_decision,
            "channel": message.channel,
        },
    }


class WebhookNotifier:
    CONFIG_KEYS: ClassVar[tuple[str, ...]] = ("url", "url_env", "secret_env")

    def __init__(
        self,
        name: str,
        config: Mapping[str, Any],
        deps: NotifierDeps,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._http = deps.http
        self._clock = clock
        url = setting(config, "url", deps.env)
        secret = setting(config, "secret", deps.env)
        if not url or not secret:
            raise ChannelConfigError("a webhook channel needs url (or url_env) and secret_env")
        try:
            secret_key(secret)
        except ValueError as exc:
            raise ChannelConfigError(str(exc)) from None
        self._url = url
        self._secret = secret

    @classmethod
    def mode(cls, config: Mapping[str, Any], env: Mapping[str, str]) -> Mode:
        return "channel"

    @classmethod
    def config_problems(cls, config: Mapping[str, Any]) -> list[ConfigProblem]:
        return url_problems(config, "url")

    @classmethod
    def missing_env(cls, config: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
        return unset(config, env, "url", "secret")

    def send(self, message: Message) -> Sent:
        if not message.id:
            raise DeliveryFailed("a webhook message needs its outbox id", retryable=False)
        body = dumps(event_body(message))
        headers = sign_webhook(self._secret, message.id, int(self._clock()), body)
        response = send_http(self._http, self._url, body=body, headers=headers)
        return Sent(response.status_code)
