"""Notifier plugins by entry point; one instance per configured channel; missing env disables."""

from __future__ import annotations

import logging
from dataclasses import replace

import httpx
import pytest

from jitgate.adapters.notifiers.base import NotifierDeps
from jitgate.adapters.notifiers.registry import ChannelSet, notifier_types
from jitgate.adapters.notifiers.slack import SlackNotifier
from jitgate.domain.policy import Notifications, Policy

CHANNELS = {
    "hook": {"type": "slack", "webhook_url_env": "HOOK"},
    "bot": {"type": "slack", "bot_token_env": "BOT", "webhook_url_env": "UNSET"},
    "pd": {"type": "pagerduty", "routing_key_env": "UNSET_TOO"},
    "mail": {"type": "email", "smtp_host": "127.0.0.1", "sender": "jit@example.com"},
    "odd": {"type": "carrier-pigeon"},
}


def test_every_channel_type_is_an_entry_point() -> None:
    assert {"slack", "pagerduty", "email", "teams", "webhook"} <= set(notifier_types())
    assert notifier_types()["slack"] is SlackNotifier


def test_channels_are_built_once_per_policy_and_disabled_without_their_env(
    example_policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    policy = replace(example_policy, notifications=Notifications(channels=CHANNELS), digest="d1")
    deps = NotifierDeps(
        http=httpx.Client(), env={"HOOK": "https://x.example/secret-path", "BOT": "xoxb-1"}
    )
    channels = ChannelSet(deps)
    with caplog.at_level(logging.WARNING):
        modes = {name: channels.mode(name, cfg) for name, cfg in CHANNELS.items()}
    assert modes == {"hook": "channel", "bot": "person", "pd": None, "mail": "person", "odd": None}
    assert "UNSET_TOO" in caplog.text and "secret-path" not in caplog.text
    first = channels.get("hook", policy)
    assert first is not None and channels.get("hook", policy) is first
    assert channels.get("pd", policy) is None and channels.get("odd", policy) is None
    reloaded = replace(policy, digest="d2")
    assert channels.get("hook", reloaded) is not first
    deps.http.close()
