"""The webhook backend against a real local HTTP receiver that checks Standard Webhooks
signatures: grant before active, a non-2xx answer retried (same ``webhook-id``) while the
request stays approved, and revoke plus ``session.terminate`` at early revocation."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.policy import load_policy
from jitgate.adapters.signing import new_secret, verify_webhook
from jitgate.domain.creation import Draft
from jitgate.domain.states import State
from jitgate.service import access, decisions, lifecycle
from jitgate.service import requests as use
from jitgate.service.ports import AuditQuery

POLICY = """
version: 1
settings: {{pending_ttl: 1h, admins: [security]}}
directory:
  users:
    jane@example.com: {{groups: [sre]}}
resources:
  k8s-dev: {{type: kubernetes, environment: development}}
roles:
  k8s-dev:
    grants: [{{type: kubernetes, environment: development}}]
    requestable_by: [sre]
    default_duration: 1h
    max_duration: 8h
    backends: [k8s-hook]
approval:
  - match: {{type: kubernetes, environment: development}}
    rule: self
backends:
  k8s-hook: {{type: webhook, url: "{url}", secret_env: JG_TEST_HOOK_SECRET}}
"""


class Receiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.status = 204
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    msg_id = verify_webhook(
                        receiver.secret, dict(self.headers), body, now=int(time.time())
                    )
                except ValueError:
                    receiver.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                receiver.received.append((msg_id, json.loads(body)))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def kinds(self) -> list[str]:
        return [body["type"] for _, body in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    sink = Receiver(new_secret())
    yield sink
    sink.close()


def test_grants_revokes_and_session_terminations_are_signed_posts(
    receiver: Receiver, make_ctx: Any, tmp_path: Path
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(url=receiver.url))
    start = datetime.now(UTC).replace(microsecond=0)
    ctx, clock = make_ctx(f"sqlite:///{tmp_path}/jg.db", load_policy(path), start=start)
    wire_enforcement(ctx, ctx.uow.db, environ={"JG_TEST_HOOK_SECRET": receiver.secret})

    def ask() -> str:
        draft = Draft(roles=("k8s-dev",), reason="debug pod", duration=timedelta(hours=1))
        return use.create_request(ctx, requester="jane@example.com", draft=draft).request.id

    first = ask()
    assert receiver.kinds() == ["grant"] and receiver.bad_signatures == 0
    assert receiver.received[0][1]["data"]["request_id"] == first

    receiver.status = 503
    second = ask()
    with ctx.uow(write=False) as uow:
        assert (request := uow.requests.get(second)) and request.state is State.APPROVED
        failed = uow.audit.find(AuditQuery(request_id=second, type="backend.failed"))
    assert failed[0].data["error"] == "webhook grant: answered HTTP 503"
    receiver.status = 200
    clock.advance(timedelta(seconds=6))
    lifecycle.tick(ctx)
    with ctx.uow(write=False) as uow:
        assert (request := uow.requests.get(second)) and request.state is State.ACTIVE
    assert receiver.received[1][0] == receiver.received[2][0]  # a retry keeps its id

    session = access.open_session(ctx, user="jane@example.com", resource="k8s-dev", kind="exec")
    assert session.request_id == first
    decisions.revoke_request(ctx, request_id=first, actor="jane@example.com", reason="done")
    # the second grant still covers the user on this backend: no revoke, but the sessions
    # of the revoked grant are ended at the gateway
    assert receiver.kinds() == ["grant", "grant", "grant", "session.terminate"]
    terminate = receiver.received[-1][1]["data"]
    assert terminate["request_id"] == first and terminate["user"] == "jane@example.com"
    assert [s["id"] for s in terminate["sessions"]] == [session.id]
    decisions.revoke_request(ctx, request_id=second, actor="jane@example.com", reason="done")
    assert receiver.kinds()[-2:] == ["revoke", "session.terminate"]
    assert receiver.received[-2][1]["data"]["ended_early"] is True
    assert receiver.bad_signatures == 0
