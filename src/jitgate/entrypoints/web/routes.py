"""The one-click link pages (SPEC §6): ``GET /l/{token}`` shows, ``POST /l/{token}`` decides.

How a person proves who they are: a link is bound to the approver it was sent to. With
``JITGATE_WEB_USER_HEADER`` set (jitgate behind an SSO proxy), that header names the person
and nothing else does. Otherwise the browser keeps a signed session cookie naming the person
whose personal link last opened in it (having the link proves having the mailbox or Slack
DM it was sent to, as with a sign-in link), and the requests whose personal links it opened:
a personal link that can still act signs the browser in as its own person, replacing a
session of anyone else (so a link of someone else planted in a browser never locks its owner
out of their own links, and the page always names who is signed in), and a link from a
shared channel (bound to nobody) acts only in a browser that opened its person's own link
to the same request. So a leaked personal link never lends its person's name to any other
request, and a form shown before someone else's link signed the browser in no longer acts.

Invariants: a GET never changes a request or a link (mail scanners prefetch links); the
POST needs the session cookie (``SameSite=Lax``, ``HttpOnly``; ``Secure`` over https, and
always with ``JITGATE_COOKIE_SECURE=1`` behind a proxy that ends TLS) and a form token bound
to the link and that cookie, so a cross-site or replayed form is refused (403); every answer
is a page with ``no-store``, ``no-referrer`` and no framing; a bad token is 404, never a 500;
what people wrote (reason, purpose, comments) is shown ``plain``, as every channel shows it.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from jitgate.adapters.links import HmacLinkSigner, WebSession
from jitgate.adapters.notifiers.render import human_duration, plain
from jitgate.adapters.notifiers.wiring import NotifyRuntime
from jitgate.domain.errors import DomainError, Forbidden, Gone, Invalid, NotFound, Unavailable
from jitgate.entrypoints.api.auth import AppDep
from jitgate.entrypoints.api.schemas import NUL
from jitgate.service.links import BadLink, Link, LinkPage, decide_from_link, open_link

router = APIRouter(tags=["links"], include_in_schema=False)
COOKIE = "jitgate_session"
MAX_SESSION_REQUESTS = 20  # the requests a browser session acts for (a cookie stays small)
STATUS = {"confirm": 200, "view": 200, "gone": 410, "forbidden": 403, "missing": 404}
HEADINGS = {
    "confirm": "Confirm your decision",
    "view": "Access request",
    "gone": "This link can no longer be used",
    "forbidden": "Not allowed",
    "missing": "Link not recognised",
}
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


@lru_cache(maxsize=1)
def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(("html",), default=True),
    )
    env.filters["plain"] = plain  # what people wrote, cleaned as every channel cleans it
    return env


def _page(status: int, heading: str, message: str = "", **context: Any) -> HTMLResponse:
    request = context.get("request")
    duration = human_duration(int(request.duration.total_seconds())) if request else ""
    html = (
        _templates()
        .get_template("link.html")
        .render(heading=heading, message=message, duration=duration, **context)
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _runtime(app: Any) -> NotifyRuntime | None:
    notify = getattr(app, "notify", None)
    return notify if isinstance(notify, NotifyRuntime) else None


def _person(
    request: Request, rt: NotifyRuntime, session: WebSession | None, link: Link
) -> str | None:
    """Who acts through ``link``: the SSO header's person; else the browser's, for a link
    bound to a person (judged against it), and for a link bound to nobody only if this
    browser opened its person's own link to the same request."""
    header = rt.web.user_header
    if header:
        value = request.headers.get(header, "").strip().lower()
        return value or None
    if session is None or not session.subject:
        return None
    return session.subject if link.subject or link.request_id in session.requests else None


def _session(request: Request, signer: HmacLinkSigner) -> WebSession | None:
    return signer.read_session(request.cookies.get(COOKIE), int(time.time()))


def _set_cookie(
    response: HTMLResponse, request: Request, rt: NotifyRuntime, value: str, max_age: int
) -> None:
    secure = request.url.scheme == "https" or rt.web.cookie_secure  # forced behind a TLS proxy
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path="/l/",
        httponly=True,
        samesite="lax",
        secure=secure,
    )


def _read(rt: NotifyRuntime, token: str) -> Link | None:
    try:
        return rt.signer.read(token)
    except BadLink:
        return None


