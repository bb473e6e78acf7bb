"""Real local peers for notification tests, and the kit the notification tests share.

``HttpSink`` is a threaded HTTP server on 127.0.0.1 that records every request (method,
path, headers, body) and answers with ``responder`` (200 ``ok`` by default); ``stop()`` and
``start()`` take it down and bring it back on the same port. ``SmtpSink`` is aiosmtpd with
STARTTLS required (a self-signed certificate made with ``cryptography``) and AUTH LOGIN/PLAIN
required after TLS; it records every accepted message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from jitgate.adapters.clock import ManualClock
from jitgate.adapters.notifiers.wiring import NotifyRuntime
from jitgate.adapters.signing import new_secret
from jitgate.domain.creation import Draft
from jitgate.domain.policy import Notifications, Policy, Route
from jitgate.domain.request import AccessRequest
from jitgate.service.context import Context
from jitgate.service.delivery import DeliveryOptions, deliver_due
from jitgate.service.requests import create_request


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[Received], tuple[int, dict[str, str], bytes]]


def ok(_: Received) -> tuple[int, dict[str, str], bytes]:
    return 200, {"content-type": "text/plain"}, b"ok"


class HttpSink:
    def __init__(self, responder: Responder = ok) -> None:
        self.responder = responder
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.port = _free_port()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                got = Received(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with sink.lock:
                    sink.received.append(got)
                status, headers, answer = sink.responder(got)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_POST = do_GET = _handle

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def paths(self, prefix: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path.startswith(prefix)]

    def wait_for(self, prefix: str, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.paths(prefix)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        return self.paths(prefix)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def self_signed(directory: Path, host: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` and 127.0.0.1: (cert.pem, key.pem)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class SmtpSink:
    """aiosmtpd on 127.0.0.1 requiring STARTTLS, then AUTH with ``username``/``password``."""

    def __init__(self, directory: Path, username: str = "jit", password: str = "s3cret") -> None:
        self.directory = directory
        self.username = username
        self.password = password
        self.messages: list[Any] = []
        self.logins: list[str] = []
        self.port = _free_port()
        self.cert, self.key = self_signed(directory)
        self._controller: Any = None

    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                import email
                from email import policy

                message = email.message_from_bytes(envelope.content, policy=policy.default)
                sink.messages.append(message)
                return "250 OK"

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
        ) -> AuthResult:
            good = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == sink.username
                and auth_data.password.decode() == sink.password
            )
            if good:
                sink.logins.append(auth_data.login.decode())
            return AuthResult(success=good)

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        self._controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=True,
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=True,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


# -- the notification test kit: peers' answers, channel configs, a wired context ------------

LINK_SECRET = "test-link-secret-0123456789abcdef"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test-token"
INJECTIONS = (
    "<!channel> <https://evil.example|Approve> @here @channel <b>bold</b>"
    "<script>alert(1)</script> [Approve](https://evil.example) **x** & co\r\n"
    "Bcc: victim@example.com\r\nSubject: forged"
)


def slack_id(email: str) -> str:
    return "U" + hashlib.sha1(email.encode()).hexdigest()[:8].upper()


class FakePeers:
    """Answers of Slack's Web API, Teams, PagerDuty and the webhook receiver, by path."""

    def __init__(self, directory: list[str]) -> None:
        self.emails = {slack_id(e): e for e in directory}
        self.status: dict[str, int] = {}

    def __call__(self, got: Received) -> tuple[int, dict[str, str], bytes]:
        for prefix, status in self.status.items():
            if got.path.startswith(prefix):
                return status, {"retry-after": "1"}, b"unavailable"
        path = urlparse(got.path).path
        if path.startswith("/slack/api/"):
            return 200, {"content-type": "application/json"}, json.dumps(self.slack(got)).encode()
        if path.startswith("/pagerduty"):
            body = {"status": "success", "dedup_key": got.json().get("dedup_key")}
            return 202, {"content-type": "application/json"}, json.dumps(body).encode()
        if path.startswith("/teams"):
            return 202, {}, b""
        return 200, {"content-type": "text/plain"}, b"ok"

    def slack(self, got: Received) -> dict[str, Any]:
        method = urlparse(got.path).path.rsplit("/", 1)[1]
        if got.headers.get("authorization") != f"Bearer {BOT_TOKEN}":
            return {"ok": False, "error": "invalid_auth"}
        if method == "users.lookupByEmail":
            email = parse_qs(got.body.decode()).get("email", [""])[0]
            known = {v: k for k, v in self.emails.items()}
            if email not in known:
                return {"ok": False, "error": "users_not_found"}
            return {"ok": True, "user": {"id": known[email]}}
        if method == "users.info":
            user = parse_qs(urlparse(got.path).query).get("user", [""])[0]
            if user not in self.emails:
                return {"ok": False, "error": "user_not_found"}
            return {"ok": True, "user": {"id": user, "profile": {"email": self.emails[user]}}}
        if method == "chat.postMessage":
            return {"ok": True, "channel": "D1", "ts": "1.0"}
        return {"ok": False, "error": "unknown_method"}


