"""Slack interactivity: ``POST /v1/integrations/slack/actions`` (SPEC §6, RFC 10.5.4).

Invariants:
- the call is verified with slack_sdk's ``SignatureVerifier`` against the signing secret of
  a configured slack channel (``signing_secret_env``), which also refuses timestamps more
  than five minutes away; a forged call is refused (401) and changes nothing;
- a replayed call (the same signature seen before) changes nothing;
- the Slack user is mapped to a person by Slack's own answer to ``users.info`` with the bot
  token, never by anything the caller sends; the decision then goes through ``decisions``
  with ``via="slack"``, so eligibility and "never your own request" hold as for any approval;
- the original message is updated through its ``response_url`` only when that URL starts
  with the channel's ``response_url_prefix`` (``https://hooks.slack.com/``);
- only Approve decides here: Deny is a link button to the deny page, which asks for the
  reason a deny needs (SPEC §3), so its click is only acknowledged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi import APIRouter, BackgroundTasks, Request, Response
from fastapi.concurrency import run_in_threadpool
from slack_sdk.signature import SignatureVerifier

from jitgate.adapters.notifiers import slack
from jitgate.adapters.notifiers.render import slack_escape
from jitgate.adapters.notifiers.wiring import NotifyRuntime, SlackApp
from jitgate.domain.errors import DomainError
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.entrypoints.api.auth import AppDep
from jitgate.entrypoints.api.problems import problem
from jitgate.service import decisions
from jitgate.service.context import Context
from jitgate.service.delivery_send import make_links
from jitgate.service.links import claim_once
from jitgate.service.notifications import Message, RequestFacts

log = logging.getLogger("jitgate.slack")
router = APIRouter(prefix="/v1/integrations", tags=["integrations"])


@dataclass(frozen=True)
class Click:
    action: str
    request_id: str
    user_id: str
    response_url: str | None


def _verified(rt: NotifyRuntime, policy: Any, body: bytes, headers: Any) -> SlackApp | None:
    stamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    if not stamp or not signature:
        return None
    for app in rt.slack_apps(policy):
        if SignatureVerifier(app.signing_secret).is_valid(body, stamp, signature):
            return app
    return None


def _click(body: bytes) -> Click | None:
    try:
        form = parse_qs(body.decode(), max_num_fields=5)
        payload = json.loads(form["payload"][0])
        action = payload["actions"][0]
        return Click(
            action=str(action.get("action_id", "")),
            request_id=str(action.get("value", ""))[:64],
            user_id=str(payload["user"]["id"]),
            response_url=payload.get("response_url"),
        )
    except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
        return None


@router.post("/slack/actions", include_in_schema=False)
async def slack_actions(request: Request, app: AppDep, background: BackgroundTasks) -> Response:
    """Approve or Deny pressed on a jitgate message in Slack."""
    rt = app.notify if isinstance(getattr(app, "notify", None), NotifyRuntime) else None
    if rt is None:
        return problem(503, "notifications are not set up in this process")
    body = await request.body()
    slack_app = _verified(rt, app.ctx.policy.current, body, request.headers)
    if slack_app is None:
        return problem(401, "the Slack signature is missing, wrong or too old")
    click = _click(body)
    if click is None or click.action != slack.APPROVE:
        # Deny and View open their pages (a deny needs a reason, asked for there); Slack
        # still reports the click, which is only acknowledged
        return Response(status_code=200)
    seen = (
        "slack:"
        + hashlib.sha256(
            (
                request.headers["x-slack-request-timestamp"] + request.headers["x-slack-signature"]
            ).encode()
        ).hexdigest()
    )
    answer = await run_in_threadpool(_handle, app, rt, slack_app, click, seen)
    if answer is not None and _allowed(slack_app, click.response_url):
        background.add_task(_respond, rt.http, str(click.response_url), answer)
    return Response(status_code=200)


def _handle(
    app: Any, rt: NotifyRuntime, slack_app: SlackApp, click: Click, seen: str
) -> dict[str, Any] | None:
    ctx = app.ctx
    if not claim_once(
        ctx,
        rt.link_uses_of,
        key=seen,
        request_id=click.request_id,
        subject=click.user_id,
        action="approve",
    ):
        log.warning("replayed Slack action ignored")
        return None
    person = _email_of(rt.http, slack_app, click.user_id)
    if person is None:
        return _ephemeral(
            "jitgate could not tell who you are from Slack; use the link in your email instead."
        )
    try:
        request = decisions.approve_request(
            ctx, request_id=click.request_id, approver=person, via="slack"
        ).request
    except DomainError as exc:
        return _ephemeral(f"Not recorded: {exc}")
    return _updated(rt, slack_app, request, person, ctx)


def _email_of(http: httpx.Client, app: SlackApp, user_id: str) -> str | None:
    """The email Slack itself holds for ``user_id`` (``users.info``, bot token)."""
    if not app.bot_token or not user_id.isalnum():
        return None
    try:
        response = http.get(
            f"{app.api_url.rstrip('/')}/users.info",
            params={"user": user_id},
            headers={"authorization": f"Bearer {app.bot_token}"},
            timeout=5.0,
        )
        data = response.json()
    except (httpx.HTTPError, ValueError):
        log.warning("Slack users.info failed")
        return None
    user = data.get("user") or {}
    if not data.get("ok") or user.get("deleted") or user.get("is_bot"):
        return None
    email = (user.get("profile") or {}).get("email")
    return str(email).strip().lower() if email else None


def _ephemeral(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "replace_original": False, "text": slack_escape(text)}


def _updated(
    rt: NotifyRuntime, slack_app: SlackApp, request: AccessRequest, person: str, ctx: Context
) -> dict[str, Any]:
    """The original message after ``person`` approved in Slack, re-rendered with the
    outcome: Approve, Deny and View while it is still pending (for the channel's other
    approvers, with links bound to nobody, as on the message it replaces), View after."""
    pending = request.state is State.PENDING
    now = ctx.clock.now()
    message = Message(
        event="request.created" if pending else "request.approved",
        channel=slack_app.channel,
        recipient=None,
        request=RequestFacts.of(request),
        actor=person,
        at=now.isoformat(),
        asks_decision=pending,
    )
    message = replace(message, links=make_links(rt.delivery, message, ctx.policy.current, now))
    blocks = slack.blocks(message, interactive=True)
    note = (
        f"{slack_escape(person)} approved this request in Slack; it is now {request.state.value}."
    )
    blocks.append({"type": "context", "elements": [slack.mrkdwn(note)]})
    return {"replace_original": True, "text": note, "blocks": blocks}


def _allowed(app: SlackApp, url: str | None) -> bool:
    return bool(url) and str(url).startswith(app.response_url_prefix)


def _respond(http: httpx.Client, url: str, answer: dict[str, Any]) -> None:
    try:
        http.post(url, json=answer, timeout=5.0)
    except httpx.HTTPError as exc:
        log.warning("could not update the Slack message: %s", type(exc).__name__)
