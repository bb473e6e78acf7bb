"""Warnings about a valid policy (``adapters.policy.lint``): each with file, line and key
path; they never stop a load."""

from __future__ import annotations

import textwrap
from pathlib import Path

from jitgate.adapters.policy import PolicyProblem, check_policy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"

TYPOS = """\
version: 1
settings:
  admins: [securty]
directory:
  users:
    jane@example.com: {team: paymnts, manager: boss@example.com, groups: [developers]}
    sec@example.com: {groups: [security]}
  teams:
    payments: {lead: priya@example.com}
roles:
  staging-ssh:
    grants: [{type: ssh, environment: staging}]
    requestable_by: [developer]
    extendable: true
approval:
  - match: {type: ssh, environment: staging}
    any: [{team_lead: true}, {group: sre}]
    escalate_to: [{group: security}]
"""


def test_typos_that_still_load_are_warned_about_where_they_are(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(TYPOS)
    checked = check_policy(path)
    assert checked.policy.roles["staging-ssh"].extendable
    assert [(w.line, w.path, w.message) for w in checked.warnings] == [
        (
            3,
            "settings.admins[0]",
            "no user of the directory is in group 'securty' (did you mean 'security'?)",
        ),
        (
            6,
            "directory.users.jane@example.com.team",
            "team 'paymnts' is not in directory.teams (did you mean 'payments'?): no team lead",
        ),
        (
            6,
            "directory.users.jane@example.com.manager",
            "manager 'boss@example.com' is not in directory.users",
        ),
        (
            9,
            "directory.teams.payments.lead",
            "team lead 'priya@example.com' is not in directory.users",
        ),
        (
            11,
            "roles.staging-ssh",
            "no max_duration: only a purpose's max caps this role's grants and extensions "
            "(none at all without a purpose), so a request without a purpose may ask for up "
            "to ten years; set max_duration",
        ),
        (
            13,
            "roles.staging-ssh.requestable_by[0]",
            "no user of the directory is in group 'developer' (did you mean 'developers'?)",
        ),
        (17, "approval[0].any[1].group", "no user of the directory is in group 'sre'"),
    ]
    assert all(w.file == str(path) for w in checked.warnings)


def test_a_team_without_an_entry_is_fine_when_no_rule_asks_for_team_leads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(TYPOS.replace("{team_lead: true}, ", ""))
    assert "directory.users.jane@example.com.team" not in [
        w.path for w in check_policy(path).warnings
    ]


def test_the_example_policy_has_no_warning() -> None:
    assert check_policy(EXAMPLE).warnings == []


def test_policy_check_prints_warnings_and_fails_on_them_only_when_strict(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from jitgate.entrypoints.cli.main import cli

    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(TYPOS))
    done = CliRunner().invoke(cli, ["policy", "check", str(path)])
    assert done.exit_code == 0, done.output
    assert f"warning: {path}:3: settings.admins[0]: no user" in done.output
    assert "ok (1 roles, 1 approval rules, 0 resources" in done.output
    assert "7 warning(s)" in done.output
    strict = CliRunner().invoke(cli, ["policy", "check", "--strict", str(path)])
    assert strict.exit_code == 1


def test_policy_check_reads_standard_input() -> None:
    from click.testing import CliRunner

    from jitgate.entrypoints.cli.main import cli

    good = CliRunner().invoke(cli, ["policy", "check", "-"], input=EXAMPLE.read_text())
    assert good.exit_code == 0 and "-: ok (8 roles" in good.output
    bad = CliRunner().invoke(cli, ["policy", "check", "-"], input="version: 2\n")
    assert bad.exit_code == 1 and "<stdin>:1: version: unsupported version 2" in bad.output


def test_a_channel_no_route_sends_to_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            notifications:
              channels:
                slack: {type: slack, webhook_url_env: SLACK_URL}
                teams: {type: teams, webhook_url_env: TEAMS_URL}
            """
        )
    )
    (warning,) = _besides_no_roles(check_policy(path).warnings)
    assert (warning.line, warning.path) == (5, "notifications.channels.teams")
    assert "the RFC 10.5.2 defaults use the slack, email and pagerduty channels" in warning.message
    routed = path.read_text() + "  routes:\n    request.created: {to: approvers, via: [teams]}\n"
    path.write_text(routed)
    (warning,) = _besides_no_roles(check_policy(path).warnings)
    assert warning.path == "notifications.channels.slack" and "defaults" not in warning.message


def test_two_backends_granting_one_db_role_on_one_database_are_warned_about(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            backends:
              pg-dba: {type: postgres, dsn_env: PG_DSN, db_role: dba}
              pg-dba2: {type: postgres, dsn_env: PG_DSN, db_role: dba, mode: grant_role}
              pg-ro: {type: postgres, dsn_env: PG_DSN, db_role: readonly}
              pg-eph: {type: postgres, dsn_env: PG_DSN, db_role: dba, mode: ephemeral_user}
            """
        )
    )
    (warning,) = _besides_no_roles(check_policy(path).warnings)
    assert (warning.line, warning.path) == (4, "backends.pg-dba2.db_role")
    assert "backend 'pg-dba' grants db_role 'dba' on the same database" in warning.message


def test_a_grant_no_approval_entry_matches_is_warned_about(tmp_path: Path) -> None:
    """``rules_for`` refuses a request reaching such a grant: a role with only such grants
    can never be requested; with ``environment: any`` every environment it reaches counts."""
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            directory:
              users:
                jane@example.com: {groups: [dev]}
            roles:
              k8s-prod:
                grants: [{type: kubernetes, environment: production}]
                requestable_by: [dev]
                max_duration: 8h
              mixed:
                grants:
                  - {type: ssh, environment: development}
                  - {type: database, environment: any}
                requestable_by: [dev]
                max_duration: 8h
            approval:
              - match: {type: ssh, environment: development}
                rule: self
              - match: {type: database, environment: development}
                rule: self
            """
        )
    )
    assert [(w.line, w.path, w.message) for w in check_policy(path).warnings] == [
        (
            7,
            "roles.k8s-prod.grants[0]",
            "no approval entry matches kubernetes/production: role 'k8s-prod' can never be "
            "requested (add an approval entry for it)",
        ),
        (
            13,
            "roles.mixed.grants[1]",
            "no approval entry matches database/any, database/production, database/staging: "
            "a request that reaches it is refused (add an approval entry for it)",
        ),
    ]
    covered = path.read_text() + (
        "  - match: {type: kubernetes}\n    rule: self\n"
        "  - match: {type: database, environment: any}\n    rule: self\n"
    )
    path.write_text(covered)
    assert check_policy(path).warnings == []


def _besides_no_roles(warnings: list[PolicyProblem]) -> list[PolicyProblem]:
    """The warnings of a policy written without roles, but the one that says so."""
    return [w for w in warnings if w.path != "roles"]