def peer_env(sink: HttpSink, smtp: SmtpSink | None = None) -> dict[str, str]:
    env = {
        "JITGATE_LINK_SECRET": LINK_SECRET,
        "SLACK_URL": f"{sink.url}/slack/webhook",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "TEAMS_URL": f"{sink.url}/teams/workflow",
        "PD_KEY": "R0UTINGKEY0123456789abcdef012345",
        "PD_URL": f"{sink.url}/pagerduty/v2/enqueue",
        "HOOK_URL": f"{sink.url}/hook",
        "HOOK_SECRET": new_secret(),
    }
    if smtp is not None:
        env |= {"SMTP_USER": smtp.username, "SMTP_PASSWORD": smtp.password}
    return env


def channels(sink: HttpSink, smtp: SmtpSink | None = None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        "slack": {"type": "slack", "webhook_url_env": "SLACK_URL", "channel": "#access"},
        "slack-dm": {
            "type": "slack",
            "bot_token_env": "SLACK_BOT_TOKEN",
            "signing_secret_env": "SLACK_SIGNING_SECRET",
            "api_url": f"{sink.url}/slack/api",
            "response_url_prefix": f"{sink.url}/slack/response/",
        },
        "teams": {"type": "teams", "webhook_url_env": "TEAMS_URL"},
        "pagerduty": {"type": "pagerduty", "routing_key_env": "PD_KEY", "events_url_env": "PD_URL"},
        "siem": {"type": "webhook", "url_env": "HOOK_URL", "secret_env": "HOOK_SECRET"},
    }
    if smtp is not None:
        out["mail"] = {
            "type": "email",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "starttls": True,
            "username_env": "SMTP_USER",
            "password_env": "SMTP_PASSWORD",
            "sender": "jit@example.com",
            "ca_file": str(smtp.cert),
        }
    return out


def with_notifications(
    policy: Policy,
    channel_config: dict[str, dict[str, Any]],
    routes: dict[str, tuple[str, tuple[str, ...]]] | None = None,
    public_url: str = "http://127.0.0.1:8080",
) -> Policy:
    written = {k: Route(to, via) for k, (to, via) in (routes or {}).items()}
    digest = hashlib.sha256(
        (
            policy.digest
            + json.dumps([channel_config, sorted(written)], sort_keys=True, default=str)
            + public_url
        ).encode()
    ).hexdigest()
    return replace(
        policy,
        notifications=Notifications(channels=channel_config, routes=written),
        settings=replace(policy.settings, public_url=public_url),
        digest=digest,
    )


@dataclass
class Notify:
    ctx: Context
    clock: ManualClock
    rt: NotifyRuntime

    def create(
        self,
        requester: str = "jane.doe@example.com",
        roles: tuple[str, ...] = ("sre-oncall",),
        reason: str = "INC-12345 production database investigation",
        urgency: str = "normal",
        **extra: Any,
    ) -> AccessRequest:
        draft = Draft(roles=roles, reason=reason, urgency=urgency, **extra)
        return create_request(self.ctx, requester=requester, draft=draft).request

    def deliver(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            deliver_due(self.rt.delivery)

    def later(self, seconds: float) -> datetime:
        return self.clock.advance(timedelta(seconds=seconds))


FAST = DeliveryOptions(batch=100, max_attempts=4, base_delay=1.0, max_delay=8.0, concurrency=4)


class ServedApi:
    """A FastAPI app served by uvicorn on 127.0.0.1 in a thread (a real HTTP server)."""

    def __init__(self, api: Any) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            api,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import time

        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


# -- jitgate as a real process ------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
JITGATE = [sys.executable, "-m", "jitgate.entrypoints.cli.main"]


def cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [*_bin(), *args], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    return done.stdout


def _bin() -> list[str]:
    candidate = Path(sys.executable).parent / "jitgate"
    return [str(candidate)] if candidate.exists() else JITGATE


class Server:
    """``jitgate serve`` as a real process; ``kill()`` sends SIGKILL."""

    def __init__(
        self, env: dict[str, str], policy: Path, db: str, log: Path, port: int | None = None
    ) -> None:
        self.port = port or _free_port()
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*_bin(), "serve", "--policy", str(policy), "--db", db, "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.kill()
        raise AssertionError("jitgate serve did not start:\n" + log.read_text())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
