"""A crash between commit and delivery loses nothing: ``jitgate serve`` as a real process on
a temporary SQLite database, killed with SIGKILL, restarted, and the notification arrives."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from notify_sinks import LINK_SECRET, REPO, HttpSink, Server, cli

from jitgate.adapters.signing import new_secret, verify_webhook

pytest_plugins = ["conftest_notify"]


def webhook_setup(tmp_path: Path, sink: HttpSink) -> tuple[Path, str, dict[str, str]]:
    """The example policy sending ``request.created`` to ``sink``'s ``/hook`` (a signed
    webhook), a SQLite database and the environment for ``jitgate``: (policy, db, env)."""
    policy = yaml.safe_load((REPO / "examples" / "policy.yaml").read_text())
    policy["notifications"] = {
        "channels": {
            "siem": {"type": "webhook", "url_env": "HOOK_URL", "secret_env": "HOOK_SECRET"}
        },
        "routes": {"request.created": {"to": "approvers", "via": ["siem"]}},
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    db = f"sqlite:///{tmp_path}/jitgate.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    env |= {
        "HOOK_URL": f"{sink.url}/hook",
        "HOOK_SECRET": new_secret(),
        "JITGATE_LINK_SECRET": LINK_SECRET,
        "JITGATE_TICK_SECONDS": "0.2",
    }
    return path, db, env


@pytest.fixture
def site(tmp_path: Path, http_sink: HttpSink) -> Iterator[dict[str, Any]]:
    path, db, env = webhook_setup(tmp_path, http_sink)
    cli("db", "upgrade", "--db", db, env=env)
    token = cli("token", "create", "jane.doe@example.com", "--db", db, env=env).strip()
    servers: list[Server] = []

    def start(**extra: str) -> Server:
        server = Server({**env, **extra}, path, db, tmp_path / "serve.log")
        servers.append(server)
        return server

    yield {"start": start, "token": token, "db": db, "env": env, "sink": http_sink}
    for server in servers:
        if server.proc.poll() is None:
            server.kill()


def create(server: Server, token: str) -> str:
    answer = httpx.post(
        f"{server.url}/v1/requests",
        headers={"authorization": f"Bearer {token}"},
        json={"roles": ["sre-oncall"], "reason": "INC-9 crash test"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def outbox(site: dict[str, Any]) -> list[dict[str, Any]]:
    listed = cli("notifications", "ls", "--json", "--db", site["db"], env=site["env"])
    return list(json.loads(listed))


def test_killed_after_commit_before_delivery(site: dict[str, Any]) -> None:
    sink: HttpSink = site["sink"]
    first = site["start"](JITGATE_DELIVERY="0")  # commits, never delivers
    request_id = create(first, site["token"])
    time.sleep(1.0)
    assert sink.paths("/hook") == []
    (row,) = outbox(site)
    assert (row["request_id"], row["status"], row["attempts"]) == (request_id, "pending", 0)
    first.kill()

    site["start"]()
    (hook,) = sink.wait_for("/hook", 1, timeout=20)
    assert hook.headers["webhook-id"] == row["id"]
    assert verify_webhook(site["env"]["HOOK_SECRET"], hook.headers, hook.body, now=int(time.time()))
    assert hook.json()["data"]["request"]["id"] == request_id
    deadline = time.monotonic() + 10
    while outbox(site)[0]["status"] != "sent" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert outbox(site)[0]["status"] == "sent"


def test_killed_while_the_peer_is_down(site: dict[str, Any]) -> None:
    sink: HttpSink = site["sink"]
    sink.stop()
    first = site["start"]()
    request_id = create(first, site["token"])
    deadline = time.monotonic() + 15
    while outbox(site)[0]["attempts"] < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert outbox(site)[0]["status"] == "pending"
    first.kill()
    sink.start()
    site["start"]()
    hooks = sink.wait_for("/hook", 1, timeout=30)
    time.sleep(1.0)
    hooks = sink.paths("/hook")
    assert len(hooks) == 1 and hooks[0].json()["data"]["request"]["id"] == request_id
