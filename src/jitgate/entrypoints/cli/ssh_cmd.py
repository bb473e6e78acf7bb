"""``jitgate ssh``: certificates, the KRL, and sshd's ``AuthorizedPrincipalsCommand``.

- ``jitgate ssh cert REQUEST_ID [--key ~/.ssh/id_ed25519.pub]`` writes the certificate
  beside the key (``id_ed25519-cert.pub``), where ``ssh`` finds it by itself;
- ``jitgate ssh krl --out FILE`` writes the KRL for sshd's ``RevokedKeys`` (atomically);
- ``jitgate ssh authorize --user %u --key-id %i --key-type %t --cert %k …`` is run by
  sshd: it asks ``/v1/authorize`` for the jitgate user the certificate names (its key id
  is the request id, the user is in an extension), records the
  session (``POST /v1/sessions``) and prints the allowed principals. Refused, unknown or
  unreachable: it prints nothing and exits non-zero (fail closed). sshd runs it twice per
  login (the key query, then the signed attempt): a login is recorded once, remembered
  with its connection's sshd process in ``--state-dir`` (``ssh_sessions``); run outside
  sshd, deduplicated by certificate and key fingerprint over ``DEDUPE_SECONDS``;
- ``jitgate ssh reap`` ends the connections of sessions whose end jitgate asked for, and
  reports each end back (``ssh_sessions``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import httpx

from jitgate.entrypoints.cli import ssh_sessions as sessions
from jitgate.entrypoints.cli.client import an_id, segment, with_api
from jitgate.entrypoints.cli.common import cannot, fail, line_safe

KEY_NAMES = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")
DEDUPE_SECONDS = 10.0


@click.group()
def ssh() -> None:
    """OpenSSH certificates for active grants, the KRL, and the sshd helper."""


def _default_key() -> Path:
    home = Path.home() / ".ssh"
    for name in KEY_NAMES:
        if (home / name).is_file():
            return home / name
    fail(f"no public key found in {home} ({', '.join(KEY_NAMES)}); give --key")


def cert_path_for(key: Path) -> Path:
    """``id_ed25519.pub`` -> ``id_ed25519-cert.pub`` (the name ``ssh`` looks for)."""
    stem = key.name[: -len(".pub")] if key.name.endswith(".pub") else key.name
    return key.with_name(f"{stem}-cert.pub")


def _write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write beside ``path``, then rename: a reader sees the old file or the new one. A
    failure is one line naming ``path`` (not the temporary file)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        cannot("write", path, exc)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            cannot("write", path, exc)
        raise


@ssh.command()
@click.argument("request_id", callback=an_id)
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--backend", default=None, help="Which ssh-ca backend, if the grant has several.")
@with_api
def cert(api: Any, request_id: str, key_path: Path | None, backend: str | None) -> None:
    """Get a certificate for REQUEST_ID and write it beside the public key."""
    key = key_path or _default_key()
    try:
        public_key = key.read_text().strip()
    except OSError as exc:
        cannot("read", key, exc)
    body: dict[str, Any] = {"public_key": public_key}
    if backend:
        body["backend"] = backend
    answer = api.post(f"/v1/requests/{segment(request_id)}/ssh-certificate", body)
    target = cert_path_for(key)
    _write_atomically(target, (answer["certificate"] + "\n").encode())
    click.echo(str(target))
    click.echo(
        f"key id {line_safe(answer['key_id'])}, "
        f"principals {', '.join(line_safe(p) for p in answer['principals'])}, "
        f"valid until {line_safe(answer['valid_before'])}",
        err=True,
    )


@ssh.command()
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@with_api
def krl(api: Any, out: Path) -> None:
    """Write the KRL of certificates whose grant ended early (for sshd's RevokedKeys)."""
    data = api.get("/v1/ssh/krl", raw=True)
    if not isinstance(data, bytes) or not data.startswith(b"SSHKRL\n\0"):
        fail("the server did not answer with a KRL")
    _write_atomically(out, data)
    click.echo(f"wrote {len(data)} bytes to {out}", err=True)


def _remember(state_dir: Path, login: sessions.Login) -> None:
    """Remember the login's connection for ``jitgate ssh reap``; the login goes on without."""
    try:
        sessions.remember(state_dir, login)
    except OSError as exc:
        click.echo(f"jitgate: cannot remember the connection in {state_dir}: {exc}", err=True)


def _first_of_login(state_dir: Path, key_id: str, fingerprint: str | None) -> bool:
    """``True`` unless this certificate and key were recorded moments ago (same login)."""
    marker = state_dir / hashlib.sha256(f"{key_id} {fingerprint}".encode()).hexdigest()[:32]
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if marker.exists() and time.time() - marker.stat().st_mtime < DEDUPE_SECONDS:
            return False
        marker.touch()
    except OSError:
        return True  # no state: record every call rather than none
    return True


def _identity(key_id: str, key_type: str | None, certificate: str | None) -> tuple[str, str] | None:
    """``(request id, user)`` from the certificate sshd passed (``%t %k``), whose key id
    must be sshd's ``%i``; without ``--cert``, only an older certificate's key id
    (``jitgate:<request>:<user>``) names its user."""
    from jitgate.adapters.backends.ssh_ca import certificate_identity, legacy_identity

    if certificate and key_type:
        return certificate_identity(key_type, certificate, key_id)
    return legacy_identity(key_id)


def _target(resource: str | None, type_: str, environment: str | None) -> dict[str, str]:
    if resource:
        return {"resource": resource}
    if not environment:
        return {}
    return {"type": type_, "environment": environment}


@ssh.command()
@sessions.host_options
@click.option("--user", "local_user", required=True, help="sshd's %u (the account).")
@click.option("--key-id", required=True, help="sshd's %i (the certificate's key id).")
@click.option("--cert", "certificate", default=None, help="sshd's %k (the certificate).")
@click.option("--fingerprint", default=None, help="sshd's %f (logged only).")
@click.option("--key-type", default=None, help="sshd's %t (the certificate's type).")
@click.option("--resource", default=None, help="This host as a jitgate resource.")
@click.option("--type", "type_", default="ssh", show_default=True)
@click.option("--environment", default=None, help="This host's environment.")
@click.option("--principal", "principals", multiple=True, help="Principals to allow (default %u).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/run/jitgate-ssh",
    show_default=True,
    help="Where logins are remembered for a few seconds (sshd asks twice per login).",
)
def authorize(
    server: str,
    token_file: Path | None,
    local_user: str,
    key_id: str,
    certificate: str | None,
    fingerprint: str | None,
    key_type: str | None,
    resource: str | None,
    type_: str,
    environment: str | None,
    principals: tuple[str, ...],
    state_dir: Path,
) -> None:
    """For sshd's AuthorizedPrincipalsCommand: allow a jitgate certificate while its grant
    is honoured, and record the login as a session of the grant."""
    parsed = _identity(key_id, key_type, certificate)
    target = _target(resource, type_, environment)
    token, why = sessions.read_token(token_file)
    if parsed is None or not target:
        click.echo("jitgate: not a jitgate certificate, or no target", err=True)
        sys.exit(1)
    if token is None:
        click.echo(f"jitgate: {why}", err=True)
        sys.exit(1)
    request_id, user = parsed
    connection = sessions.connection_of(os.getpid())
    http_client = sessions.client(server, token, "jitgate-ssh-authorize")
    try:
        with http_client as http:
            verdict = http.post("/v1/authorize", json={"user": user, **target})
            if verdict.status_code != 200 or not verdict.json().get("allowed"):
                click.echo(f"jitgate: {line_safe(user)} refused ({verdict.status_code})", err=True)
                sys.exit(1)
            session_id = sessions.recalled(state_dir, connection, key_id) if connection else None
            if session_id is None and (
                connection is not None or _first_of_login(state_dir, key_id, fingerprint)
            ):
                body = {"user": user, "kind": "ssh", **target}
                session = http.post("/v1/sessions", json=body)
                if session.status_code != 201:
                    click.echo(f"jitgate: session refused ({session.status_code})", err=True)
                    sys.exit(1)
                session_id = str(session.json().get("id"))
                if connection is not None:
                    login = sessions.Login(
                        connection.pid,
                        connection.start,
                        session_id,
                        request_id,
                        user,
                        local_user,
                        key_id,
                    )
                    _remember(state_dir, login)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        click.echo(f"jitgate: cannot reach {server}: {type(exc).__name__}", err=True)
        sys.exit(1)
    click.echo(
        line_safe(
            f"jitgate: {user} as {local_user} via request {request_id} "
            f"(session {session_id or 'recorded moments ago'}, "
            f"key {key_type or '?'} {fingerprint or '?'})"
        ),
        err=True,
    )
    for name in principals or (local_user,):
        click.echo(name)


ssh.add_command(sessions.reap)
