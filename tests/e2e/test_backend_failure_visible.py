"""A backend that fails is visible to the requester, through the real ``jitgate`` CLI
against a served jitgate: ``request``, ``show``, ``revoke`` say where each backend stands
(pending retry with the last error, removal pending), and ``ssh cert`` and the
credentials endpoint give the true cause of their 409 (a backend, not the window)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from served import Served, serve

JG = str(Path(sys.executable).with_name("jitgate"))
JANE = "jane.doe@example.com"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEa5CbPsWdcEK9RNXI4KJzoeuJk7IPe8rISNzHzjIsAL\n"
POLICY = """
version: 1
settings: {{pending_ttl: 1h, admins: [security]}}
directory:
  users:
    jane.doe@example.com: {{groups: [developers]}}
    sec@example.com: {{groups: [security]}}
roles:
  hook-role:
    grants: [{{type: kubernetes, environment: development}}]
    requestable_by: [developers]
    default_duration: 1h
    max_duration: 8h
    backends: [k8s-hook]
  ssh-role:
    grants: [{{type: ssh, environment: development}}]
    requestable_by: [developers]
    default_duration: 1h
    max_duration: 8h
    backends: [ssh-dev]
approval:
  - match: {{type: kubernetes, environment: development}}
    rule: self
  - match: {{type: ssh, environment: development}}
    rule: self
backends:
  k8s-hook: {{type: webhook, url: "{url}", secret_env: JG_FX3_HOOK_SECRET, timeout: 5}}
  ssh-dev: {{type: ssh-ca, ca_key_file_env: JG_FX3_CA_KEY, principals: [ubuntu]}}
"""


class Sink:
    """A webhook receiver answering ``status`` to every POST and recording the instruction
    types with the status it answered; ``on_post`` (if set) runs before it answers."""

    def __init__(self, status: int = 500) -> None:
        self.status = status
        self.seen: list[tuple[str, int]] = []
        self.on_post: Callable[[dict[str, Any]], None] | None = None
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if sink.on_post is not None:
                    sink.on_post(body)
                sink.seen.append((body["type"], sink.status))
                self.send_response(sink.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    running = Sink()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def hooked(
    sink: Sink, tmp_path: Path, start: datetime, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    monkeypatch.setenv("JG_FX3_HOOK_SECRET", "whsec_c3VwZXJzZWNyZXRrZXktMDEyMzQ1Njc4OWFiY2RlZg==")
    monkeypatch.setenv("JG_FX3_CA_KEY", str(tmp_path / "missing-ca-key"))  # no such file
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(url=sink.url))
    running = serve(f"sqlite:///{tmp_path}/jg.db", policy, start)
    try:
        yield running
    finally:
        running.stop()


def run(served: Served, *args: str, who: str = JANE) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    env.update({"JITGATE_SERVER": served.url, "JITGATE_TOKEN": served.tokens[who]})
    return subprocess.run([JG, *args], capture_output=True, text=True, env=env, timeout=60)


def _line_of(text: str, word: str) -> str:
    return next((line for line in text.splitlines() if line.startswith(word)), "")


def test_request_and_show_say_the_backend_failed_and_is_retried(hooked: Served, sink: Sink) -> None:
    done = run(hooked, "request", "hook-role", "--for", "5m", "--reason", "x")
    assert done.returncode == 0, done.stderr
    assert "state     approved" in done.stdout
    row = _line_of(done.stdout, "k8s-hook")
    assert "webhook" in row and "pending retry" in row, done.stdout
    assert "webhook grant: answered HTTP 500" in row and "attempt 1" in row
    assert "note: backend k8s-hook has not applied the grant yet" in done.stderr
    assert "jitgate retries" in done.stderr
    request_id = _line_of(done.stdout, "request").split()[1]

    shown = run(hooked, "show", request_id)
    assert shown.returncode == 0, shown.stderr
    assert "pending retry" in _line_of(shown.stdout, "k8s-hook")
    assert "answered HTTP 500" in _line_of(shown.stdout, "k8s-hook")

    as_json = run(hooked, "show", request_id, "--json")
    body = json.loads(as_json.stdout)
    assert body["id"] == request_id and body["state"] == "approved"  # the fields it had
    (backend,) = body["backends"]
    assert backend["backend"] == "k8s-hook" and backend["status"] == "failed"
    assert backend["last_error"] == "webhook grant: answered HTTP 500"

    created = json.loads(
        run(hooked, "request", "hook-role", "--for", "5m", "--reason", "y", "--json").stdout
    )
    assert created["state"] == "approved" and created["backends"][0]["status"] == "failed"


def test_the_409_of_credentials_and_ssh_cert_names_the_failed_backend(
    hooked: Served, sink: Sink, tmp_path: Path
) -> None:
    hook = run(hooked, "request", "hook-role", "--for", "5m", "--reason", "x", "-q")
    hook_id = hook.stdout.strip()
    answer = hooked.client(JANE).get(f"/v1/requests/{hook_id}/credentials")
    assert answer.status_code == 409
    detail = answer.json()["detail"]
    assert "in its window" in detail and "not in its grant window" not in detail
    assert "backend 'k8s-hook' has not applied it yet: webhook grant: answered HTTP 500" in detail
    assert "jitgate retries" in detail

    ssh = run(hooked, "request", "ssh-role", "--for", "5m", "--reason", "x", "-q")
    ssh_id = ssh.stdout.strip()
    key = tmp_path / "id_ed25519.pub"
    key.write_text(PUBLIC_KEY)
    cert = run(hooked, "ssh", "cert", ssh_id, "--key", str(key))
    assert cert.returncode == 1 and "Traceback" not in cert.stderr
    assert "409 the grant is in its window but backend 'ssh-dev' has not applied it" in cert.stderr
    assert "the SSH CA key file cannot be read" in cert.stderr
    assert "not in its grant window" not in cert.stderr


def test_revoke_says_the_removal_is_still_pending(hooked: Served, sink: Sink) -> None:
    sink.status = 204
    done = run(hooked, "request", "hook-role", "--for", "5m", "--reason", "x", "-q")
    request_id = done.stdout.strip()
    shown = run(hooked, "show", request_id)
    assert "state     active" in shown.stdout
    assert "applied" in _line_of(shown.stdout, "k8s-hook")

    sink.status = 503  # the target is down when the grant is revoked
    revoked = run(hooked, "revoke", request_id, "--reason", "done")
    assert revoked.returncode == 0, revoked.stderr
    assert "state     revoked" in revoked.stdout
    row = _line_of(revoked.stdout, "k8s-hook")
    assert "removal pending" in row and "webhook revoke: answered HTTP 503" in row
    assert "note: backend k8s-hook has not removed the grant yet" in revoked.stderr

    as_json = json.loads(run(hooked, "show", request_id, "--json").stdout)
    assert as_json["backends"][0]["status"] == "removing"
