"""The policy in force across replicas on one database (SQLite and PostgreSQL): a load
brings the pending requests under it at once; a replica restarted with a stale policy
does not take the deployment back to it and changes no request; its step is shown (for
``/readyz``) and logged once; a load that commits during a decision stops its change."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from test_reload_pending import (
    MGR,
    ROLE_G1,
    ROLE_G3,
    RULE_G1,
    RULE_G3,
    RULE_G3_SEC,
    SEC,
    _ask,
)

from jitgate.adapters.policy import load_policy
from jitgate.domain.errors import Unavailable
from jitgate.domain.events import DomainEvent
from jitgate.domain.policy import Policy
from jitgate.domain.states import State
from jitgate.service import policy as policy_service
from jitgate.service import queries
from jitgate.service.decisions import approve_request
from jitgate.service.policy import FollowReport, policy_jobs, policy_step, record_policy_loaded

POLICY = """
version: 1
settings: {{admins: [security]}}
directory:
  users:
    jane@x.com: {{groups: [dev], manager: mgr@x.com}}
    sre1@x.com: {{groups: [sre]}}
    mgr@x.com: {{groups: [leads]}}
    sec@x.com: {{groups: [security]}}
roles:
{roles}
approval:
{approval}
"""


def _policy(tmp_path: Path, name: str, roles: list[str], rules: list[str]) -> Policy:
    path = tmp_path / f"{name}.yaml"
    path.write_text(POLICY.format(roles="\n".join(roles), approval="\n".join(rules)))
    return load_policy(path)


def _loaded(ctx):  # type: ignore[no-untyped-def]
    query = policy_service.AuditQuery(type="policy.loaded", limit=100)
    return queries.audit_events(ctx, viewer=SEC, query=query)


def test_a_load_in_force_brings_pending_requests_under_it_and_a_stale_start_does_not(
    db_url: str, make_ctx, tmp_path: Path
) -> None:
    old = _policy(tmp_path, "old", [ROLE_G1, ROLE_G3], [RULE_G1, RULE_G3])
    new = _policy(tmp_path, "new", [ROLE_G3], [RULE_G3_SEC])
    r1, _ = make_ctx(db_url, old)
    record_policy_loaded(r1, policy=old, actor="system", via="startup")
    g1, g3 = _ask(r1, "g1"), _ask(r1, "g3")

    r2, _ = make_ctx(db_url, new)  # a new policy rolled out by a restart takes force
    assert record_policy_loaded(r2, policy=new, actor="system", via="startup").in_step
    closed = queries.get_request(r2, request_id=g1, viewer=SEC)
    assert closed.state is State.REVOKED and "unknown role 'g1'" in (closed.close_reason or "")
    moved = queries.get_request(r2, request_id=g3, viewer=SEC)
    assert moved.state is State.PENDING and [r.specs[0].value for r in moved.rules] == [SEC]
    assert moved.approvers_now(new.directory, r2.clock.now()) == {SEC}

    r3, _ = make_ctx(db_url, old)  # restarted with the stale file: it takes nothing back
    stale = record_policy_loaded(r3, policy=old, actor="system", via="startup")
    assert not stale.in_step and stale.in_force and stale.in_force.digest == new.digest
    data = [e.data for e in _loaded(r1)]
    assert [d["in_force"] for d in data] == [True, True, False]
    assert all(d["replica"].rsplit(":", 1)[1].isdigit() for d in data)  # host:pid
    with pytest.raises(Unavailable, match=f"the policy in force is {new.digest[:12]}"):
        approve_request(r3, request_id=g3, approver=MGR)
    kept = queries.get_request(r1, request_id=g3, viewer=SEC)
    assert kept.state is State.PENDING and [r.specs[0].value for r in kept.rules] == [SEC]
    assert approve_request(r2, request_id=g3, approver=SEC).request.state is State.ACTIVE

    assert record_policy_loaded(r3, policy=old, actor=SEC, via="api").in_step  # explicit
    assert not policy_step(r2, max_age=0).in_step
    assert queries.audit_verify(r1, viewer=SEC).ok


def test_the_step_is_shown_for_readyz_and_a_change_logged_once(
    db_url: str, make_ctx, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = _policy(tmp_path, "old", [ROLE_G1, ROLE_G3], [RULE_G1, RULE_G3])
    new = _policy(tmp_path, "new", [ROLE_G3], [RULE_G3_SEC])
    r1, _ = make_ctx(db_url, new)
    r2, _ = make_ctx(db_url, old)
    assert policy_step(r2).as_dict() == {"in_step": True, "policy": old.digest, "in_force": None}
    record_policy_loaded(r1, policy=new, actor=SEC, via="api")
    with caplog.at_level(logging.WARNING, logger="jitgate.policy"):
        shown = [policy_step(r2, max_age=0).as_dict() for _ in range(3)]
    assert shown[0]["in_step"] is False and shown[0]["policy"] == old.digest
    assert shown[0]["in_force"]["digest"] == new.digest
    assert shown[0]["in_force"]["via"] == "api" and shown[0]["in_force"]["at"].endswith("Z")
    warned = [r.getMessage() for r in caplog.records if "out of step" in r.getMessage()]
    assert len(warned) == 1 and new.digest[:12] in warned[0] and old.digest[:12] in warned[0]


@pytest.mark.postgres
def test_a_load_committed_during_a_decision_stops_its_change(
    pg_db_url: str, make_ctx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _policy(tmp_path, "old", [ROLE_G1, ROLE_G3], [RULE_G1, RULE_G3])
    new = _policy(tmp_path, "new", [ROLE_G1, ROLE_G3], [RULE_G1, RULE_G3_SEC])
    r1, _ = make_ctx(pg_db_url, old)
    r2, _ = make_ctx(pg_db_url, new)
    rid = _ask(r1, "g3")
    asked = queries.get_request(r1, request_id=rid, viewer=SEC).rules
    real = policy_service.read_loads
    calls = []

    def another_replica_loads_meanwhile(ctx, uow):  # type: ignore[no-untyped-def]
        found = real(ctx, uow)
        if not calls:  # r2's first check passed: r1 reloads its own policy now
            with r1.uow() as other:
                event = DomainEvent("policy.loaded", SEC, None, {"digest": old.digest})
                r1.publish(other, [event], None, r1.clock.now())
                other.commit()
        calls.append(found)
        return found

    monkeypatch.setattr(policy_service, "read_loads", another_replica_loads_meanwhile)
    with pytest.raises(Unavailable):
        approve_request(r2, request_id=rid, approver=SEC)
    kept = queries.get_request(r1, request_id=rid, viewer=SEC)
    assert kept.state is State.PENDING and kept.rules == asked and len(calls) == 2


def test_the_policy_job_brings_under_it_what_a_replica_out_of_step_made(
    db_url: str, make_ctx, tmp_path: Path
) -> None:
    old = _policy(tmp_path, "old", [ROLE_G1, ROLE_G3], [RULE_G1, RULE_G3])
    new = _policy(tmp_path, "new", [ROLE_G1, ROLE_G3], [RULE_G1, RULE_G3_SEC])
    r1, _ = make_ctx(db_url, new)
    r2, _ = make_ctx(db_url, old)
    record_policy_loaded(r1, policy=new, actor=SEC, via="api")
    rid = _ask(r2, "g3")  # made under the stale rules: the manager approves
    assert [job() for job in policy_jobs(r2, interval=0)] == [None]  # out of step: nothing
    assert queries.get_request(r1, request_id=rid, viewer=SEC).approvers_now(
        new.directory, r1.clock.now()
    ) == {MGR}
    (report,) = [job() for job in policy_jobs(r1, interval=0)]
    assert report == FollowReport(rules_updated=1)
    moved = queries.get_request(r1, request_id=rid, viewer=SEC)
    assert moved.approvers_now(new.directory, r1.clock.now()) == {SEC}
