"""A reloaded policy governs the decisions still to come on pending requests (SQLite and
PostgreSQL): a removed role is never approved afterwards, a changed rule decides who
approves, and each change is in the audit trail."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitgate.adapters.policy import load_policy
from jitgate.domain.creation import Draft
from jitgate.domain.errors import Conflict, Forbidden
from jitgate.domain.policy import Policy
from jitgate.domain.states import State
from jitgate.service import access, queries
from jitgate.service.decisions import approve_request, deny_request
from jitgate.service.requests import create_request

JANE, SRE, MGR, SEC = "jane@x.com", "sre1@x.com", "mgr@x.com", "sec@x.com"

POLICY = """
version: 1
settings: {{admins: [security]}}
directory:
  users:
    jane@x.com: {{groups: [dev], manager: mgr@x.com}}
    sre1@x.com: {{groups: [sre]}}
    mgr@x.com: {{groups: [leads]}}
    sec@x.com: {{groups: [security]}}
    eve@x.com: {{groups: [dev]}}
roles:
{roles}
approval:
{approval}
"""
ROLE_G1 = "  g1: {grants: [{type: ssh, environment: g1}], requestable_by: [dev], max_duration: 1h}"
ROLE_G3 = "  g3: {grants: [{type: ssh, environment: g3}], requestable_by: [dev], max_duration: 1h}"
RULE_G1 = "  - {match: {type: ssh, environment: g1}, any: [{group: sre}]}"
RULE_G3 = "  - {match: {type: ssh, environment: g3}, any: [{manager: true}]}"
RULE_G3_SEC = "  - {match: {type: ssh, environment: g3}, any: [{user: sec@x.com}]}"


def _policy(tmp_path: Path, name: str, roles: list[str], rules: list[str]) -> Policy:
    path = tmp_path / f"{name}.yaml"
    path.write_text(POLICY.format(roles="\n".join(roles), approval="\n".join(rules)))
    return load_policy(path)


def _ask(ctx, role: str) -> str:  # type: ignore[no-untyped-def]
    draft = Draft(roles=(role,), reason="INC-1")
    return create_request(ctx, requester=JANE, draft=draft).request.id


def _types(ctx, request_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.type for e in queries.request_events(ctx, request_id=request_id, viewer=SEC)]


def test_a_removed_role_is_never_approved_after_the_reload(
    db_url: str, make_ctx, tmp_path: Path
) -> None:
    before = _policy(tmp_path, "a", [ROLE_G1, ROLE_G3], [RULE_G1, RULE_G3])
    ctx, _clock = make_ctx(db_url, before)
    rid = _ask(ctx, "g1")
    ctx.policy.replace(_policy(tmp_path, "b", [ROLE_G3], [RULE_G3]))

    with pytest.raises(Forbidden):  # a stranger to it learns nothing, closes nothing
        approve_request(ctx, request_id=rid, approver="eve@x.com")
    assert queries.get_request(ctx, request_id=rid, viewer=SEC).state is State.PENDING
    with pytest.raises(Conflict, match="no longer allows it"):
        approve_request(ctx, request_id=rid, approver=SRE)
    closed = queries.get_request(ctx, request_id=rid, viewer=SEC)
    assert closed.state is State.REVOKED
    assert "unknown role 'g1'" in (closed.close_reason or "")
    assert not access.authorize(ctx, user=JANE, type="ssh", environment="g1").allowed
    assert _types(ctx, rid) == ["request.created", "request.revoked"]
    assert queries.audit_verify(ctx, viewer=SEC).ok


def test_a_changed_rule_decides_who_approves_after_the_reload(
    db_url: str, make_ctx, tmp_path: Path
) -> None:
    before = _policy(tmp_path, "a", [ROLE_G1, ROLE_G3], [RULE_G1, RULE_G3])
    ctx, _clock = make_ctx(db_url, before)
    rid = _ask(ctx, "g3")
    other = _ask(ctx, "g3")
    ctx.policy.replace(_policy(tmp_path, "b", [ROLE_G1, ROLE_G3], [RULE_G1, RULE_G3_SEC]))

    with pytest.raises(Forbidden):  # the manager was the approver; the new rule names sec
        approve_request(ctx, request_id=rid, approver=MGR)
    done = approve_request(ctx, request_id=rid, approver=SEC).request
    assert done.state is State.ACTIVE
    assert _types(ctx, rid)[:3] == ["request.created", "request.rules_updated", "approval.recorded"]
    denied = deny_request(ctx, request_id=other, approver=SEC, reason="not now").request
    assert denied.state is State.DENIED
    stored = queries.get_request(ctx, request_id=other, viewer=SEC)
    assert [r.specs[0].value for r in stored.rules] == [SEC]  # written, not only judged
    assert queries.audit_verify(ctx, viewer=SEC).ok


def test_an_unchanged_policy_records_nothing(db_url: str, make_ctx, tmp_path: Path) -> None:
    before = _policy(tmp_path, "a", [ROLE_G1, ROLE_G3], [RULE_G1, RULE_G3])
    ctx, _clock = make_ctx(db_url, before)
    rid = _ask(ctx, "g3")
    ctx.policy.replace(_policy(tmp_path, "b", [ROLE_G1, ROLE_G3], [RULE_G1, RULE_G3]))
    approve_request(ctx, request_id=rid, approver=MGR)
    assert "request.rules_updated" not in _types(ctx, rid)
