"""An approved extension continues its original's grant on the backends without a break
(SPEC §3 extension, §7): the backends follow the moved end as soon as the extension is
approved, nothing is removed or terminated at the original's old end (even with the
scheduler late and ``sessions_at_expiry: terminate``), and everything ends at the new end.
An extension approved ahead of a scheduled grant never applies that grant before it begins.

Real parts: a PostgreSQL whose clock enforces ``VALID UNTIL`` (``grant_role`` and
``ephemeral_user``), a local HTTP receiver for the webhook, the ``ssh-ca`` signer.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from pg_target import PgTarget, start_target
from test_webhook_backend import Receiver

from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.clock import ManualClock
from jitgate.adapters.policy import load_policy
from jitgate.adapters.signing import new_secret
from jitgate.domain.creation import Draft
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.service import decisions, lifecycle
from jitgate.service import requests as use
from jitgate.service.backend_access import credentials, issue_certificate, krl_contents
from jitgate.service.context import Context
from jitgate.service.ports import AuditQuery

H = timedelta(hours=1)
JANE, JOE, JIM, LEAD = "jane@example.com", "joe@example.com", "jim@example.com", "lead@example.com"

POLICY = """
version: 1
settings: {{pending_ttl: 1h, sessions_at_expiry: {sessions}, admins: [security]}}
directory:
  users:
    jane@example.com: {{groups: [dba]}}
    joe@example.com: {{groups: [dba]}}
    jim@example.com: {{groups: [dba]}}
    lead@example.com: {{groups: [leads]}}
resources:
  app-db: {{type: database, environment: production}}
  app-db-staging: {{type: database, environment: staging}}
  app-db-dev: {{type: database, environment: development}}
  k8s: {{type: kubernetes, environment: production}}
  bastion: {{type: ssh, environment: production}}
roles:
  db-role:
    grants: [{{type: database, environment: production}}]
    {common}
    backends: [pg-role]
  db-login:
    grants: [{{type: database, environment: staging}}]
    {common}
    backends: [pg-login]
  db-login-self:
    grants: [{{type: database, environment: development}}]
    {common}
    backends: [pg-login]
  k8s:
    grants: [{{type: kubernetes, environment: production}}]
    {common}
    backends: [hook]
  ssh:
    grants: [{{type: ssh, environment: production}}]
    {common}
    backends: [ca]
approval:
  - match: {{type: database, environment: development}}
    rule: self
  - match: {{type: database, environment: production}}
    any: [{{group: leads}}]
  - match: {{type: database, environment: staging}}
    any: [{{group: leads}}]
  - match: {{type: kubernetes, environment: production}}
    any: [{{group: leads}}]
  - match: {{type: ssh, environment: production}}
    any: [{{group: leads}}]
backends:
  pg-role: {{type: postgres, dsn_env: JG_PG_DSN, db_role: readonly, mode: grant_role}}
  pg-login: {{type: postgres, dsn_env: JG_PG_DSN, db_role: readonly, mode: ephemeral_user}}
  hook: {{type: webhook, url: "{url}", secret_env: JG_HOOK_SECRET}}
  ca: {{type: ssh-ca, ca_key_env: JG_CA_KEY, principals: [ubuntu]}}
