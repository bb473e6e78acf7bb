"""The request aggregate (SPEC §3, §9) on the example policy, with a frozen clock, no database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from jitgate.domain.creation import Draft, open_request
from jitgate.domain.errors import Conflict, Forbidden, Invalid
from jitgate.domain.policy import Policy
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import TERMINAL, TRANSITIONS, State, check_transition

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
JANE = "jane.doe@example.com"  # developers, team payments, manager mark
MARK = "mark.lee@example.com"  # jane's manager
PRIYA = "priya@example.com"  # lead of payments
SAM = "sam@example.com"  # sre
LEE = "lee@example.com"  # sre, sre-leads, lead of team sre
DANA = "dana@example.com"  # dba
SEC = "sec@example.com"  # security = admin
M = timedelta(minutes=1)
H = timedelta(hours=1)
TICK = timedelta(microseconds=1)


def _open(
    policy: Policy,
    *roles: str,
    requester: str = JANE,
    now: datetime = START,
    rid: str = "r-1",
    extends: str | None = None,
    **draft: object,
) -> AccessRequest:
    request = open_request(
        policy,
        Draft(roles=roles or ("sre-oncall",), reason="INC-1", **draft),  # type: ignore[arg-type]
        requester=requester,
        request_id=rid,
        now=now,
        extends=extends,
    )
    request.events.clear()
    return request


@pytest.fixture
def oncall(example_policy: Policy) -> str:
    person = example_policy.directory.on_call("sre", START)
    assert person is not None
    return person


def _approved_prod(
    policy: Policy, oncall: str, at: datetime = START, **draft: object
) -> AccessRequest:
    """sre-oncall (ssh+k8s production): all[oncall sre, manager] and any[oncall sre]."""
    request = _open(policy, "sre-oncall", now=at, **draft)
    request.approve(oncall, directory=policy.directory, now=at)
    request.approve(MARK, directory=policy.directory, now=at)
    assert request.state is State.APPROVED
    return request


# -- transitions -----------------------------------------------------------------------------


def test_transition_table_is_the_spec() -> None:
    expected = {
        State.PENDING: {State.APPROVED, State.DENIED, State.EXPIRED, State.REVOKED},
        State.APPROVED: {State.ACTIVE, State.REVOKED},
        State.ACTIVE: {State.EXPIRED, State.REVOKED},
        State.EXPIRED: set(),
        State.DENIED: set(),
        State.REVOKED: set(),
    }
    assert expected == TRANSITIONS
    assert frozenset({State.EXPIRED, State.DENIED, State.REVOKED}) == TERMINAL


@pytest.mark.parametrize("current", list(State))
@pytest.mark.parametrize("target", list(State))
def test_check_transition_allows_exactly_the_table(current: State, target: State) -> None:
    if target in TRANSITIONS[current]:
        check_transition(current, target)
    else:
        with pytest.raises(Conflict):
            check_transition(current, target)


def _denied(p: Policy) -> AccessRequest:
    r = _open(p, "staging-ssh")
    r.deny(PRIYA, reason="not now", directory=p.directory, now=START + M)
    return r


def _withdrawn(p: Policy) -> AccessRequest:
    r = _open(p, "staging-ssh")
    r.revoke(JANE, reason="not needed", now=START + M, is_admin=False)
    return r


def _expired_pending(p: Policy) -> AccessRequest:
    r = _open(p, "staging-ssh")
    r.expire_pending(START + H)
    return r


def _revoked_active(p: Policy) -> AccessRequest:
    r = _open(p, "dev-ssh")
    r.activate(START)
    r.revoke(JANE, reason="done", now=START + M, is_admin=False)
    return r


def _expired_grant(p: Policy) -> AccessRequest:
    r = _open(p, "dev-ssh")
    r.activate(START)
    r.expire(START + 4 * H, open_sessions=[])
    return r


TERMINAL_MAKERS = {
    "denied": _denied,
    "withdrawn": _withdrawn,
    "expired-pending": _expired_pending,
    "revoked-active": _revoked_active,
    "expired-grant": _expired_grant,
}
LATER = START + 2 * H


def _extension(p: Policy) -> AccessRequest:
    return _open(p, "dev-ssh", rid="ext-1", extends="r-1")


TERMINAL_CALLS: dict[str, Callable[[AccessRequest, Policy], object]] = {
    "approve": lambda r, p: r.approve(PRIYA, directory=p.directory, now=LATER),
    "approve-by-lead-of-sre": lambda r, p: r.approve(LEE, directory=p.directory, now=LATER),
    "deny": lambda r, p: r.deny(PRIYA, reason="no", directory=p.directory, now=LATER),
    "revoke-by-requester": lambda r, p: r.revoke(JANE, reason="x", now=LATER, is_admin=False),
    "revoke-by-admin": lambda r, p: r.revoke(SEC, reason="x", now=LATER, is_admin=True),
    "approve_by_policy": lambda r, p: r.approve_by_policy(LATER),
    "expire_pending": lambda r, p: r.expire_pending(LATER + 30 * H),
    "escalate": lambda r, p: r.escalate(LATER),
    "activate": lambda r, p: r.activate(START + 5 * M),
    "expire": lambda r, p: r.expire(LATER + 30 * H, open_sessions=[]),
    "extend": lambda r, p: r.extend(_extension(p), START + 2 * M),
}


DECIDERS = {"approve": PRIYA, "approve-by-lead-of-sre": LEE, "deny": PRIYA}


def test_a_stranger_learns_nothing_of_a_closed_request_by_deciding_it(
    example_policy: Policy,
) -> None:
    """403 "not an eligible approver", as on a pending request, rather than 409 naming the
    state; whoever has a part in it (an eligible approver, the requester) still gets 409."""
    closed = _revoked_active(example_policy)  # dev-ssh: self-approved, nobody else decides
    pending = _open(example_policy, "staging-ssh", rid="r-2")  # jane's team lead decides
    for request in (closed, pending):  # ravi, a developer, has no part in either
        with pytest.raises(Forbidden, match="not an eligible approver"):
            request.approve("ravi@example.com", directory=example_policy.directory, now=START + M)
    with pytest.raises(Conflict, match="revoked, not pending"):
        closed.approve(JANE, directory=example_policy.directory, now=LATER)
    denied = _denied(example_policy)  # staging-ssh: priya, jane's team lead, decides it
    with pytest.raises(Conflict, match="denied, not pending"):
        denied.approve(PRIYA, directory=example_policy.directory, now=LATER)


@pytest.mark.parametrize("make", list(TERMINAL_MAKERS), ids=str)
@pytest.mark.parametrize("call", list(TERMINAL_CALLS), ids=str)
def test_every_method_on_a_terminal_request_is_conflict(
    example_policy: Policy, make: str, call: str
) -> None:
    request = TERMINAL_MAKERS[make](example_policy)
    assert request.state in TERMINAL
    request.events.clear()
    before = request.copy()
    decider = DECIDERS.get(call)
    stranger = decider is not None and not (
        request.can_decide(decider, example_policy.directory, LATER) or request.decided_by(decider)
    )  # someone with no part in the request is refused before its state is told
    with pytest.raises(Forbidden if stranger else Conflict):
        TERMINAL_CALLS[call](request, example_policy)
    assert request == before  # nothing changed: state, window, approvals, flags
    assert request.events == []


def test_warn_expiring_on_a_terminal_request_is_conflict(example_policy: Policy) -> None:
    """BUG (domain/request.py ``warn_expiring``): it has no state check, so it records an
    ``access.expiring`` audit event on a denied/revoked/expired request."""
    for make in TERMINAL_MAKERS.values():
        request = make(example_policy)
        request.events.clear()
        with pytest.raises(Conflict):
            request.warn_expiring(LATER)
        assert request.events == []


# -- decisions -------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["", "   ", "x" * 2001])
def test_deny_needs_a_reason(example_policy: Policy, reason: str) -> None:
    request = _open(example_policy, "staging-ssh")
    with pytest.raises(Invalid):
        request.deny(PRIYA, reason=reason, directory=example_policy.directory, now=START)
    assert request.state is State.PENDING
    assert request.approvals == () and request.events == []


def test_one_deny_from_an_eligible_approver_denies(example_policy: Policy) -> None:
    request = _open(example_policy, "staging-ssh")
    request.deny(SAM, reason="use the runbook", directory=example_policy.directory, now=START + M)
    assert request.state is State.DENIED
    assert request.close_reason == "use the runbook"
    assert [e.type for e in request.events] == ["approval.recorded", "request.denied"]
    assert request.events[-1].actor == SAM


def test_requester_can_never_approve_or_deny_even_when_named(example_policy: Policy) -> None:
    # sam is in sre, which the staging rule names; sam asks for it himself.
    request = _open(example_policy, "staging-ssh", requester=SAM)
    d = example_policy.directory
    with pytest.raises(Forbidden):
        request.approve(SAM, directory=d, now=START)
    with pytest.raises(Forbidden):
        request.deny(SAM, reason="changed my mind", directory=d, now=START)
    assert request.state is State.PENDING and request.approvals == ()
    request.approve(LEE, directory=d, now=START + M)  # another sre, and sam's team lead
    assert request.state is State.APPROVED


def test_a_person_no_spec_names_is_forbidden(example_policy: Policy) -> None:
    request = _open(example_policy, "staging-ssh")
    d = example_policy.directory
    for person in (DANA, MARK, "stranger@example.com"):
        with pytest.raises(Forbidden):
            request.approve(person, directory=d, now=START)
        with pytest.raises(Forbidden):
            request.deny(person, reason="no", directory=d, now=START)
    assert request.state is State.PENDING and request.approvals == ()


def test_the_same_approver_twice_is_conflict(example_policy: Policy, oncall: str) -> None:
    request = _open(example_policy)
    d = example_policy.directory
    request.approve(oncall, directory=d, now=START)
    with pytest.raises(Conflict):
        request.approve(oncall, directory=d, now=START + M)
    assert [a.approver for a in request.approvals] == [oncall]
    assert request.state is State.PENDING


def test_approvals_record_events_and_the_last_one_approves(
    example_policy: Policy, oncall: str
) -> None:
    request = _approved_prod(example_policy, oncall)
    assert [(e.type, e.actor) for e in request.events] == [
        ("approval.recorded", oncall),
        ("approval.recorded", MARK),
        ("request.approved", MARK),
    ]


@pytest.mark.parametrize("late", [timedelta(0), TICK, 2 * H])
def test_a_decision_at_or_after_expires_at_is_conflict(
    example_policy: Policy, oncall: str, late: timedelta
) -> None:
    request = _open(example_policy, "staging-ssh")
    at = request.expires_at + late
    with pytest.raises(Conflict):
        request.approve(PRIYA, directory=example_policy.directory, now=at)
    with pytest.raises(Conflict):
        request.deny(PRIYA, reason="late", directory=example_policy.directory, now=at)
    assert request.state is State.PENDING and request.approvals == ()


def test_a_decision_just_before_expires_at_counts(example_policy: Policy) -> None:
    request = _open(example_policy, "staging-ssh")
    request.approve(PRIYA, directory=example_policy.directory, now=request.expires_at - TICK)
    assert request.state is State.APPROVED


# -- grant windows ---------------------------------------------------------------------------


def test_immediate_window_starts_at_approval(example_policy: Policy, oncall: str) -> None:
    request = _open(example_policy, duration=2 * H)
    d = example_policy.directory
    request.approve(oncall, directory=d, now=START + 5 * M)
    request.approve(MARK, directory=d, now=START + 10 * M)
    assert (request.starts_at, request.ends_at) == (START + 10 * M, START + 10 * M + 2 * H)
    assert request.decided_at == START + 10 * M


def test_scheduled_window_is_start_at_plus_duration(example_policy: Policy, oncall: str) -> None:
    request = _approved_prod(example_policy, oncall, start_at=START + 3 * H, duration=2 * H)
    assert request.start_at == START + 3 * H
    assert (request.starts_at, request.ends_at) == (START + 3 * H, START + 5 * H)


def test_scheduled_but_approved_late_is_shortened_never_moved(
    example_policy: Policy, oncall: str
) -> None:
    request = _open(example_policy, start_at=START + 10 * M, duration=2 * H)
    d = example_policy.directory
    request.approve(oncall, directory=d, now=START + 40 * M)
    request.approve(MARK, directory=d, now=START + 40 * M)
    assert request.starts_at == START + 40 * M
    assert request.ends_at == START + 10 * M + 2 * H


def test_a_scheduled_request_undecided_past_its_window_expires_with_it(
    example_policy: Policy, oncall: str
) -> None:
    request = _open(example_policy, start_at=START + 5 * M, duration=10 * M)
    d = example_policy.directory
    assert request.expires_at == START + 15 * M  # its whole window, before the pending TTL
    request.approve(oncall, directory=d, now=START + 15 * M - TICK)
    with pytest.raises(Conflict, match="expired"):  # nothing is left to approve
        request.approve(MARK, directory=d, now=START + 30 * M)
    request.expire_pending(START + 30 * M)
    assert request.state is State.EXPIRED and request.closed_at == START + 15 * M
    assert request.starts_at is None and not request.honoured(START + 10 * M)


def test_honoured_only_inside_the_window_of_an_active_grant(
    example_policy: Policy, oncall: str
) -> None:
    request = _approved_prod(example_policy, oncall, start_at=START + 3 * H, duration=2 * H)
    begin, end = START + 3 * H, START + 5 * H
    assert not request.honoured(begin)  # approved, not yet active
    with pytest.raises(Conflict):
        request.activate(begin - TICK)
    request.activate(begin)
    assert request.state is State.ACTIVE
    assert not request.honoured(begin - TICK)
    assert request.honoured(begin)
    assert request.honoured(end - TICK)
    assert not request.honoured(end)
    assert not request.honoured(end + 10 * H)


def test_pending_and_terminal_requests_are_never_honoured(example_policy: Policy) -> None:
    assert not _open(example_policy, "staging-ssh").honoured(START)
    revoked = _revoked_active(example_policy)
    assert not revoked.honoured(START + M)
    assert not revoked.honoured(START)


# -- time-driven -----------------------------------------------------------------------------


def test_expire_pending_only_at_or_after_the_ttl(example_policy: Policy) -> None:
    request = _open(example_policy, "staging-ssh")
    with pytest.raises(Conflict):
        request.expire_pending(request.expires_at - TICK)
    request.expire_pending(request.expires_at)
    assert request.state is State.EXPIRED
    assert [e.type for e in request.events] == ["request.expired"]


def test_escalate_only_once_and_only_while_pending(example_policy: Policy, oncall: str) -> None:
    request = _open(example_policy)  # sre-oncall: ssh and kubernetes rules, both to sre-leads
    request.escalate(START + 30 * M)
    assert request.escalated
    assert request.events[-1].data["escalate_to"] == [{"group": "sre-leads"}]  # named once
    with pytest.raises(Conflict):
        request.escalate(START + 31 * M)
    approved = _approved_prod(example_policy, oncall)
    with pytest.raises(Conflict):
        approved.escalate(START + 30 * M)


def test_expire_a_grant_only_at_or_after_ends_at(example_policy: Policy) -> None:
    request = _open(example_policy, "dev-ssh")
    request.activate(START)
    assert request.ends_at == START + 4 * H
    with pytest.raises(Conflict):
        request.expire(START + 4 * H - TICK, open_sessions=[])
    sessions = [{"id": "s-1"}]
    request.expire(START + 4 * H, open_sessions=sessions)
    assert request.state is State.EXPIRED
    assert request.events[-1].type == "access.expired"
    assert request.events[-1].data["sessions_open"] == sessions


# -- extension -------------------------------------------------------------------------------


def test_extension_moves_ends_at_and_is_capped_at_max_total(
    example_policy: Policy, oncall: str
) -> None:
    original = _approved_prod(example_policy, oncall, duration=2 * H)
    original.activate(START)
    assert original.max_total == 8 * H  # sre-oncall max_duration
    ext = _open(example_policy, rid="e-1", extends=original.id, duration=4 * H)
    assert original.extend(ext, START + H) == 4 * H
    assert original.ends_at == START + 6 * H
    ext2 = _open(example_policy, rid="e-2", extends=original.id, duration=4 * H)
    assert original.extend(ext2, START + 2 * H) == 2 * H
    assert original.ends_at == START + 8 * H
    assert [e.type for e in original.events][-2:] == ["access.extended", "access.extended"]


def test_max_total_is_the_smaller_of_role_and_purpose_max(
    example_policy: Policy, oncall: str
) -> None:
    original = _approved_prod(example_policy, oncall, purpose="debugging")
    assert original.max_total == 4 * H
    ext = _open(example_policy, rid="e-1", extends=original.id, duration=8 * H, cap=True)
    original.extend(ext, START + M)
    assert original.ends_at == original.starts_at + 4 * H  # type: ignore[operator]


def test_extension_of_an_ended_or_pending_grant_is_conflict(
    example_policy: Policy, oncall: str
) -> None:
    original = _approved_prod(example_policy, oncall, duration=2 * H)
    ext = _open(example_policy, rid="e-1", extends=original.id, duration=H)
    with pytest.raises(Conflict):
        original.extend(ext, START + 2 * H)
    pending = _open(example_policy, rid="p-1")
    with pytest.raises(Conflict):
        pending.extend(ext, START)


# -- revoke ----------------------------------------------------------------------------------


def test_revoke_by_someone_else_who_is_not_admin_is_forbidden(
    example_policy: Policy, oncall: str
) -> None:
    request = _approved_prod(example_policy, oncall)
    for person in (oncall, MARK, PRIYA):
        with pytest.raises(Forbidden):
            request.revoke(person, reason="x", now=START + M, is_admin=False)
    assert request.state is State.APPROVED


def test_revoke_needs_a_reason(example_policy: Policy) -> None:
    request = _open(example_policy, "staging-ssh")
    with pytest.raises(Invalid):
        request.revoke(JANE, reason=" ", now=START, is_admin=False)
    assert request.state is State.PENDING


def test_admin_revokes_an_active_grant_and_it_ends_now(example_policy: Policy, oncall: str) -> None:
    request = _approved_prod(example_policy, oncall)
    request.activate(START)
    request.events.clear()
    request.revoke(SEC, reason="suspicious", now=START + 30 * M, is_admin=True)
    assert request.state is State.REVOKED
    assert request.ends_at == START + 30 * M
    assert not request.honoured(START + 30 * M)
    assert [(e.type, e.actor) for e in request.events] == [("access.revoked", SEC)]


def test_withdrawing_a_pending_request(example_policy: Policy) -> None:
    request = _open(example_policy, "staging-ssh")
    request.revoke(JANE, reason="fixed it", now=START + M, is_admin=False)
    assert request.state is State.REVOKED
    assert request.events[-1].type == "request.revoked"
    assert request.events[-1].data["withdrawn"] is True


def test_revoking_a_scheduled_grant_leaves_no_window(example_policy: Policy, oncall: str) -> None:
    request = _approved_prod(example_policy, oncall, start_at=START + 3 * H)
    request.revoke(JANE, reason="not needed", now=START + H, is_admin=False)
    assert request.starts_at == request.ends_at == START + 3 * H
