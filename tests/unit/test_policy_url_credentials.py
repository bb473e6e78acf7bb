"""Secrets are never in the policy file (SPEC §2), inside a URL either: a URL with a password
in it (``user:password@``) or a query parameter named like a secret (``token=``, ``sig=``...)
is a policy error with its file, line and key path, that never quotes the secret and names
the ``*_env`` form of the setting."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jitgate.adapters.policy import PolicyError, PolicyProblem, load_policy_text

REPO_ROOT = Path(__file__).resolve().parents[2]
JG = str(Path(sys.executable).with_name("jitgate"))


def _problems(text: str) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as caught:
        load_policy_text(textwrap.dedent(text), "p.yaml")
    return caught.value.problems


def _channel(entry: str) -> str:
    return f"version: 1\nnotifications:\n  channels:\n    c: {entry}\n"


@pytest.mark.parametrize(
    ("entry", "key", "env_key"),
    [
        (
            "{type: webhook, url: 'https://user:PassW0rd@siem.example.com/x', secret_env: S}",
            "url",
            "url_env",
        ),
        (
            "{type: webhook, url: 'https://siem.example.com/x?token=PassW0rd', secret_env: S}",
            "url",
            "url_env",
        ),
        (
            "{type: teams, url: 'https://prod.example.com/workflows/1/run?api-version=1&sig=PassW0rd'}",
            "url",
            "url_env",
        ),
        (
            "{type: pagerduty, routing_key_env: K, events_url: 'https://pd.example/e?api_key=PassW0rd'}",
            "events_url",
            "events_url_env",
        ),
        (
            "{type: webhook, url: 'https://siem.example/x?Access-Token=PassW0rd', secret_env: S}",
            "url",
            "url_env",
        ),
    ],
)
def test_a_credential_in_a_channel_url_is_an_error(entry: str, key: str, env_key: str) -> None:
    (problem,) = _problems(_channel(entry))
    assert problem.path == f"notifications.channels.c.{key}"
    assert problem.line == 4
    assert env_key in problem.message
    assert "PassW0rd" not in problem.message and "PassW0rd" not in str(problem)


def test_a_credential_in_a_backend_url_is_an_error() -> None:
    entry = "{type: webhook, url: 'https://k:s3@b.example/g', secret_env: S}"
    text = f"version: 1\nbackends:\n  b: {entry}\n"
    (problem,) = _problems(text)
    assert problem.path == "backends.b.url" and "url_env" in problem.message
    assert "s3" not in problem.message


def test_a_url_without_credentials_is_fine() -> None:
    policy = load_policy_text(
        _channel(
            "{type: webhook, url: 'https://user@siem.example.com/x?tenant=a&page=2', secret_env: S}"
        ),
        "p.yaml",
    )
    assert policy.notifications.channels["c"]["url"].startswith("https://user@siem")


def test_policy_check_fails_on_a_url_with_a_password_even_without_strict(tmp_path: Path) -> None:
    example = (REPO_ROOT / "examples" / "policy.yaml").read_text()
    leaky = (
        r"\1    leaky: {type: webhook, "
        'url: "https://user:PassW0rd@siem.example.com/x?token=abc", secret_env: HOOK_SECRET}\n'
    )
    text, count = re.subn(r"(notifications:\n  channels:[^\n]*\n)", leaky, example, count=1)
    assert count == 1
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    for args in (["policy", "check", str(policy)], ["policy", "check", "--strict", str(policy)]):
        done = subprocess.run([JG, *args], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode != 0, done.stdout
        assert f"{policy}:165: notifications.channels.leaky.url:" in done.stderr, done.stderr
        assert "url_env" in done.stderr
        assert "PassW0rd" not in done.stderr + done.stdout and "abc" not in done.stderr


def test_a_setting_with_no_env_form_says_to_take_the_credential_out() -> None:
    entry = "{type: slack, webhook_url_env: W, channel: 'https://slack.example/c?token=xoxb-1'}"
    (problem,) = _problems(_channel(entry))
    assert problem.path == "notifications.channels.c.channel"
    assert "no *_env form" in problem.message and "channel_env" not in problem.message
    assert "xoxb" not in problem.message
