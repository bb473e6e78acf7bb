"""Use cases of gateways: authorize a use, open and end a session (SPEC §4, RFC 10.6.2).

Invariants: a grant is honoured only while ``starts_at <= now < ends_at`` of an active
request, checked here against the clock, whatever the scheduler has or has not done yet;
a session opens under a lock of its grant's request, seen live under that lock, so a
revoke either commits first (the open is refused) or after it (its termination pass
asks for the session's end): no session of a revoked grant is left running unasked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from jitgate.domain.errors import Conflict, Forbidden, Invalid, NotFound
from jitgate.domain.events import DomainEvent
from jitgate.domain.policy import Policy, Scope
from jitgate.service.context import Context
from jitgate.service.ports import AsyncGrantReader, GrantView, Session, UnitOfWork
from jitgate.service.sessions_end import ended_as


@dataclass(frozen=True)
class AuthorizeResult:
    allowed: bool
    request_id: str | None = None
    role: str | None = None
    ends_at: datetime | None = None
    reason: str | None = None


def authorize(
    ctx: Context,
    *,
    user: str,
    resource: str | None = None,
    type: str | None = None,
    environment: str | None = None,
) -> AuthorizeResult:
    now = ctx.clock.now()
    return _authorize(
        ctx.policy.current, ctx.uow.live_grants, user.lower(), resource, type, environment, now
    )


async def authorize_async(
    ctx: Context,
    reader: AsyncGrantReader,
    *,
    user: str,
    resource: str | None = None,
    type: str | None = None,
    environment: str | None = None,
) -> AuthorizeResult:
    """``authorize`` with the read awaited (PostgreSQL on the event loop); same decision."""
    now = ctx.clock.now()
    policy = ctx.policy.current
    scope = _target(policy, resource, type, environment)
    return _decide(policy, await reader.live_grants(user.lower(), now), scope, resource, now)


def _target(
    policy: Policy, resource: str | None, type_: str | None, environment: str | None
) -> Scope:
    if resource is not None:
        if type_ is not None or environment is not None:
            raise Invalid("give either resource, or type and environment, not both")
        known = policy.resources.get(resource)
        if known is None:
            raise Invalid(f"unknown resource {resource!r}")
        return known.scope
    if not type_ or not environment:
        raise Invalid("give either resource, or type and environment")
    return Scope(type_, environment)


def _authorize(
    policy: Policy,
    live_grants: Callable[[str, datetime], list[GrantView]],
    user: str,
    resource: str | None,
    type_: str | None,
    environment: str | None,
    now: datetime,
) -> AuthorizeResult:
    scope = _target(policy, resource, type_, environment)
    return _decide(policy, live_grants(user, now), scope, resource, now)


def _decide(
    policy: Policy, live: list[GrantView], scope: Scope, resource: str | None, now: datetime
) -> AuthorizeResult:
    grants = [g for g in live if g.honoured(now) and g.covers(scope, resource)]
    if not grants:
        return AuthorizeResult(False, reason="no active grant covers this access")
    best = max(grants, key=lambda g: g.ends_at)
    return AuthorizeResult(True, best.id, _role_for(policy, best, scope), best.ends_at)


def _role_for(policy: Policy, grant: GrantView, scope: Scope) -> str:
    for name in grant.roles:
        role = policy.roles.get(name)
        if role and any(g.covers(scope) for g in role.grants):
            return name
    return grant.roles[0]


def open_session(
    ctx: Context,
    *,
    user: str,
    resource: str | None,
    kind: str,
    type: str | None = None,
    environment: str | None = None,
    opened_by: str | None = None,
) -> Session:
    """Record one use of a grant ("access used"); ``Forbidden`` when no grant allows it.
    ``opened_by`` (``service:NAME``) alone may end it through ``end_session``."""
    now = ctx.clock.now()
    user = user.lower()
    with ctx.uow() as uow:
        verdict = _held_grant(ctx, uow, user, resource, type, environment, now)
        assert verdict.request_id is not None
        session = Session(
            ctx.ids(), verdict.request_id, user, resource, kind, now, opened_by=opened_by
        )
        uow.sessions.add(session)
        # the user is the actor (whose access it is); ``opened_by`` names the gateway that
        # asserted it, so an auditor can tell which service token vouched for the session
        data: dict[str, Any] = {
            "session_id": session.id,
            "resource": resource,
            "kind": kind,
            "role": verdict.role,
            "opened_by": opened_by,
        }
        if type is not None:
            data["type"], data["environment"] = type, environment
        event = DomainEvent("access.used", user, verdict.request_id, data)
        ctx.publish(uow, [event], None, now)
        uow.commit()
    return session


#: How often ``open_session`` chooses again when the grant it locked is no longer the one.
_ATTEMPTS = 3


def _held_grant(
    ctx: Context,
    uow: UnitOfWork,
    user: str,
    resource: str | None,
    type_: str | None,
    environment: str | None,
    now: datetime,
) -> AuthorizeResult:
    """The grant a session opens on, its request locked, then read again: a revoke that
    committed meanwhile is seen (another grant is chosen, or none: ``Forbidden``), and one
    not committed yet waits for this transaction, so its termination pass sees the session.
    Locked as decisions lock it (an extension's original first): the two never deadlock."""

    def choose() -> AuthorizeResult:
        policy = ctx.policy.current
        found = _authorize(
            policy, uow.requests.live_grants, user, resource, type_, environment, now
        )
        if not found.allowed or found.request_id is None:
            raise Forbidden(f"{user} has no active grant for this access; session refused")
        return found

    verdict = choose()
    for _attempt in range(_ATTEMPTS):
        assert verdict.request_id is not None
        uow.requests.get_family(verdict.request_id)
        locked, verdict = verdict, choose()  # read after the lock: what has committed
        if verdict.request_id == locked.request_id:
            return verdict
    raise Conflict("the grants changed while the session was being opened; try again")


def end_session(
    ctx: Context,
    *,
    session_id: str,
    recording_url: str | None = None,
    reason: str = "closed",
    actor: str = "system",
    gateway: str | None = None,
    terminated: bool | None = None,
) -> Session:
    """End a session; a ``gateway`` (``service:NAME``) may end only the sessions it opened,
    so one leaked gateway token cannot close, or set the recording of, another's. The
    recording URL is stored and audited without its credentials (``redact_url``).
    ``terminated``: the gateway ended it (``sessions_end.ended_as`` words the record)."""
    now = ctx.clock.now()
    recording_url = redact_url(recording_url) if recording_url is not None else None
    with ctx.uow() as uow:
        session = uow.sessions.get(session_id, for_update=True)
        if session is None:
            raise NotFound(f"no session {session_id}")
        if gateway is not None and session.opened_by not in (None, gateway):
            raise Forbidden(f"session {session_id} was opened by another gateway")
        if session.ended_at is not None:
            raise Conflict(f"session {session_id} already ended")
        session.ended_at, session.recording_url = now, recording_url
        session.end_reason, data = ended_as(session, terminated=terminated, reason=reason)
        uow.sessions.save(session)
        event = DomainEvent("session.ended", actor, session.request_id, data)
        ctx.publish(uow, [event], None, now)
        uow.commit()
    return session


#: Parts of query parameter names whose values are credentials: signed URLs (S3
#: ``X-Amz-Signature``/``-Credential``/``-Security-Token``, GCS ``X-Goog-Signature``, Azure
#: SAS ``sig``, CloudFront ``Signature``), API keys, tokens, passwords. Matched without case
#: anywhere in the name: redacting a harmless value costs less than keeping a secret.
SECRET_PARAM_MARKS = ("sig", "token", "key", "secret", "pass", "pwd", "credential", "auth")
REDACTED = "REDACTED"
_PAIR_SEPARATORS = re.compile(r"([&;?])")


def redact_url(url: str) -> str:
    """``url`` without its userinfo (``user:pass@``) and with the value of every query or
    fragment parameter whose name marks a credential replaced by ``REDACTED``; the rest
    of the URL is kept as it was written. Invariant 8: no secret lands in an audit event."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise Invalid(f"recording_url is not a valid URL: {exc}") from None
    host = parts.netloc.rpartition("@")[2]
    query, fragment = _redact_params(parts.query), _redact_params(parts.fragment)
    return urlunsplit((parts.scheme, host, parts.path, query, fragment))


def _redact_params(text: str) -> str:
    return "".join(_redact_pair(piece) for piece in _PAIR_SEPARATORS.split(text))


def _redact_pair(piece: str) -> str:
    name, equals, _value = piece.partition("=")
    plain = unquote_plus(name).lower()
    if equals and any(mark in plain for mark in SECRET_PARAM_MARKS):
        return f"{name}={REDACTED}"
    return piece
