"""Read-side use cases: one request, lists, its events and sessions; the audit log (the
evidence of a request is in ``evidence``).

Invariant: a request is visible to its requester, to whoever approved or may approve it,
and to admins; to anyone else it does not exist (``NotFound``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from jitgate.domain.audit import AuditRecord, ChainCheck
from jitgate.domain.errors import DomainError, Forbidden, NotFound
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.service.context import Context
from jitgate.service.ports import AuditQuery, Principal, RequestQuery, Session, UnitOfWork
from jitgate.service.tokens import normal_principal


@dataclass(frozen=True)
class Page:
    items: list[AccessRequest]
    next_cursor: tuple[str, str] | None


def may_view(ctx: Context, request: AccessRequest, viewer: str) -> bool:
    """SPEC §4: the requester, admins and the eligible approvers, who are those who may
    decide it now (so only while it is pending) and those who did decide it. Who could
    decide under today's rules sees no request closed before them (the on-call rotation
    does not carry the history of past grants with it)."""
    policy = ctx.policy.current
    return (
        viewer == request.requester
        or policy.is_admin(viewer)
        or request.decided_by(viewer)
        or (
            request.state is State.PENDING
            and request.can_decide(viewer, policy.directory, ctx.clock.now())
        )
    )


def refused(ctx: Context, request: AccessRequest, person: str, why: str) -> DomainError:
    """The refusal of an act only the requester may do: ``Forbidden`` (``why``) to someone
    who may see the request, ``NotFound`` to anyone else, for whom it does not exist."""
    if may_view(ctx, request, person):
        return Forbidden(why)
    return NotFound(f"no request {request.id}")


def visible_request(ctx: Context, uow: UnitOfWork, request_id: str, viewer: str) -> AccessRequest:
    request = uow.requests.get(request_id)
    if request is None or not may_view(ctx, request, viewer):
        raise NotFound(f"no request {request_id}")
    return request


def get_request(ctx: Context, *, request_id: str, viewer: str) -> AccessRequest:
    with ctx.uow(write=False) as uow:
        return visible_request(ctx, uow, request_id, viewer)


def list_requests(
    ctx: Context,
    *,
    viewer: str,
    state: str | None = None,
    requester: str | None = None,
    approver_me: bool = False,
    limit: int = 50,
    cursor: tuple[str, str] | None = None,
) -> Page:
    """Newest first. Admins see everyone's requests; others their own, or with
    ``approver_me`` the ones they approved or may decide, or with someone else's
    ``requester`` that person's requests they may see (``may_view``, as one request is
    shown): never a refusal, never a request they could not open. The store selects by
    ``state`` and ``requester`` (SQL); who may see each of those is checked here, as for
    ``approver_me``. A ``next_cursor`` is given only when another request follows."""
    is_admin = ctx.policy.current.is_admin(viewer)
    if requester is None and not approver_me and not is_admin:
        requester = viewer
    foreign = not is_admin and requester not in (None, viewer)

    def listed(request: AccessRequest) -> bool:
        if approver_me:
            return _approver_of(ctx, request, viewer)
        return not foreign or may_view(ctx, request, viewer)

    found: list[AccessRequest] = []
    after, batch_size = cursor, limit * 2
    with ctx.uow(write=False) as uow:
        while len(found) <= limit:  # one more than the page: does another follow?
            query = RequestQuery(state=state, requester=requester, after=after, limit=batch_size)
            batch = uow.requests.find(query)
            found += [request for request in batch if listed(request)]
            if len(batch) < batch_size:
                break
            after = (batch[-1].created_at.isoformat(), batch[-1].id)
    items = found[:limit]
    last = items[-1] if len(found) > limit else None
    return Page(items, (last.created_at.isoformat(), last.id) if last else None)


def _approver_of(ctx: Context, request: AccessRequest, viewer: str) -> bool:
    """``approver=me``: a pending request that waits on ``viewer`` (eligible, not yet
    decided by them); a decided one that ``viewer`` took part in."""
    decided = request.decided_by(viewer)
    if request.state is State.PENDING:
        directory, now = ctx.policy.current.directory, ctx.clock.now()
        return not decided and request.can_decide(viewer, directory, now)
    return decided


def request_events(ctx: Context, *, request_id: str, viewer: str) -> list[AuditRecord]:
    with ctx.uow(write=False) as uow:
        visible_request(ctx, uow, request_id, viewer)
        return uow.audit.find(AuditQuery(request_id=request_id, limit=10_000))


def session(ctx: Context, *, session_id: str) -> Session:
    """One session, for the gateways (service tokens), which open and end them."""
    with ctx.uow(write=False) as uow:
        found = uow.sessions.get(session_id)
    if found is None:
        raise NotFound(f"no session {session_id}")
    return found


def request_sessions(ctx: Context, *, request_id: str, viewer: str) -> list[Session]:
    with ctx.uow(write=False) as uow:
        visible_request(ctx, uow, request_id, viewer)
        return uow.sessions.of_request(request_id)


# -- the audit log -------------------------------------------------------------------------


def audit_events(ctx: Context, *, viewer: str, query: AuditQuery) -> list[AuditRecord]:
    """The events ``query`` selects; its ``actor`` is read as events name one
    (``normal_actor``): ``Sam@Example.com`` finds what ``sam@example.com`` did."""
    _admin_only(ctx, viewer)
    if query.actor is not None:
        query = replace(query, actor=normal_actor(query.actor))
    with ctx.uow(write=False) as uow:
        return uow.audit.find(query)


def normal_actor(actor: str) -> str:
    """An actor named as events name it: a gateway ``service:NAME`` by its name without
    blanks around it (``normal_principal``), anyone else (a person's email, ``system``,
    ``policy``) in the normal form of an email."""
    kind, colon, name = actor.strip().partition(":")
    if kind == "service" and colon:
        return f"service:{normal_principal(Principal('service', name)).subject}"
    return normal_principal(Principal("user", actor)).subject


def audit_verify(ctx: Context, *, viewer: str) -> ChainCheck:
    _admin_only(ctx, viewer)
    with ctx.uow(write=False) as uow:
        return uow.audit.verify()


def _admin_only(ctx: Context, viewer: str) -> None:
    if not ctx.policy.current.is_admin(viewer):
        raise Forbidden("only admins can read the audit log")
