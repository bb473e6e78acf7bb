"""Slack: Block Kit messages (RFC 10.5.4) by incoming webhook, or by bot as direct messages.

Configuration: ``webhook_url_env`` (post to the webhook's channel), or ``bot_token_env``
(a direct message to each recipient, found with ``users.lookupByEmail``; ``channel`` posts
there instead when ``audience: channel``); ``signing_secret_env`` turns Approve and Deny into
interactive buttons answered at ``POST /v1/integrations/slack/actions``; ``api_url`` (or
``api_url_env``) overrides ``https://slack.com/api``, ``response_url_prefix`` (or
``response_url_prefix_env``) ``https://hooks.slack.com/``, where an interaction's
``response_url`` must point. A URL setting whose ``_env`` variable is not set disables the
channel (and its buttons), as a missing token does: never a silent fall back to Slack's own.

Invariants: every user-supplied text (the reason, the purpose, names, a deny reason) is
literal text in a ``rich_text`` block, never mrkdwn, so it arrives as typed: no format, no
mention, no link; the notification text is mrkdwn-escaped (no mentions, no auto-links); the
request id is in every message; the webhook URL and the bot token never appear in an error;
a Web API error is judged by its ``error`` code alone and quoted only as ``peer_text``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from jitgate.adapters.notifiers.base import (
    AUDIENCES,
    ChannelConfigError,
    Mode,
    NotifierDeps,
    audience_override,
    check_status,
    dumps,
    http_failure,
    retry_after,
    send_http,
    setting,
    unset,
)
from jitgate.adapters.notifiers.render import (
    clipped,
    facts,
    plain,
    slack_escape,
    summary,
    title,
)
from jitgate.adapters.plugin_config import (
    ConfigProblem,
    choice_problems,
    text_problems,
    url_problems,
)
from jitgate.service.delivery import DeliveryFailed, Sent, peer_text
from jitgate.service.delivery_deadline import within
from jitgate.service.notifications import Message

API_URL = "https://slack.com/api"
RESPONSE_URL_PREFIX = "https://hooks.slack.com/"
REASON_LIMIT = 2900
FACT_LIMIT = 1000
APPROVE = "jitgate.approve"
DENY = "jitgate.deny"
VIEW = "jitgate.view"
_AROUND = "".join(map(chr, range(0x21))) + "".join(map(chr, range(0x7F, 0xA1)))  # blank, controls
PERMANENT_ERRORS = frozenset(
    {
        "users_not_found",
        "channel_not_found",
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "no_permission",
        "missing_scope",
        "is_archived",
        "invalid_blocks",
    }
)


def mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def button(
    label: str,
    action_id: str,
    *,
    value: str | None = None,
    url: str | None = None,
    style: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "action_id": action_id,
    }
    if value is not None:
        out["value"] = value
    if url is not None:
        out["url"] = url
    if style is not None:
        out["style"] = style
    return out


def reason_block(reason: str | None) -> dict[str, Any]:
    """The requester's reason as a ``rich_text`` block of literal text: Block Kit's form for
    user-written text, where no character formats (``*bold*`` stays as typed) and a mention
    or a link can only be a separate element, so none can be smuggled in."""
    label = {"type": "text", "text": "Reason:\n", "style": {"bold": True}}
    text = {"type": "text", "text": clipped(reason, REASON_LIMIT, plain)}
    return {
        "type": "rich_text",
        "elements": [{"type": "rich_text_section", "elements": [label, text]}],
    }


def facts_block(message: Message) -> dict[str, Any]:
    """The facts (user, roles, purpose, outcome with a deny reason...) as a ``rich_text``
    block: bold labels, and each value one literal ``text`` element, like the reason, so
    a name or a deny reason written ``*bold*``, `` `code` `` or ``~struck~`` stays as typed."""
    elements: list[dict[str, Any]] = []
    for i, (label, value) in enumerate(facts(message)):
        line = "\n" if i else ""
        elements.append({"type": "text", "text": f"{line}{label}: ", "style": {"bold": True}})
        elements.append({"type": "text", "text": clipped(value, FACT_LIMIT, plain) or "-"})
    return {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": elements}]}


def blocks(message: Message, *, interactive: bool) -> list[dict[str, Any]]:
    """The Block Kit body of ``message``; Approve/Deny as interactive or link buttons."""
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title(message), "emoji": True}},
        facts_block(message),
        reason_block(message.request.reason),
    ]
    actions = _actions(message, interactive)
    if actions:
        out.append(
            {"type": "actions", "block_id": f"jitgate:{message.request.id}", "elements": actions}
        )
    out.append({"type": "context", "elements": [mrkdwn(f"Request {message.request.id}")]})
    return out


def _actions(message: Message, interactive: bool) -> list[dict[str, Any]]:
    links = message.links
    rid = message.request.id
    out: list[dict[str, Any]] = []
    if message.asks_decision:
        if interactive:  # a deny needs a reason: Deny opens the link's page, which asks for it
            out.append(button("Approve", APPROVE, value=rid, style="primary"))
            if links.deny:
                out.append(button("Deny", DENY, value=rid, url=links.deny, style="danger"))
        elif links.approve and links.deny:
            out.append(button("Approve", APPROVE, value=rid, url=links.approve, style="primary"))
            out.append(button("Deny", DENY, value=rid, url=links.deny, style="danger"))
    if links.view:
        out.append(button("View details", VIEW, value=rid, url=links.view))
    return out


def body(message: Message, *, interactive: bool) -> dict[str, Any]:
    return {
        "text": slack_escape(summary(message)),
        "blocks": blocks(message, interactive=interactive),
        "unfurl_links": False,
        "unfurl_media": False,
    }


def _optional(config: Mapping[str, Any], key: str, env: Mapping[str, str]) -> str | None:
    try:
        return setting(config, key, env)
    except ChannelConfigError:
        return None


def api_url(config: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """The Web API base: ``api_url``, or the variable ``api_url_env`` names, or Slack's.
    ``ChannelConfigError`` when ``api_url_env`` names a variable that is not set."""
    return (setting(config, "api_url", env) or API_URL).rstrip("/")


def response_url_prefix(config: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """Where a ``response_url`` must point: ``response_url_prefix`` (or ``_env``), else
    ``https://hooks.slack.com/``; ``ChannelConfigError`` as ``api_url``."""
    return setting(config, "response_url_prefix", env) or RESPONSE_URL_PREFIX


