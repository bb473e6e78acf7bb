"""What a requester gets from the backends of an active grant (SPEC §7): an SSH
certificate, database credentials; the KRL entries; where each backend stands.

Invariants: a certificate or credentials go only to the requester, only while the grant
is honoured (``starts_at <= now < ends_at`` of an active request) and only from a backend
whose grant is in place; issuing one is audited, without the password or any key. A
certificate is handed out only if, when its issue is audited (under the request's lock),
the grant still ends no earlier than it does: one signed while an extension was being
revoked is never handed out, so the KRL pass that follows the shortened end sees every
certificate that outlives it. An extension's backends are its original's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jitgate.domain.errors import Conflict, Invalid, NotFound
from jitgate.domain.events import DomainEvent
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.service.backend_ports import (
    BackendError,
    BackendGrant,
    CertificateAuthority,
    Credential,
    CredentialIssuer,
    IssuedCertificate,
    RevokedKey,
)
from jitgate.service.context import Context
from jitgate.service.enforcement import Enforcement
from jitgate.service.enforcement_base import certificates_revoked
from jitgate.service.ports import UnitOfWork
from jitgate.service.queries import may_view, refused
from jitgate.service.reconcile import enforcement_of


@dataclass(frozen=True)
class KrlContents:
    revoked: list[RevokedKey]
    cas: list[str]


def _honoured_for(enf: Enforcement, request_id: str, requester: str) -> AccessRequest:
    now = enf.ctx.clock.now()
    with enf.uow(write=False) as uow:
        request = uow.requests.get(request_id)
    if request is None:
        raise NotFound(f"no request {request_id}")
    if request.requester != requester:
        why = "only the requester of a grant can get its certificate or credentials"
        raise refused(enf.ctx, request, requester, why)
    if request.extends is not None:  # it has no backend rows: its grant is its original's
        raise Conflict(
            f"request {request.id} extends {request.extends}, whose grant it moved: ask for "
            f"the certificate or credentials of {request.extends}"
        )
    if not request.honoured(now):
        raise Conflict(_not_honoured_why(enf, request, now))
    return request


def _not_honoured_why(enf: Enforcement, request: AccessRequest, now: datetime) -> str:
    """Why no certificate or credentials: the true cause. An approved grant whose window
    is current waits for a backend (named, with its last error), not for its window."""
    in_window = (
        request.starts_at is not None
        and request.ends_at is not None
        and request.starts_at <= now < request.ends_at
    )
    if request.state is State.APPROVED and in_window and request.backends:
        with enf.uow(write=False) as uow:
            rows = {r.backend: r for r in uow.backend_grants.of_request(request.id)}
        waiting = [n for n in request.backends if n not in rows or rows[n].status != "applied"]
        if waiting:
            return "; ".join(_waiting_on(n, rows.get(n)) for n in waiting) + "; jitgate retries"
        return f"request {request.id} is in its window and being activated: ask again shortly"
    return (
        f"request {request.id} is {request.state.value} and not in its grant window; "
        "certificates and credentials are given only while a grant is active"
    )


def _waiting_on(name: str, row: BackendGrant | None) -> str:
    """``the grant is in its window but backend 'x' has not applied it yet: <last error>``
    (the error as audited in ``backend.failed``: never a secret)."""
    said = f"the grant is in its window but backend {name!r} has not applied it yet"
    if row is None:
        return f"{said} (not attempted yet)"
    if row.last_error:
        return f"{said}: {row.last_error}"
    return f"{said} ({'being applied' if row.status == 'applying' else row.status})"


def _in_place(enf: Enforcement, request: AccessRequest, name: str) -> None:
    with enf.uow(write=False) as uow:
        row = uow.backend_grants.get(request.id, name)
    if row is None or row.status != "applied":
        raise Conflict(_waiting_on(name, row) + "; jitgate retries")


def _audit(enf: Enforcement, request: AccessRequest, kind: str, data: dict[str, object]) -> None:
    now = enf.ctx.clock.now()
    with enf.uow() as uow:
        enf.ctx.publish(uow, [DomainEvent(kind, request.requester, request.id, data)], request, now)
        uow.commit()


def issue_certificate(
    ctx: Context, *, request_id: str, requester: str, public_key: str, backend: str | None = None
) -> IssuedCertificate:
    enf = enforcement_of(ctx)
    request = _honoured_for(enf, request_id, requester)
    names = [n for n in request.backends if enf.backend_type(n) == "ssh-ca"]
    if backend is not None:
        if backend not in names:
            raise Invalid(f"backend {backend!r} is not an ssh-ca backend of this request")
        names = [backend]
    if not names:
        raise Conflict(f"request {request_id} has no ssh-ca backend")
    if len(names) > 1:
        raise Invalid(f"this request has several ssh-ca backends ({', '.join(names)}): name one")
    name = names[0]
    _in_place(enf, request, name)
    _not_revoked(enf, request, name)
    try:
        ca = enf.backend_for(name)
        if not isinstance(ca, CertificateAuthority):
            raise Conflict(f"backend {name!r} does not sign certificates")
        issued = ca.issue(enf.spec(request, name), public_key, ctx.clock.now())
    except BackendError as exc:
        raise Invalid(str(exc)) from None
    _audit_issued(enf, request, name, issued)
    return issued


def _not_revoked(enf: Enforcement, request: AccessRequest, name: str) -> None:
    with enf.uow(write=False) as uow:
        _check_not_revoked(uow, request, name)


def _check_not_revoked(uow: UnitOfWork, request: AccessRequest, name: str) -> None:
    """``Conflict`` once the grant's certificates are in the KRL while it runs on (its end
    moved in past a certificate's): the KRL revokes by key id, the request id, so sshd
    would refuse any new certificate of this grant too."""
    if certificates_revoked(uow, request.id, name):
        raise Conflict(
            f"the certificates of request {request.id} were revoked (KRL) when its end moved "
            "in: sshd refuses every certificate of this grant; ask for a new grant"
        )


def _audit_issued(
    enf: Enforcement, request: AccessRequest, name: str, issued: IssuedCertificate
) -> None:
    """Audit ``ssh.certificate_issued`` under the request's lock, so that it is ordered with
    a revoke moving the grant's end in: either it commits first (and the KRL pass after
    the revoke sees it), or the revoke does, and the certificate, valid past the end the
    grant now has, is never handed out (``Conflict``)."""
    now = enf.ctx.clock.now()
    data = {
        "backend": name,
        "key_id": issued.key_id,
        "serial": issued.serial,
        "principals": list(issued.principals),
        "valid_after": issued.valid_after.isoformat(),
        "valid_before": issued.valid_before.isoformat(),
        "ca": issued.ca_fingerprint,
        "key": issued.key_fingerprint,
    }
    with enf.uow() as uow:
        current = uow.requests.get(request.id, for_update=True)
        end = current.ends_at if current is not None else None
        if current is None or not current.honoured(now) or end is None:
            raise Conflict(f"request {request.id} ended while its certificate was being signed")
        if issued.valid_before > end:
            raise Conflict(
                f"the grant of {request.id} was shortened while its certificate was being "
                "signed; ask again"
            )
        _check_not_revoked(uow, current, name)
        event = DomainEvent("ssh.certificate_issued", request.requester, request.id, data)
        enf.ctx.publish(uow, [event], current, now)
        uow.commit()


def credentials(ctx: Context, *, request_id: str, requester: str) -> list[Credential]:
    """A fresh login password per ``ephemeral_user`` backend; the password is not kept."""
    enf = enforcement_of(ctx)
    request = _honoured_for(enf, request_id, requester)
    issued: list[Credential] = []
    for name in request.backends:
        if enf.backend_type(name) != "postgres":
            continue
        try:
            backend = enf.backend_for(name)
            if not isinstance(backend, CredentialIssuer) or not backend.issues_credentials():
                continue
            _in_place(enf, request, name)
            issued.append(backend.credentials(enf.spec(request, name)))
        except BackendError as exc:
            raise Conflict(f"backend {name!r}: {exc}") from None
    if issued:
        _audit(
            enf,
            request,
            "credentials.issued",
            {"logins": [{"backend": c.backend, "username": c.username} for c in issued]},
        )
    return issued


def krl_contents(ctx: Context) -> KrlContents:
    """Revoked key ids, and the public keys of the configured CAs (for an empty KRL too)."""
    enf = enforcement_of(ctx)
    with enf.uow(write=False) as uow:
        revoked = uow.backend_grants.revoked_keys()
    cas = []
    for name, config in ctx.policy.current.backends.items():
        if config.get("type") != "ssh-ca":
            continue
        try:
            backend = enf.backend_for(name)
        except BackendError:
            continue
        if isinstance(backend, CertificateAuthority):
            cas.append(backend.ca_public_key())
    return KrlContents(revoked, cas)


def backend_status(ctx: Context, *, request_id: str, viewer: str) -> list[BackendGrant]:
    """Where each backend of a request stands, with the last error (why it is not active).
    An extension has no backend rows of its own: its time is applied on its original's
    rows (refreshed to the moved end), which are the ones shown."""
    enf = enforcement_of(ctx)
    with enf.uow(write=False) as uow:
        request = uow.requests.get(request_id)
        if request is None or not may_view(ctx, request, viewer):
            raise NotFound(f"no request {request_id}")
        grant = request.extends or request.id  # an extension applies through its original
        rows = {r.backend: r for r in uow.backend_grants.of_request(grant)}
    now = ctx.clock.now()
    out = []
    for name in request.backends:
        row = rows.get(name) or BackendGrant(
            grant, name, request.requester, enf.backend_type(name), "pending", now, now
        )
        if name not in rows:
            row.detail = {"note": "not attempted yet"}
        out.append(row)
    return out
