"""Warnings about approval entries (``adapters.policy.lint_approval``): never used, never
chosen, never satisfiable, escalation that cannot happen; each with file, line, key path."""

from __future__ import annotations

import textwrap

from jitgate.adapters.policy import check_policy_text

HEAD = """\
version: 1
directory:
  users:
    jane@example.com: {team: pay, manager: mark@example.com, groups: [dev]}
    mark@example.com: {groups: [sec]}
    sam@example.com: {groups: [sre]}
    sue@example.com: {groups: [sre]}
  teams:
    pay: {lead: mark@example.com}
  oncall:
    sre: {rotation: [sam@example.com, sue@example.com], shift: 7d, starts: 2026-01-05T09:00:00Z}
roles:
  ssh:
    grants: [{type: ssh, environment: production}, {type: ssh, environment: staging}]
    requestable_by: [dev]
    max_duration: 8h
approval:
"""  # approval entries start at line 18


def _warnings(approval: str, head: str = HEAD) -> list[tuple[int, str, str]]:
    text = head + textwrap.indent(textwrap.dedent(approval), "  ")
    checked = check_policy_text(text, "p.yaml")
    return [(w.line, w.path, w.message) for w in checked.warnings]


def test_a_typo_in_a_match_is_warned_about_with_the_nearest_granted_name() -> None:
    """The typo'd entry is never used: its requests fall through to the catch-all."""
    found = _warnings(
        """\
        - match: {type: ssh, environment: prodution}
          all: [{oncall: sre}, {manager: true}]
        - match: {type: shh, environment: staging}
          any: [{group: sre}]
        - match: {type: ssh}
          rule: self
        """
    )
    assert found == [
        (
            18,
            "approval[0].match",
            "no role grants ssh/prodution, so this entry is never used "
            "(did you mean environment 'production'?)",
        ),
        (
            20,
            "approval[1].match",
            "no role grants shh/staging, so this entry is never used (did you mean type 'ssh'?)",
        ),
    ]


def test_an_entry_an_earlier_one_matches_wholly_is_never_chosen() -> None:
    found = _warnings(
        """\
        - match: {type: ssh}
          any: [{group: sre}]
        - match: {type: ssh, environment: production}
          all: [{oncall: sre}, {manager: true}]
        """
    )
    assert found == [
        (
            20,
            "approval[1].match",
            "never chosen: the entry at line 18 (ssh/any) comes first and matches all this "
            "one does",
        )
    ]


def test_an_entry_whose_granted_scopes_all_go_to_earlier_entries_is_never_chosen() -> None:
    found = _warnings(
        """\
        - match: {type: ssh, environment: production}
          any: [{group: sre}]
        - match: {environment: production}
          any: [{group: sec}]
        - match: {type: ssh, environment: staging}
          rule: self
        """
    )
    assert found == [
        (
            20,
            "approval[1].match",
            "never chosen: every granted type/environment it matches goes to an earlier "
            "entry (line 18: ssh/production)",
        )
    ]


def test_the_catch_all_after_specific_entries_is_fine() -> None:
    assert (
        _warnings(
            """\
            - match: {type: ssh, environment: production}
              all: [{oncall: sre}, {manager: true}]
            - match: {type: ssh}
              rule: self
            """
        )
        == []
    )


def test_an_any_environment_grant_reaches_every_named_environment() -> None:
    head = HEAD.replace("{type: ssh, environment: staging}", "{type: ssh, environment: any}")
    found = _warnings(
        """\
        - match: {type: ssh, environment: production}
          any: [{group: sre}]
        - match: {type: ssh, environment: qa}
          any: [{group: sre}]
        - match: {type: ssh}
          rule: self
        """,
        head,
    )
    assert found == []


def test_a_threshold_above_the_people_its_specs_can_name_is_warned_about() -> None:
    found = _warnings(
        """\
        - match: {type: ssh, environment: production}
          any: [{group: sre}, {user: mark@example.com}]
          threshold: 4
        - match: {type: ssh, environment: staging}
          any: [{group: sre}, {manager: true}]
          threshold: 3
        """
    )
    assert found == [
        (
            20,
            "approval[0].threshold",
            "threshold 4 needs that many different approvers, but its specs can name at most "
            "3: no request can ever be approved",
        )
    ]


def test_escalate_to_counts_towards_what_a_rule_can_name() -> None:
    rule = """\
        - match: {type: ssh}
          any: [{group: sec}]
          threshold: 2
        """
    (warning,) = _warnings(rule)
    assert warning[1] == "approval[0].threshold"
    assert _warnings(rule + "  escalate_to: [{group: sre}]\n") == []


def test_the_same_one_person_spec_twice_in_all_can_never_be_satisfied() -> None:
    found = _warnings(
        """\
        - match: {type: ssh, environment: production}
          all: [{manager: true}, {manager: true}]
        - match: {type: ssh, environment: staging}
          all: [{group: sec}, {user: mark@example.com}]
        """
    )
    message = (
        "needs 2 different people (one per spec), but its specs can name at most 1: "
        "no request can ever be approved"
    )
    assert found == [(19, "approval[0].all", message), (21, "approval[1].all", message)]


def test_all_specs_that_can_each_get_someone_are_fine() -> None:
    rules = """\
        - match: {type: ssh, environment: production}
          all: [{group: sre}, {group: sre}, {manager: true}]
        - match: {type: ssh, environment: staging}
          all: [{oncall: sre}, {oncall: sre}]
        """
    assert _warnings(rules) == []


def test_escalation_that_can_never_happen_is_warned_about() -> None:
    head = HEAD.replace("version: 1\n", "version: 1\nsettings:\n  escalate_after: 1h\n")
    found = _warnings(
        """\
        - match: {type: ssh}
          any: [{group: sre}]
          escalate_to: [{group: sec}]
        """,
        head,
    )
    assert found == [
        (
            3,
            "settings.escalate_after",
            "escalate_after (1h) is not shorter than pending_ttl (1h): a request expires "
            "before it is escalated, so no escalate_to ever applies",
        )
    ]
    only_ttl = HEAD.replace("version: 1\n", "version: 1\nsettings:\n  pending_ttl: 20m\n")
    (warning,) = _warnings("- {match: {type: ssh}, any: [{group: sre}]}\n", only_ttl)
    assert warning[:2] == (3, "settings.pending_ttl") and "(30m)" in warning[2]
