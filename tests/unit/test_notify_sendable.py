"""``ChannelSet.sendable``: the channels this process may claim notifications of, i.e. those
of the policy in force that are configured and enabled here (their ``*_env`` set)."""

from __future__ import annotations

from dataclasses import replace

import httpx

from jitgate.adapters.notifiers.base import NotifierDeps
from jitgate.adapters.notifiers.registry import ChannelSet
from jitgate.domain.policy import Notifications, Policy

CHANNELS = {
    "hook": {"type": "slack", "webhook_url_env": "HOOK"},
    "pd": {"type": "pagerduty", "routing_key_env": "UNSET"},
    "mail": {"type": "email", "smtp_host": "127.0.0.1", "sender": "jit@example.com"},
    "odd": {"type": "carrier-pigeon"},
}


def test_only_channels_configured_and_enabled_here_are_sendable(example_policy: Policy) -> None:
    policy = replace(example_policy, notifications=Notifications(channels=CHANNELS), digest="d1")
    with httpx.Client() as http:
        channels = ChannelSet(NotifierDeps(http=http, env={"HOOK": "https://x.example/h"}))
        assert set(channels.sendable(policy)) == {"hook", "mail"}
        fewer = {k: v for k, v in CHANNELS.items() if k != "mail"}
        reloaded = replace(policy, notifications=Notifications(channels=fewer), digest="d2")
        assert set(channels.sendable(reloaded)) == {"hook"}
        assert channels.get("mail", reloaded) is None
