"""Routes of gateways (service tokens): authorize, open and end sessions."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from jitgate.entrypoints.api import schemas as s
from jitgate.entrypoints.api.auth import AppDep, GatewayAppDep, ServiceDep
from jitgate.entrypoints.api.problems import PROBLEM_RESPONSES
from jitgate.service import access

router = APIRouter(prefix="/v1", tags=["gateways"], responses=PROBLEM_RESPONSES)


@router.post("/authorize", response_model=s.AuthorizeOut)
async def authorize(body: s.AuthorizeBody, app: GatewayAppDep) -> Response:
    """The gateway's question, on the hot path. On SQLite this one indexed read runs on the
    event loop (WAL readers never wait for writers); on PostgreSQL in the thread pool."""
    call = partial(
        access.authorize,
        app.ctx,
        user=body.user,
        resource=body.resource,
        type=body.type,
        environment=body.environment,
    )
    result = call() if app.db.is_sqlite else await run_in_threadpool(call)
    answer = s.AuthorizeOut(
        allowed=result.allowed,
        request_id=result.request_id,
        role=result.role,
        ends_at=result.ends_at,
        reason=result.reason,
    )
    # already valid: serialise it straight to JSON rather than have FastAPI validate it again
    return Response(answer.model_dump_json(), media_type="application/json")


@router.post("/sessions", status_code=201, response_model=s.SessionOut)
def open_session(body: s.SessionBody, app: AppDep, who: ServiceDep) -> s.SessionOut:
    session = access.open_session(
        app.ctx,
        user=body.user,
        resource=body.resource,
        kind=body.kind,
        type=body.type,
        environment=body.environment,
    )
    return s.SessionOut(**session.as_dict())


@router.post("/sessions/{session_id}/end", response_model=s.SessionOut)
def end_session(
    session_id: str, app: AppDep, who: ServiceDep, body: s.EndSessionBody | None = None
) -> s.SessionOut:
    session = access.end_session(
        app.ctx,
        session_id=session_id,
        recording_url=body.recording_url if body else None,
        actor=f"service:{who}",
    )
    return s.SessionOut(**session.as_dict())
