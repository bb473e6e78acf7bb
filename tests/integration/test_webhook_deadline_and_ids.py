"""The webhook backend against real local HTTP receivers, through the
service as a user meets it:

- ``timeout`` is a deadline for the whole call: a receiver trickling its answer's head
  fails the call after ``timeout`` seconds (``backend.failed``, retried), and one trickling
  a body after a 2xx head does not hold the call at all (only the status is used);
- the answer's body is not read: a 128 MB answer is dropped after the head;
- ``webhook-id`` names one instruction: a receiver that dedupes on it, as the backend's
  docs tell receivers to, ends up with the grant's real end after grant -> extension ->
  extension revoked (the third message repeats the first one's content, not its id), and
  the retries of one instruction keep its id.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_webhook_backend import POLICY as BASE_POLICY

from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.clock import ManualClock
from jitgate.adapters.policy import load_policy
from jitgate.adapters.signing import new_secret, verify_webhook
from jitgate.domain.creation import Draft
from jitgate.domain.states import State
from jitgate.service import decisions, lifecycle
from jitgate.service import requests as use
from jitgate.service.context import Context
from jitgate.service.ports import AuditQuery
from jitgate.service.reconcile import reconcile
from served import free_port

JANE = "jane@example.com"
# test_webhook_backend's policy, the role extendable and the receiver given 1 s
POLICY = BASE_POLICY.replace(
    "    backends: [k8s-hook]", "    extendable: true\n    backends: [k8s-hook]"
).replace("secret_env: JG_TEST_HOOK_SECRET}}", "secret_env: JG_TEST_HOOK_SECRET, timeout: 1}}")
assert POLICY.count("extendable: true") == 1 and POLICY.count("timeout: 1}}") == 1
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
BIG = 128 * 1024 * 1024


@dataclass
class Sink:
    """A receiver with a behaviour: ``dedupe`` (verifies, applies each webhook-id once and
    keeps the last grant's end per user), ``trickle-head``, ``trickle-body``, ``huge``."""

    secret: str
    mode: str = "dedupe"
    fail_next: int = 0
    ids: list[tuple[str, str]] = field(default_factory=list)  # (webhook-id, type) received
    done: set[str] = field(default_factory=set)  # the webhook-ids processed
    ends_at: dict[str, str | None] = field(default_factory=dict)  # user -> what it applied
    written: int = 0
    url: str = ""

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers["content-length"]))
        sent = getattr(self, self.mode.replace("-", "_"))
        sent(handler, body)

    def dedupe(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        msg_id = verify_webhook(self.secret, dict(handler.headers), body, now=int(time.time()))
        message = json.loads(body)
        self.ids.append((msg_id, message["type"]))
        if self.fail_next:  # not processed: the sender retries it
            self.fail_next -= 1
            handler.send_response(503)
            handler.end_headers()
            return
        if msg_id not in self.done:  # a receiver deduping on webhook-id applies each once
            self.done.add(msg_id)
            data = message["data"]
            if message["type"] == "grant":
                self.ends_at[data["user"]] = data["ends_at"]
            elif message["type"] == "revoke":
                self.ends_at[data["user"]] = None
        handler.send_response(204)
        handler.end_headers()

    def trickle_head(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        self._trickle(handler, HEAD)  # ~12 s for the whole answer, a byte at a time

    def trickle_body(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n"
        handler.wfile.write(head)
        self._trickle(handler, b"x" * 40)

    def _trickle(self, handler: BaseHTTPRequestHandler, data: bytes) -> None:
        pause = 12.0 / len(data)
        try:
            for byte in data:
                handler.wfile.write(bytes([byte]))
                time.sleep(pause)
        except OSError:
            pass

    def huge(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        handler.wfile.write(f"HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n".encode())
        chunk = b"x" * (1 << 20)
        try:
            for _ in range(BIG // len(chunk)):
                handler.wfile.write(chunk)
                self.written += len(chunk)
        except OSError:
            pass


@pytest.fixture
def sink() -> Iterator[Sink]:
    state = Sink(new_secret())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            state.handle(self)
            self.close_connection = True

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def jitgate(sink: Sink, make_ctx: Any, tmp_path: Path) -> Iterator[tuple[Context, ManualClock]]:
    (tmp_path / "policy.yaml").write_text(POLICY.format(url=sink.url))
    start = datetime.now(UTC).replace(microsecond=0)
    ctx, clock = make_ctx(
        f"sqlite:///{tmp_path}/jg.db", load_policy(tmp_path / "policy.yaml"), start=start
    )
    enforcement = wire_enforcement(ctx, ctx.uow.db, environ={"JG_TEST_HOOK_SECRET": sink.secret})
    yield ctx, clock
    enforcement.close()  # the backends' HTTP client, with its pooled connections


def ask(ctx: Context) -> str:
    draft = Draft(roles=("k8s-dev",), reason="debug pod", duration=timedelta(hours=1))
    return use.create_request(ctx, requester=JANE, draft=draft).request.id


def timed(call: Callable[[], str]) -> tuple[str, float]:
    began = time.monotonic()
    result = call()
    return result, time.monotonic() - began


def audited(ctx: Context, rid: str, kind: str) -> list[dict[str, Any]]:
    with ctx.uow(write=False) as uow:
        return [e.data for e in uow.audit.find(AuditQuery(request_id=rid, type=kind))]


# -- 4. a deadline, and no body ------------------------------------------------------------


def test_a_receiver_trickling_its_answer_fails_the_call_by_the_timeout(
    sink: Sink, jitgate: tuple[Context, ManualClock]
) -> None:
    ctx, _ = jitgate
    sink.mode = "trickle-head"
    rid, elapsed = timed(lambda: ask(ctx))
    assert elapsed < 4, f"a backend call with timeout: 1 took {elapsed:.1f}s"
    (failed,) = audited(ctx, rid, "backend.failed")
    assert failed["error"].startswith("webhook grant: no answer (")
    with ctx.uow(write=False) as uow:
        request = uow.requests.get(rid)
    assert request is not None and request.state is State.APPROVED  # retried later


def test_a_2xx_answer_counts_at_its_head_however_slowly_the_body_comes(
    sink: Sink, jitgate: tuple[Context, ManualClock]
) -> None:
    ctx, _ = jitgate
    sink.mode = "trickle-body"
    rid, elapsed = timed(lambda: ask(ctx))
    assert elapsed < 4, f"the call waited {elapsed:.1f}s for a body nobody reads"
    assert audited(ctx, rid, "backend.applied")[0]["detail"] == {"status": 200}


def test_a_huge_answer_is_not_read(sink: Sink, jitgate: tuple[Context, ManualClock]) -> None:
    ctx, _ = jitgate
    sink.mode = "huge"
    rid = ask(ctx)
    assert audited(ctx, rid, "backend.applied")[0]["detail"] == {"status": 200}
    deadline = time.monotonic() + 10
    while sink.written < BIG and time.monotonic() < deadline:  # let the writer see the close
        previous = sink.written
        time.sleep(0.5)
        if sink.written == previous:
            break
    assert sink.written < 32 * 1024 * 1024, f"{sink.written >> 20} MB of the answer were read"


# -- 5. one id per instruction -------------------------------------------------------------


def test_an_end_moved_out_and_back_reaches_a_receiver_deduping_on_webhook_id(
    sink: Sink, jitgate: tuple[Context, ManualClock]
) -> None:
    ctx, clock = jitgate
    rid = ask(ctx)
    with ctx.uow(write=False) as uow:
        original = uow.requests.get(rid)
    assert original is not None and original.ends_at is not None
    first_end = original.ends_at.isoformat()
    assert sink.ends_at[JANE] == first_end

    clock.advance(timedelta(minutes=10))
    ext = use.extend_request(ctx, request_id=rid, requester=JANE, duration=timedelta(hours=1),
                             reason="more")  # fmt: skip
    assert ext.state is State.APPROVED
    assert sink.ends_at[JANE] != first_end  # the receiver heard the extension's end

    sink.fail_next = 1  # the next instruction's first attempt fails: it is retried
    clock.advance(timedelta(minutes=5))
    decisions.revoke_request(ctx, request_id=ext.id, actor=JANE, reason="done sooner")
    lifecycle.tick(ctx)
    reconcile(ctx)  # retries the refresh that failed
    with ctx.uow(write=False) as uow:
        back = uow.requests.get(rid)
    assert back is not None and back.ends_at is not None
    assert back.ends_at.isoformat() == first_end
    grants = [i for i, kind in sink.ids if kind == "grant"]
    assert len(grants) == 4, sink.ids  # grant, extension, back (failed), back (retried)
    assert grants[2] == grants[3]  # a retry keeps its instruction's id …
    assert len(set(grants)) == 3  # … and a new instruction gets a new one
    assert sink.ends_at[JANE] == first_end  # so the receiver applied it: the real end
