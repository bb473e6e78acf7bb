"""Channels and backends are checked against the plugins that serve them: an unknown type,
an unknown key and a bad value are policy problems with file, line and key path; a plugin
that declares nothing about its config is taken as written."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from jitgate.adapters.plugin_config import ConfigProblem
from jitgate.adapters.policy import PolicyError, PolicyProblem, load_policy, load_policy_text
from jitgate.adapters.policy.plugins import Kind, PluginCatalog
from jitgate.domain.policy import Policy
from third_party import installed

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load(text: str, plugins: PluginCatalog | None = None) -> Policy:
    return load_policy_text(textwrap.dedent(text), "p.yaml", plugins=plugins)


def _problems(text: str, plugins: PluginCatalog | None = None) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as caught:
        _load(text, plugins)
    return caught.value.problems


def _one(text: str, plugins: PluginCatalog | None = None) -> PolicyProblem:
    found = _problems(text, plugins)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def _channel(entry: str) -> str:
    return f"version: 1\nnotifications:\n  channels:\n    c: {entry}\n"


def _backend(entry: str) -> str:
    return f"version: 1\nbackends:\n  b: {entry}\n"


# -- types ------------------------------------------------------------------------------------


def test_an_unknown_backend_type_lists_the_installed_ones() -> None:
    problem = _one("version: 1\nbackends:\n  x: {type: nosuch}\n")
    assert (problem.file, problem.line, problem.path) == ("p.yaml", 3, "backends.x.type")
    assert "unknown backend type 'nosuch'" in problem.message
    assert "installed: postgres, ssh-ca, webhook" in problem.message


def test_an_unknown_type_suggests_the_closest_installed_one() -> None:
    problem = _one(_backend("{type: ssh_ca, principals: [ubuntu]}"))
    assert "did you mean 'ssh-ca'?" in problem.message


def test_an_unknown_channel_type_lists_the_installed_ones() -> None:
    problem = _one(_channel("{type: fax}"))
    assert (problem.line, problem.path) == (4, "notifications.channels.c.type")
    assert "installed: email, pagerduty, slack, teams, webhook" in problem.message


def test_a_role_naming_a_backend_of_unknown_type_adds_no_second_problem() -> None:
    found = _problems(
        """\
        version: 1
        backends:
          b: {type: nosuch}
        roles:
          r: {grants: [{type: ssh, environment: staging}], backends: [b]}
        """
    )
    assert [(p.line, p.path) for p in found] == [(3, "backends.b.type")]


# -- keys -------------------------------------------------------------------------------------


def test_an_unknown_channel_key_has_its_line_path_and_a_suggestion() -> None:
    problem = _one(
        """\
        version: 1
        notifications:
          channels:
            slack:
              type: slack
              webhook_url_env: SLACK_WEBHOOK_URL
              chanel: "#access"
        """
    )
    assert (problem.line, problem.path) == (7, "notifications.channels.slack.chanel")
    assert "unknown key 'chanel'; did you mean 'channel'?" in problem.message
    assert "response_url_prefix" in problem.message  # the allowed keys are listed


def test_an_unknown_backend_key_has_its_line_and_path() -> None:
    problem = _one(
        """\
        version: 1
        backends:
          prod-pg:
            type: postgres
            dsn_env: PROD_PG_DSN
            db_role: readonly
            bogus: 1
        """
    )
    assert (problem.line, problem.path) == (7, "backends.prod-pg.bogus")
    assert problem.message.startswith("unknown key 'bogus'")


def test_an_inline_secret_is_reported_once_not_also_as_unknown() -> None:
    problem = _one(_channel("{type: webhook, url: 'https://x.example', token: s3cr3t}"))
    assert problem.path == "notifications.channels.c.token"
    assert "token_env" in problem.message
    assert "s3cr3t" not in problem.message


def test_a_misspelt_env_key_is_unknown() -> None:
    problem = _one(_channel("{type: teams, webhok_url_env: TEAMS}"))
    assert "did you mean 'webhook_url_env'?" in problem.message


EVERY_KEY = """\
version: 1
notifications:
  channels:
    slack:
      type: slack
      webhook_url_env: SLACK_WEBHOOK_URL
      bot_token_env: SLACK_BOT_TOKEN
      signing_secret_env: SLACK_SIGNING_SECRET
      channel: "#access-requests"
      audience: channel
      api_url: https://slack.example/api
      response_url_prefix: https://hooks.slack.com/
    pagerduty:
      type: pagerduty
      routing_key_env: PD_ROUTING_KEY
      events_url: https://events.pagerduty.com/v2/enqueue
      events_url_env: PD_EVENTS_URL
    mail:
      type: email
      smtp_host: smtp.example.com
      smtp_port: 587
      starttls: true
      ssl: false
      username: jitgate
      username_env: SMTP_USER
      password_env: SMTP_PASSWORD
      sender: Jitgate <jit@example.com>
      ca_file: /etc/ssl/relay.pem
    teams:
      type: teams
      webhook_url_env: TEAMS_WEBHOOK_URL
      url: https://teams.example/hook
      url_env: TEAMS_URL
      audience: person
    siem:
      type: webhook
      url: https://siem.example.com/hook
      url_env: SIEM_URL
      secret_env: HOOK_SECRET
