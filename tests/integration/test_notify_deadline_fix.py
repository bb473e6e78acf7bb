"""A slow peer holds up only its own messages (SPEC §6, README "Outbox"): every send ends by
its total deadline however a peer trickles its answer (HTTP headers or body, an SMTP
greeting), and a page on another channel goes out while a slow channel trickles; against
real local servers that answer a byte at a time."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from notify_sinks import HttpSink, Notify, channels, peer_env, with_notifications

from jitgate.adapters.notifiers.base import NotifierDeps, send_http
from jitgate.adapters.notifiers.deadline import deadline_client
from jitgate.adapters.notifiers.email import EmailNotifier
from jitgate.domain.policy import Policy
from jitgate.service.delivery import DeliveryFailed, DeliveryOptions, list_notifications
from jitgate.service.delivery_deadline import send_deadline
from jitgate.service.notifications import Message, RequestFacts

pytest_plugins = ["conftest_notify"]

HTTP_BODY = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n"
HTTP_HEAD = b"HTTP/1.1 200 OK\r\nx-slow: " + b"a" * 1000


@dataclass
class Trickler:
    """A TCP server that reads what it is sent, writes ``prefix`` at once (if told), then
    ``drip`` a byte every ``every`` seconds until the client hangs up."""

    prefix: bytes
    drip: bytes
    every: float = 0.2
    reads_request: bool = True
    port: int = 0
    hung_up: list[float] = field(default_factory=list)  # monotonic times clients left
    connected: threading.Event = field(default_factory=threading.Event)
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Trickler:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _serve(self) -> None:
        assert self._sock is not None
        with self._sock:
            while not self._stop.is_set():
                try:
                    conn, _ = self._sock.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                if self.reads_request:
                    _read_request(conn)
                self.connected.set()
                conn.sendall(self.prefix)
                for byte in self.drip:
                    if self._stop.wait(self.every):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                self.hung_up.append(time.monotonic())


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        body += conn.recv(65536)


def hung_up(peer: Trickler, timeout: float = 3.0) -> float:
    """When the first client hung up on ``peer`` (seen when its next byte fails to go)."""
    deadline = time.monotonic() + timeout
    while not peer.hung_up and time.monotonic() < deadline:
        time.sleep(0.02)
    assert peer.hung_up, "the client kept the trickling connection open"
    return peer.hung_up[0]


@pytest.fixture
def trickler() -> Iterator[Callable[..., Trickler]]:
    made: list[Trickler] = []

    def make(prefix: bytes, drip: bytes, **options: object) -> Trickler:
        server = Trickler(prefix, drip, **options).start()  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.mark.parametrize(
    "prefix, drip",
    [(HTTP_BODY, b"x" * 1000), (b"", HTTP_HEAD)],
    ids=["body trickled", "headers trickled"],
)
def test_an_http_send_ends_by_its_deadline_however_the_peer_trickles(
    trickler: Callable[..., Trickler], prefix: bytes, drip: bytes
) -> None:
    """Each read gets a byte well within httpx's 10 s read timeout; the send still ends
    when its 0.6 s are up, and the connection is dropped."""
    peer = trickler(prefix, drip, every=0.1)
    client = deadline_client(httpx.Limits(max_connections=4), httpx.Timeout(10.0))
    try:
        began = time.monotonic()
        with send_deadline(0.6), pytest.raises(DeliveryFailed) as failed:
            send_http(client, f"{peer.url}/slack/webhook", body=b"{}")
        took = time.monotonic() - began
    finally:
        client.close()
    assert failed.value.reason == "timed out after 0.6s" and failed.value.retryable
    assert 0.5 < took < 1.2, took
    assert hung_up(peer) - began < 1.5, "the client kept the trickling connection open"


def test_outside_a_send_the_client_is_plain_httpx(http_sink: HttpSink) -> None:
    client = deadline_client(httpx.Limits(max_connections=4), httpx.Timeout(5.0))
    try:
        answer = client.post(f"{http_sink.url}/hook", content=b'{"a":1}')
        assert answer.status_code == 200 and answer.text == "ok"
        with send_deadline(5):
            assert send_http(client, f"{http_sink.url}/hook", body=b"{}").status_code == 200
    finally:
        client.close()
    assert [r.body for r in http_sink.paths("/hook")] == [b'{"a":1}', b"{}"]


def test_an_smtp_server_that_trickles_is_cut_off_at_the_deadline(
    trickler: Callable[..., Trickler],
) -> None:
    greeting = b"220 slow.example.com ESMTP " + b"." * 200 + b"\r\n"
    relay = trickler(b"", greeting, every=0.1, reads_request=False)
    config = {"smtp_host": "127.0.0.1", "smtp_port": relay.port, "sender": "jit@example.com"}
    notifier = EmailNotifier("mail", config, NotifierDeps(http=httpx.Client(), env={}))
    facts = RequestFacts(
        id="r1",
        requester="jane.doe@example.com",
        roles=("sre-oncall",),
        resources=(),
        duration_seconds=3600,
        reason="INC-1",
        urgency="normal",
        purpose=None,
        state="pending",
        created_at="2026-03-02T10:00:00+00:00",
        expires_at="2026-03-02T11:00:00+00:00",
    )
    message = Message(
        "request.created",
        "mail",
        "mark.lee@example.com",
        facts,
        "jane.doe@example.com",
        "",
        id="n1",
    )
    began = time.monotonic()
    with send_deadline(0.6), pytest.raises(DeliveryFailed) as failed:
        notifier.send(message)
    took = time.monotonic() - began
    assert failed.value.reason == "timed out after 0.6s"
    assert 0.5 < took < 1.2, took


def test_a_trickling_slack_holds_up_no_page_on_another_channel(
    notify: Callable[..., Notify],
    db_url: str,
    example_policy: Policy,
    http_sink: HttpSink,
    trickler: Callable[..., Trickler],
) -> None:
    """The black-box case: Slack answers 200 with content-length 1000, then a byte at a
    time. The scheduler's job keeps ticking; an urgent request created after the first
    drain's budget is paged (PagerDuty and the SIEM webhook) at once, while Slack still
    trickles; the Slack send ends at its deadline and is retried later."""
    slack = trickler(HTTP_BODY, b"x" * 1000, every=0.3)
    routes = {
        "request.created": ("approvers", ("slack",)),
        "request.urgent": ("oncall", ("pagerduty", "siem")),
    }
    env = {**peer_env(http_sink), "SLACK_URL": f"{slack.url}/slack/webhook"}
    options = DeliveryOptions(
        max_attempts=4, concurrency=4, send_timeout=3.0, drain_seconds=0.5, poll_seconds=0.05
    )
    n = notify(
        db_url, with_notifications(example_policy, channels(http_sink), routes), env, options
    )
    ticking = threading.Event()

    def tick() -> None:  # the scheduler, at a brisk pace
        while not ticking.wait(0.1):
            n.rt.job()

    ticker = threading.Thread(target=tick, daemon=True)
    first = n.create()
    ticker.start()
    try:
        assert slack.connected.wait(5), "the Slack send never started"
        began = time.monotonic()
        time.sleep(0.8)  # past the first drain's budget, with Slack still trickling
        n.create(urgency="high")
        created = time.monotonic()
        (page,) = http_sink.wait_for("/pagerduty", 1, timeout=5)
        (siem,) = http_sink.wait_for("/hook", 1, timeout=5)
        assert page.json()["event_action"] == "trigger"
        assert max(page.at, siem.at) - created < 1.8, "the page waited for Slack"
        assert max(page.at, siem.at) - began < options.send_timeout  # Slack still trickled
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            rows = list_notifications(n.ctx.uow, n.rt.delivery.store_of, failed_only=True)
            if any(r.request_id == first.id for r in rows):
                break
            time.sleep(0.05)
    finally:
        ticking.set()
        ticker.join(5)
        n.rt.job.wait(10)
    (slow,) = [r for r in rows if r.request_id == first.id]
    assert (slow.status, slow.attempts, slow.last_error) == ("pending", 1, "timed out after 3s")
    assert hung_up(slack) - began < options.send_timeout + 1  # it noticed on its next byte
