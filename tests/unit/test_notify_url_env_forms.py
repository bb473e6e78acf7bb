"""Every URL of a channel may come from the environment (SPEC §6): each URL setting of every
notifier has its ``*_env`` form, which ``jitgate policy check`` accepts; Slack's ``api_url``
and ``response_url_prefix`` read theirs as the other channels do (``base.setting``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from jitgate.adapters.notifiers import slack
from jitgate.adapters.notifiers.base import ChannelConfigError, NotifierDeps
from jitgate.adapters.notifiers.registry import notifier_types
from jitgate.adapters.policy import PolicyError, load_policy_text
from jitgate.service.notifications import Message, RequestFacts

REPO_ROOT = Path(__file__).resolve().parents[2]
JG = str(Path(sys.executable).with_name("jitgate"))
SLACK_ENV = (
    "{type: slack, bot_token_env: SLACK_BOT_TOKEN, signing_secret_env: SLACK_SIGNING_SECRET,"
    " api_url_env: SLACK_API_URL, response_url_prefix_env: SLACK_RESPONSE_PREFIX}"
)


def _channel(entry: str) -> str:
    return f"version: 1\nnotifications:\n  channels:\n    c: {entry}\n"


def _url_keys(keys: tuple[str, ...]) -> list[str]:
    return [k for k in keys if not k.endswith("_env") and "url" in k]


@pytest.mark.parametrize("kind", ["slack", "teams", "pagerduty", "webhook", "email"])
def test_every_url_setting_of_every_channel_has_an_env_form(kind: str) -> None:
    plugin: Any = notifier_types()[kind]
    keys: tuple[str, ...] = plugin.CONFIG_KEYS
    assert [k for k in _url_keys(keys) if f"{k}_env" not in keys] == []


def test_policy_check_accepts_slacks_url_env_keys() -> None:
    policy = load_policy_text(_channel(SLACK_ENV), "p.yaml")
    config = policy.notifications.channels["c"]
    assert config["api_url_env"] == "SLACK_API_URL"
    assert config["response_url_prefix_env"] == "SLACK_RESPONSE_PREFIX"


def test_a_credential_in_slacks_api_url_points_to_api_url_env() -> None:
    entry = "{type: slack, webhook_url_env: W, api_url: 'https://slack.example/api?token=xoxb-1'}"
    with pytest.raises(PolicyError) as caught:
        load_policy_text(_channel(entry), "p.yaml")
    (problem,) = caught.value.problems
    assert problem.path == "notifications.channels.c.api_url"
    assert "use 'api_url_env'" in problem.message and "xoxb" not in problem.message


def test_a_slack_url_env_key_must_name_a_variable() -> None:
    entry = "{type: slack, webhook_url_env: W, response_url_prefix_env: 'https://x.example/'}"
    with pytest.raises(PolicyError) as caught:
        load_policy_text(_channel(entry), "p.yaml")
    (problem,) = caught.value.problems
    assert problem.path == "notifications.channels.c.response_url_prefix_env"


def test_jitgate_policy_check_accepts_api_url_env(tmp_path: Path) -> None:
    """The reviewer's report: ``api_url_env`` was refused as an unknown key."""
    text = (REPO_ROOT / "examples" / "policy.yaml").read_text()
    webhook = "      webhook_url_env: SLACK_WEBHOOK_URL\n"
    assert text.count(webhook) == 1
    text = text.replace(
        webhook,
        webhook
        + "      api_url_env: SLACK_API_URL\n"
        + "      response_url_prefix_env: SLACK_RESPONSE_PREFIX\n",
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    done = subprocess.run(
        [JG, "policy", "check", "--strict", str(policy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "unknown key" not in done.stderr


def _message() -> Message:
    facts = RequestFacts(
        id="r-1",
        requester="jane.doe@example.com",
        roles=("sre-oncall",),
        resources=(),
        duration_seconds=3600,
        reason="INC-1",
        urgency="normal",
        purpose=None,
        state="pending",
        created_at="2026-03-02T10:00:00+00:00",
        expires_at="2026-03-02T11:00:00+00:00",
    )
    return Message(
        event="request.created",
        channel="c",
        recipient="mark.lee@example.com",
        request=facts,
        actor="jane.doe@example.com",
        at="2026-03-02T10:00:00+00:00",
        asks_decision=True,
    )


def test_the_slack_bot_calls_the_api_url_the_environment_names() -> None:
    seen: list[str] = []

    def peer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.endswith("users.lookupByEmail"):
            return httpx.Response(200, json={"ok": True, "user": {"id": "U1"}})
        return httpx.Response(200, json={"ok": True})

    env = {"BOT": "xoxb-1", "API": "https://slack-proxy.example/api/"}
    config = {"type": "slack", "bot_token_env": "BOT", "api_url_env": "API"}
    http = httpx.Client(transport=httpx.MockTransport(peer))
    notifier = slack.SlackNotifier("c", config, NotifierDeps(http=http, env=env))
    notifier.send(_message())
    assert seen == [
        "https://slack-proxy.example/api/users.lookupByEmail",
        "https://slack-proxy.example/api/chat.postMessage",
    ]


def test_slack_url_settings_inline_env_and_default() -> None:
    env = {"API": "https://a.example/api", "PREFIX": "https://hooks.a.example/"}
    both = {"api_url_env": "API", "response_url_prefix_env": "PREFIX"}
    assert slack.api_url(both, env) == "https://a.example/api"
    assert slack.response_url_prefix(both, env) == "https://hooks.a.example/"
    assert slack.api_url({}, env) == slack.API_URL
    assert slack.response_url_prefix({}, env) == "https://hooks.slack.com/"
    inline = {"api_url": "https://b.example/api/", "api_url_env": "API"}
    assert slack.api_url(inline, env) == "https://b.example/api"  # inline wins, as elsewhere
    with pytest.raises(ChannelConfigError):
        slack.api_url({"api_url_env": "UNSET"}, env)


def test_an_unset_slack_url_variable_is_reported_missing() -> None:
    config = {
        "type": "slack",
        "webhook_url_env": "HOOK",
        "api_url_env": "API",
        "response_url_prefix_env": "PREFIX",
    }
    assert slack.SlackNotifier.missing_env(config, {"HOOK": "https://h.example/x"}) == [
        "API",
        "PREFIX",
    ]
    assert slack.SlackNotifier.missing_env(config, {}) == ["HOOK", "API", "PREFIX"]
    full = {"HOOK": "https://h.example/x", "API": "https://a.example", "PREFIX": "https://p/"}
    assert slack.SlackNotifier.missing_env(config, full) == []
