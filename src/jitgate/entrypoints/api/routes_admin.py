"""Routes of admins and operators: audit, verification, policy reload, health.

A reload is one line in the log whatever its outcome (as a SIGHUP's is): who asked, and
the new digest or why it was refused. The probes answer HEAD as they answer GET, without
a body (load balancers probe with HEAD)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from jitgate.adapters.db.migrate import current, expected, is_newer, problem_of
from jitgate.adapters.policy import PolicyError
from jitgate.bootstrap import App
from jitgate.entrypoints.api import schemas as s
from jitgate.entrypoints.api.auth import AppDep, UserDep
from jitgate.entrypoints.api.problems import PROBLEM_RESPONSES, problem
from jitgate.service import queries
from jitgate.service.policy import policy_step, record_policy_loaded
from jitgate.service.ports import AuditQuery

router = APIRouter(tags=["admin"], responses=PROBLEM_RESPONSES)
log = logging.getLogger("jitgate.policy")
MAX_SEQ = 2**63 - 1  # audit_events.seq is a signed 64-bit integer on both databases
PROBE_SECONDS = 2.0  # /readyz gives the database this long to answer, then says unready


@router.get("/v1/audit", response_model=s.AuditPage)
def audit(
    app: AppDep,
    who: UserDep,
    since: Annotated[
        str | None,
        Query(
            max_length=64,
            description="ISO 8601 with a time zone: the events from the first one at or "
            "after it on (an action chained late can carry an earlier `at`; page with "
            "`cursor` for an exact position)",
        ),
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
        log.warning("policy reload through the API refused: %s is not an admin", who)
        raise HTTPException(403, "only admins can reload the policy")
    from jitgate.adapters.policy import guarded

    try:  # any failure, a bug included (logged, never a 500), keeps the last good policy
        policy = guarded(app.reload_policy, app.settings.policy_path)
    except PolicyError as exc:
        if exc.__cause__ is None:  # else a bug, which ``guarded`` logged in one line
            log.error(
                "policy reload through the API by %s refused: %s (the last good policy stays)",
                who,
                "; ".join(str(p) for p in exc.problems),
            )
        return problem(
            422,
            "policy is invalid; the last good policy stays in force",
            problems=[str(p) for p in exc.problems],
        )
    log.info("policy reloaded through the API by %s: %s", who, policy.digest[:12])
    record_policy_loaded(app.ctx, policy=policy, actor=who, via="api")
    return {"ok": True, "digest": policy.digest}


@router.get("/healthz", include_in_schema=True)
async def healthz() -> dict[str, str]:
    """The process answers: on the event loop, so calls stuck on a stalled database (which
    hold the thread pool) never make a liveness probe restart a working replica."""
    return {"status": "ok"}


@router.head("/healthz", include_in_schema=False)
async def healthz_head() -> Response:
    return Response(status_code=200)


@router.get("/readyz")
async def readyz(request: Request) -> Any:
    app: App = request.app.state.jitgate
    unready, more = await _readiness(request)
    if unready is not None:
        return JSONResponse({"status": "unavailable", "detail": unready}, 503)
    return {
        "status": "ready",
        "schema": expected(),
        "policy": app.ctx.policy.current.digest,
        **more,
    }


@router.head("/readyz", include_in_schema=False)
async def readyz_head(request: Request) -> Response:
    unready, _ = await _readiness(request)
    return Response(status_code=200 if unready is None else 503)


async def _readiness(request: Request) -> tuple[str | None, dict[str, Any]]:
    """``_check`` in the probes' own threads, given ``PROBE_SECONDS``: a database that
    stalls (rather than refusing connections) makes the replica unready at once, whatever
    the API's thread pool is doing."""
    pool: ThreadPoolExecutor = request.app.state.probe_pool
    try:
        return await asyncio.wait_for(
            asyncio.wrap_future(pool.submit(_check, request.app.state.jitgate)), PROBE_SECONDS
        )
    except TimeoutError:
        return f"database not answering within {PROBE_SECONDS:g} s", {}


def _check(app: App) -> tuple[str | None, dict[str, Any]]:
    """Why this replica cannot serve now (the database unreachable, no schema or an older
    one), or ``None``; and what else the operator should see: whether this replica's
    policy is the one in force (``policy_step``), and a note on a schema a newer jitgate
    migrated. Such a replica stays ready: migrations only add, so a running replica keeps
    serving while a rolling upgrade replaces it (one that restarts is refused)."""
    try:
        revision = current(app.db)
        newer = is_newer(revision)
        unready = None if newer else problem_of(revision)
        if unready is not None:
            return unready, {}
        more: dict[str, Any] = {"policy_step": policy_step(app.ctx).as_dict()}
    except sa.exc.SQLAlchemyError:
        return "database unreachable", {}
    if newer:
        more["note"] = f"the database is at schema {revision}, newer than this jitgate: upgrade it"
    return None, more


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
