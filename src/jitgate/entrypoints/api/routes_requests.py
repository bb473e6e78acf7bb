"""Routes of requests: create, list, show, decide, revoke, extend, events, sessions, evidence."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response

from jitgate.domain.approval import normal_email
from jitgate.domain.creation import Draft
from jitgate.domain.durations import parse_duration
from jitgate.domain.errors import Invalid
from jitgate.entrypoints.api import schemas as s
from jitgate.entrypoints.api.auth import AppDep, UserDep
from jitgate.entrypoints.api.problems import PROBLEM_RESPONSES
from jitgate.service import decisions, queries
from jitgate.service import requests as use
from jitgate.service.context import Context
from jitgate.service.evidence import evidence as request_evidence

router = APIRouter(prefix="/v1/requests", tags=["requests"], responses=PROBLEM_RESPONSES)


def to_duration(value: str | int | None) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, int):
        return timedelta(seconds=value)
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise Invalid(f"duration: {exc}") from None


def _out(ctx: Context, request: Any) -> s.RequestOut:
    return s.request_out(request, ctx.policy.current.directory, ctx.clock.now())


def _digest(body: s.Strict) -> str:
    """What an ``Idempotency-Key`` was first used with: the body as read (its fields in
    one order, defaults filled in), so the same JSON with its keys in another order, or a
    default left out, is the same body."""
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


def encode_cursor(value: tuple[str, str] | None) -> str | None:
    if value is None:
        return None
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def decode_cursor(value: str | None) -> tuple[str, str] | None:
    """The place ``encode_cursor`` wrote, from exactly the text it gave: base64 read
    strictly (a character outside its alphabet is refused, not skipped) and only if it
    reads back the same, so a cursor with anything added or changed is not taken."""
    if not value:
        return None
    try:
        raw = base64.b64decode(value, altchars=b"-_", validate=True)
        if base64.urlsafe_b64encode(raw).decode() != value:
            raise ValueError("not as encode_cursor writes it")
        created, rid = json.loads(raw)
        datetime.fromisoformat(str(created))  # where the previous page ended
        return str(created), str(rid)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Invalid("cursor: not a cursor this server gave") from None


@router.post("", status_code=201, response_model=s.RequestOut)
def create(
    body: s.CreateBody,
    app: AppDep,
    who: UserDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> s.RequestOut:
    draft = Draft(
        roles=tuple(body.roles),
        resources=tuple(body.resources),
        reason=body.reason,
        duration=to_duration(body.duration),
        urgency=body.urgency,
        purpose=body.purpose,
        start_at=body.start_at,
        cap=body.cap,
    )
    created = use.create_request(
        app.ctx,
        requester=who,
        draft=draft,
        idempotency_key=idempotency_key,
        body_hash=_digest(body),
    )
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _out(app.ctx, created.request)


@router.get("", response_model=s.RequestPage)
def list_requests(
    app: AppDep,
    who: UserDep,
    state: Literal["pending", "approved", "active", "expired", "denied", "revoked"] | None = None,
    requester: Annotated[
        str | None,
        Query(
            max_length=320,
            description="an email, or `me`; someone else's requests are those you may see "
            "(admins: all of them; others: those they may decide or decided)",
        ),
    ] = None,
    approver: Literal["me"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> s.RequestPage:
    page = queries.list_requests(
        app.ctx,
        viewer=who,
        state=state,
        requester=who if requester == "me" else normal_email(requester) if requester else None,
        approver_me=approver == "me",
        limit=limit,
        cursor=decode_cursor(cursor),
    )
    return s.RequestPage(
        items=[_out(app.ctx, r) for r in page.items], next_cursor=encode_cursor(page.next_cursor)
    )


@router.get("/{request_id}", response_model=s.RequestOut)
def show(request_id: str, app: AppDep, who: UserDep) -> s.RequestOut:
    return _out(app.ctx, queries.get_request(app.ctx, request_id=request_id, viewer=who))


@router.post("/{request_id}/approve", response_model=s.RequestOut)
def approve(
    request_id: str, app: AppDep, who: UserDep, body: s.ApproveBody | None = None
) -> s.RequestOut:
    comment = body.comment if body else None
    decision = decisions.approve_request(
        app.ctx, request_id=request_id, approver=who, comment=comment
    )
    return _out(app.ctx, decision.request)


@router.post("/{request_id}/deny", response_model=s.RequestOut)
def deny(request_id: str, body: s.ReasonBody, app: AppDep, who: UserDep) -> s.RequestOut:
    decision = decisions.deny_request(
        app.ctx, request_id=request_id, approver=who, reason=body.reason
    )
    return _out(app.ctx, decision.request)


@router.post("/{request_id}/revoke", response_model=s.RequestOut)
def revoke(request_id: str, body: s.ReasonBody, app: AppDep, who: UserDep) -> s.RequestOut:
    queries.get_request(app.ctx, request_id=request_id, viewer=who)
    decision = decisions.revoke_request(
        app.ctx, request_id=request_id, actor=who, reason=body.reason
    )
    return _out(app.ctx, decision.request)


@router.post("/{request_id}/extend", status_code=201, response_model=s.RequestOut)
def extend(
    request_id: str,
    body: s.ExtendBody,
    app: AppDep,
    who: UserDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> s.RequestOut:
    duration = to_duration(body.duration)
    assert duration is not None
    extended = use.extend_request_with_key(
        app.ctx,
        request_id=request_id,
        requester=who,
        duration=duration,
        reason=body.reason,
        idempotency_key=idempotency_key,
        body_hash=_digest(body),
    )
    if extended.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _out(app.ctx, extended.request)


@router.get("/{request_id}/events", response_model=s.AuditPage)
def events(request_id: str, app: AppDep, who: UserDep) -> s.AuditPage:
    found = queries.request_events(app.ctx, request_id=request_id, viewer=who)
    return s.AuditPage(items=[s.AuditOut(**e.as_dict()) for e in found])


@router.get("/{request_id}/sessions", response_model=s.SessionPage)
def sessions(request_id: str, app: AppDep, who: UserDep) -> s.SessionPage:
    found = queries.request_sessions(app.ctx, request_id=request_id, viewer=who)
    return s.SessionPage(items=[s.SessionOut(**x.as_dict()) for x in found])


@router.get("/{request_id}/evidence")
def evidence(request_id: str, app: AppDep, who: UserDep) -> dict[str, Any]:
    return request_evidence(app.ctx, request_id=request_id, viewer=who)
