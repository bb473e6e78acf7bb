"""Routes of admins and operators: audit, verification, policy reload, health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse

from jitgate.adapters.db.migrate import expected
from jitgate.adapters.db.migrate import problem as schema_problem
from jitgate.adapters.policy import PolicyError
from jitgate.entrypoints.api import schemas as s
from jitgate.entrypoints.api.auth import AppDep, UserDep
from jitgate.entrypoints.api.problems import PROBLEM_RESPONSES, problem
from jitgate.service import queries
from jitgate.service.policy import record_policy_loaded
from jitgate.service.ports import AuditQuery

router = APIRouter(tags=["admin"], responses=PROBLEM_RESPONSES)
MAX_SEQ = 2**63 - 1  # audit_events.seq is a signed 64-bit integer on both databases


@router.get("/v1/audit", response_model=s.AuditPage)
def audit(
    app: AppDep,
    who: UserDep,
    since: Annotated[
        str | None, Query(max_length=64, description="ISO 8601 with a time zone")
    ] = None,
    type: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=320)] = None,
    request_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
) -> s.AuditPage:
    query = AuditQuery(
        since=_moment(since),
        type=type,
        actor=actor,
        request_id=request_id,
        after_seq=cursor,
        limit=limit,
    )
    found = queries.audit_events(app.ctx, viewer=who, query=query)
    more = str(found[-1].seq) if len(found) == limit else None
    return s.AuditPage(items=[s.AuditOut(**e.as_dict()) for e in found], next_cursor=more)


@router.get("/v1/audit/verify", response_model=s.VerifyOut)
def verify(app: AppDep, who: UserDep) -> s.VerifyOut:
    check = queries.audit_verify(app.ctx, viewer=who)
    return s.VerifyOut(
        ok=check.ok,
        events=check.events,
        head=check.head,
        broken_at=check.broken_at,
        problem=check.problem,
    )


@router.post("/v1/policy/reload")
def reload_policy(app: AppDep, who: UserDep) -> Any:
    if not app.ctx.policy.current.is_admin(who):
        raise HTTPException(403, "only admins can reload the policy")
    from jitgate.adapters.policy import guarded

    try:  # any failure, a bug included (logged, never a 500), keeps the last good policy
        policy = guarded(app.reload_policy, app.settings.policy_path)
    except PolicyError as exc:
        return problem(
            422,
            "policy is invalid; the last good policy stays in force",
            problems=[str(p) for p in exc.problems],
        )
    record_policy_loaded(app.ctx, policy=policy, actor=who, via="api")
    return {"ok": True, "digest": policy.digest}


@router.get("/healthz", include_in_schema=True)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(app: AppDep) -> Any:
    try:
        with app.db.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        found = schema_problem(app.db)  # none yet, older or newer than this jitgate's
    except sa.exc.SQLAlchemyError:
        return JSONResponse({"status": "unavailable", "detail": "database unreachable"}, 503)
    if found is not None:
        return JSONResponse({"status": "unavailable", "detail": found}, 503)
    return {"status": "ready", "schema": expected(), "policy": app.ctx.policy.current.digest}


def _moment(text: str | None) -> datetime | None:
    """An ISO 8601 time with its zone (``2026-03-02T10:00:00Z``); a bare number is refused
    rather than read as seconds since 1970."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise HTTPException(
            422, f"since must be an ISO 8601 time such as 2026-03-02T10:00:00Z, not {text!r}"
        ) from None
    if when.tzinfo is None:
        raise HTTPException(422, "since needs a time zone (use Z or +00:00)")
    try:
        return when.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-12:00 is past the last day in UTC
        raise HTTPException(422, f"since is out of range in UTC: {text!r}") from None
