"""Warnings about people outside the directory (``adapters.policy.lint_people``) and about
roles without a cap or without anyone who may request them (``adapters.policy.lint``)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from jitgate.adapters.policy import check_policy, check_policy_text
from jitgate.entrypoints.cli.main import cli

PEOPLE = """\
version: 1
directory:
  users:
    jane@example.com: {team: pay, manager: mark@exmaple.com, groups: [dev]}
    mark@example.com: {groups: [sec]}
    sam@example.com: {groups: [sre]}
  teams:
    pay: {lead: Mark@Example.com}
    ops: {lead: bob@example.com}
  oncall:
    sre:
      rotation: [sam@example.com, sma@example.com]
      shift: 7d
      starts: 2026-01-05T09:00:00Z
      overrides: [{user: SAM@example.com, from: 2026-02-02T09:00:00Z, until: 2026-02-03T09:00:00Z},
                  {user: mrak@example.com, from: 2026-02-04T09:00:00Z, until: 2026-02-05T09:00:00Z}]
roles:
  ssh:
    grants: [{type: ssh, environment: production}]
    requestable_by: [dev]
    max_duration: 8h
approval:
  - match: {type: ssh}
    any: [{user: jnae@example.com}, {group: sec}]
    escalate_to: [{user: mark@example.com}, {user: zed@example.com}]
"""


def test_people_not_in_the_directory_are_warned_about_where_they_are_named() -> None:
    found = [(w.line, w.path, w.message) for w in check_policy_text(PEOPLE, "p.yaml").warnings]
    assert found == [
        (
            4,
            "directory.users.jane@example.com.manager",
            "manager 'mark@exmaple.com' is not in directory.users (did you mean "
            "'mark@example.com'?)",
        ),
        (9, "directory.teams.ops.lead", "team lead 'bob@example.com' is not in directory.users"),
        (
            12,
            "directory.oncall.sre.rotation[1]",
            "on-call 'sma@example.com' is not in directory.users (did you mean "
            "'sam@example.com'?)",
        ),
        (
            16,
            "directory.oncall.sre.overrides[1].user",
            "on-call cover 'mrak@example.com' is not in directory.users (did you mean "
            "'mark@example.com'?)",
        ),
        (
            24,
            "approval[0].any[0].user",
            "approver 'jnae@example.com' is not in directory.users (did you mean "
            "'jane@example.com'?)",
        ),
        (25, "approval[0].escalate_to[1].user", "approver 'zed@example.com' is not in "
         "directory.users"),
    ]  # fmt: skip


ROLES = """\
version: 1
directory:
  users:
    jane@example.com: {groups: [dev]}
roles:
  capped:
    grants: [{type: ssh, environment: development}]
    requestable_by: [dev]
    max_duration: 8h
  uncapped:
    grants: [{type: ssh, environment: development}]
    requestable_by: [dev]
  extendable:
    grants: [{type: ssh, environment: development}]
    requestable_by: [dev]
    extendable: true
  closed:
    grants: [{type: ssh, environment: development}]
    requestable_by: []
    max_duration: 8h
  unlisted:
    grants: [{type: ssh, environment: development}]
    max_duration: 8h
approval:
  - {match: {type: ssh}, rule: self}
"""


def test_every_role_without_max_duration_gets_one_warning() -> None:
    found = [(w.line, w.path, w.message) for w in check_policy_text(ROLES, "p.yaml").warnings]
    assert found == [
        (
            10,
            "roles.uncapped",
            "no max_duration: only a purpose's max caps this role's grants, so a request "
            "without a purpose may ask for up to ten years; set max_duration",
        ),
        (
            13,
            "roles.extendable",
            "no max_duration: only a purpose's max caps this role's grants and extensions "
            "(none at all without a purpose), so a request without a purpose may ask for up "
            "to ten years; set max_duration",
        ),
        (
            19,
            "roles.closed.requestable_by",
            "empty requestable_by: nobody may request this role (list the groups that may)",
        ),
        (
            21,
            "roles.unlisted",
            "no requestable_by: nobody may request this role (list the groups that may)",
        ),
    ]


def test_strict_check_fails_on_a_typo_that_lets_requests_fall_to_a_weaker_entry(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        ROLES.split("roles:")[0]
        + "roles:\n  ssh:\n    grants: [{type: ssh, environment: production}]\n"
        "    requestable_by: [dev]\n    max_duration: 8h\n"
        "approval:\n"
        "  - match: {type: ssh, environment: prodution}\n    any: [{group: dev}]\n"
        "  - match: {type: ssh}\n    rule: self\n"
    )
    done = CliRunner().invoke(cli, ["policy", "check", "--strict", str(path)])
    assert done.exit_code == 1
    assert (
        f"warning: {path}:11: approval[0].match: no role grants ssh/prodution, so this entry "
        "is never used (did you mean environment 'production'?)"
    ) in done.output


def test_a_never_chosen_entry_names_the_file_of_the_entry_that_wins(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(ROLES.replace("rule: self}", "any: [{group: dev}]}"))
    (tmp_path / "b.yaml").write_text(
        "approval:\n  - match: {type: ssh, environment: development}\n    rule: self\n"
    )
    warnings = [w for w in check_policy(tmp_path).warnings if w.path == "approval[1].match"]
    assert [(w.file, w.line, w.message) for w in warnings] == [
        (
            str(tmp_path / "b.yaml"),
            2,
            f"never chosen: the entry at {tmp_path / 'a.yaml'}:25 (ssh/any) comes first and "
            "matches all this one does",
        )
    ]
