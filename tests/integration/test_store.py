"""The SQL store on SQLite and PostgreSQL: requests, audit chain, sessions, idempotency keys."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from jitgate.adapters.db import tables as t
from jitgate.adapters.db.uow import SqlUnitOfWorkFactory
from jitgate.domain.approval import Approval
from jitgate.domain.creation import Draft, open_request
from jitgate.domain.errors import Conflict
from jitgate.domain.events import DomainEvent
from jitgate.domain.policy import ApprovalRule, ApproverSpec, Match, Policy, Scope
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.service.ports import AuditQuery, RequestQuery, Session
from jitgate.service.requests import create_request

JANE = "jane.doe@example.com"
MARK = "mark.lee@example.com"
H, M = timedelta(hours=1), timedelta(minutes=1)


def _engine(ctx: object) -> sa.Engine:
    factory = ctx.uow  # type: ignore[attr-defined]
    assert isinstance(factory, SqlUnitOfWorkFactory)
    return factory.db.engine


def _full_request(start: object) -> AccessRequest:
    """A request with every field set to something other than its default."""
    now = start
    rules = (
        ApprovalRule(
            2,
            Match("ssh", "production"),
            "all",
            (ApproverSpec("oncall", "sre"), ApproverSpec("manager")),
            escalate_to=(ApproverSpec("group", "sre-leads"),),
        ),
        ApprovalRule(
            5, Match("database", None), "any", (ApproverSpec("user", "x@y"),), threshold=2
        ),
    )
    return AccessRequest(
        id="11111111-2222-3333-4444-555555555555",
        requester=JANE,
        roles=("sre-oncall", "db-prod"),
        resources=("prod-db-01", "prod-bastion"),
        scopes=(Scope("database", "production"), Scope("ssh", "production")),
        rules=rules,
        duration=2 * H + 30 * M,
        reason="INC-42: ünïcode ✓",
        urgency="high",
        purpose="incident-response",
        created_at=now,  # type: ignore[arg-type]
        expires_at=now + H,
        escalate_at=now + 30 * M,  # type: ignore[operator]
        max_total=8 * H,
        start_at=now + 10 * M,
        state=State.ACTIVE,  # type: ignore[operator]
        starts_at=now + 10 * M + timedelta(microseconds=123456),  # type: ignore[operator]
        ends_at=now + 3 * H,  # type: ignore[operator]
        approvals=(
            Approval("sam@example.com", "approve", now + M, "ok", "slack"),  # type: ignore[operator]
            Approval(MARK, "approve", now + 2 * M, None, "api"),  # type: ignore[operator]
        ),
        escalated=True,
        extends="99999999-2222-3333-4444-555555555555",
        backends=("ssh-prod", "prod-pg"),
        decided_at=now + 2 * M,  # type: ignore[operator]
        closed_at=now + 4 * H,
        close_reason="closed for the test",  # type: ignore[operator]
        expiry_warned=True,
        version=0,
    )


def test_request_round_trips_every_field(db_url: str, make_ctx, start) -> None:
    ctx, _clock = make_ctx(db_url)
    request = _stored(ctx, _full_request(start))
    with ctx.uow(write=False) as uow:
        loaded = uow.requests.get(request.id)
    assert loaded is not None
    assert loaded == request  # dataclass equality: every field but the event buffer
    assert loaded.created_at.utcoffset() == timedelta(0)
    assert loaded.starts_at == request.starts_at  # microseconds survive
    assert loaded.approvals[0].via == "slack"


def _staging_request(policy: Policy, start: datetime) -> AccessRequest:
    """A pending request ``r-1`` of jane's for ``staging-ssh``."""
    draft = Draft(roles=("staging-ssh",), reason="x")
    return open_request(policy, draft, requester=JANE, request_id="r-1", now=start)


def _stored(ctx: object, request: AccessRequest) -> AccessRequest:
    with ctx.uow() as uow:  # type: ignore[attr-defined]
        uow.requests.add(request)
        uow.commit()
    return request


def test_live_grants_read_on_the_driver_matches_sqlalchemy(db_url: str, make_ctx, start) -> None:
    """The hot-path read (``Prepared`` on the DBAPI cursor) binds and converts exactly as
    ``Connection.execute`` does: same rows, same types, timezone-aware times."""
    from jitgate.adapters.db.requests_repo import _LIVE

    ctx, _clock = make_ctx(db_url)
    request = _stored(ctx, _full_request(start))
    at = request.starts_at
    with _engine(ctx).connect() as conn:
        expected = [tuple(row) for row in conn.execute(_LIVE, {"user": JANE, "now": at})]
    prepared = ctx.uow.db.prepared(_LIVE)
    raw = _engine(ctx).raw_connection()
    try:
        got = prepared.rows(raw, {"user": JANE, "now": at})
    finally:
        raw.close()
    assert got == expected and len(got) == 1
    assert got[0][3] == [
        {"type": "database", "environment": "production"},
        {"type": "ssh", "environment": "production"},
    ]
    assert got[0][4].utcoffset() == timedelta(0) and got[0][4] == request.starts_at

    (view,) = ctx.uow.live_grants(JANE, at)
    assert (view.id, view.roles, view.starts_at, view.ends_at) == (
        request.id,
        request.roles,
        request.starts_at,
        request.ends_at,
    )
    assert ctx.uow.live_grants(JANE, request.ends_at) == []  # the end is exclusive
    assert ctx.uow.live_grants(JANE, at - timedelta(microseconds=1)) == []
    assert ctx.uow.live_grants("someone@else", at) == []


