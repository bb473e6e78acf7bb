"""``service.explain``: a spec that names nobody says why, in plain words."""

from __future__ import annotations

from datetime import UTC, datetime

from jitgate.adapters.policy import load_policy_text
from jitgate.service.explain import explain

POLICY = """\
version: 1
directory:
  users:
    jane@example.com: {groups: [dev, solo]}
    ann@example.com: {team: ghosts, groups: [dev]}
  oncall:
    sre: {rotation: [jane@example.com], shift: 7d, starts: 2026-01-05T09:00:00Z}
roles:
  r:
    grants: [{type: ssh, environment: production}]
    requestable_by: [dev]
approval:
  - match: {type: ssh, environment: production}
    all:
      - {manager: true}
      - {team_lead: true}
      - {group: solo}
      - {oncall: sre}
      - {user: jane@example.com}
"""
NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)


def nobody(user: str, at: datetime = NOW) -> list[str]:
    result = explain(
        load_policy_text(POLICY), user=user, roles=("r",), resources=(), purpose=None, now=at
    )
    assert result.allowed, result.refusal
    (rule,) = result.rules
    return [f"{s.spec}: {s.nobody}" for s in rule.specs if not s.approvers]


def test_why_nobody_can_approve() -> None:
    assert nobody("jane@example.com") == [
        "manager: nobody: jane@example.com has no manager in the directory",
        "team_lead: nobody: jane@example.com has no team in the directory",
        "group:solo: nobody: only jane@example.com, who cannot approve their own request",
        "oncall:sre: nobody: only jane@example.com, who cannot approve their own request",
        "user:jane@example.com: nobody: only jane@example.com, who cannot approve their own "
        "request",
    ]
    before = datetime(2026, 1, 1, tzinfo=UTC)  # the rotation has not started
    assert nobody("ann@example.com", before) == [
        "manager: nobody: ann@example.com has no manager in the directory",
        "team_lead: nobody: team ghosts has no entry in directory.teams",
        "oncall:sre: nobody right now: no one is on call for schedule sre",
    ]
