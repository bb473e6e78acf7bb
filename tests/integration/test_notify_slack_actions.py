"""Slack interactivity (``POST /v1/integrations/slack/actions``) against a served jitgate and
a fake Slack Web API on a local HTTP sink: signature, replay, identity, eligibility, update."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from notify_sinks import (
    SIGNING_SECRET,
    HttpSink,
    Notify,
    ServedApi,
    channels,
    peer_env,
    slack_id,
    with_notifications,
)
from slack_sdk.signature import SignatureVerifier

from jitgate.bootstrap import App
from jitgate.config import Settings
from jitgate.domain.policy import Policy
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.entrypoints.api.app import create_app

pytest_plugins = ["conftest_notify"]

MARK, SAM, JANE = "mark.lee@example.com", "sam@example.com", "jane.doe@example.com"
PATH = "/v1/integrations/slack/actions"


class SlackCaller:
    def __init__(self, n: Notify, served: ServedApi, sink: HttpSink) -> None:
        self.n, self.served, self.sink = n, served, sink
        self.http = httpx.Client(base_url=served.url, timeout=10)

    def body(
        self,
        request_id: str,
        user: str,
        action: str = "jitgate.approve",
        response_url: str | None = None,
        **user_extra: Any,
    ) -> bytes:
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": "someone", **user_extra},
            "team": {"id": "T1"},
            "actions": [
                {
                    "action_id": action,
                    "value": request_id,
                    "type": "button",
                    "block_id": f"jitgate:{request_id}",
                }
            ],
            "response_url": response_url or f"{self.sink.url}/slack/response/T1/1/abc",
        }
        return urlencode({"payload": json.dumps(payload)}).encode()

    def signed(
        self, body: bytes, stamp: int | None = None, secret: str = SIGNING_SECRET
    ) -> dict[str, str]:
        ts = str(stamp if stamp is not None else int(time.time()))
        signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
        assert signature is not None
        return {
            "x-slack-request-timestamp": ts,
            "x-slack-signature": signature,
            "content-type": "application/x-www-form-urlencoded",
        }

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.http.post(PATH, content=body, headers=headers)

    def request(self, request_id: str) -> AccessRequest:
        with self.n.ctx.uow(write=False) as uow:
            found = uow.requests.get(request_id)
        assert found is not None
        return found

    def responses(self, count: int) -> list[dict[str, Any]]:
        return [r.json() for r in self.sink.wait_for("/slack/response/", count, timeout=5)]


@pytest.fixture
def slack_api(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> Iterator[SlackCaller]:
    policy = with_notifications(example_policy, channels(http_sink), {})
    n = notify(db_url, policy, peer_env(http_sink))
    app = App(Settings(database_url=db_url), None, n.ctx, notify=n.rt)  # type: ignore[arg-type]
    served = ServedApi(create_app(app))
    caller = SlackCaller(n, served, http_sink)
    try:
        yield caller
    finally:
        caller.http.close()
        served.stop()


def test_an_eligible_approver_approves_and_the_message_is_updated(slack_api: SlackCaller) -> None:
    request = slack_api.n.create()
    body = slack_api.body(request.id, slack_id(SAM))
    headers = slack_api.signed(body)
    assert slack_api.post(body, headers).status_code == 200
    found = slack_api.request(request.id)
    assert [(a.approver, a.via) for a in found.approvals] == [(SAM, "slack")]
    (update,) = slack_api.responses(1)
    assert update["replace_original"] is True and "sam@example.com approved" in update["text"]
    actions = next(b for b in update["blocks"] if b["type"] == "actions")["elements"]
    # still pending: the channel's other approvers keep Approve, Deny and View
    assert [a["action_id"] for a in actions] == ["jitgate.approve", "jitgate.deny", "jitgate.view"]
    assert all(a["url"].startswith("http") for a in actions[1:])

    # the same call again (a replay inside the five minutes) changes nothing
    assert slack_api.post(body, headers).status_code == 200
    assert len(slack_api.request(request.id).approvals) == 1
    time.sleep(0.3)
    assert len(slack_api.sink.paths("/slack/response/")) == 1

    second = slack_api.body(request.id, slack_id(MARK))
    assert slack_api.post(second, slack_api.signed(second)).status_code == 200
    assert slack_api.request(request.id).state in (State.APPROVED, State.ACTIVE)
    final = slack_api.responses(2)[-1]
    assert all(
        b["type"] != "actions" or all(e["action_id"] == "jitgate.view" for e in b["elements"])
        for b in final["blocks"]
    )


def test_forged_and_stale_calls_change_nothing(slack_api: SlackCaller) -> None:
    request = slack_api.n.create()
    body = slack_api.body(request.id, slack_id(SAM))
    forged = slack_api.signed(body, secret="not-the-signing-secret")
    assert slack_api.post(body, forged).status_code == 401
    stale = slack_api.signed(body, stamp=int(time.time()) - 6 * 60)
    assert slack_api.post(body, stale).status_code == 401
    headers = slack_api.signed(body)
    tampered = body.replace(b"approve", b"deny")
    assert slack_api.post(tampered, headers).status_code == 401
    assert slack_api.post(body, {}).status_code == 401
    assert slack_api.request(request.id).approvals == ()
    assert slack_api.sink.paths("/slack/response/") == []


def test_the_requester_cannot_approve_even_claiming_another_email(
    slack_api: SlackCaller,
) -> None:
    request = slack_api.n.create()
    body = slack_api.body(request.id, slack_id(JANE), email=SAM, name=SAM)
    assert slack_api.post(body, slack_api.signed(body)).status_code == 200
    (answer,) = slack_api.responses(1)
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert "never approve or deny their own" in answer["text"]
    assert slack_api.request(request.id).approvals == ()


def test_an_unknown_slack_user_is_not_recorded(slack_api: SlackCaller) -> None:
    request = slack_api.n.create()
    body = slack_api.body(request.id, "UNKNOWN1", email=MARK)
    assert slack_api.post(body, slack_api.signed(body)).status_code == 200
    (answer,) = slack_api.responses(1)
    assert "could not tell who you are" in answer["text"]
    assert slack_api.request(request.id).approvals == ()


def test_a_deny_click_decides_nothing_its_page_asks_for_the_reason(
    slack_api: SlackCaller,
) -> None:
    """Deny is a link button (SPEC §3: a deny needs a reason, which its page asks for);
    Slack still reports the click, which is acknowledged and changes nothing."""
    request = slack_api.n.create()
    body = slack_api.body(request.id, slack_id(MARK), action="jitgate.deny")
    assert slack_api.post(body, slack_api.signed(body)).status_code == 200
    found = slack_api.request(request.id)
    assert found.state is State.PENDING and found.approvals == ()


def test_a_foreign_response_url_is_never_called(slack_api: SlackCaller) -> None:
    request = slack_api.n.create()
    body = slack_api.body(request.id, slack_id(MARK), response_url="http://127.0.0.1:9/internal")
    assert slack_api.post(body, slack_api.signed(body)).status_code == 200
    found = slack_api.request(request.id)
    assert found.approvals[0].approver == MARK and found.approvals[0].via == "slack"
    time.sleep(0.3)
    assert slack_api.sink.paths("/slack/response/") == []


def test_view_clicks_and_other_payloads_are_acknowledged(slack_api: SlackCaller) -> None:
    request = slack_api.n.create()
    body = slack_api.body(request.id, slack_id(SAM), action="jitgate.view")
    assert slack_api.post(body, slack_api.signed(body)).status_code == 200
    junk = b"payload=not-json"
    assert slack_api.post(junk, slack_api.signed(junk)).status_code == 200
    assert slack_api.request(request.id).approvals == ()