"""
COMMON = (
    "requestable_by: [dba]\n    default_duration: 1h\n    max_duration: 8h\n    extendable: true"
)


@pytest.fixture(scope="module")
def target() -> Iterator[PgTarget]:
    server = start_target()
    yield server
    server.server.stop()


def jitgate(
    make_ctx: Any,
    tmp_path: Path,
    *,
    environ: dict[str, str],
    sessions: str = "continue",
    url: str = "http://127.0.0.1:9/hook",
    start: datetime | None = None,
) -> tuple[Context, ManualClock]:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(sessions=sessions, url=url, common=COMMON))
    extra = {"start": start} if start is not None else {}
    ctx, clock = make_ctx(f"sqlite:///{tmp_path}/jg.db", load_policy(path), **extra)
    wire_enforcement(ctx, ctx.uow.db, environ=environ)
    return ctx, clock


def granted(ctx: Context, user: str, role: str, *, start_at: datetime | None = None) -> str:
    """A 1 h grant of ``role`` to ``user``, approved by the lead where the role needs it."""
    draft = Draft(roles=(role,), reason="INC-9", duration=H, start_at=start_at)
    request = use.create_request(ctx, requester=user, draft=draft).request
    if request.state is State.PENDING:
        request = decisions.approve_request(ctx, request_id=request.id, approver=LEAD).request
    assert request.state in (State.APPROVED, State.ACTIVE)
    return request.id


def extended(ctx: Context, request_id: str, user: str) -> str:
    """An extension by 1 h, approved (by the lead, or at once where the role self-approves)."""
    ext = use.extend_request(ctx, request_id=request_id, requester=user, duration=H, reason="more")
    if ext.state is State.PENDING:
        ext = decisions.approve_request(ctx, request_id=ext.id, approver=LEAD).request
    assert ext.state is State.APPROVED and ext.extends == request_id
    return ext.id


def get(ctx: Context, request_id: str) -> AccessRequest:
    with ctx.uow(write=False) as uow:
        request = uow.requests.get(request_id)
    assert request is not None
    return request


def kinds(ctx: Context, request_id: str) -> list[str]:
    with ctx.uow(write=False) as uow:
        return [e.type for e in uow.audit.find(AuditQuery(request_id=request_id, limit=1000))]


def refreshed_to(ctx: Context, request_id: str) -> list[str]:
    with ctx.uow(write=False) as uow:
        found = uow.audit.find(AuditQuery(request_id=request_id, type="backend.applied"))
    return [str(e.data["refreshed_to"]) for e in found if "refreshed_to" in e.data]


def valid_until(target: PgTarget, login: str) -> datetime | None:
    with target.admin() as conn:
        row = conn.execute("SELECT rolvaliduntil FROM pg_roles WHERE rolname = %s", (login,))
        found = row.fetchone()
    return found[0] if found else None


# -- postgres ephemeral_user ------------------------------------------------------------------


@pytest.mark.parametrize(
    "role",
    [
        "db-login",
        "db-login-self",
    ],
)
def test_an_ephemeral_login_runs_on_past_the_old_end_with_the_scheduler_late(
    target: PgTarget, make_ctx: Any, tmp_path: Path, role: str
) -> None:
    """PostgreSQL enforces ``VALID UNTIL`` by its own clock: jitgate's clock starts 61 min
    in the past so that the original's end (1 h) has really passed when the user logs in,
    before any tick ran. The login must work (the extension continues the grant), keep its
    open connection across the activation tick (``terminate``), and end at the new end."""
    start = datetime.now(UTC).replace(microsecond=0) - H - timedelta(minutes=1)
    ctx, clock = jitgate(
        make_ctx,
        tmp_path,
        environ={"JG_PG_DSN": target.service_dsn()},
        sessions="terminate",
        start=start,
    )
    rid = granted(ctx, JANE, role)
    (login,) = credentials(ctx, request_id=rid, requester=JANE)
    old_end = start + H
    assert valid_until(target, login.username) == old_end

    clock.advance(H / 2)
    ext = extended(ctx, rid, JANE)
    new_end = old_end + H
    assert valid_until(target, login.username) == new_end  # the login follows at once
    assert refreshed_to(ctx, rid) == [new_end.isoformat()]

    clock.set(datetime.now(UTC))  # the old end is a minute past; the scheduler has not run
    assert clock.now() > old_end and get(ctx, rid).honoured(clock.now())
    session = psycopg.connect(login.dsn, password=login.password, autocommit=True)
    assert session.execute("SELECT v FROM secrets").fetchone() == ("the crown jewels",)

    lifecycle.tick(ctx)  # the extension's own time has begun
    assert get(ctx, ext).state is State.ACTIVE and get(ctx, rid).state is State.ACTIVE
    assert session.execute("SELECT v FROM secrets").fetchone() == ("the crown jewels",)
    assert valid_until(target, login.username) == new_end
    for request_id in (rid, ext):
        assert not {"backend.removed", "session.ended", "access.expired"} & set(
            kinds(ctx, request_id)
        )

    clock.set(new_end)
    lifecycle.tick(ctx)
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()
    assert valid_until(target, login.username) is None  # dropped at the new end
    assert get(ctx, rid).state is State.EXPIRED and get(ctx, ext).state is State.EXPIRED


# -- postgres grant_role ----------------------------------------------------------------------


def test_a_granted_role_is_never_revoked_at_the_old_end(
    target: PgTarget, make_ctx: Any, tmp_path: Path
) -> None:
    """No REVOKE then GRANT (a blip) at the original's end, and a ``SET ROLE`` session is
    not terminated there even with ``sessions_at_expiry: terminate``; both at the new end."""
    target.fresh_login("joe", "pw-joe-1")
    ctx, clock = jitgate(
        make_ctx, tmp_path, environ={"JG_PG_DSN": target.service_dsn()}, sessions="terminate"
    )
    rid = granted(ctx, JOE, "db-role")
    session = target.login("joe", "pw-joe-1")
    session.execute("SET ROLE readonly")
    clock.advance(H / 2)
    old_end = get(ctx, rid).ends_at
    ext = extended(ctx, rid, JOE)
    new_end = get(ctx, rid).ends_at
    assert old_end is not None and new_end == old_end + H
    assert refreshed_to(ctx, rid) == [new_end.isoformat()]  # at the approval

    clock.advance(H / 2 + timedelta(minutes=5))  # past the old end, the scheduler late
    assert session.execute("SELECT v FROM secrets").fetchone() == ("the crown jewels",)
    lifecycle.tick(ctx)
    assert session.execute("SELECT v FROM secrets").fetchone() == ("the crown jewels",)
    assert target.can_read("joe", "pw-joe-1")
    assert "backend.removed" not in kinds(ctx, rid) + kinds(ctx, ext)

    clock.advance(H)
    lifecycle.tick(ctx)
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT v FROM secrets")
    session.close()
    assert not target.can_read("joe", "pw-joe-1")
    assert kinds(ctx, rid).count("backend.removed") == 1


@pytest.mark.parametrize("extension", ["approved", "withdrawn"])
def test_an_extension_never_applies_a_scheduled_grant_before_it_begins(
    target: PgTarget, make_ctx: Any, tmp_path: Path, extension: str
) -> None:
    target.fresh_login("jim", "pw-jim-1")
    ctx, clock = jitgate(make_ctx, tmp_path, environ={"JG_PG_DSN": target.service_dsn()})
    begin = clock.now() + 3 * H
    rid = granted(ctx, JIM, "db-role", start_at=begin)
    assert get(ctx, rid).state is State.APPROVED
    if extension == "approved":
        extended(ctx, rid, JIM)
    else:
        ext = use.extend_request(ctx, request_id=rid, requester=JIM, duration=H, reason="x")
        decisions.revoke_request(ctx, request_id=ext.id, actor=JIM, reason="not needed")
    assert not target.can_read("jim", "pw-jim-1")  # no GRANT before the window begins
    assert "backend.applied" not in kinds(ctx, rid)
    lifecycle.tick(ctx)
    assert not target.can_read("jim", "pw-jim-1")

    clock.set(begin)
    lifecycle.tick(ctx)
    ends_at = get(ctx, rid).ends_at
    assert get(ctx, rid).state is State.ACTIVE and target.can_read("jim", "pw-jim-1")
    assert ends_at == begin + (2 * H if extension == "approved" else H)
    clock.set(ends_at)
    lifecycle.tick(ctx)
    assert not target.can_read("jim", "pw-jim-1")


# -- webhook ------------------------------------------------------------------------------------


def test_a_webhook_hears_the_new_end_at_approval_and_no_revoke_until_it(
    make_ctx: Any, tmp_path: Path
) -> None:
    receiver = Receiver(new_secret())
    try:
        ctx, clock = jitgate(
            make_ctx,
            tmp_path,
            environ={"JG_HOOK_SECRET": receiver.secret},
            url=receiver.url,
            sessions="terminate",
        )
        rid = granted(ctx, JANE, "k8s")
        clock.advance(H / 2)
        extended(ctx, rid, JANE)
        new_end = get(ctx, rid).ends_at
        assert new_end is not None
        assert receiver.kinds() == ["grant", "grant"]
        assert receiver.received[-1][1]["data"]["ends_at"] == new_end.isoformat()

        clock.advance(H / 2 + timedelta(minutes=5))
        lifecycle.tick(ctx)
        assert receiver.kinds() == ["grant", "grant"]  # no revoke, no session.terminate
        clock.set(new_end)
        lifecycle.tick(ctx)
        assert receiver.kinds() == ["grant", "grant", "revoke", "session.terminate"]
        assert receiver.received[2][1]["data"]["request_id"] == rid
        assert receiver.bad_signatures == 0
    finally:
        receiver.close()


# -- ssh-ca -------------------------------------------------------------------------------------


def test_a_certificate_asked_after_the_extension_runs_to_the_new_end(
    make_ctx: Any, tmp_path: Path
) -> None:
    ca = ed25519.Ed25519PrivateKey.generate()
    pem = ca.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    user_key = ed25519.Ed25519PrivateKey.generate().public_key()
    public = user_key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    ctx, clock = jitgate(make_ctx, tmp_path, environ={"JG_CA_KEY": pem})
    rid = granted(ctx, JANE, "ssh")
    old_end = get(ctx, rid).ends_at
    first = issue_certificate(ctx, request_id=rid, requester=JANE, public_key=public)
    assert first.valid_before == old_end  # per certificate: the user asks for a new one
    clock.advance(H / 2)
    ext = extended(ctx, rid, JANE)
    second = issue_certificate(ctx, request_id=rid, requester=JANE, public_key=public)
    assert old_end is not None and second.valid_before == get(ctx, rid).ends_at == old_end + H
    assert second.key_id == rid

    clock.advance(H / 2 + timedelta(minutes=5))
    lifecycle.tick(ctx)
    assert get(ctx, ext).state is State.ACTIVE
    assert krl_contents(ctx).revoked == []  # nothing revoked at the old end
    assert "backend.removed" not in kinds(ctx, rid)


def test_a_certificate_issued_to_a_revoked_extensions_end_is_revoked_when_the_grant_ends(
    make_ctx: Any, tmp_path: Path
) -> None:
    """The certificate runs to the end the grant had when it was issued; once an extension
    is revoked the grant ends earlier, and from then on (at once, not at the shortened
    end) the KRL lists its key id."""
    ca = ed25519.Ed25519PrivateKey.generate()
    pem = ca.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    user_key = ed25519.Ed25519PrivateKey.generate().public_key()
    public = user_key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    ctx, clock = jitgate(make_ctx, tmp_path, environ={"JG_CA_KEY": pem})
    rid = granted(ctx, JANE, "ssh")
    old_end = get(ctx, rid).ends_at
    assert old_end is not None
    ext = extended(ctx, rid, JANE)
    cert = issue_certificate(ctx, request_id=rid, requester=JANE, public_key=public)
    assert cert.valid_before == old_end + H
    clock.advance(H / 6)
    decisions.revoke_request(ctx, request_id=ext, actor=JANE, reason="done sooner")
    assert get(ctx, rid).ends_at == old_end
    # the certificate runs past the end the grant now has: listed at once, however late
    # the scheduler (it was listed only once the grant ended, a tick after its end)
    assert [k.key_id for k in krl_contents(ctx).revoked] == [rid]

    clock.set(old_end + timedelta(seconds=1))
    lifecycle.tick(ctx)
    assert get(ctx, rid).state is State.EXPIRED
    assert [k.key_id for k in krl_contents(ctx).revoked] == [rid]


def test_a_grant_that_ends_at_its_own_end_adds_nothing_to_the_krl(
    make_ctx: Any, tmp_path: Path
) -> None:
    ca = ed25519.Ed25519PrivateKey.generate()
    pem = ca.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    ctx, clock = jitgate(make_ctx, tmp_path, environ={"JG_CA_KEY": pem})
    rid = granted(ctx, JANE, "ssh")
    extended(ctx, rid, JANE)
    clock.set(get(ctx, rid).ends_at + timedelta(seconds=1))  # type: ignore[operator]
    lifecycle.tick(ctx)
    assert get(ctx, rid).state is State.EXPIRED
    assert krl_contents(ctx).revoked == []  # its certificates expire by themselves
