"""``since`` never skips an event chained late, on SQLite and PostgreSQL.

An event's ``at`` is when its action began (the time the tables hold too); its seq is when
it was chained. An action that waited for the chain (a busy PostgreSQL, another replica)
is chained after events whose ``at`` is later than its own. A reader polling
``GET /v1/audit?since=<the last at it saw>`` must still get it: ``since`` selects from
the first event at or after that time on, in seq order."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jitgate.adapters.policy import load_policy
from jitgate.domain.creation import Draft
from jitgate.domain.events import DomainEvent
from jitgate.service import access, evidence, queries
from jitgate.service import requests as use
from jitgate.service.context import Context
from jitgate.service.ports import AuditQuery

POLICY = """
version: 1
settings: {pending_ttl: 1h, admins: [security]}
directory:
  users:
    jane@example.com: {groups: [devs]}
    sec@example.com: {groups: [security]}
resources:
  app: {type: kubernetes, environment: staging}
roles:
  k8s:
    grants: [{type: kubernetes, environment: staging}]
    requestable_by: [devs]
    default_duration: 1h
    max_duration: 8h
approval:
  - match: {type: kubernetes, environment: any}
    rule: self
"""
SEC, JANE, GW = "sec@example.com", "jane@example.com", "service:gw"
S = timedelta(seconds=1)


def append(ctx: Context, kind: str, at: datetime) -> None:
    with ctx.uow() as uow:
        uow.audit.append([DomainEvent(kind, "system", None, {})], at)
        uow.commit()


def polled(ctx: Context, since: str | None = None, limit: int = 100) -> list[str]:
    moment = datetime.fromisoformat(since) if since else None
    query = AuditQuery(since=moment, limit=limit)
    return [e.type for e in queries.audit_events(ctx, viewer=SEC, query=query)]


def test_since_the_last_at_seen_finds_an_event_chained_later_with_an_earlier_at(
    db_url: str, make_ctx: Any, start: datetime
) -> None:
    ctx, _clock = make_ctx(db_url)
    append(ctx, "t.first", start)
    append(ctx, "t.later", start + 2 * S)
    append(ctx, "t.chained_late", start + S)  # began before t.later, chained after it

    with ctx.uow(write=False) as uow:
        seen = uow.audit.find(AuditQuery(limit=2))
    assert [e.type for e in seen] == ["t.first", "t.later"]
    assert polled(ctx, since=seen[-1].at) == ["t.later", "t.chained_late"]
    # from the first event at or after the time on, whatever comes before it is left out
    assert polled(ctx, since=(start + S / 2).isoformat()) == ["t.later", "t.chained_late"]
    assert polled(ctx, since=start.isoformat()) == ["t.first", "t.later", "t.chained_late"]
    assert polled(ctx, since=(start + 3 * S).isoformat()) == []
    with ctx.uow(write=False) as uow:
        assert uow.audit.verify().ok


def test_an_action_chained_late_keeps_its_time_and_the_evidence_agrees(
    db_url: str, make_ctx: Any, tmp_path: Path, start: datetime
) -> None:
    """The session's end began at 10:00:01 and was chained after an event of 10:00:02: its
    ``session.ended`` keeps 10:00:01, the time the table holds, so the evidence finds no
    discrepancy, and a poll from 10:00:02 gets the end."""
    (tmp_path / "policy.yaml").write_text(POLICY)
    ctx, clock = make_ctx(db_url, load_policy(tmp_path / "policy.yaml"))
    request = use.create_request(ctx, requester=JANE, draft=Draft(("k8s",), "INC-1")).request
    session = access.open_session(ctx, user=JANE, resource="app", kind="k8s", opened_by=GW)
    append(ctx, "t.later", start + 2 * S)
    clock.set(start + S)
    access.end_session(ctx, session_id=session.id, gateway=GW, terminated=False)

    with ctx.uow(write=False) as uow:
        (later,) = uow.audit.find(AuditQuery(type="t.later"))
    assert polled(ctx, since=later.at) == ["t.later", "session.ended"]
    shown = evidence.evidence(ctx, request_id=request.id, viewer=SEC)
    assert shown["discrepancies"] == []
    (used,) = shown["used"]["sessions"]
    assert datetime.fromisoformat(used["ended_at"]) == start + S