def interactive(config: Mapping[str, Any], env: Mapping[str, str]) -> bool:
    """Buttons answered in Slack need the signing secret and a bot token (to know who)."""
    secret_env = config.get("signing_secret_env")
    has_secret = bool(secret_env and env.get(str(secret_env)))
    return has_secret and _optional(config, "bot_token", env) is not None


class SlackNotifier:
    """One Slack channel config: a webhook, or a bot that sends direct messages."""

    # ``signing_secret_env``, ``api_url`` and ``response_url_prefix`` (and their ``_env``
    # forms) are also read by ``wiring.NotifyRuntime.slack_apps`` (buttons answered in Slack).
    CONFIG_KEYS: ClassVar[tuple[str, ...]] = (
        "webhook_url_env",
        "bot_token_env",
        "signing_secret_env",
        "channel",
        "audience",
        "api_url",
        "api_url_env",
        "response_url_prefix",
        "response_url_prefix_env",
    )

    def __init__(self, name: str, config: Mapping[str, Any], deps: NotifierDeps) -> None:
        self.name = name
        self._http = deps.http
        self._webhook = _optional(config, "webhook_url", deps.env)
        self._token = _optional(config, "bot_token", deps.env)
        self._api = api_url(config, deps.env)
        self._channel = config.get("channel")
        self._interactive = interactive(config, deps.env)
        self._mode = SlackNotifier.mode(config, deps.env)
        if self._webhook is None and self._token is None:
            raise ChannelConfigError("a slack channel needs webhook_url_env or bot_token_env")
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def mode(cls, config: Mapping[str, Any], env: Mapping[str, str]) -> Mode:
        has_bot = _optional(config, "bot_token", env) is not None
        return audience_override(config, "person" if has_bot else "channel")

    @classmethod
    def config_problems(cls, config: Mapping[str, Any]) -> list[ConfigProblem]:
        return [
            *text_problems(config, "channel"),
            *choice_problems(config, "audience", AUDIENCES),
            *url_problems(config, "api_url", "response_url_prefix"),
        ]

    @classmethod
    def missing_env(cls, config: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
        """Usable with a webhook URL or a bot token (missing only when neither is set), and
        every URL named by an ``_env`` key set."""
        urls = unset(config, env, "api_url", "response_url_prefix")
        if any(_optional(config, key, env) for key in ("webhook_url", "bot_token")):
            return urls
        return [*unset(config, env, "webhook_url", "bot_token"), *urls]

    def send(self, message: Message) -> Sent:
        payload = body(message, interactive=self._interactive)
        if self._token is None:
            assert self._webhook is not None
            if self._channel:
                payload["channel"] = self._channel
            response = send_http(self._http, self._webhook, body=dumps(payload))
            return Sent(response.status_code)
        if self._mode == "person" and message.recipient:
            payload["channel"] = self._user_id(message.recipient)
        elif self._channel:
            payload["channel"] = self._channel
        else:
            raise DeliveryFailed("no Slack channel or recipient to post to", retryable=False)
        return Sent(self.call("chat.postMessage", payload).status_code)

    def _user_id(self, email: str) -> str:
        with self._lock:
            known = self._ids.get(email)
        if known:
            return known
        response = self.call("users.lookupByEmail", {"email": email}, form=True)
        user_id = str(response.json().get("user", {}).get("id", ""))
        if not user_id:
            raise DeliveryFailed("Slack returned no user id", retryable=False)
        with self._lock:
            self._ids[email] = user_id
        return user_id

    def call(self, method: str, data: dict[str, Any], *, form: bool = False) -> httpx.Response:
        """Call a Slack Web API method with the bot token; raise unless ``ok``."""
        headers = {"authorization": f"Bearer {self._token}"}
        url, timeout = f"{self._api}/{method}", within(10.0)
        try:
            if form:
                response = self._http.post(url, data=data, headers=headers, timeout=timeout)
            else:
                response = self._http.post(
                    url,
                    content=dumps(data),
                    headers={**headers, "content-type": "application/json"},
                    timeout=timeout,
                )
        except httpx.HTTPError as exc:
            raise http_failure(exc) from None
        check_status(response)
        answer = response.json() if response.content else {}
        if not answer.get("ok"):
            code = error_code(answer)
            raise DeliveryFailed(
                f"Slack {method}: {peer_text(code, 80)}",
                status=response.status_code,
                retryable=code not in PERMANENT_ERRORS,
                retry_after=retry_after(response),
            )
        return response


def error_code(answer: Any) -> str:
    """Slack's ``error`` code of a failed Web API answer, without the whitespace or control
    characters around it; it is compared exactly (``PERMANENT_ERRORS``), never shown raw."""
    error = answer.get("error") if isinstance(answer, dict) else None
    return str(error).strip(_AROUND) if error is not None else "unknown_error"