def test_the_hot_path_read_sees_every_commit_at_once(db_url: str, make_ctx, start) -> None:
    """The reader connection kept per thread never holds a snapshot between calls: a grant
    ended by another connection is gone from the very next read."""
    ctx, _clock = make_ctx(db_url)
    request = _stored(ctx, _full_request(start))
    at = request.starts_at
    assert [g.id for g in ctx.uow.live_grants(JANE, at)] == [request.id]
    with ctx.uow() as uow:
        loaded = uow.requests.get(request.id)
        assert loaded is not None
        loaded.state = State.REVOKED
        uow.requests.save(loaded)
        uow.commit()
    assert ctx.uow.live_grants(JANE, at) == []


def test_created_request_round_trips(db_url: str, make_ctx, example_policy: Policy) -> None:
    ctx, _clock = make_ctx(db_url)
    draft = Draft(
        roles=("db-prod",),
        resources=("prod-db-01",),
        reason="INC-7",
        duration=3 * H,
        purpose="debugging",
        urgency="low",
        start_at=ctx.clock.now() + 2 * H,
    )
    created = create_request(ctx, requester=JANE, draft=draft).request
    with ctx.uow(write=False) as uow:
        loaded = uow.requests.get(created.id)
    assert loaded == created
    assert loaded is not None and loaded.rules == created.rules
    assert loaded.version == 0  # a new request is written once, not inserted then updated


def test_save_is_guarded_by_version(db_url: str, make_ctx, example_policy: Policy, start) -> None:
    ctx, _clock = make_ctx(db_url)
    request = _stored(ctx, _staging_request(example_policy, start))
    with ctx.uow() as uow:
        first = uow.requests.get("r-1")
        assert first is not None
        first.escalated = True
        uow.requests.save(first)
        uow.commit()
    stale = request  # still version 0
    stale.close_reason = "overwrite"
    with ctx.uow() as uow, pytest.raises(Conflict):
        uow.requests.save(stale)
    with ctx.uow(write=False) as uow:
        fresh = uow.requests.get("r-1")
    assert fresh is not None and fresh.escalated and fresh.close_reason is None


def test_find_filters_and_pages_newest_first(
    db_url: str, make_ctx, example_policy: Policy, start
) -> None:
    ctx, _clock = make_ctx(db_url)
    with ctx.uow() as uow:
        for i in range(5):
            r = open_request(
                example_policy,
                Draft(roles=("staging-ssh",), reason="x"),
                requester=JANE if i % 2 == 0 else "ravi@example.com",
                request_id=f"r-{i}",
                now=start + i * M,
            )
            uow.requests.add(r)
        uow.commit()
    with ctx.uow(write=False) as uow:
        jane = uow.requests.find(RequestQuery(requester=JANE))
        page1 = uow.requests.find(RequestQuery(limit=2))
        after = (page1[-1].created_at.isoformat(), page1[-1].id)
        page2 = uow.requests.find(RequestQuery(limit=2, after=after))
        by_id = uow.requests.find(RequestQuery(ids=("r-1", "r-3")))
        pending = uow.requests.find(RequestQuery(state="pending"))
    assert [r.id for r in jane] == ["r-4", "r-2", "r-0"]
    assert [r.id for r in page1] == ["r-4", "r-3"]
    assert [r.id for r in page2] == ["r-2", "r-1"]
    assert sorted(r.id for r in by_id) == ["r-1", "r-3"]
    assert len(pending) == 5


def _append(ctx, n: int, start, request_id: str = "r-1") -> None:
    with ctx.uow() as uow:
        uow.audit.append(
            [
                DomainEvent("approval.recorded", f"p{i}@x", request_id, {"i": i, "s": "é"})
                for i in range(n)
            ],
            start,
        )
        uow.commit()


