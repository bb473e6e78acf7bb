"""One-click links (SPEC §6, RFC 10.5.3): show a link's confirmation, decide from it once.

Invariants:
- showing a link never changes anything (mail scanners prefetch links);
- an Approve or Deny link is bound to one approver (or, from a shared channel, to nobody,
  so the person must already be known); a person other than the one it is bound to gets
  ``Forbidden``; the decision itself goes through ``decisions``, so the requester never
  approves their own request and eligibility is checked like any approval;
- a link works once: the first decision through it is recorded, every later use is ``Gone``,
  as is a link past its expiry or for a request that is no longer pending. A use is
  reserved before the decision (so racing uses give one outcome) and released when the
  decision does not happen, so a link is never spent, nor said to be used, by a decision
  that failed;
- the confirmation page is offered only for a decision that can happen: an Approve link of
  a person who has already approved shows that instead (``Gone``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from jitgate.domain.approval import Approval, same_person
from jitgate.domain.errors import Conflict, Forbidden, Gone, Invalid, NotFound
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.service import decisions
from jitgate.service.context import Context
from jitgate.service.ports import UnitOfWork

log = logging.getLogger("jitgate.links")
Action = Literal["approve", "deny", "view"]
PageKind = Literal["confirm", "view", "gone", "forbidden", "missing"]


@dataclass(frozen=True)
class Link:
    """What a signed link says: who may use it, for what, until when."""

    request_id: str
    action: Action
    subject: str
    expires_at: datetime
    channel: str = ""


class BadLink(Exception):
    """The token was not made by this server (tampered, truncated, another key)."""


class LinkSigner(Protocol):
    def mint(self, link: Link) -> str: ...
    def read(self, token: str) -> Link: ...


@dataclass(frozen=True)
class LinkUse:
    key: str
    request_id: str
    subject: str
    action: str
    used_at: datetime


class LinkUses(Protocol):
    def reserve(self, use: LinkUse) -> bool: ...
    def release(self, use: LinkUse) -> None:
        """Delete ``use`` (reserved by this caller), making the link usable again."""
        ...

    def find(self, key: str) -> LinkUse | None: ...


LinkUsesOf = Callable[[UnitOfWork], LinkUses]


@dataclass(frozen=True)
class LinkPage:
    kind: PageKind
    link: Link
    request: AccessRequest | None
    message: str
    person: str | None = None


@dataclass(frozen=True)
class LinkOutcome:
    request: AccessRequest
    action: Action
    person: str


def use_key(request_id: str, person: str) -> str:
    return f"link:{request_id}:{person.lower()}"


def open_link(ctx: Context, uses_of: LinkUsesOf, *, link: Link, person: str | None) -> LinkPage:
    """What the page of ``link`` shows to ``person``; reads only."""
    now = ctx.clock.now()
    with ctx.uow(write=False) as uow:
        request = uow.requests.get(link.request_id)
        used = uses_of(uow).find(use_key(link.request_id, person)) if person else None
    if request is None:
        return LinkPage("missing", link, None, "This request does not exist.")
    if link.action == "view":
        if now >= link.expires_at:
            return LinkPage("gone", link, request, "This link has expired.")
        return LinkPage("view", link, request, outcome_text(request), person)
    return _judge(ctx, link, request, person, used, now)


def _judge(
    ctx: Context,
    link: Link,
    request: AccessRequest,
    person: str | None,
    used: LinkUse | None,
    now: datetime,
) -> LinkPage:
    if person is None:
        return LinkPage(
            "forbidden",
            link,
            request,
            "Open the link to this request that was sent to you personally first; "
            "a link from a shared channel then works in the same browser.",
        )
    if link.subject and not same_person(person, link.subject):
        return LinkPage("forbidden", link, request, "This link was sent to someone else.", person)
    if used is not None:
        did = "approved" if used.action == "approve" else "denied"
        at = f"{used.used_at:%Y-%m-%d %H:%M} UTC"
        text = f"You already used this link: you {did} this request at {at}."
        return LinkPage("gone", link, request, text, person)
    if request.state is not State.PENDING or now >= request.expires_at:
        return LinkPage("gone", link, request, outcome_text(request, now), person)
    if now >= link.expires_at:
        return LinkPage("gone", link, request, "This link has expired.", person)
    mine = _approval_by(request, person)
    if link.action == "approve" and mine is not None:  # approving twice always fails
        text = (
            f"You already approved this request at {mine.at:%Y-%m-%d %H:%M} UTC "
            f"(via {mine.via}); it is waiting for other approvals."
        )
        return LinkPage("gone", link, request, text, person)
    if person == request.requester:
        text = "You asked for this access: the requester can never decide their own request."
        return LinkPage("forbidden", link, request, text, person)
    if not request.can_decide(person, ctx.policy.current.directory, now):
        text = "You are not an eligible approver of this request."
        return LinkPage("forbidden", link, request, text, person)
    return LinkPage("confirm", link, request, "", person)


def decide_from_link(
    ctx: Context,
    uses_of: LinkUsesOf,
    *,
    link: Link,
    person: str | None,
    comment: str | None = None,
) -> LinkOutcome:
    """Approve or deny as ``person`` through ``link``, once."""
    if link.action == "view":
        raise Invalid("a View link does not decide")
    page = open_link(ctx, uses_of, link=link, person=person)
    if page.kind == "missing":
        raise NotFound("this request does not exist")
    if page.kind == "gone":
        raise Gone(page.message)
    if page.kind != "confirm" or person is None:
        raise Forbidden(page.message)
    text = (comment or "").strip() or None
    if link.action == "deny" and text is None:  # SPEC §3: on every path, as in the API
        raise Invalid("a deny needs a reason: say why in the box, then deny again")
    use = _reserve(ctx, uses_of, link, person)
    try:
        result = _decide(ctx, link, person, text)
    except Exception as exc:
        _undo(ctx, uses_of, use, link, page.request)
        if isinstance(exc, Conflict):
            raise Gone(str(exc)) from None
        raise
    return LinkOutcome(result.request, link.action, person)


def _decide(ctx: Context, link: Link, person: str, text: str | None) -> decisions.Decision:
    if link.action == "approve":
        return decisions.approve_request(
            ctx, request_id=link.request_id, approver=person, comment=text, via="link"
        )
    return decisions.deny_request(
        ctx, request_id=link.request_id, approver=person, reason=text or "", via="link"
    )


def _reserve(ctx: Context, uses_of: LinkUsesOf, link: Link, person: str) -> LinkUse:
    now = ctx.clock.now()
    use = LinkUse(use_key(link.request_id, person), link.request_id, person, link.action, now)
    with ctx.uow() as uow:
        fresh = uses_of(uow).reserve(use)
        uow.commit()
    if not fresh:
        raise Gone("this link was already used")
    return use


def _undo(
    ctx: Context, uses_of: LinkUsesOf, use: LinkUse, link: Link, before: AccessRequest | None
) -> None:
    """Release ``use`` unless its decision was recorded after all; a failure here leaves
    the link used (logged), and the decision's own error is what the caller hears."""
    try:
        if not _happened(ctx, link, use.subject, before):
            _release(ctx, uses_of, use)
    except Exception as exc:
        log.error("link use for request %s not released: %s", link.request_id, exc)


