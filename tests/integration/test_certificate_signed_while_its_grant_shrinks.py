"""A certificate signed while its grant's end is moved in (an extension revoked at that
moment) is never handed out past that end, on SQLite and PostgreSQL: the real ``ssh-ca``
signer, with the revoke committed between the signature and the audit of the issue.

Either the issue is audited first (and the KRL pass that follows the revoke sees it: the
key id is listed), or the revoke commits first and the certificate, valid past the end
the grant now has, is refused; asked again, one valid to the new end is given, and the
KRL stays empty.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from jitgate.adapters.backends.base import Registry
from jitgate.adapters.backends.ssh_ca import SshCaBackend
from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.policy import load_policy
from jitgate.adapters.policy.plugins import PluginCatalog
from jitgate.domain.creation import Draft
from jitgate.domain.errors import Conflict
from jitgate.domain.states import State
from jitgate.service import decisions
from jitgate.service import requests as use
from jitgate.service.backend_access import issue_certificate, krl_contents
from jitgate.service.backend_ports import GrantSpec, IssuedCertificate
from jitgate.service.context import Context
from jitgate.service.ports import AuditQuery

H = timedelta(hours=1)
JANE = "jane@example.com"
POLICY = """
version: 1
settings: {pending_ttl: 1h, admins: [security]}
directory:
  users:
    jane@example.com: {groups: [developers]}
resources:
  dev-host: {type: ssh, environment: development}
roles:
  dev-ssh:
    grants: [{type: ssh, environment: development}]
    requestable_by: [developers]
    default_duration: 1h
    max_duration: 8h
    extendable: true
    backends: [ssh-dev]
approval:
  - match: {type: ssh, environment: development}
    rule: self
backends:
  ssh-dev: {type: ssh-ca, ca_key_env: JG_RACE_CA_KEY, principals: [ubuntu]}
"""

#: Run once by the signer, right after it signed: what happens meanwhile elsewhere.
MEANWHILE: list[Callable[[], None]] = []


class SignerWithAPause(SshCaBackend):
    def issue(self, spec: GrantSpec, public_key: str, now: datetime) -> IssuedCertificate:
        issued = super().issue(spec, public_key, now)
        while MEANWHILE:
            MEANWHILE.pop()()
        return issued


@pytest.fixture
def ctx(db_url: str, make_ctx: Any, tmp_path: Path) -> Context:
    MEANWHILE.clear()
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    backends = {"ssh-ca": SignerWithAPause}
    policy = load_policy(path, plugins=PluginCatalog(backends=backends))
    made, _clock = make_ctx(db_url, policy)
    ca = ed25519.Ed25519PrivateKey.generate()
    pem = ca.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    wire_enforcement(
        made, made.uow.db, registry=Registry(backends), environ={"JG_RACE_CA_KEY": pem}
    )
    context: Context = made
    return context


def public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


def extended(ctx: Context) -> tuple[str, str, datetime]:
    draft = Draft(roles=("dev-ssh",), reason="INC-8", duration=H)
    grant = use.create_request(ctx, requester=JANE, draft=draft).request
    assert grant.state is State.ACTIVE and grant.ends_at is not None
    ext = use.extend_request(ctx, request_id=grant.id, requester=JANE, duration=H, reason="x")
    assert ext.state is State.APPROVED
    return grant.id, ext.id, grant.ends_at


def test_a_certificate_signed_while_the_extension_is_revoked_is_not_handed_out(
    ctx: Context,
) -> None:
    rid, ext, old_end = extended(ctx)
    MEANWHILE.append(
        lambda: decisions.revoke_request(ctx, request_id=ext, actor=JANE, reason="not needed")
    )
    with pytest.raises(Conflict, match="shortened while its certificate was being signed"):
        issue_certificate(ctx, request_id=rid, requester=JANE, public_key=public_key())
    with ctx.uow(write=False) as uow:
        assert uow.audit.find(AuditQuery(request_id=rid, type="ssh.certificate_issued")) == []
    assert krl_contents(ctx).revoked == []

    again = issue_certificate(ctx, request_id=rid, requester=JANE, public_key=public_key())
    assert again.valid_before == old_end  # the grant's end now
    assert krl_contents(ctx).revoked == []


def test_a_certificate_audited_before_the_revoke_is_listed_in_the_krl(ctx: Context) -> None:
    rid, ext, old_end = extended(ctx)
    issued = issue_certificate(ctx, request_id=rid, requester=JANE, public_key=public_key())
    assert issued.valid_before == old_end + H
    decisions.revoke_request(ctx, request_id=ext, actor=JANE, reason="not needed")
    assert [k.key_id for k in krl_contents(ctx).revoked] == [rid]
