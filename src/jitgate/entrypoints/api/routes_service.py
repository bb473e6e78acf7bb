"""Routes of gateways (service tokens): authorize, open and end sessions."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from jitgate.bootstrap import App
from jitgate.entrypoints.api import schemas as s
from jitgate.entrypoints.api.auth import AppDep, ServiceDep, gateway_app
from jitgate.entrypoints.api.problems import NOT_JSON, PROBLEM_RESPONSES, is_json
from jitgate.service import access, queries

router = APIRouter(prefix="/v1", tags=["gateways"], responses=PROBLEM_RESPONSES)


@router.post(
    "/authorize",
    response_model=s.AuthorizeOut,
    openapi_extra={"requestBody": s.json_body(s.AuthorizeBody)},
)
async def authorize(request: Request) -> Response:
    """The gateway's question. Most calls never reach this route: ``fastpath`` answers
    those with a cached service token and a valid body in front of the framework, with
    ``answer`` below; this route is the endpoint's definition and answers the rest."""
    # the token, then the body (``AuthorizeBody``, the same 415 and 422 as any body), checked
    # here rather than by FastAPI's dependency resolution (about 15% of this call in-process)
    app = await gateway_app(request)
    raw = await request.body()
    if raw and not is_json(request.headers.get("content-type")):
        raise HTTPException(415, NOT_JSON)
    body = s.read_body(s.AuthorizeBody, raw)
    return Response(await answer(app, body), media_type="application/json")


async def answer(app: App, body: s.AuthorizeBody) -> bytes:
    """``AuthorizeOut`` as JSON, answered on the event loop: on SQLite one indexed read run
    inline (WAL readers never wait for writers), on PostgreSQL the same read awaited on
    psycopg's async connections."""
    target = {"resource": body.resource, "type": body.type, "environment": body.environment}
    if app.grant_reader is not None:
        result = await access.authorize_async(app.ctx, app.grant_reader, user=body.user, **target)
    else:
        result = access.authorize(app.ctx, user=body.user, **target)
    out = s.AuthorizeOut(
        allowed=result.allowed,
        request_id=result.request_id,
        role=result.role,
        ends_at=result.ends_at,
        reason=result.reason,
    )
    # already valid: serialised straight to JSON rather than validated again by FastAPI
    return out.model_dump_json().encode()


@router.post("/sessions", status_code=201, response_model=s.SessionOut)
def open_session(body: s.SessionBody, app: AppDep, who: ServiceDep) -> s.SessionOut:
    session = access.open_session(
        app.ctx,
        user=body.user,
        resource=body.resource,
        kind=body.kind,
        type=body.type,
        environment=body.environment,
        opened_by=f"service:{who}",
    )
    return s.SessionOut(**session.as_dict())


@router.get("/sessions/{session_id}", response_model=s.SessionOut)
def show_session(session_id: str, app: AppDep, who: ServiceDep) -> s.SessionOut:
    """Whether a session is still open: ``ended_at`` is set once its gateway reported its
    end; ``termination_requested_at`` once jitgate asked for it (a grant revoked early, or
    ending with ``sessions_at_expiry: terminate``): the gateway then ends it and reports
    ``POST /v1/sessions/{id}/end {"terminated": true}``."""
    return s.SessionOut(**queries.session(app.ctx, session_id=session_id).as_dict())


@router.post("/sessions/{session_id}/end", response_model=s.SessionOut)
def end_session(
    session_id: str, app: AppDep, who: ServiceDep, body: s.EndSessionBody | None = None
) -> s.SessionOut:
    """The gateway reports that a session ended (``session.ended``, at this time):
    ``terminated: true`` when it ended it (as jitgate asked), ``false`` when it closed."""
    session = access.end_session(
        app.ctx,
        session_id=session_id,
        recording_url=body.recording_url if body else None,
        actor=f"service:{who}",
        gateway=f"service:{who}",
        terminated=body.terminated if body else None,
    )
    return s.SessionOut(**session.as_dict())