backends:
  ssh-prod:
    type: ssh-ca
    ca_key_file_env: SSH_CA_KEY
    ca_key_env: SSH_CA_KEY_TEXT
    ca_key_passphrase_env: SSH_CA_PASSPHRASE
    principals: [ubuntu, deploy]
    extensions: [permit-pty]
    source_address: 10.0.0.0/8
  prod-pg:
    type: postgres
    dsn_env: PROD_PG_DSN
    db_role: readonly
    mode: grant_role
    login: "{local}_ro"
    logins: {jane.doe@example.com: jdoe}
    login_prefix: jit_
    connect_timeout: 5
    public_host: db.example.com
    public_port: 5432
    public_dbname: app
  k8s-hook:
    type: webhook
    url: https://k8s-broker.internal/grant
    url_env: K8S_HOOK_URL
    secret_env: K8S_HOOK_SECRET
    timeout: 2.5
"""


def test_every_key_a_built_in_plugin_reads_is_accepted() -> None:
    policy = load_policy_text(EVERY_KEY)
    assert policy.notifications.channels["slack"]["response_url_prefix"].startswith("https://")
    assert policy.backends["prod-pg"]["public_port"] == 5432


def test_the_example_policy_still_loads() -> None:
    policy = load_policy(REPO_ROOT / "examples" / "policy.yaml")
    assert set(policy.notifications.channels) == {"slack", "pagerduty", "email", "teams", "siem"}
    assert {"ssh-prod", "prod-pg"} <= set(policy.backends)


# -- values -----------------------------------------------------------------------------------

BAD_VALUES = [
    (
        _channel("{type: email, smtp_host: h, smtp_port: 'abc', sender: j@x.org}"),
        "smtp_port",
        "whole number",
    ),
    (_channel("{type: email, smtp_host: h, smtp_port: 70000, sender: j@x.org}"), "smtp_port", ""),
    (_channel("{type: email, smtp_host: h, starttls: 'maybe', sender: j@x.org}"), "starttls", ""),
    (_channel("{type: email, smtp_host: h, ssl: 'false', sender: j@x.org}"), "ssl", "true or"),
    (_channel("{type: email, smtp_host: h, sender: nope}"), "sender", "not an email address"),
    (_channel("{type: email, smtp_host: '', sender: j@x.org}"), "smtp_host", "non-empty"),
    (_channel("{type: slack, webhook_url_env: S, audience: everyone}"), "audience", "one of"),
    (_channel("{type: slack, bot_token_env: T, api_url: slack.com/api}"), "api_url", "URL"),
    (_channel("{type: slack, webhook_url_env: S, channel: [a]}"), "channel", "string"),
    (_channel("{type: pagerduty, routing_key_env: K, events_url: x}"), "events_url", "URL"),
    (_channel("{type: teams, url: 'ftp://teams.example'}"), "url", "URL"),
    (_channel("{type: webhook, url: not-a-url, secret_env: S}"), "url", "https:// URL"),
    (_backend("{type: postgres, dsn_env: D, db_role: r, mode: sometimes}"), "mode", "one of"),
    (_backend("{type: postgres, db_role: r, connect_timeout: 'x'}"), "connect_timeout", ""),
    (_backend("{type: postgres, dsn_env: D, db_role: r, public_port: 0}"), "public_port", ""),
    (_backend("{type: postgres, dsn_env: D, db_role: r, login: '{user}'}"), "login", "{local}"),
    (_backend("{type: postgres, dsn_env: D, db_role: r, logins: [a]}"), "logins", "mapping"),
    (_backend("{type: webhook, url: not-a-url, secret_env: S}"), "url", "URL"),
    (_backend("{type: webhook, url: 'https://x.example', timeout: -1}"), "timeout", "seconds"),
    (_backend("{type: webhook, url: 'https://x.example', timeout: 600}"), "timeout", "lease"),
    (
        _backend("{type: postgres, dsn_env: D, db_role: r, statement_timeout: 90}"),
        "statement_timeout",
        "lease",
    ),
    (
        _backend("{type: postgres, dsn_env: D, db_role: r, connect_timeout: 300}"),
        "connect_timeout",
        "to 30",
    ),
    (_backend("{type: ssh-ca, ca_key_file_env: K, principals: ubuntu}"), "principals", "a list"),
    (_backend("{type: ssh-ca, ca_key_file_env: K, principals: []}"), "principals", "empty"),
    (_backend("{type: ssh-ca, principals: [u], source_address: [a]}"), "source_address", ""),
]


@pytest.mark.parametrize(("text", "key", "words"), BAD_VALUES)
def test_a_bad_value_is_a_problem_at_its_key(text: str, key: str, words: str) -> None:
    problem = _one(text)
    backend = text.startswith("version: 1\nbackends")
    section = "backends.b" if backend else "notifications.channels.c"
    assert (problem.line, problem.path) == (text.count("\n"), f"{section}.{key}")
    assert words in problem.message


def test_a_backend_call_cannot_outlast_the_lease_of_its_row() -> None:
    """The limits on backend timeouts keep one call inside the lease its enforcement row
    takes, so no second replica repeats a call still under way."""
    from jitgate.adapters.plugin_config import MAX_SECONDS
    from jitgate.service.enforcement_rows import LEASE

    assert LEASE.total_seconds() / 1.5 > MAX_SECONDS


def test_a_bad_list_item_has_its_index() -> None:
    problem = _one(_backend("{type: ssh-ca, ca_key_file_env: K, principals: [ubuntu, '']}"))
    assert problem.path == "backends.b.principals[1]"


def test_a_url_value_is_not_quoted() -> None:
    problem = _one(_channel("{type: webhook, url: 'hooks.example/t0ken', secret_env: S}"))
    assert "t0ken" not in problem.message


# -- plugins that are not built in --------------------------------------------------------------


class FaxNotifier:
    """A third-party notifier that declares nothing about its config."""


class StrictBackend:
    CONFIG_KEYS: ClassVar[tuple[str, ...]] = ("zone",)

    @classmethod
    def config_problems(cls, config: Mapping[str, Any]) -> list[ConfigProblem]:
        return [] if config.get("zone") in (None, "a", "b") else [(("zone",), "must be a or b")]


class BrokenCheckBackend:
    @classmethod
    def config_problems(cls, config: Mapping[str, Any]) -> list[ConfigProblem]:
        raise RuntimeError("bug in a plugin")


CATALOG = PluginCatalog(
    channels={"fax": FaxNotifier, "broken": None},
    backends={"strict": StrictBackend, "buggy": BrokenCheckBackend},
)


def test_a_plugin_declaring_nothing_takes_any_key() -> None:
    policy = _load(_channel("{type: fax, number: '+4930123', nested: {deep: [1, 2]}}"), CATALOG)
    assert policy.notifications.channels["c"] == {
        "type": "fax",
        "number": "+4930123",
        "nested": {"deep": [1, 2]},
    }


def test_a_plugin_that_failed_to_load_is_a_known_type_taken_as_written() -> None:
    policy = _load(_channel("{type: broken, anything: 1}"), CATALOG)
    assert policy.notifications.channels["c"]["anything"] == 1


def test_secrets_are_still_refused_for_a_plugin_declaring_nothing() -> None:
    problem = _one(_channel("{type: fax, api_key: s3cr3t}"), CATALOG)
    assert problem.path == "notifications.channels.c.api_key"


def test_a_third_party_declaration_is_enforced() -> None:
    found = _problems(_backend("{type: strict, zone: c, zoen: a}"), CATALOG)
    assert sorted((p.path, p.message.split(";")[0]) for p in found) == [
        ("backends.b.zoen", "unknown key 'zoen'"),
        ("backends.b.zone", "must be a or b"),
    ]


def test_a_failing_config_check_is_a_problem_not_a_crash() -> None:
    problem = _one(_backend("{type: buggy}"), CATALOG)
    assert (problem.path, problem.message) == (
        "backends.b",
        "the 'buggy' plugin failed to check this entry (RuntimeError)",
    )


def test_the_catalog_lists_the_given_types_only() -> None:
    problem = _one(_channel("{type: slack, webhook_url_env: S}"), CATALOG)
    assert problem.message.endswith("(installed: broken, fax)")


class NoLookups(PluginCatalog):
    def types(self, kind: Kind) -> Mapping[str, object | None]:
        raise AssertionError("plugins looked up for a policy without channels or backends")


def test_plugins_are_looked_up_only_for_channels_and_backends() -> None:
    text = "version: 1\nroles: {r: {grants: [{type: ssh, environment: dev}]}}\n"
    policy = _load(text, NoLookups())
    assert "r" in policy.roles


def test_importing_the_loader_loads_no_plugin() -> None:
    code = (
        "import sys, jitgate.adapters.policy\n"
        "print(sorted(m for m in sys.modules if m.startswith(('jitgate.adapters.notifiers',"
        " 'jitgate.adapters.backends'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def installed_fax(tmp_path: Path) -> Iterator[None]:
    """A notifier shipped as its own package, in the ``jitgate.notifiers`` group."""
    source = "class FaxNotifier:\n    CONFIG_KEYS = ('number',)\n"
    with installed(tmp_path, "acme_fax", source, "jitgate.notifiers", "fax = acme_fax:FaxNotifier"):
        yield


def test_an_installed_third_party_channel_type_is_accepted(installed_fax: None) -> None:
    policy = _load(_channel("{type: fax, number: '+4930123'}"))
    assert policy.notifications.channels["c"]["type"] == "fax"
    problem = _one(_channel("{type: fax, numbr: '+4930123'}"))
    assert "did you mean 'number'?" in problem.message
