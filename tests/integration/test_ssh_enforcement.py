"""SSH enforcement end to end: a real sshd on loopback trusting jitgate's CA, the real ssh
client, jitgate served over HTTP with the real clock (sshd checks the real clock), and the
``jitgate ssh`` commands as a user and as sshd would run them.

Shows: login with a jitgate certificate during the grant; refused after ``ends_at`` by
sshd itself (the certificate expires with the grant) and by ``/v1/authorize``; refused
after early revocation through the KRL (also confirmed by ``ssh-keygen -Q``); a
certificate asked by anyone but the requester refused (403); a login through
``jitgate ssh authorize`` recorded as a session of its request.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from sshd import Sshd, ensure_login_user, keygen, require_openssh, safe_command_dir, served

from jitgate.adapters.db.migrate import upgrade
from jitgate.bootstrap import App, bootstrap
from jitgate.config import Settings
from jitgate.entrypoints.api.app import create_app
from jitgate.service.ports import Principal
from jitgate.service.tokens import create_token

JITGATE = str(Path(sys.executable).with_name("jitgate"))
POLICY = """
version: 1
settings: {pending_ttl: 1h, admins: [security]}
directory:
  users:
    jane@example.com: {groups: [developers]}
    bob@example.com: {groups: [developers]}
    ann@example.com: {groups: [developers]}
    sec@example.com: {groups: [security]}
resources:
  test-host: {type: ssh, environment: development}
roles:
  dev-ssh:
    grants: [{type: ssh, environment: development}]
    requestable_by: [developers]
    default_duration: 1h
    max_duration: 8h
    backends: [ssh-test]
approval:
  - match: {type: ssh, environment: development}
    rule: self
backends:
  ssh-test: {type: ssh-ca, ca_key_file_env: JG_TEST_SSH_CA_KEY, principals: [jgtest]}