def test_audit_append_chains_and_verifies(db_url: str, make_ctx, start) -> None:
    ctx, _clock = make_ctx(db_url)
    _append(ctx, 3, start)
    _append(ctx, 2, start + M, request_id="r-2")
    with ctx.uow(write=False) as uow:
        events = uow.audit.find(AuditQuery())
        check = uow.audit.verify()
        only_r2 = uow.audit.find(AuditQuery(request_id="r-2"))
        by_actor = uow.audit.find(AuditQuery(actor="p1@x"))
        since = uow.audit.find(AuditQuery(since=start + M))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    assert check.ok and check.events == 5 and check.head == events[-1].hash
    assert [e.seq for e in only_r2] == [4, 5]
    assert [e.seq for e in by_actor] == [2, 5]
    assert [e.seq for e in since] == [4, 5]
    assert events[0].data == {"i": 0, "s": "é"}


def test_audit_verify_finds_an_edited_row(db_url: str, make_ctx, start) -> None:
    ctx, _clock = make_ctx(db_url)
    _append(ctx, 5, start)
    with _engine(ctx).begin() as conn:
        conn.execute(
            t.audit_events.update().where(t.audit_events.c.seq == 3).values(data='{"i":99,"s":"é"}')
        )
    with ctx.uow(write=False) as uow:
        check = uow.audit.verify()
    assert not check.ok and check.broken_at == 3


def test_audit_verify_finds_a_deleted_row(db_url: str, make_ctx, start) -> None:
    ctx, _clock = make_ctx(db_url)
    _append(ctx, 5, start)
    with _engine(ctx).begin() as conn:
        conn.execute(t.audit_events.delete().where(t.audit_events.c.seq == 2))
    with ctx.uow(write=False) as uow:
        check = uow.audit.verify()
    assert not check.ok and check.broken_at == 3


def test_audit_verify_finds_a_truncated_tail(db_url: str, make_ctx, start) -> None:
    ctx, _clock = make_ctx(db_url)
    _append(ctx, 5, start)
    with _engine(ctx).begin() as conn:
        conn.execute(t.audit_events.delete().where(t.audit_events.c.seq >= 4))
    with ctx.uow(write=False) as uow:
        check = uow.audit.verify()
    assert not check.ok
    assert "missing" in (check.problem or "")


def test_sessions_round_trip(db_url: str, make_ctx, start) -> None:
    ctx, _clock = make_ctx(db_url)
    with ctx.uow() as uow:
        uow.sessions.add(Session("s-1", "r-1", JANE, "prod-db-01", "database", start))
        uow.sessions.add(Session("s-2", "r-1", JANE, None, "ssh", start + M))
        uow.sessions.add(Session("s-3", "r-2", JANE, None, "ssh", start + M))
        uow.commit()
    with ctx.uow() as uow:
        s2 = uow.sessions.get("s-2", for_update=True)
        assert s2 is not None
        s2.ended_at, s2.recording_url, s2.end_reason = start + H, "https://rec/2", "closed"
        uow.sessions.save(s2)
        uow.commit()
    with ctx.uow(write=False) as uow:
        all_r1 = uow.sessions.of_request("r-1")
        open_r1 = uow.sessions.of_request("r-1", open_only=True)
        open_by = uow.sessions.open_by_request(["r-1", "r-2", "r-3"])
    assert [s.id for s in all_r1] == ["s-1", "s-2"]
    assert all_r1[1].ended_at == start + H and all_r1[1].recording_url == "https://rec/2"
    assert all_r1[0] == Session("s-1", "r-1", JANE, "prod-db-01", "database", start)
    assert [s.id for s in open_r1] == ["s-1"]
    assert {k: [s.id for s in v] for k, v in open_by.items()} == {"r-1": ["s-1"], "r-2": ["s-3"]}


def test_idempotency_keys_are_per_subject(db_url: str, make_ctx, start) -> None:
    ctx, _clock = make_ctx(db_url)
    with ctx.uow() as uow:
        assert uow.idempotency.claim(JANE, "k1", "h1", "r-1", start) is None
        uow.commit()
    with ctx.uow() as uow:
        assert uow.idempotency.claim(JANE, "k1", "h2", "r-2", start) == ("h1", "r-1")
    with ctx.uow(write=False) as uow:
        assert uow.idempotency.get(JANE, "k1") == ("h1", "r-1")
        assert uow.idempotency.get(MARK, "k1") is None
        assert uow.idempotency.get(JANE, "k2") is None


def test_an_uncommitted_unit_of_work_leaves_nothing(
    db_url: str, make_ctx, start, example_policy: Policy
) -> None:
    ctx, _clock = make_ctx(db_url)
    request = _staging_request(example_policy, start)
    with ctx.uow() as uow:
        uow.requests.add(request)
        ctx.persist(uow, request, start)
        # no commit: leaving the block rolls back the request and its events together
    with ctx.uow(write=False) as uow:
        assert uow.requests.get("r-1") is None
        assert uow.audit.find(AuditQuery()) == []
        assert uow.audit.verify().ok
