"""Slack's URLs from the environment (SPEC §6: "Every URL of a channel may come from the
environment instead"): ``api_url_env`` and ``response_url_prefix_env`` reach the real HTTP
peer for the direct messages, for ``users.info`` when a button is clicked and for the
update of the clicked message."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
from notify_sinks import (
    SIGNING_SECRET,
    HttpSink,
    Notify,
    ServedApi,
    channels,
    peer_env,
    slack_id,
    with_notifications,
)
from slack_sdk.signature import SignatureVerifier

from jitgate.bootstrap import App
from jitgate.config import Settings
from jitgate.domain.policy import Policy
from jitgate.entrypoints.api.app import create_app

pytest_plugins = ["conftest_notify"]

MARK, SAM = "mark.lee@example.com", "sam@example.com"
ROUTES: dict[str, Any] = {"request.created": ("approvers", ("slack-env",))}


def env_channels(sink: HttpSink) -> dict[str, dict[str, Any]]:
    """The bot channel of the kit, its two URLs named by ``*_env`` keys instead."""
    out = channels(sink)
    out["slack-env"] = {
        "type": "slack",
        "bot_token_env": "SLACK_BOT_TOKEN",
        "signing_secret_env": "SLACK_SIGNING_SECRET",
        "api_url_env": "SLACK_API_URL",
        "response_url_prefix_env": "SLACK_RESPONSE_PREFIX",
    }
    del out["slack-dm"]  # the inline-URL twin: only the env-configured channel answers
    return out


def env_of(sink: HttpSink) -> dict[str, str]:
    return {
        **peer_env(sink),
        "SLACK_API_URL": f"{sink.url}/slack/api",
        "SLACK_RESPONSE_PREFIX": f"{sink.url}/slack/response/",
    }


def wire(notify: Callable[..., Notify], db_url: str, policy: Policy, sink: HttpSink) -> Notify:
    return notify(db_url, with_notifications(policy, env_channels(sink), ROUTES), env_of(sink))


def test_direct_messages_go_to_the_api_url_from_the_environment(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    n = wire(notify, db_url, example_policy, http_sink)
    request = n.create()
    n.deliver()
    posts = http_sink.paths("/slack/api/chat.postMessage")
    assert sorted(p.json()["channel"] for p in posts) == sorted(slack_id(p) for p in (MARK, SAM))
    assert all(request.id in p.json()["text"] for p in posts)
    assert len(http_sink.paths("/slack/api/users.lookupByEmail")) == 2


def test_a_click_is_answered_through_the_urls_from_the_environment(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    n = wire(notify, db_url, example_policy, http_sink)
    (app_of,) = n.rt.slack_apps(n.ctx.policy.current)
    assert app_of.api_url == f"{http_sink.url}/slack/api"
    assert app_of.response_url_prefix == f"{http_sink.url}/slack/response/"
    request = n.create()
    app = App(Settings(database_url=db_url), None, n.ctx, notify=n.rt)  # type: ignore[arg-type]
    served = ServedApi(create_app(app))
    try:
        payload = {
            "type": "block_actions",
            "user": {"id": slack_id(SAM), "username": "sam"},
            "team": {"id": "T1"},
            "actions": [
                {
                    "action_id": "jitgate.approve",
                    "value": request.id,
                    "type": "button",
                    "block_id": f"jitgate:{request.id}",
                }
            ],
            "response_url": f"{http_sink.url}/slack/response/T1/1/abc",
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        stamp = str(int(time.time()))
        signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=stamp, body=body)
        assert signature is not None
        headers = {
            "x-slack-request-timestamp": stamp,
            "x-slack-signature": signature,
            "content-type": "application/x-www-form-urlencoded",
        }
        answer = httpx.post(
            f"{served.url}/v1/integrations/slack/actions", content=body, headers=headers
        )
        assert answer.status_code == 200
        assert len(http_sink.paths("/slack/api/users.info")) == 1
        (update,) = [r.json() for r in http_sink.wait_for("/slack/response/", 1, timeout=5)]
        assert "sam@example.com approved" in update["text"]
    finally:
        served.stop()
    with n.ctx.uow(write=False) as uow:
        found = uow.requests.get(request.id)
    assert found is not None
    assert [(a.approver, a.via) for a in found.approvals] == [(SAM, "slack")]


def test_an_unset_url_variable_disables_the_channel_and_its_buttons(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    """Never a silent fall back to slack.com with the bot token: the channel is off, as with
    a missing token, and says so."""
    policy = with_notifications(example_policy, env_channels(http_sink), ROUTES)
    env = {k: v for k, v in env_of(http_sink).items() if k != "SLACK_API_URL"}
    n = notify(db_url, policy, env)
    assert n.rt.channels.mode("slack-env", policy.notifications.channels["slack-env"]) is None
    assert "slack-env" not in n.rt.channels.sendable(policy)
    assert n.rt.slack_apps(policy) == []
    n.create()
    n.deliver()
    assert http_sink.paths("/slack/api/") == []
