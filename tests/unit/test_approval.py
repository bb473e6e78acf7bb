"""Approval evaluation (SPEC §2, §3, §9.1-2), pure: every time is given, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jitgate.domain import approval as appr
from jitgate.domain.errors import Conflict, Forbidden
from jitgate.domain.policy import (
    ApprovalRule,
    ApproverSpec,
    Directory,
    Match,
    OncallSchedule,
    Override,
    Scope,
    Team,
    User,
)
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
REQ = "req@x"
BOSS = "boss@x"  # REQ's manager
LEAD = "lead@x"  # lead of REQ's team
SRE1, SRE2, SRE3 = "sre1@x", "sre2@x", "sre3@x"
SEC1, SEC2 = "sec1@x", "sec2@x"
BIGSRE = "bigsre@x"  # sre-leads: the escalation target
OUTSIDER = "nobody@x"

GROUP_SRE = ApproverSpec("group", "sre")
GROUP_SEC = ApproverSpec("group", "security")
ONCALL = ApproverSpec("oncall", "sre")
MANAGER = ApproverSpec("manager")
TEAM_LEAD = ApproverSpec("team_lead")
LEADS = ApproverSpec("group", "sre-leads")

# sre on call: SRE1 for the week around NOW, SRE2 from NOW + 6d; SRE3 overrides NOW+2d..+3d.
HANDOVER = NOW + timedelta(days=6)
OVERRIDE_FROM, OVERRIDE_UNTIL = NOW + timedelta(days=2), NOW + timedelta(days=3)


def _directory(
    manager: str = BOSS, requester_groups: tuple[str, ...] = ("developers",)
) -> Directory:
    users = {
        REQ: User(REQ, team="payments", manager=manager, groups=requester_groups),
        BOSS: User(BOSS, team="payments", groups=("managers",)),
        LEAD: User(LEAD, team="payments", groups=("developers",)),
        SRE1: User(SRE1, team="sre", groups=("sre",)),
        SRE2: User(SRE2, team="sre", groups=("sre",)),
        SRE3: User(SRE3, team="sre", groups=("sre",)),
        SEC1: User(SEC1, team="security", groups=("security",)),
        SEC2: User(SEC2, team="security", groups=("security", "sre")),
        BIGSRE: User(BIGSRE, team="sre", groups=("sre-leads",)),
    }
    oncall = OncallSchedule(
        "sre",
        (SRE1, SRE2),
        timedelta(days=7),
        NOW - timedelta(days=1),
        (Override(SRE3, OVERRIDE_FROM, OVERRIDE_UNTIL),),
    )
    return Directory(
        users=users, teams={"payments": Team("payments", LEAD)}, oncall={"sre": oncall}
    )


DIR = _directory()


def _rule(
    kind: str,
    *specs: ApproverSpec,
    threshold: int = 1,
    index: int = 0,
    escalate_to: tuple[ApproverSpec, ...] = (),
) -> ApprovalRule:
    return ApprovalRule(
        index,
        Match("ssh", "production"),
        kind,
        specs,  # type: ignore[arg-type]
        threshold,
        escalate_to,
    )


def _ok(person: str, at: datetime = NOW) -> appr.Approval:
    return appr.Approval(person, "approve", at)


def _evaluate(
    rules: list[ApprovalRule],
    approvals: list[appr.Approval],
    *,
    directory: Directory = DIR,
    escalated: bool = False,
) -> appr.Evaluation:
    return appr.evaluate(rules, approvals, requester=REQ, directory=directory, escalated=escalated)


def _request(*rules: ApprovalRule, created: datetime = NOW) -> AccessRequest:
    return AccessRequest(
        id="r-1",
        requester=REQ,
        roles=("role",),
        resources=(),
        scopes=(Scope("ssh", "production"),),
        rules=rules,
        duration=timedelta(hours=2),
        reason="INC-1",
        urgency="normal",
        purpose=None,
        created_at=created,
        expires_at=created + timedelta(days=30),
        escalate_at=created + timedelta(minutes=30),
        max_total=timedelta(hours=8),
    )


# -- self ------------------------------------------------------------------------------------


def test_self_rule_is_satisfied_by_policy_without_any_person() -> None:
    result = _evaluate([_rule("self")], [])
    assert result.satisfied
    assert [r.satisfied_by for r in result.requirements] == [appr.POLICY_ACTOR]


def test_self_rule_names_no_approver() -> None:
    rules = [_rule("self")]
    assert appr.candidates(rules, requester=REQ, directory=DIR, at=NOW, escalated=False) == set()
    assert not appr.can_decide(rules, SRE1, requester=REQ, directory=DIR, at=NOW, escalated=False)


# -- any -------------------------------------------------------------------------------------


def test_any_is_satisfied_by_one_person_matching_any_spec() -> None:
    rules = [_rule("any", TEAM_LEAD, GROUP_SRE)]
    assert not _evaluate(rules, []).satisfied
    assert _evaluate(rules, [_ok(LEAD)]).satisfied
    assert _evaluate(rules, [_ok(SRE2)]).satisfied
    assert not _evaluate(rules, [_ok(SEC1)]).satisfied
    assert not _evaluate(rules, [_ok(OUTSIDER)]).satisfied


def test_any_threshold_two_needs_two_distinct_people() -> None:
    rules = [_rule("any", GROUP_SRE, threshold=2)]
    one = _evaluate(rules, [_ok(SRE1)])
    assert not one.satisfied
    assert [r.satisfied_by for r in one.requirements] == [SRE1, None]
    twice = _evaluate(rules, [_ok(SRE1), _ok(SRE1, NOW + timedelta(minutes=1))])
    assert not twice.satisfied
    two = _evaluate(rules, [_ok(SRE1), _ok(SRE2, NOW + timedelta(minutes=1))])
    assert two.satisfied
    assert {r.satisfied_by for r in two.requirements} == {SRE1, SRE2}


def test_deny_decisions_never_count_as_approvals() -> None:
    rules = [_rule("any", GROUP_SRE)]
    assert not _evaluate(rules, [appr.Approval(SRE1, "deny", NOW, "no")]).satisfied


# -- all -------------------------------------------------------------------------------------


def test_all_needs_every_spec_each_by_a_different_person() -> None:
    rules = [_rule("all", ONCALL, MANAGER)]
    assert not _evaluate(rules, [_ok(SRE1)]).satisfied
    assert not _evaluate(rules, [_ok(BOSS)]).satisfied
    result = _evaluate(rules, [_ok(SRE1), _ok(BOSS)])
    assert result.satisfied
    assert [(r.spec, r.satisfied_by) for r in result.requirements] == [
        ({"oncall": "sre"}, SRE1),
        ({"manager": True}, BOSS),
    ]


def test_a_spec_repeated_in_all_needs_as_many_different_people() -> None:
    rules = [_rule("all", GROUP_SRE, GROUP_SRE)]
    assert not _evaluate(rules, [_ok(SRE1)]).satisfied
    result = _evaluate(rules, [_ok(SRE1), _ok(SRE2)])
    assert result.satisfied
    assert sorted(str(r.satisfied_by) for r in result.requirements) == [SRE1, SRE2]


def test_one_person_matching_two_specs_of_all_satisfies_only_one() -> None:
    directory = _directory(manager=SRE1)  # the on-call is also the requester's manager
    rules = [_rule("all", ONCALL, MANAGER)]
    result = _evaluate(rules, [_ok(SRE1)], directory=directory)
    assert not result.satisfied
    assert [r.satisfied_by for r in result.requirements].count(SRE1) == 1

    request = _request(*rules)
    request.approve(SRE1, directory=directory, now=NOW)
    assert request.state is State.PENDING
    with pytest.raises(Conflict):
        request.approve(SRE1, directory=directory, now=NOW + timedelta(minutes=1))
    assert request.state is State.PENDING


def test_all_uses_a_maximum_matching_not_first_come() -> None:
    # SEC2 is in both security and sre; SEC1 only in security. Greedy would give SEC2 the
    # first spec (security) and leave sre unsatisfied; a matching moves SEC2 to sre.
    rules = [_rule("all", GROUP_SEC, GROUP_SRE)]
    result = _evaluate(rules, [_ok(SEC2), _ok(SEC1, NOW + timedelta(minutes=1))])
    assert result.satisfied
    assert [r.satisfied_by for r in result.requirements] == [SEC1, SEC2]


# -- several rules ---------------------------------------------------------------------------


def test_every_rule_must_be_satisfied() -> None:
    rules = [_rule("any", GROUP_SRE, index=0), _rule("all", GROUP_SEC, MANAGER, index=1)]
    assert not _evaluate(rules, [_ok(SRE1)]).satisfied
    assert not _evaluate(rules, [_ok(SRE1), _ok(SEC1)]).satisfied
    assert not _evaluate(rules, [_ok(SEC1), _ok(BOSS)]).satisfied
    assert _evaluate(rules, [_ok(SRE1), _ok(SEC1), _ok(BOSS)]).satisfied


def test_requirements_name_the_rule_they_belong_to() -> None:
    rules = [_rule("any", GROUP_SRE, index=2), _rule("all", GROUP_SEC, MANAGER, index=6)]
    result = _evaluate(rules, [])
    assert [r.rule for r in result.requirements] == [2, 6, 6]


def test_self_rule_alongside_a_person_rule_still_needs_the_person() -> None:
    rules = [_rule("self", index=0), _rule("any", GROUP_SRE, index=1)]
    assert not _evaluate(rules, []).satisfied
    assert _evaluate(rules, [_ok(SRE1)]).satisfied


# -- the requester ---------------------------------------------------------------------------


def test_requester_never_counts_even_when_named_by_every_spec() -> None:
    directory = _directory(requester_groups=("sre", "security"))
    rules = [_rule("any", GROUP_SRE, ApproverSpec("user", REQ)), _rule("all", GROUP_SEC, index=1)]
    result = _evaluate(rules, [_ok(REQ)], directory=directory)
    assert not result.satisfied
    assert all(r.satisfied_by != REQ for r in result.requirements)
    assert not appr.can_decide(
        rules, REQ, requester=REQ, directory=directory, at=NOW, escalated=True
    )
    assert REQ not in appr.candidates(
        rules, requester=REQ, directory=directory, at=NOW, escalated=True
    )
    for spec in (GROUP_SRE, GROUP_SEC, ApproverSpec("user", REQ)):
        assert not appr.spec_matches(spec, REQ, requester=REQ, directory=directory, at=NOW)


def test_requester_cannot_approve_under_a_differently_cased_email() -> None:
    """BUG (domain/approval.py ``spec_matches``/``_first_approvals``, request.py
    ``_check_decider``): the requester check is ``person == requester`` (case-sensitive) while
    the directory looks people up lower-cased, so ``REQ@X`` is "someone else" who is in the
    requester's groups and approves the requester's own request."""
    directory = _directory(requester_groups=("sre",))
    rules = [_rule("any", GROUP_SRE)]
    assert not _evaluate(rules, [_ok(REQ.upper())], directory=directory).satisfied
    request = _request(*rules)
    with pytest.raises(Forbidden):
        request.approve(REQ.upper(), directory=directory, now=NOW)
    assert request.state is State.PENDING


# -- escalation ------------------------------------------------------------------------------


ESCALATING = _rule("all", ONCALL, MANAGER, escalate_to=(LEADS,))


def test_escalation_target_is_not_eligible_before_escalation() -> None:
    assert not appr.can_decide(
        [ESCALATING], BIGSRE, requester=REQ, directory=DIR, at=NOW, escalated=False
    )
    assert BIGSRE not in appr.candidates(
        [ESCALATING], requester=REQ, directory=DIR, at=NOW, escalated=False
    )
    request = _request(ESCALATING)
    with pytest.raises(Forbidden):
        request.approve(BIGSRE, directory=DIR, now=NOW)
    assert request.approvals == ()


def test_escalation_target_satisfies_a_still_unsatisfied_spec_after_escalation() -> None:
    request = _request(ESCALATING)
    request.approve(SRE1, directory=DIR, now=NOW)  # on call
    request.escalate(NOW + timedelta(minutes=30))
    assert appr.can_decide(
        [ESCALATING],
        BIGSRE,
        requester=REQ,
        directory=DIR,
        at=NOW + timedelta(minutes=31),
        escalated=True,
    )
    result = request.approve(BIGSRE, directory=DIR, now=NOW + timedelta(minutes=31))
    assert result.satisfied
    assert [r.satisfied_by for r in result.requirements] == [SRE1, BIGSRE]
    assert request.state is State.APPROVED


def test_escalation_target_alone_satisfies_only_one_spec_of_all() -> None:
    request = _request(ESCALATING)
    request.escalate(NOW + timedelta(minutes=30))
    result = request.approve(BIGSRE, directory=DIR, now=NOW + timedelta(minutes=31))
    assert not result.satisfied
    assert request.state is State.PENDING


def test_an_escalation_approval_does_not_count_when_not_escalated() -> None:
    approvals = [_ok(SRE1), _ok(BIGSRE)]
    assert not _evaluate([ESCALATING], approvals, escalated=False).satisfied
    assert _evaluate([ESCALATING], approvals, escalated=True).satisfied


# -- on-call judged at approval time ---------------------------------------------------------


def test_oncall_is_judged_at_the_moment_of_approval_rotation() -> None:
    rules = [_rule("any", ONCALL)]
    assert appr.can_decide(rules, SRE1, requester=REQ, directory=DIR, at=NOW, escalated=False)
    assert not appr.can_decide(rules, SRE2, requester=REQ, directory=DIR, at=NOW, escalated=False)
    assert appr.can_decide(rules, SRE2, requester=REQ, directory=DIR, at=HANDOVER, escalated=False)
    assert not appr.can_decide(
        rules, SRE1, requester=REQ, directory=DIR, at=HANDOVER, escalated=False
    )
    # SRE1's approval while on call still counts after the handover...
    assert _evaluate(rules, [_ok(SRE1, NOW)]).satisfied
    # ...but an approval given after SRE1 went off call does not.
    assert not _evaluate(rules, [_ok(SRE1, HANDOVER)]).satisfied
    assert _evaluate(rules, [_ok(SRE2, HANDOVER)]).satisfied


def test_oncall_override_replaces_the_rotation_during_its_window() -> None:
    rules = [_rule("any", ONCALL)]
    assert appr.candidates(
        rules, requester=REQ, directory=DIR, at=OVERRIDE_FROM, escalated=False
    ) == {SRE3}
    assert not _evaluate(rules, [_ok(SRE1, OVERRIDE_FROM)]).satisfied
    assert _evaluate(rules, [_ok(SRE3, OVERRIDE_FROM)]).satisfied
    assert not _evaluate(rules, [_ok(SRE3, OVERRIDE_UNTIL)]).satisfied
    assert _evaluate(rules, [_ok(SRE1, OVERRIDE_UNTIL)]).satisfied


def test_request_refuses_an_approval_from_someone_no_longer_on_call() -> None:
    request = _request(_rule("any", ONCALL), created=HANDOVER - timedelta(minutes=10))
    with pytest.raises(Forbidden):
        request.approve(SRE1, directory=DIR, now=HANDOVER)
    request.approve(SRE2, directory=DIR, now=HANDOVER)
    assert request.state is State.APPROVED


# -- spec kinds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "named", "not_named"),
    [
        (GROUP_SRE, SRE2, BOSS),
        (TEAM_LEAD, LEAD, BOSS),
        (MANAGER, BOSS, LEAD),
        (ONCALL, SRE1, SRE2),
        (ApproverSpec("user", SEC1), SEC1, SEC2),
    ],
)
def test_each_spec_kind_names_the_right_people(
    spec: ApproverSpec, named: str, not_named: str
) -> None:
    assert appr.spec_matches(spec, named, requester=REQ, directory=DIR, at=NOW)
    assert not appr.spec_matches(spec, not_named, requester=REQ, directory=DIR, at=NOW)
    found = appr.spec_candidates(spec, requester=REQ, directory=DIR, at=NOW)
    assert named in found and not_named not in found
