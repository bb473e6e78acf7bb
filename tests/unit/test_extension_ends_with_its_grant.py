"""An approved extension as part of its original's grant, in the pure domain with a frozen
clock (SPEC §3): it never warns, it ends only with the grant and as the grant ends, by
the transitions of the table only (approved -> active -> expired, or -> revoked)."""

from __future__ import annotations

from datetime import datetime

import pytest
from test_request import JANE, START, H, M, _approved_prod, _open, oncall

from jitgate.domain.errors import Conflict
from jitgate.domain.policy import Policy
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State

__all__ = ["oncall"]  # the fixture, for the tests below


def _extended(policy: Policy, oncall: str) -> tuple[AccessRequest, AccessRequest]:
    """A 2 h grant, active from START, extended by 1 h: ``(original, extension)``."""
    original = _approved_prod(policy, oncall, duration=2 * H)
    original.activate(START)
    ext = _open(policy, "sre-oncall", rid="e-1", extends=original.id, duration=H)
    ext.approve(oncall, directory=policy.directory, now=START + M)
    ext.approve("mark.lee@example.com", directory=policy.directory, now=START + M)
    original.extend(ext, START + M)
    original.events.clear()
    ext.events.clear()
    return original, ext


def _kinds(request: AccessRequest) -> list[str]:
    return [e.type for e in request.events]


def test_an_extension_never_warns(example_policy: Policy, oncall: str) -> None:
    original, ext = _extended(example_policy, oncall)
    ext.activate(START + 2 * H)
    with pytest.raises(Conflict, match="ends with its grant"):
        ext.warn_expiring(START + 2 * H + 50 * M)
    original.warn_expiring(START + 2 * H + 50 * M)
    assert original.events[-1].data["ends_at"] == (START + 3 * H).isoformat()


def test_it_does_not_end_while_the_grant_goes_on(example_policy: Policy, oncall: str) -> None:
    original, ext = _extended(example_policy, oncall)
    ext.activate(START + 2 * H)
    with pytest.raises(Conflict, match="goes on"):
        ext.end_with_grant(original, START + 3 * H - M, open_sessions=[])
    assert ext.state is State.ACTIVE and ext.events[-1].type == "access.granted"


def test_it_expires_with_the_grant_at_the_grants_real_end(
    example_policy: Policy, oncall: str
) -> None:
    original, ext = _extended(example_policy, oncall)
    ext.activate(START + 2 * H)
    late = START + 3 * H + 7 * M
    original.expire(late, open_sessions=[])
    ext.end_with_grant(original, late, open_sessions=[])
    assert ext.state is State.EXPIRED and ext.closed_at == START + 3 * H
    assert ext.close_reason == "grant ended"
    (expired,) = [e for e in ext.events if e.type == "access.expired"]
    assert expired.data == {
        "ends_at": (START + 3 * H).isoformat(),
        "grant": original.id,
        "sessions_open": [],
    }


def test_one_whose_time_ran_unseen_is_activated_then_expired(
    example_policy: Policy, oncall: str
) -> None:
    original, ext = _extended(example_policy, oncall)
    assert ext.state is State.APPROVED
    ext.end_with_grant(original, START + 4 * H, open_sessions=[])  # the grant ran to its end
    assert _kinds(ext) == ["access.granted", "access.expired"]
    assert ext.state is State.EXPIRED


@pytest.mark.parametrize(
    "how, why",
    [
        ("revoked", "the grant it extends was revoked"),
        ("never active", "the grant it extends ended before it became active"),
    ],
)
def test_it_is_revoked_with_a_grant_that_did_not_run(
    example_policy: Policy, oncall: str, how: str, why: str
) -> None:
    original = _approved_prod(example_policy, oncall, duration=2 * H)  # never activated
    ext = _open(example_policy, "sre-oncall", rid="e-1", extends=original.id, duration=H)
    ext.approve(oncall, directory=example_policy.directory, now=START + M)
    ext.approve("mark.lee@example.com", directory=example_policy.directory, now=START + M)
    original.extend(ext, START + M)
    at: datetime = START + 4 * H
    if how == "revoked":
        original.revoke(JANE, reason="not needed", now=START + 2 * M, is_admin=False)
        at = START + 3 * M
    ext.end_with_grant(original, at, open_sessions=[])
    assert ext.state is State.REVOKED and ext.close_reason == why
    assert "access.expired" not in _kinds(ext)


def test_taking_back_an_extension_re_arms_the_warning(example_policy: Policy, oncall: str) -> None:
    original, ext = _extended(example_policy, oncall)
    original.warn_expiring(START + 2 * H + 50 * M)
    assert original.expiry_warned
    original.withdraw_extension(ext, START + 2 * H + 52 * M)  # the end moves in to now
    assert original.ends_at == START + 2 * H + 52 * M and not original.expiry_warned