def _happened(ctx: Context, link: Link, person: str, before: AccessRequest | None) -> bool:
    """Whether ``person``'s decision through ``link`` was recorded after all (a failure
    after the decision committed): then the link stays used."""
    with ctx.uow(write=False) as uow:
        now = uow.requests.get(link.request_id)

    def count(request: AccessRequest | None) -> int:
        return sum(
            1
            for a in (request.approvals if request else ())
            if same_person(a.approver, person) and a.decision == link.action and a.via == "link"
        )

    return count(now) > count(before)


def _release(ctx: Context, uses_of: LinkUsesOf, use: LinkUse) -> None:
    with ctx.uow() as uow:
        uses_of(uow).release(use)
        uow.commit()


def _approval_by(request: AccessRequest, person: str) -> Approval | None:
    return next(
        (
            a
            for a in request.approvals
            if a.decision == "approve" and same_person(a.approver, person)
        ),
        None,
    )


def claim_once(
    ctx: Context, uses_of: LinkUsesOf, *, key: str, request_id: str, subject: str, action: str
) -> bool:
    """Record a one-time key (a Slack call's signature); False when it was seen before."""
    now = ctx.clock.now()
    with ctx.uow() as uow:
        fresh = uses_of(uow).reserve(LinkUse(key, request_id, subject, action, now))
        uow.commit()
    return fresh


def outcome_text(request: AccessRequest, now: datetime | None = None) -> str:
    """One sentence saying what happened to ``request``."""
    state = request.state
    last = next((a for a in reversed(request.approvals)), None)
    if state is State.PENDING:
        if now is not None and now >= request.expires_at:
            return "This request expired with no decision."
        return "This request is waiting for a decision."
    if state is State.DENIED and last is not None:
        return f"This request was denied by {last.approver}."
    if state in (State.APPROVED, State.ACTIVE):
        who = "policy" if last is None else last.approver
        return f"This request was approved (last approval by {who})."
    if state is State.EXPIRED:
        if request.decided_at is None:
            return "This request expired with no decision."
        return "This grant has ended."
    if state is State.REVOKED:
        return "This request was withdrawn or revoked."
    return f"This request is {state.value}."
