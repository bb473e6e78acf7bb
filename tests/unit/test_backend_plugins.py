"""The backend plugins in isolation: the entry-point registry (a third-party package too),
ssh-ca certificates, the KRL bytes, webhook signing and retries (``httpx.MockTransport``),
and the postgres backend's names and SCRAM verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_ssh_public_identity,
)
from cryptography.hazmat.primitives.serialization.ssh import SSHCertificate

from jitgate.adapters.backends.base import (
    BackendDeps,
    BackendError,
    BackendSet,
    BackendUnavailable,
    GrantSpec,
    Registry,
    SessionRef,
)
from jitgate.adapters.backends.krl import build_krl, key_blob
from jitgate.adapters.backends.pg_sql import scram_sha256
from jitgate.adapters.backends.postgres import PostgresBackend
from jitgate.adapters.backends.ssh_ca import USER_EXTENSION, SshCaBackend, certificate_identity
from jitgate.adapters.backends.webhook import WebhookBackend
from jitgate.adapters.signing import new_secret, verify_webhook
from third_party import installed

NOW = datetime(2026, 3, 2, 10, 0, 0, 500_000, tzinfo=UTC)


def _spec(**overrides: Any) -> GrantSpec:
    values: dict[str, Any] = {
        "request_id": "3f0c6a4e-0000-4000-8000-000000000001",
        "user": "jane.doe@example.com",
        "roles": ("sre-oncall",),
        "resources": (),
        "starts_at": NOW - timedelta(minutes=5),
        "ends_at": NOW + timedelta(hours=1, microseconds=700_000),
        "backend": "ssh-prod",
        "backend_type": "ssh-ca",
        "config": {},
    }
    values.update(overrides)
    return GrantSpec(**values)


def _deps(environ: dict[str, str], handler: Any = None) -> BackendDeps:
    transport = httpx.MockTransport(handler or (lambda request: httpx.Response(200)))
    return BackendDeps(http=httpx.Client(transport=transport), environ=environ)


def _openssh_private(key: Any) -> str:
    return key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()


def _public_line(key: Any) -> str:
    return key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


# -- registry ---------------------------------------------------------------------------------


def test_the_built_in_backends_are_registered_by_entry_point() -> None:
    registry = Registry()
    assert {"ssh-ca", "postgres", "webhook"} <= set(registry.types())
    assert registry.factory("ssh-ca") is SshCaBackend
    with pytest.raises(BackendUnavailable, match="unknown backend type 'nope'"):
        registry.factory("nope")


ACME = (
    "class AcmeBackend:\n"
    "    shares_grants = True\n"
    "    verifiable = False\n"
    "    def __init__(self, name, config, deps):\n"
    "        self.name, self.config = name, config\n"
)


@pytest.fixture
def third_party(tmp_path: Path) -> Iterator[None]:
    """A package installed on its own, declaring a backend in ``jitgate.backends``."""
    entry = "acme = acme_backend:AcmeBackend"
    with installed(tmp_path, "acme_backend", ACME, "jitgate.backends", entry):
        yield


def test_a_third_party_backend_is_found_and_gets_a_frozen_config(third_party: None) -> None:
    backends = BackendSet(Registry(), _deps({}))
    config = {"type": "acme", "zones": ["a", "b"], "nested": {"k": 1}}
    instance = backends.get("acme-prod", config)
    assert type(instance).__name__ == "AcmeBackend"
    assert backends.get("acme-prod", dict(config)) is instance  # one instance per backend
    with pytest.raises(TypeError):
        instance.config["zones"] = []  # type: ignore[attr-defined]
    assert instance.config["zones"] == ("a", "b")  # type: ignore[attr-defined]
    changed = backends.get("acme-prod", {**config, "zones": ["c"]})
    assert changed is not instance  # rebuilt when its policy entry changes


# -- ssh-ca -----------------------------------------------------------------------------------


@pytest.fixture
def ca(tmp_path: Path) -> SshCaBackend:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "ca"
    path.write_text(_openssh_private(key))
    config = {"type": "ssh-ca", "ca_key_file_env": "CA_PATH", "principals": ["ubuntu", "ops"]}
    return SshCaBackend("ssh-prod", config, _deps({"CA_PATH": str(path)}))


@pytest.mark.parametrize(
    "subject",
    [
        ed25519.Ed25519PrivateKey.generate(),
        ec.generate_private_key(ec.SECP256R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["ed25519", "ecdsa", "rsa"],
)
def test_a_certificate_covers_the_rest_of_the_window_only(ca: SshCaBackend, subject: Any) -> None:
    spec = _spec()
    issued = ca.issue(spec, _public_line(subject) + " jane@laptop", NOW)
    assert issued.certificate.split()[0].endswith("-cert-v01@openssh.com")
    cert = load_ssh_public_identity(issued.certificate.encode())
    assert isinstance(cert, SSHCertificate)
    cert.verify_cert_signature()
    assert cert.key_id == spec.request_id.encode()  # SPEC §7: key id = request id
    assert cert.valid_principals == [b"ubuntu", b"ops"]
    assert cert.valid_after == int(spec.starts_at.timestamp())  # the window's start, not now
    assert cert.valid_before == int(spec.ends_at.timestamp())  # floored: never past ends_at
    assert cert.valid_before <= spec.ends_at.timestamp()
    assert set(cert.extensions) == {
        b"permit-X11-forwarding",
        b"permit-agent-forwarding",
        b"permit-port-forwarding",
        b"permit-pty",
        b"permit-user-rc",
        USER_EXTENSION.encode(),
    }
    assert cert.extensions[USER_EXTENSION.encode()] == spec.user.encode()
    assert issued.valid_before == datetime.fromtimestamp(cert.valid_before, UTC)
    assert issued.key_id == spec.request_id
    key_type, blob = issued.certificate.split()[:2]
    assert certificate_identity(key_type, blob, spec.request_id) == (spec.request_id, spec.user)
    assert certificate_identity(key_type, blob, "another-key-id") is None
    assert certificate_identity("ssh-ed25519", _public_line(subject).split()[1], "x") is None
    assert certificate_identity(key_type, "not base64!", spec.request_id) is None


def test_bad_public_keys_and_ended_windows_are_refused(ca: SshCaBackend) -> None:
    subject = _public_line(ed25519.Ed25519PrivateKey.generate())
    for bad in ("", "ssh-dss AAAA", "ssh-ed25519 not-base64!", subject + "\n" + subject):
        with pytest.raises(BackendError):
            ca.issue(_spec(), bad, NOW)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(BackendError, match="2048"):
        ca.issue(_spec(), _public_line(small), NOW)
    with pytest.raises(BackendError, match="ended"):
        ca.issue(_spec(ends_at=NOW), subject, NOW)


def test_only_an_early_end_puts_the_key_id_in_the_krl(ca: SshCaBackend) -> None:
    assert ca.revoke(_spec()).revocations == ()
    early = ca.revoke(_spec(ended_early=True))
    (entry,) = early.revocations
    assert entry.key_id == "3f0c6a4e-0000-4000-8000-000000000001"
    assert entry.ca_public_key == ca.ca_public_key()


def test_the_ca_key_comes_from_the_environment_and_its_absence_is_explained(
    tmp_path: Path,
) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    inline = SshCaBackend(
        "ca", {"ca_key_env": "CA_KEY", "principals": ["u"]}, _deps({"CA_KEY": pem})
    )
    assert inline.ca_public_key().startswith("ecdsa-sha2-nistp384 ")
    with pytest.raises(BackendUnavailable, match=r"SSH_CA_KEY .*is not set"):
        SshCaBackend("ca", {"ca_key_file_env": "SSH_CA_KEY", "principals": ["u"]}, _deps({}))
    with pytest.raises(BackendUnavailable, match="cannot be read") as missing:
        SshCaBackend(
            "ca",
            {"ca_key_file_env": "P", "principals": ["u"]},
            _deps({"P": str(tmp_path / "none")}),
        )
    assert str(tmp_path) not in str(missing.value)  # the path (a secret's location) stays out
    with pytest.raises(BackendUnavailable, match="principals"):
        SshCaBackend("ca", {"ca_key_env": "CA_KEY"}, _deps({"CA_KEY": pem}))


# -- KRL --------------------------------------------------------------------------------------


def test_the_krl_has_openssh_header_and_one_key_id_section_per_ca(ca: SshCaBackend) -> None:
    other = _public_line(ed25519.Ed25519PrivateKey.generate())
    data = build_krl(
        {ca.ca_public_key(): ["b", "a", "a"], other: ["c"]}, version=7, generated=1700000000
    )
    assert data[:8] == b"SSHKRL\n\0"
    _magic, fmt, version, generated, flags = struct.unpack(">QIQQQ", data[:36])
    assert (fmt, version, generated, flags) == (1, 7, 1700000000, 0)
    offset, sections = 36, []
    for _ in range(2):  # reserved, comment
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        offset += 4 + length
    while offset < len(data):
        kind = data[offset]
        (length,) = struct.unpack(">I", data[offset + 1 : offset + 5])
        sections.append((kind, data[offset + 5 : offset + 5 + length]))
        offset += 5 + length
    assert [k for k, _ in sections] == [1, 1]
    blobs = set()
    for _, body in sections:
        (length,) = struct.unpack(">I", body[:4])
        blobs.add(body[4 : 4 + length])
        rest = body[4 + length + 4 :]  # skip the empty reserved string
        assert rest[0] == 0x23
    assert blobs == {key_blob(ca.ca_public_key()), key_blob(other)}
    assert b"\x00\x00\x00\x01a\x00\x00\x00\x01b" in data  # sorted, deduplicated
    empty = build_krl({}, version=0, generated=1)
    assert len(empty) == 36 + 4 + 4 + len(b"jitgate")


# -- webhook ----------------------------------------------------------------------------------


def test_webhook_posts_signed_grant_revoke_and_session_terminate() -> None:
    secret, seen = new_secret(), []

    def handler(request: httpx.Request) -> httpx.Response:
        msg_id = verify_webhook(
            secret, dict(request.headers), request.content, now=int(datetime.now(UTC).timestamp())
        )
        seen.append((msg_id, json.loads(request.content)))
        return httpx.Response(204)

    config = {"type": "webhook", "url": "https://hooks.example/grant", "secret_env": "S"}
    hook = WebhookBackend("k8s-hook", config, _deps({"S": secret}, handler))
    spec = _spec(backend="k8s-hook", backend_type="webhook")
    assert hook.grant(spec).detail == {"status": 204}
    assert hook.grant(spec).changed
    assert seen[0][0] == seen[1][0]  # the same message keeps its id across retries
    session = SessionRef("s-1", spec.user, "prod-bastion", "ssh", NOW)
    ending = _spec(
        backend="k8s-hook", ended_early=True, terminate_sessions=True, sessions=(session,)
    )
    receipt = hook.revoke(ending)
    kinds = [body["type"] for _, body in seen]
    assert kinds == ["grant", "grant", "revoke", "session.terminate"]
    assert seen[2][1]["data"]["ended_early"] is True
    assert seen[3][1]["data"]["sessions"][0]["id"] == "s-1"
    assert receipt.detail["sessions"] == ["s-1"]
    assert seen[0][1]["data"]["user"] == spec.user and seen[0][1]["data"]["request_id"]


@pytest.mark.parametrize(
    "answer, message",
    [
        (lambda r: httpx.Response(503), "answered HTTP 503"),
        (lambda r: httpx.Response(302), "answered HTTP 302"),
        (lambda r: (_ for _ in ()).throw(httpx.ConnectTimeout("t")), "no answer (ConnectTimeout)"),
    ],
)
def test_webhook_failures_raise_without_the_url_or_the_secret(answer: Any, message: str) -> None:
    secret = new_secret()
    url = "https://hooks.example/grant?token=abc123"
    hook = WebhookBackend(
        "h", {"url_env": "U", "secret_env": "S"}, _deps({"U": url, "S": secret}, answer)
    )
    with pytest.raises(BackendError) as raised:
        hook.grant(_spec())
    assert message in str(raised.value)
    assert "abc123" not in str(raised.value) and secret not in str(raised.value)


def test_webhook_needs_a_secret_in_whsec_form() -> None:
    with pytest.raises(BackendUnavailable, match="HOOK_SECRET"):
        WebhookBackend("h", {"url": "https://x", "secret_env": "HOOK_SECRET"}, _deps({}))
    with pytest.raises(BackendUnavailable, match="whsec_"):
        WebhookBackend("h", {"url": "https://x", "secret_env": "S"}, _deps({"S": "short!"}))


# -- postgres (no server needed) ----------------------------------------------------------------


def _pg(**config: Any) -> PostgresBackend:
    dsn = "host=db.internal port=6543 dbname=app user=svc password=s3cret"
    base = {"type": "postgres", "dsn_env": "DSN", "db_role": "readonly", **config}
    return PostgresBackend("prod-pg", base, _deps({"DSN": dsn}))


def test_postgres_login_names() -> None:
    assert _pg().login_for(_spec()) == "jane_doe"
    assert _pg(logins={"Jane.Doe@example.com": "jdoe"}).login_for(_spec()) == "jdoe"
    ephemeral = _pg(mode="ephemeral_user").login_for(_spec())
    assert ephemeral.startswith("jit_jane_doe_") and len(ephemeral) <= 63
    assert ephemeral == _pg(mode="ephemeral_user").login_for(_spec())  # stable per request
    assert _pg().shares_grants and not _pg(mode="ephemeral_user").shares_grants
    with pytest.raises(BackendUnavailable, match="mode"):
        _pg(mode="superuser")


def test_postgres_errors_never_carry_the_password() -> None:
    backend = _pg(connect_timeout=1)
    text = backend._safe(RuntimeError("password s3cret rejected for svc"))
    assert "s3cret" not in text and "***" in text


def test_scram_verifier_matches_rfc_7677() -> None:
    verifier = scram_sha256("pencil")
    method, rest = verifier.split("$", 1)
    params, keys = rest.split("$")
    iterations, salt = params.split(":")
    stored, server = keys.split(":")
    assert method == "SCRAM-SHA-256" and iterations == "4096"
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", base64.b64decode(salt), 4096)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    assert base64.b64decode(stored) == hashlib.sha256(client_key).digest()
    assert base64.b64decode(server) == hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    assert "pencil" not in verifier