@router.get("/l/{token}", response_class=HTMLResponse)
def show_link(token: str, request: Request, app: AppDep) -> HTMLResponse:
    rt = _runtime(app)
    link = _read(rt, token) if rt else None
    if rt is None or link is None:
        return _page(404, HEADINGS["missing"], "This link was not made by this server.")
    session = _session(request, rt.signer)
    person = _person(request, rt, session, link)
    if rt.web.user_header:  # the header names the person; the cookie only holds the nonce
        signs_in = session is None
    else:  # a person's own link signs the browser in as them, for this request, whoever
        # was signed in before: the latest personal link wins
        signs_in = bool(link.subject) and (
            session is None
            or session.subject != link.subject
            or link.request_id not in session.requests
        )
        person = link.subject if signs_in else person
    page = open_link(app.ctx, rt.link_uses_of, link=link, person=person)
    if not (signs_in and page.kind == "confirm"):
        return _render(page, rt, token, session)
    # only a link that can still act signs a browser in, and no longer than the link itself
    # would last: a used, expired or view link never does
    wall = int(time.time())
    left = (link.expires_at - app.ctx.clock.now()).total_seconds()
    ends = wall + int(max(1, min(rt.web.session_hours * 3600, left)))
    if session is not None and session.subject and session.subject == link.subject:
        # the same person: this request joins the others, whose open forms keep working
        requests = (*session.requests, link.request_id)[-MAX_SESSION_REQUESTS:]
        cookie = rt.signer.session(
            link.subject, max(ends, session.expires), session.nonce, requests
        )
    else:
        subject = "" if rt.web.user_header else link.subject
        requests = (link.request_id,) if subject else ()
        cookie = rt.signer.session(subject, ends, None, requests)
    session = rt.signer.read_session(cookie, wall)
    response = _render(page, rt, token, session)
    _set_cookie(response, request, rt, cookie, (session.expires if session else ends) - wall)
    return response


def _render(
    page: LinkPage, rt: NotifyRuntime, token: str, session: WebSession | None
) -> HTMLResponse:
    form = None
    if page.kind == "confirm" and session is not None:
        form = {
            "csrf": rt.signer.csrf(token, session.nonce),
            "person": page.person,
            "action": page.link.action,
        }
    heading = HEADINGS[page.kind]
    if page.kind == "confirm":
        heading = f"{'Approve' if page.link.action == 'approve' else 'Deny'} this request?"
    return _page(STATUS[page.kind], heading, page.message, request=page.request, form=form)


@router.post("/l/{token}", response_class=HTMLResponse)
def decide_link(
    token: str,
    request: Request,
    app: AppDep,
    csrf: str = Form(default="", max_length=200),
    comment: str = Form(default="", max_length=2000),
) -> HTMLResponse:
    rt = _runtime(app)
    link = _read(rt, token) if rt else None
    if rt is None or link is None:
        return _page(404, HEADINGS["missing"], "This link was not made by this server.")
    session = _session(request, rt.signer)
    cross_site = request.headers.get("sec-fetch-site", "") == "cross-site" or _foreign(
        request, app.ctx.policy.current.settings.public_url
    )
    if session is None or cross_site or not rt.signer.check_csrf(token, session.nonce, csrf):
        return _page(
            403,
            HEADINGS["forbidden"],
            "This form has expired or did not come from this page: open the link again.",
        )
    person = _person(request, rt, session, link)
    if NUL in comment:
        return _refused(Invalid("the comment must not contain NUL characters"), app, link)
    try:
        outcome = decide_from_link(
            app.ctx, rt.link_uses_of, link=link, person=person, comment=comment
        )
    except DomainError as exc:
        return _refused(exc, app, link)
    did = "approved" if outcome.action == "approve" else "denied"
    return _page(
        200, f"You {did} this request", _after(outcome.request.state.value), request=outcome.request
    )


def _foreign(request: Request, public_url: str | None) -> bool:
    """An ``Origin`` header naming another site than the page's own (its ``Host``) or
    jitgate's ``public_url``; no header, or ``null`` (some privacy settings), is left to
    the cookie and the form token."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return False
    seen = urlsplit(origin).netloc.lower()
    own = {request.headers.get("host", "").lower()}
    if public_url:
        own.add(urlsplit(public_url).netloc.lower())
    return seen not in own


def _refused(exc: DomainError, app: Any, link: Link) -> HTMLResponse:
    if isinstance(exc, Unavailable):  # nothing changed, the link is still good: try again
        page = _page(503, "The decision was not recorded", str(exc))
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    kind = (
        "gone"
        if isinstance(exc, Gone)
        else "forbidden"
        if isinstance(exc, Forbidden)
        else ("missing" if isinstance(exc, NotFound) else "invalid")
    )
    status = {"gone": 410, "forbidden": 403, "missing": 404}.get(kind, 422)
    heading = HEADINGS.get(kind, "The decision was not recorded")
    request = None
    if kind != "missing":
        with app.ctx.uow(write=False) as uow:
            request = uow.requests.get(link.request_id)
    if isinstance(exc, Invalid):
        return _page(422, heading, str(exc), request=request)
    return _page(status, heading, str(exc), request=request)


def _after(state: str) -> str:
    if state == "pending":
        return "Your approval is recorded; the request still needs other approvals."
    return f"The request is now {state}."