"""


@dataclass
class Stack:
    root: Path
    app: App
    url: str
    tokens: dict[str, str]
    static: Sshd  # AuthorizedPrincipalsFile: only the certificate and the KRL decide
    helper: Sshd  # AuthorizedPrincipalsCommand: jitgate ssh authorize decides
    state_dir: Path  # the helper's --state-dir

    def http(self, who: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def jitgate(
        self, *args: str, who: str = "jane@example.com"
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "JITGATE_SERVER": self.url, "JITGATE_TOKEN": self.tokens[who]}
        return subprocess.run([JITGATE, *args], capture_output=True, text=True, env=env, timeout=60)

    def request(self, duration: int | str = "1h", who: str = "jane@example.com") -> dict[str, Any]:
        with self.http(who) as client:
            answer = client.post(
                "/v1/requests", json={"roles": ["dev-ssh"], "duration": duration, "reason": "t"}
            )
        assert answer.status_code == 201, answer.text
        assert answer.json()["state"] == "active"
        return dict(answer.json())

    def key_with_certificate(
        self, name: str, request_id: str, who: str = "jane@example.com"
    ) -> tuple[Path, Path]:
        key = keygen(self.root / name)
        done = self.jitgate("ssh", "cert", request_id, "--key", f"{key}.pub", who=who)
        assert done.returncode == 0, done.stderr
        certificate = Path(f"{key}-cert.pub")
        assert done.stdout.strip() == str(certificate) and certificate.is_file()
        return key, certificate

    def write_krl(self, target: Path) -> None:
        done = self.jitgate("ssh", "krl", "--out", str(target))
        assert done.returncode == 0, done.stderr


def _ca(root: Path) -> tuple[Path, Path]:
    key = ed25519.Ed25519PrivateKey.generate()
    private = root / "ca"
    private.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    private.chmod(0o600)
    public = root / "ca.pub"
    public.write_bytes(key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH))
    return private, public


def _tokens(app: App) -> dict[str, str]:
    people = ("jane@example.com", "bob@example.com", "ann@example.com", "sec@example.com")
    tokens = {p: create_token(app.ctx, principal=Principal("user", p)) for p in people}
    tokens["gateway"] = create_token(app.ctx, principal=Principal("service", "sshd"))
    return tokens


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_openssh()
    ensure_login_user()
    root = tmp_path_factory.mktemp("ssh")
    private, public = _ca(root)
    (root / "policy.yaml").write_text(POLICY)
    settings = Settings(
        policy_path=str(root / "policy.yaml"), database_url=f"sqlite:///{root}/jg.db"
    )
    command_dir = safe_command_dir()
    with mock.patch.dict(os.environ, {"JG_TEST_SSH_CA_KEY": str(private)}):
        app = bootstrap(settings)
        upgrade(app.db)
        tokens = _tokens(app)
        with served(create_app(app)) as url:
            token_file = root / "gateway.token"
            token_file.write_text(tokens["gateway"])
            token_file.chmod(0o600)
            wrapper = command_dir / "jitgate-authorize"
            wrapper.write_text(f'#!/bin/sh\nexec {JITGATE} "$@"\n')
            wrapper.chmod(0o755)
            command = (
                f"{wrapper} ssh authorize --server {url} --token-file {token_file} "
                f"--state-dir {command_dir / 'state'} "
                "--user %u --key-id %i --key-type %t --cert %k --fingerprint %f "
                "--resource test-host"
            )
            principals = command_dir / "principals"  # read by sshd as the login user
            principals.mkdir(mode=0o755)
            (principals / "jgtest").write_text("jgtest\n")
            (principals / "jgtest").chmod(0o644)
            for name in ("static", "helper"):
                (root / name).mkdir()
            static = Sshd(
                root / "static", public, root / "static.krl",
                principals_file=principals / "%u",
            )  # fmt: skip
            helper = Sshd(root / "helper", public, root / "helper.krl", principals_command=command)
            stack = Stack(root, app, url, tokens, static, helper, command_dir / "state")
            stack.write_krl(root / "static.krl")
            stack.write_krl(root / "helper.krl")
            try:
                static.start()
                helper.start()
                yield stack
            finally:
                static.stop()
                helper.stop()
                app.close()
                shutil.rmtree(command_dir, ignore_errors=True)


def _authorized(stack: Stack) -> bool:
    with stack.http("gateway") as client:
        body = {"user": "jane@example.com", "resource": "test-host"}
        return bool(client.post("/v1/authorize", json=body).json()["allowed"])


def test_login_during_the_grant_and_refused_once_it_ends(stack: Stack) -> None:
    grant = stack.request(duration=6)
    ends_at = datetime.fromisoformat(grant["ends_at"])
    key, certificate = stack.key_with_certificate("short", grant["id"])
    listed = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(certificate)], capture_output=True, text=True
    )
    assert f'Key ID: "{grant["id"]}"' in listed.stdout
    assert "jgtest" in listed.stdout and "permit-pty" in listed.stdout

    first = stack.static.login(key, certificate)
    assert first.returncode == 0 and first.stdout.strip() == "ok", first.stderr + stack.static.log()

    deadline = time.monotonic() + 10
    while time.time() < ends_at.timestamp() + 0.5:
        assert time.monotonic() < deadline, "the grant did not end in time"
        time.sleep(0.1)
    assert not _authorized(stack)  # jitgate refuses from ends_at on …
    after = stack.static.login(key, certificate)
    assert after.returncode != 0 and "ok" not in after.stdout
    assert "expired" in stack.static.log().lower()  # … and so does sshd, by itself


def test_early_revocation_is_enforced_through_the_krl(stack: Stack) -> None:
    grant = stack.request()
    key, certificate = stack.key_with_certificate("revoked", grant["id"])
    assert stack.static.login(key, certificate).returncode == 0
    with stack.http("jane@example.com") as client:
        gone = client.post(f"/v1/requests/{grant['id']}/revoke", json={"reason": "done early"})
    assert gone.status_code == 200 and gone.json()["state"] == "revoked"

    krl = stack.root / "static.krl"
    stack.write_krl(krl)
    probe = subprocess.run(
        ["ssh-keygen", "-Q", "-f", str(krl), str(certificate)], capture_output=True, text=True
    )
    assert "REVOKED" in probe.stdout and probe.returncode != 0  # OpenSSH reads our KRL
    refused = stack.static.login(key, certificate)
    assert refused.returncode != 0 and "ok" not in refused.stdout
    assert "revoked" in stack.static.log().lower()

    other = stack.request()
    key2, certificate2 = stack.key_with_certificate("still-good", other["id"])
    assert stack.static.login(key2, certificate2).returncode == 0  # only that grant's certs


def test_only_the_requester_gets_a_certificate_and_only_while_active(stack: Stack) -> None:
    grant = stack.request()
    public_key = (keygen(stack.root / "intruder").with_suffix(".pub")).read_text()
    path = f"/v1/requests/{grant['id']}/ssh-certificate"
    # sec, an admin, sees the request but may not act as jane (403); bob has no part in
    # it: to him it does not exist (404, as for an unknown id)
    for who, status in (("sec@example.com", 403), ("bob@example.com", 404)):
        with stack.http(who) as client:
            refused = client.post(path, json={"public_key": public_key})
        assert refused.status_code == status, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    with stack.http("gateway") as client:
        assert client.post(path, json={"public_key": public_key}).status_code == 403
    with stack.http("jane@example.com") as client:
        (status,) = client.get(f"/v1/requests/{grant['id']}/backends").json()
    assert (status["backend"], status["type"], status["status"]) == (
        "ssh-test",
        "ssh-ca",
        "applied",
    )
    with stack.http("jane@example.com") as client:
        client.post(f"/v1/requests/{grant['id']}/revoke", json={"reason": "over"})
        ended = client.post(path, json={"public_key": public_key})
        assert ended.status_code == 409
        bad = client.post(f"/v1/requests/{stack.request()['id']}/ssh-certificate",
                          json={"public_key": "ssh-dss AAAA"})  # fmt: skip
        assert bad.status_code == 422


def test_logins_through_the_principals_command_are_sessions_of_the_request(stack: Stack) -> None:
    bob = "bob@example.com"  # one grant only: the helper decides per user and target
    grant = stack.request(who=bob)
    key, certificate = stack.key_with_certificate("via-helper", grant["id"], who=bob)
    login = stack.helper.login(key, certificate)
    assert login.returncode == 0 and login.stdout.strip() == "ok", login.stderr + stack.helper.log()

    with stack.http(bob) as client:
        sessions = client.get(f"/v1/requests/{grant['id']}/sessions").json()["items"]
        evidence = client.get(f"/v1/requests/{grant['id']}/evidence").json()
        events = client.get(f"/v1/requests/{grant['id']}/events").json()["items"]
    assert [(s["kind"], s["resource"], s["user"]) for s in sessions] == [
        ("ssh", "test-host", bob)
    ]  # one session per login, although sshd asks the helper twice
    assert [s["id"] for s in evidence["used"]["sessions"]] == [sessions[0]["id"]]
    assert "access.used" in [e["type"] for e in events]
    assert "ssh.certificate_issued" in [e["type"] for e in events]

    with stack.http(bob) as client:
        client.post(f"/v1/requests/{grant['id']}/revoke", json={"reason": "done"})
    refused = stack.helper.login(key, certificate)  # no KRL update: the helper refuses
    assert refused.returncode != 0 and "ok" not in refused.stdout
    with stack.http(bob) as client:
        sessions = client.get(f"/v1/requests/{grant['id']}/sessions").json()["items"]
    # the login had closed by itself: jitgate asks for its end, and reap records it closed
    assert len(sessions) == 1 and sessions[0]["ended_at"] is None
    assert sessions[0]["termination_reason"] == "terminated: grant revoked"
    assert "closed, recorded" in _reap(stack).stdout
    assert _session_of(stack, grant["id"], bob)["end_reason"] == "closed"


def test_the_helper_prints_nothing_for_foreign_certificates_or_a_bad_token(stack: Stack) -> None:
    token_file = stack.root / "gateway.token"
    base = [JITGATE, "ssh", "authorize", "--server", stack.url, "--user", "jgtest",
            "--resource", "test-host"]  # fmt: skip
    foreign = subprocess.run(
        [*base, "--token-file", str(token_file), "--key-id", "someone-else"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert foreign.returncode != 0 and foreign.stdout == ""
    loose = stack.root / "loose.token"
    loose.write_text(stack.tokens["gateway"])
    loose.chmod(0o644)
    unsafe = subprocess.run(
        [*base, "--token-file", str(loose), "--key-id", "jitgate:x:jane@example.com"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert unsafe.returncode != 0 and unsafe.stdout == "" and "0600" in unsafe.stderr
    assert unsafe.stderr.count("\n") == 1 and unsafe.stderr.startswith("jitgate: refusing")
    reaped = subprocess.run(
        [JITGATE, "ssh", "reap", "--server", stack.url, "--token-file", str(loose)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert reaped.returncode == 1 and reaped.stderr.count("\n") == 1, reaped.stderr
    assert reaped.stderr.startswith("jitgate: refusing the token file") and "0600" in reaped.stderr


def _reap(stack: Stack) -> subprocess.CompletedProcess[str]:
    """``jitgate ssh reap`` as root on the host would run it, with the helper's token."""
    command = [JITGATE, "ssh", "reap", "--server", stack.url,
               "--token-file", str(stack.root / "gateway.token"),
               "--state-dir", str(stack.state_dir)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _session_of(stack: Stack, request_id: str, who: str) -> dict[str, Any]:
    with stack.http(who) as client:
        (session,) = client.get(f"/v1/requests/{request_id}/sessions").json()["items"]
    return dict(session)


def _wait(condition: Any, what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_grant_revoked_early_ends_its_open_ssh_login(stack: Stack) -> None:
    ann = "ann@example.com"
    grant = stack.request(who=ann)
    key, certificate = stack.key_with_certificate("open-login", grant["id"], who=ann)
    command = stack.helper.ssh(key, certificate, "echo in; exec sleep 120")
    client = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert client.stdout is not None and client.stdout.readline().strip() == "in"
        nothing = _reap(stack)  # the grant is live: its login is left alone
        assert nothing.returncode == 0 and nothing.stdout == "", nothing.stderr
        assert client.poll() is None

        with stack.http(ann) as http:
            http.post(f"/v1/requests/{grant['id']}/revoke", json={"reason": "done"})
        reaped = _reap(stack)
        assert reaped.returncode == 0, reaped.stderr
        assert "ended (terminated: grant revoked)" in reaped.stdout, reaped.stdout
        client.wait(timeout=15)  # sshd closed the connection, long before `sleep 120` ends
    finally:
        client.kill()
        client.communicate()
    session = _session_of(stack, grant["id"], ann)
    assert session["end_reason"] == "terminated: grant revoked"


def test_the_end_of_an_ssh_login_is_recorded_once_it_closes(stack: Stack) -> None:
    jane = "jane@example.com"
    grant = stack.request(who=jane)
    key, certificate = stack.key_with_certificate("closed-login", grant["id"], who=jane)
    assert stack.helper.login(key, certificate).returncode == 0
    assert _session_of(stack, grant["id"], jane)["ended_at"] is None
    lines: list[str] = []

    def recorded() -> bool:  # once sshd's process for the connection is gone
        lines.append(_reap(stack).stdout)
        return _session_of(stack, grant["id"], jane)["ended_at"] is not None

    _wait(recorded, "the end of the closed login was not recorded")
    assert _session_of(stack, grant["id"], jane)["end_reason"] == "closed"
    assert any("closed, recorded" in line for line in lines)
    assert list((stack.state_dir / "sessions").glob("*.json")) == []
