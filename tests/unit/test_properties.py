"""Property tests of the request aggregate (SPEC §3, §9): random rules, random people (the
requester included) doing random things at increasing times; the invariants hold after
every step."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from jitgate.domain import approval as appr
from jitgate.domain.errors import DomainError
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
from jitgate.domain.states import TERMINAL, State

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
REQ = "req@x"
PEOPLE = ("a@x", "boss@x", "b@x", REQ, "c@x", "d@x", "lead@x", "esc@x")
ADMINS = frozenset({"d@x"})

# The requester is in g1 and on the on-call rotation, and a spec names them by user:
# every way of naming the requester is exercised.
DIRECTORY = Directory(
    users={
        REQ: User(REQ, team="t", manager="boss@x", groups=("g1",)),
        "a@x": User("a@x", team="t", groups=("g1", "g2")),
        "b@x": User("b@x", team="t", groups=("g1",)),
        "c@x": User("c@x", groups=("g2",)),
        "d@x": User("d@x", groups=("g3", "admins")),
        "boss@x": User("boss@x", groups=("g1", "g2")),
        "lead@x": User("lead@x", team="t", groups=("g3",)),
        "esc@x": User("esc@x", groups=("leads",)),
    },
    teams={"t": Team("t", "lead@x")},
    oncall={
        "s": OncallSchedule(
            "s",
            ("a@x", REQ, "c@x"),
            timedelta(minutes=20),
            T0,
            (Override("d@x", T0 + timedelta(minutes=40), T0 + timedelta(minutes=50)),),
        )
    },
)

SPECS = (
    ApproverSpec("group", "g1"),
    ApproverSpec("group", "g2"),
    ApproverSpec("group", "g3"),
    ApproverSpec("group", "leads"),
    ApproverSpec("team_lead"),
    ApproverSpec("manager"),
    ApproverSpec("oncall", "s"),
    ApproverSpec("user", "a@x"),
    ApproverSpec("user", REQ),
)

specs_st = st.lists(st.sampled_from(SPECS), min_size=1, max_size=4)
escalate_st = st.lists(st.sampled_from(SPECS), max_size=2).map(tuple)


@st.composite
def rules_st(draw: st.DrawFn) -> tuple[ApprovalRule, ...]:
    count = draw(st.integers(1, 2))
    rules = []
    for index in range(count):
        kind = draw(st.sampled_from(["any", "all", "self"]))
        if kind == "self":
            rules.append(ApprovalRule(index, Match("ssh", "production"), "self"))
            continue
        specs = tuple(draw(specs_st))
        threshold = draw(st.integers(1, 3)) if kind == "any" else 1
        rules.append(
            ApprovalRule(
                index, Match("ssh", "production"), kind, specs, threshold, draw(escalate_st)
            )
        )
    return tuple(rules)


# Approvals are the interesting action: weight them up. ``approve`` is by a random person
# (the requester included); ``approve_eligible`` by one of those who may decide right now.
ACTIONS = (
    "approve",
    "approve",
    "approve_eligible",
    "approve_eligible",
    "approve_eligible",
    "deny",
    "revoke",
    "expire",
    "escalate",
    "tick",
    "tick",
    "activate",
    "end",
)


@dataclass(frozen=True)
class Step:
    action: str
    person: str
    pick: int
    advance: timedelta
    reason: str


steps_st = st.lists(
    st.builds(
        Step,
        action=st.sampled_from(ACTIONS),
        person=st.sampled_from(PEOPLE),
        pick=st.integers(0, 7),
        advance=st.one_of(
            st.integers(0, 120), st.integers(0, 300), st.integers(0, 300), st.integers(300, 3600)
        ).map(lambda s: timedelta(seconds=s)),
        reason=st.sampled_from(["because", "", "  "]),
    ),
    min_size=3,
    max_size=40,
)


def _new_request(rules: tuple[ApprovalRule, ...], start_in: timedelta | None) -> AccessRequest:
    request = AccessRequest(
        id="r-1",
        requester=REQ,
        roles=("role",),
        resources=(),
        scopes=(Scope("ssh", "production"),),
        rules=rules,
        duration=timedelta(minutes=45),
        reason="INC-1",
        urgency="normal",
        purpose=None,
        created_at=T0,
        expires_at=T0 + timedelta(hours=1),
        escalate_at=T0 + timedelta(minutes=30),
        max_total=timedelta(hours=2),
        start_at=T0 + start_in if start_in else None,
    )
    if all(r.kind == "self" for r in rules):
        request.approve_by_policy(T0)
    return request


def _tick(request: AccessRequest, now: datetime) -> None:
    """What the scheduler would do at ``now``."""
    if request.state is State.PENDING and now >= request.expires_at:
        request.expire_pending(now)
    elif request.state is State.PENDING and now >= request.escalate_at and not request.escalated:
        request.escalate(now)
    elif request.state is State.APPROVED and request.ends_at and now >= request.ends_at:
        request.revoke("system", reason="window ended before activation", now=now, is_admin=True)
    elif request.state is State.APPROVED and request.starts_at and request.starts_at <= now:
        request.activate(now)
    elif request.state is State.ACTIVE and request.ends_at and now >= request.ends_at:
        request.expire(now, open_sessions=[])


def _person(request: AccessRequest, step: Step, now: datetime) -> str:
    if step.action != "approve_eligible":
        return step.person
    eligible = sorted(request.approvers_now(DIRECTORY, now))
    return eligible[step.pick % len(eligible)] if eligible else step.person


def _apply(request: AccessRequest, step: Step, person: str, now: datetime) -> None:
    d = DIRECTORY
    if step.action in ("approve", "approve_eligible"):
        request.approve(person, directory=d, now=now)
    elif step.action == "deny":
        request.deny(person, reason=step.reason, directory=d, now=now)
    elif step.action == "revoke":
        request.revoke(person, reason=step.reason, now=now, is_admin=person in ADMINS)
    elif step.action == "expire":
        request.expire_pending(now)
    elif step.action == "escalate":
        request.escalate(now)
    elif step.action == "activate":
        request.activate(now)
    elif step.action == "end":
        request.expire(now, open_sessions=[])
    else:
        _tick(request, now)


def _check_invariants(request: AccessRequest) -> appr.Evaluation:
    evaluation = request.evaluation(DIRECTORY)
    # (a) the requester is never an approver
    assert all(r.satisfied_by != REQ for r in evaluation.requirements)
    assert all(a.approver != REQ for a in request.approvals)
    # (c) in an ``all`` rule one person satisfies at most one spec, and an ``any`` rule's
    # threshold counts each person once
    for rule in request.rules:
        names = [
            r.satisfied_by
            for r in evaluation.requirements
            if r.rule == rule.index and r.satisfied_by is not None
        ]
        assert len(names) == len(set(names)), (rule.kind, names)
    # one approval per person; an approver may still change their mind towards a deny
    # (the safe direction), which ends the request, so at most one deny is ever recorded
    approvers = [a.approver for a in request.approvals if a.decision == "approve"]
    assert len(approvers) == len(set(approvers))
    denies = [a for a in request.approvals if a.decision == "deny"]
    assert len(denies) <= 1
    if denies:
        assert request.state is State.DENIED and request.approvals[-1] is denies[0]
    return evaluation


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    rules=rules_st(),
    steps=steps_st,
    start_in=st.one_of(st.none(), st.integers(1, 90).map(lambda m: timedelta(minutes=m))),
)
def test_request_invariants_hold_after_every_step(
    rules: tuple[ApprovalRule, ...], steps: list[Step], start_in: timedelta | None
) -> None:
    request = _new_request(rules, start_in)
    now = T0
    terminal: State | None = None
    approved_by_person = False
    _check_invariants(request)
    if request.state is State.APPROVED:  # rule: self
        assert all(r.kind == "self" for r in rules)
        assert request.evaluation(DIRECTORY).satisfied

    for step in steps:
        now += step.advance
        before_state, before_approvals = request.state, request.approvals
        person = _person(request, step, now)
        eligible = request.can_decide(person, DIRECTORY, now)
        try:
            _apply(request, step, person, now)
        except DomainError:
            # a refusal changes nothing
            assert request.state is before_state
            assert request.approvals == before_approvals
        evaluation = _check_invariants(request)

        # (b) once terminal, the state never changes
        if terminal is not None:
            assert request.state is terminal
        elif request.state in TERMINAL:
            terminal = request.state

        # only an eligible person, never the requester, adds a decision
        added = request.approvals[len(before_approvals) :]
        if added:
            assert len(added) == 1 and added[0].approver == person
            assert person != REQ and eligible
            assert before_state is State.PENDING and now < request.expires_at

        # (d) approved/active only if the evaluation was satisfied when it was approved
        if request.state in (State.APPROVED, State.ACTIVE):
            assert evaluation.satisfied
            assert request.decided_at is not None
            assert all(a.at <= request.decided_at for a in request.approvals)
        if before_state is State.PENDING and request.state is State.APPROVED:
            assert evaluation.satisfied
            assert request.decided_at == now
            assert request.events[-1].type == "request.approved"
            approved_by_person = True

        # a grant is honoured only inside its window
        if request.honoured(now):
            assert request.state is State.ACTIVE
            assert request.starts_at is not None and request.ends_at is not None
            assert request.starts_at <= now < request.ends_at

    event(f"final state: {request.state.value}")
    event(f"approved by a person: {approved_by_person}")
    event(f"decisions recorded: {min(len(request.approvals), 3)}")
