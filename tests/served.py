"""A real jitgate HTTP server for end-to-end tests: uvicorn on a free loopback port, in a
thread, over a migrated database, with a ``ManualClock`` the test can move."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import uvicorn

from jitgate.adapters.clock import ManualClock
from jitgate.adapters.db.migrate import upgrade
from jitgate.bootstrap import App, bootstrap
from jitgate.config import Settings
from jitgate.entrypoints.api.app import create_app
from jitgate.service.ports import Principal
from jitgate.service.tokens import create_token

WATCH_SECONDS = 0.1  # how soon a revoked token leaves the served app's token cache
EXAMPLE_POLICY_PATH = Path(__file__).resolve().parent.parent / "examples" / "policy.yaml"
PEOPLE = (
    "jane.doe@example.com",
    "mark.lee@example.com",
    "priya@example.com",
    "sam@example.com",
    "sue@example.com",
    "lee@example.com",
    "dana@example.com",
    "dave@example.com",
    "sec@example.com",
    "ravi@example.com",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    app: App
    clock: ManualClock
    url: str
    server: uvicorn.Server
    thread: threading.Thread
    tokens: dict[str, str] = field(default_factory=dict)
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, who: str | None = None, headers: dict[str, str] | None = None) -> httpx.Client:
        """A client with ``who``'s token (or ``headers``); closed when the server stops."""
        if who:
            headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        client = httpx.Client(base_url=self.url, timeout=30.0, headers=headers or {})
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.app.close()


def serve(db_url: str, policy_path: Path, start: datetime) -> Served:
    clock = ManualClock(start)
    app = bootstrap(Settings(policy_path=str(policy_path), database_url=db_url), clock=clock)
    upgrade(app.db)
    port = free_port()
    config = uvicorn.Config(
        create_app(app, token_watch_seconds=WATCH_SECONDS),
        host="127.0.0.1",
        port=port,
        log_level="error",
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("jitgate did not start")
        time.sleep(0.02)
    served = Served(app, clock, f"http://127.0.0.1:{port}", server, thread)
    for person in PEOPLE:
        served.tokens[person] = create_token(app.ctx, principal=Principal("user", person))
    served.tokens["gateway"] = create_token(app.ctx, principal=Principal("service", "gw"))
    return served
