"""Opening a request (SPEC §2, §3): ceiling, scope, rules, duration, schedule; RFC 10.3.1."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from jitgate.domain.approval import POLICY_ACTOR
from jitgate.domain.creation import Draft, open_request
from jitgate.domain.errors import Forbidden, Invalid
from jitgate.domain.policy import ApprovalRule, ApproverSpec, Match, Policy, Resource, Role, Scope
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
JANE = "jane.doe@example.com"  # developers
SAM = "sam@example.com"  # sre
DANA = "dana@example.com"  # dba
SEC = "sec@example.com"  # security
M, H, D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


def _open(policy: Policy, *roles: str, requester: str = JANE, **draft: object) -> AccessRequest:
    fields: dict[str, object] = {"reason": "INC-1", **draft}
    return open_request(
        policy,
        Draft(roles=roles, **fields),  # type: ignore[arg-type]
        requester=requester,
        request_id="r-1",
        now=START,
    )


# -- ceiling and rules -----------------------------------------------------------------------


def test_unknown_role_is_invalid(example_policy: Policy) -> None:
    with pytest.raises(Invalid, match="unknown role"):
        _open(example_policy, "no-such-role")


def test_role_not_requestable_by_the_user_is_forbidden(example_policy: Policy) -> None:
    with pytest.raises(Forbidden):
        _open(example_policy, "sre-oncall", requester=DANA)  # dba only
    with pytest.raises(Forbidden):
        _open(example_policy, "root-any", requester=JANE)  # sre, security only
    with pytest.raises(Forbidden):
        _open(example_policy, "dev-ssh", requester="stranger@example.com")


def test_one_forbidden_role_forbids_the_whole_request(example_policy: Policy) -> None:
    with pytest.raises(Forbidden):
        _open(example_policy, "dev-ssh", "root-any", requester=JANE)


def test_a_scope_no_approval_entry_matches_cannot_be_requested(example_policy: Policy) -> None:
    ftp = Role(
        "ftp-prod",
        (Scope("ftp", "production"),),
        ("developers",),
        default_duration=H,
        max_duration=2 * H,
    )
    policy = dataclasses.replace(example_policy, roles={**example_policy.roles, "ftp-prod": ftp})
    with pytest.raises(Forbidden, match="no approval rule"):
        _open(policy, "ftp-prod")
    with pytest.raises(Forbidden, match="no approval rule"):
        _open(policy, "dev-ssh", "ftp-prod")  # combined with a self-approved role


def test_a_grant_of_any_environment_needs_the_rule_of_every_environment(
    example_policy: Policy,
) -> None:
    """ssh in ``any`` environment reaches production, so the ssh/production rule (on-call
    AND manager) applies even after an entry that would approve ssh/any by itself."""
    anywhere = Role("ssh-anywhere", (Scope("ssh", "any"),), ("developers",), default_duration=H)
    catch_all = ApprovalRule(len(example_policy.approval), Match(type="ssh"), "self")
    policy = dataclasses.replace(
        example_policy,
        roles={**example_policy.roles, "ssh-anywhere": anywhere},
        approval=(*example_policy.approval, catch_all),
    )
    request = _open(policy, "ssh-anywhere")
    assert request.state is State.PENDING
    fitting = {r.index for r in policy.approval if r.match.type in ("ssh", None)}
    assert {r.index for r in request.rules} == fitting  # dev, staging, production, catch-all
    assert {(r.match.environment, r.kind) for r in request.rules} >= {("production", "all")}

    ssh_only_in_production = dataclasses.replace(
        policy,
        approval=tuple(r for r in example_policy.approval if r.match.environment == "production"),
    )
    with pytest.raises(Forbidden, match="no approval rule covers ssh/any"):
        _open(ssh_only_in_production, "ssh-anywhere")


@pytest.mark.parametrize(
    ("roles", "problem"),
    [((), "at least one"), (("dev-ssh", "dev-ssh"), "repeat")],
)
def test_roles_must_be_given_once(
    example_policy: Policy, roles: tuple[str, ...], problem: str
) -> None:
    with pytest.raises(Invalid, match=problem):
        _open(example_policy, *roles)


@pytest.mark.parametrize("reason", ["", "  ", "x" * 2001])
def test_reason_is_required_and_bounded(example_policy: Policy, reason: str) -> None:
    with pytest.raises(Invalid):
        _open(example_policy, "dev-ssh", reason=reason)


def test_urgency_must_be_known(example_policy: Policy) -> None:
    with pytest.raises(Invalid, match="urgency"):
        _open(example_policy, "dev-ssh", urgency="critical")


def test_high_urgency_records_an_urgent_event(example_policy: Policy) -> None:
    request = _open(example_policy, "staging-ssh", urgency="high")
    assert [e.type for e in request.events] == ["request.created", "request.urgent"]


# -- duration --------------------------------------------------------------------------------


def test_default_duration_comes_from_the_role(example_policy: Policy) -> None:
    assert _open(example_policy, "sre-oncall").duration == 2 * H
    assert _open(example_policy, "db-prod").duration == H


def test_purpose_default_wins_over_the_role_default(example_policy: Policy) -> None:
    assert _open(example_policy, "sre-oncall", purpose="debugging").duration == H
    assert _open(example_policy, "sre-oncall", purpose="maintenance").duration == 4 * H
    assert _open(example_policy, "sre-oncall", purpose="break-glass").duration == 30 * M


def test_purpose_default_is_capped_by_the_role_max(example_policy: Policy) -> None:
    # maintenance default 4h, root-any max 2h
    assert _open(example_policy, "root-any", requester=SAM, purpose="maintenance").duration == 2 * H


def test_over_the_role_cap_is_invalid_unless_cap(example_policy: Policy) -> None:
    with pytest.raises(Invalid, match=r"maximum.*--cap in the CLI"):
        _open(example_policy, "db-prod", duration=5 * H)
    assert _open(example_policy, "db-prod", duration=5 * H, cap=True).duration == 4 * H
    assert _open(example_policy, "db-prod", duration=4 * H).duration == 4 * H


def test_cap_is_the_smaller_of_role_and_purpose_max(example_policy: Policy) -> None:
    # sre-oncall max 8h, break-glass max 1h
    with pytest.raises(Invalid):
        _open(example_policy, "sre-oncall", purpose="break-glass", duration=2 * H)
    capped = _open(example_policy, "sre-oncall", purpose="break-glass", duration=2 * H, cap=True)
    assert capped.duration == H
    assert capped.max_total == H
    # db-prod max 4h, incident-response max 8h
    assert (
        _open(
            example_policy, "db-prod", purpose="incident-response", duration=9 * H, cap=True
        ).duration
        == 4 * H
    )


def test_several_roles_take_the_smallest_max(example_policy: Policy) -> None:
    # dev-ssh max 8h, db-prod max 4h
    with pytest.raises(Invalid):
        _open(example_policy, "dev-ssh", "db-prod", duration=5 * H)


def test_unknown_purpose_is_invalid(example_policy: Policy) -> None:
    with pytest.raises(Invalid, match="purpose"):
        _open(example_policy, "dev-ssh", purpose="fun")


# -- schedule --------------------------------------------------------------------------------


def test_start_at_in_the_past_is_invalid(example_policy: Policy) -> None:
    with pytest.raises(Invalid, match="past"):
        _open(example_policy, "staging-ssh", start_at=START - 5 * M)


def test_start_at_within_the_clock_skew_means_now(example_policy: Policy) -> None:
    assert (
        _open(example_policy, "staging-ssh", start_at=START - 30 * timedelta(seconds=1)).start_at
        is None
    )


def test_start_at_past_max_schedule_ahead_is_invalid(example_policy: Policy) -> None:
    ahead = example_policy.settings.max_schedule_ahead
    assert ahead == 7 * D
    with pytest.raises(Invalid, match="max_schedule_ahead"):
        _open(example_policy, "staging-ssh", start_at=START + ahead + timedelta(seconds=1))
    assert _open(example_policy, "staging-ssh", start_at=START + ahead).start_at == START + ahead


def test_start_at_needs_a_time_zone(example_policy: Policy) -> None:
    with pytest.raises(Invalid, match="time zone"):
        _open(example_policy, "staging-ssh", start_at=datetime(2026, 3, 3, 10, 0))


# -- scope -----------------------------------------------------------------------------------


def test_resource_not_covered_by_the_roles_is_forbidden(example_policy: Policy) -> None:
    with pytest.raises(Forbidden, match="prod-db-01"):
        _open(example_policy, "dev-ssh", resources=("prod-db-01",))
    with pytest.raises(Forbidden):
        _open(example_policy, "db-readonly-nonprod", resources=("prod-db-01",))


def test_unknown_or_repeated_resource_is_invalid(example_policy: Policy) -> None:
    with pytest.raises(Invalid, match="unknown resource"):
        _open(example_policy, "db-prod", resources=("prod-db-99",))
    with pytest.raises(Invalid, match="repeat"):
        _open(example_policy, "db-prod", resources=("prod-db-01", "prod-db-01"))


def test_a_resource_limited_request_covers_only_its_resources(example_policy: Policy) -> None:
    other = Resource("prod-db-02", "database", "production")
    policy = dataclasses.replace(
        example_policy, resources={**example_policy.resources, "prod-db-02": other}
    )
    request = _open(policy, "db-prod", resources=("prod-db-01",))
    prod_db = Scope("database", "production")
    assert request.scopes == (prod_db,)
    assert request.covers(prod_db, "prod-db-01")
    assert not request.covers(prod_db, "prod-db-02")
    assert not request.covers(prod_db, None)  # not the whole type/environment


def test_combining_roles_never_grants_more_than_each_alone(example_policy: Policy) -> None:
    both = _open(example_policy, "dev-ssh", "db-readonly-nonprod")
    dev_ssh = Scope("ssh", "development")
    assert set(both.scopes) == {
        dev_ssh,
        Scope("database", "development"),
        Scope("database", "staging"),
    }
    assert both.covers(dev_ssh, None)
    for scope in (
        Scope("ssh", "staging"),
        Scope("ssh", "production"),
        Scope("database", "production"),
        Scope("root", "development"),
    ):
        assert not both.covers(scope, None)

    limited = _open(example_policy, "dev-ssh", "db-readonly-nonprod", resources=("dev-db-01",))
    assert limited.scopes == (Scope("database", "development"),)
    assert limited.covers(Scope("database", "development"), "dev-db-01")
    assert not limited.covers(dev_ssh, None)  # the resource narrows away the ssh grant
    assert not limited.covers(Scope("database", "staging"), "staging-db-01")


def test_a_request_takes_every_matched_rule_once_in_policy_order(example_policy: Policy) -> None:
    request = _open(example_policy, "root-any", "db-prod", requester=SAM)
    # root/production, root/staging, root/development all match the one root entry
    kinds = [(r.index, r.kind) for r in request.rules]
    assert kinds == sorted(kinds)
    assert sorted(r.match.type for r in request.rules) == ["database", "root"]


# -- self approval ---------------------------------------------------------------------------


def test_self_rule_approves_at_creation_with_actor_policy(example_policy: Policy) -> None:
    request = _open(example_policy, "dev-ssh")
    assert request.state is State.APPROVED
    assert (request.starts_at, request.ends_at) == (START, START + 4 * H)
    assert request.approvals == ()
    assert [(e.type, e.actor) for e in request.events] == [
        ("request.created", JANE),
        ("request.approved", POLICY_ACTOR),
    ]
    assert [r.satisfied_by for r in request.evaluation(example_policy.directory).requirements] == [
        POLICY_ACTOR
    ]


def test_self_rule_with_a_person_rule_stays_pending(example_policy: Policy) -> None:
    request = _open(example_policy, "dev-ssh", "staging-ssh")
    assert request.state is State.PENDING
    assert [r.kind for r in request.rules] == ["self", "any"]


def test_created_request_carries_the_draft(example_policy: Policy) -> None:
    request = _open(
        example_policy,
        "db-prod",
        resources=("prod-db-01",),
        duration=3 * H,
        purpose="debugging",
        urgency="low",
        start_at=START + 2 * H,
    )
    assert request.state is State.PENDING
    assert request.roles == ("db-prod",) and request.resources == ("prod-db-01",)
    assert request.duration == 3 * H and request.purpose == "debugging"
    assert request.urgency == "low" and request.start_at == START + 2 * H
    assert request.created_at == START
    assert request.expires_at == START + example_policy.settings.pending_ttl
    assert request.escalate_at == START + example_policy.settings.escalate_after
    created = request.events[0]
    assert created.type == "request.created" and created.actor == JANE
    assert created.data["duration_seconds"] == 3 * 3600


# -- RFC 10.3.1: approval requirements of the example policy -----------------------------------

G = ApproverSpec


@pytest.mark.parametrize(
    ("type_", "environment", "kind", "specs", "escalate_to"),
    [
        ("ssh", "development", "self", (), ()),
        ("ssh", "staging", "any", (G("team_lead"), G("group", "sre")), ()),
        (
            "ssh",
            "production",
            "all",
            (G("oncall", "sre"), G("manager")),
            (G("group", "sre-leads"),),
        ),
        ("database", "development", "self", (), ()),
        ("database", "staging", "self", (), ()),
        ("database", "production", "any", (G("oncall", "dba"),), (G("group", "dba"),)),
        ("root", "development", "all", (G("group", "security"), G("manager")), ()),
        ("root", "staging", "all", (G("group", "security"), G("manager")), ()),
        ("root", "production", "all", (G("group", "security"), G("manager")), ()),
        ("kubernetes", "development", "self", (), ()),
        ("kubernetes", "staging", "self", (), ()),
        ("kubernetes", "production", "any", (G("oncall", "sre"),), (G("group", "sre-leads"),)),
    ],
)
def test_rfc_10_3_1_rule_of_each_type_and_environment(
    example_policy: Policy,
    type_: str,
    environment: str,
    kind: str,
    specs: tuple[ApproverSpec, ...],
    escalate_to: tuple[ApproverSpec, ...],
) -> None:
    rule = example_policy.rule_for(Scope(type_, environment))
    assert rule is not None
    assert rule.kind == kind
    assert rule.specs == specs
    assert rule.escalate_to == escalate_to
    assert rule.threshold == 1


def test_rfc_10_3_1_unlisted_scope_has_no_rule(example_policy: Policy) -> None:
    assert example_policy.rule_for(Scope("ftp", "production")) is None
    assert example_policy.rule_for(Scope("ssh", "qa")) is None


@pytest.mark.parametrize(
    ("role", "requester", "resources", "state"),
    [
        ("dev-ssh", JANE, (), State.APPROVED),  # ssh/dev self
        ("staging-ssh", JANE, (), State.PENDING),  # ssh/staging lead or sre
        ("sre-oncall", JANE, (), State.PENDING),  # ssh+k8s/prod
        ("db-readonly-nonprod", JANE, (), State.APPROVED),  # db dev+staging self
        ("db-prod", JANE, ("prod-db-01",), State.PENDING),  # db/prod dba on-call
        ("k8s-nonprod", JANE, (), State.APPROVED),  # k8s dev+staging self
        ("k8s-prod", JANE, (), State.PENDING),  # k8s/prod sre on-call
        ("root-any", SAM, (), State.PENDING),  # root security and manager
    ],
)
def test_rfc_10_3_1_each_example_role_gets_its_rules(
    example_policy: Policy,
    role: str,
    requester: str,
    resources: tuple[str, ...],
    state: State,
) -> None:
    request = _open(example_policy, role, requester=requester, resources=resources)
    assert request.state is state
    expected = {example_policy.rule_for(s) for s in request.scopes}
    assert set(request.rules) == expected
