"""Races on SQLite and PostgreSQL (SPEC §3, §8): concurrent decisions, a decision racing
expiry, concurrent writers of the audit chain, and scheduler replicas racing each other.
Threads start together on a barrier; every outcome is checked in the database afterwards."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from jitgate.domain.creation import Draft, open_request
from jitgate.domain.errors import Conflict
from jitgate.domain.policy import (
    ApprovalRule,
    ApproverSpec,
    Directory,
    Match,
    Policy,
    Role,
    Scope,
    Settings,
    User,
)
from jitgate.domain.states import State
from jitgate.service import lifecycle, queries
from jitgate.service.context import Context
from jitgate.service.decisions import approve_request, deny_request, revoke_request
from jitgate.service.ports import AuditQuery
from jitgate.service.requests import create_request, extend_request

REQ = "dev@example.com"
SEC = "sec@example.com"
APPROVERS = tuple(f"approver{i:02d}@example.com" for i in range(40))
H = timedelta(hours=1)
THREADS = 32
JOIN_TIMEOUT = 120


def _policy() -> Policy:
    users = {
        REQ: User(REQ, team="dev", groups=("devs",)),
        SEC: User(SEC, groups=("security",)),
        **{a: User(a, groups=("approvers",)) for a in APPROVERS},
    }
    return Policy(
        settings=Settings(pending_ttl=H, escalate_after=H / 2, admins=("security",)),
        directory=Directory(users=users),
        roles={
            "prod": Role(
                "prod",
                (Scope("ssh", "production"),),
                ("devs",),
                default_duration=H,
                max_duration=4 * H,
            )
        },
        approval=(
            ApprovalRule(
                0, Match("ssh", "production"), "any", (ApproverSpec("group", "approvers"),)
            ),
        ),
    )


def _run_together(workers: list[Callable[[], Any]]) -> list[Any]:
    """Run every worker in its own thread, all released at once; return result or exception."""
    barrier = threading.Barrier(len(workers))
    results: list[Any] = [None] * len(workers)

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = ("ok", workers[i]())
        except BaseException as exc:
            results[i] = ("error", exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    return results


def _create(ctx: Context) -> str:
    return create_request(
        ctx, requester=REQ, draft=Draft(roles=("prod",), reason="INC-1")
    ).request.id


def _events(ctx: Context, request_id: str) -> list[str]:
    return [e.type for e in queries.request_events(ctx, request_id=request_id, viewer=SEC)]


def _chain(ctx: Context) -> int:
    check = queries.audit_verify(ctx, viewer=SEC)
    assert check.ok, check
    return check.events


def test_racing_approvals_and_denials_leave_exactly_one_decision(db_url: str, make_ctx) -> None:
    ctx, _clock = make_ctx(db_url, _policy())
    for _round in range(3):
        request_id = _create(ctx)

        def decide(i: int) -> str:
            if i % 2 == 0:
                approve_request(ctx, request_id=request_id, approver=APPROVERS[i])
                return "approve"
            deny_request(ctx, request_id=request_id, approver=APPROVERS[i], reason="no")
            return "deny"

        results = _run_together([lambda i=i: decide(i) for i in range(THREADS)])
        winners = [i for i, (kind, _value) in enumerate(results) if kind == "ok"]
        assert len(winners) == 1, results
        losers = [value for kind, value in results if kind == "error"]
        assert len(losers) == THREADS - 1
        assert all(isinstance(exc, Conflict) for exc in losers), [
            repr(e) for e in losers if not isinstance(e, Conflict)
        ]

        winner = winners[0]
        types = _events(ctx, request_id)
        decisions = [t for t in types if t in ("request.approved", "request.denied")]
        assert decisions == (["request.approved"] if winner % 2 == 0 else ["request.denied"])
        recorded = queries.request_events(ctx, request_id=request_id, viewer=SEC)
        assert [e.actor for e in recorded if e.type == "approval.recorded"] == [APPROVERS[winner]]
        stored = queries.get_request(ctx, request_id=request_id, viewer=SEC)
        assert [a.approver for a in stored.approvals] == [APPROVERS[winner]]
        assert stored.state is (State.ACTIVE if winner % 2 == 0 else State.DENIED)
    _chain(ctx)


def test_approval_racing_expiry_at_the_boundary_leaves_one_outcome(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url, _policy())
    start = clock.now()
    for _round in range(5):
        clock.set(start)
        request_id = _create(ctx)
        stored = queries.get_request(ctx, request_id=request_id, viewer=SEC)
        clock.set(stored.expires_at)  # exactly at the boundary: expiry must win

        results = _run_together(
            [
                lambda: approve_request(ctx, request_id=request_id, approver=APPROVERS[0]),
                lambda: lifecycle.expire_pending(ctx),
            ]
        )
        (approve_kind, approve_value), (expire_kind, expired) = results
        assert approve_kind == "error" and isinstance(approve_value, Conflict), results
        assert expire_kind == "ok" and expired in (0, 1), results

        types = _events(ctx, request_id)
        assert types.count("request.expired") == 1
        assert "request.approved" not in types and "approval.recorded" not in types
        final = queries.get_request(ctx, request_id=request_id, viewer=SEC)
        assert final.state is State.EXPIRED and final.approvals == ()
    _chain(ctx)


def test_concurrent_creators_keep_the_chain_gapless(db_url: str, make_ctx) -> None:
    ctx, _clock = make_ctx(db_url, _policy())
    per_thread = 20

    def creator() -> list[str]:
        return [_create(ctx) for _ in range(per_thread)]

    results = _run_together([creator for _ in range(8)])
    assert all(kind == "ok" for kind, _value in results), results
    ids = [rid for _kind, batch in results for rid in batch]
    assert len(set(ids)) == 8 * per_thread

    events = queries.audit_events(ctx, viewer=SEC, query=AuditQuery(limit=10_000))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len(events) == 8 * per_thread  # one request.created each (rule: any)
    assert {e.request_id for e in events} == set(ids)
    assert _chain(ctx) == 8 * per_thread


def test_scheduler_replicas_expire_each_grant_exactly_once(db_url: str, make_ctx, start) -> None:
    policy = _policy()
    replicas = [make_ctx(db_url, policy) for _ in range(4)]
    ctx, _clock = replicas[0]
    grants = []
    for i in range(300):
        grant = open_request(
            policy,
            Draft(roles=("prod",), reason=f"g{i}"),
            requester=REQ,
            request_id=f"00000000-0000-0000-0000-{i:012d}",
            now=start,
        )
        grant.approve(APPROVERS[i % len(APPROVERS)], directory=policy.directory, now=start)
        grant.activate(start)
        grants.append(grant)
    with ctx.uow() as uow:
        for grant in grants:
            uow.requests.add(grant)
        ctx.persist_many(uow, grants, start)
        uow.commit()
    for _ctx, clock in replicas:
        clock.set(start + 2 * H)

    results = _run_together([lambda c=c: lifecycle.tick(c) for c, _clock in replicas])
    assert all(kind == "ok" for kind, _value in results), results
    assert sum(report.expired for _kind, report in results) == 300

    expired = queries.audit_events(
        ctx, viewer=SEC, query=AuditQuery(type="access.expired", limit=10_000)
    )
    assert len(expired) == 300
    assert len({e.request_id for e in expired}) == 300
    _chain(ctx)


def test_racing_creates_with_one_idempotency_key_create_one_request(db_url: str, make_ctx) -> None:
    """BUG on PostgreSQL (service/requests.py ``create_request``): the key is looked up, then
    inserted after the request; concurrent retries with one key all miss the lookup and all
    but one die with ``IntegrityError`` (a 500) instead of replaying the first request."""
    ctx, _clock = make_ctx(db_url, _policy())
    draft = Draft(roles=("prod",), reason="INC-1")

    def create() -> str:
        return create_request(
            ctx, requester=REQ, draft=draft, idempotency_key="k-1", body_hash="h-1"
        ).request.id

    results = _run_together([create for _ in range(8)])
    assert all(kind == "ok" for kind, _value in results), [repr(v) for k, v in results if k != "ok"]
    assert len({value for _kind, value in results}) == 1
    created = queries.audit_events(
        ctx, viewer=SEC, query=AuditQuery(type="request.created", limit=100)
    )
    assert len(created) == 1
    _chain(ctx)


def test_revoke_racing_the_approval_of_an_extension_leaves_one_outcome(
    db_url: str, make_ctx
) -> None:
    """BUG on PostgreSQL (service/decisions.py): ``approve_request`` locks the extension, then
    its original (``_locked(uow, request.extends)``); ``revoke_request`` locks the original,
    then updates its extensions (read by ``extensions_of`` without a lock). The opposite
    lock order deadlocks: one side dies with ``DeadlockDetected`` instead of one outcome."""
    policy = _policy()
    policy = dataclasses.replace(
        policy, roles={"prod": dataclasses.replace(policy.roles["prod"], extendable=True)}
    )
    ctx, _clock = make_ctx(db_url, policy)
    for _round in range(10):
        grant_id = _create(ctx)
        approve_request(ctx, request_id=grant_id, approver=APPROVERS[0])
        ext = extend_request(ctx, request_id=grant_id, requester=REQ, duration=H, reason="x")

        results = _run_together(
            [
                lambda: approve_request(ctx, request_id=ext.id, approver=APPROVERS[1]),
                lambda: revoke_request(ctx, request_id=grant_id, actor=REQ, reason="done"),
            ]
        )
        (a_kind, a_value), (r_kind, r_value) = results
        assert r_kind == "ok", repr(r_value)
        assert a_kind == "ok" or isinstance(a_value, Conflict), repr(a_value)
        assert queries.get_request(ctx, request_id=grant_id, viewer=SEC).state is State.REVOKED
        assert queries.get_request(ctx, request_id=ext.id, viewer=SEC).state is State.REVOKED
    _chain(ctx)
