"""Building blocks of enforcement: backends by name, the immutable ``GrantSpec`` a
backend is given, guarded backend calls, how a failure is recorded (loud: audited as
``backend.failed``, kept on the row, retried with backoff), and the certificates a grant
was issued, as its audit trail records them (``ssh.certificate_issued``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from jitgate.domain.request import AccessRequest
from jitgate.service import enforcement_rows as rows
from jitgate.service.backend_ports import (
    Backend,
    BackendError,
    BackendGrant,
    BackendProvider,
    BackendUnavailable,
    CertificateAuthority,
    EnforcementUnitOfWork,
    EnforcementUnitOfWorkFactory,
    GrantSpec,
    Receipt,
    Revocation,
    SessionRef,
    frozen_config,
)
from jitgate.service.context import Context
from jitgate.service.enforcement_rows import CERTIFICATE_ISSUED, CERTIFICATES_REVOKED, Issued
from jitgate.service.ports import AuditQuery, UnitOfWork

log = logging.getLogger("jitgate.enforcement")
#: More certificates than one grant is ever issued; the audit trail is read up to this.
MAX_CERTIFICATES = 10_000


def certificates_issued(uow: UnitOfWork, request_id: str, backend: str) -> list[Issued]:
    """Every certificate ``backend`` issued for ``request_id``, from its audit events."""
    query = AuditQuery(request_id=request_id, type=CERTIFICATE_ISSUED, limit=MAX_CERTIFICATES)
    found = [Issued.of(e.data) for e in uow.audit.find(query) if e.data.get("backend") == backend]
    return [issued for issued in found if issued is not None]


def certificates_revoked(uow: UnitOfWork, request_id: str, backend: str) -> bool:
    """Whether ``backend``'s certificates of ``request_id`` were listed in the KRL while the
    grant still ran (its end moved in): none issued for it since is of any use."""
    query = AuditQuery(request_id=request_id, type=CERTIFICATES_REVOKED, limit=MAX_CERTIFICATES)
    return any(e.data.get("backend") == backend for e in uow.audit.find(query))


class EnforcementBase:
    def __init__(
        self,
        ctx: Context,
        uow: EnforcementUnitOfWorkFactory,
        backends: BackendProvider,
        *,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.uow = uow
        self.backends = backends
        self._on_close = on_close

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()

    # -- building blocks --------------------------------------------------------------------

    def backend_for(self, name: str) -> Backend:
        config = self.ctx.policy.current.backends.get(name)
        if config is None:
            raise BackendUnavailable(f"backend {name!r} is not configured in the policy")
        return self.backends.get(name, config)

    def backend_type(self, name: str) -> str:
        return str(self.ctx.policy.current.backends.get(name, {}).get("type", "unknown"))

    def spec(
        self,
        request: AccessRequest,
        name: str,
        *,
        ended_early: bool = False,
        terminate: bool = False,
        sessions: tuple[SessionRef, ...] = (),
        instruction: str = "",
    ) -> GrantSpec:
        config = self.ctx.policy.current.backends.get(name, {})
        now = self.ctx.clock.now()
        return GrantSpec(
            request_id=request.id,
            user=request.requester,
            roles=request.roles,
            resources=request.resources,
            starts_at=request.starts_at or now,
            ends_at=request.ends_at or now,
            backend=name,
            backend_type=str(config.get("type", "unknown")),
            config=frozen_config(config),
            ended_early=ended_early,
            terminate_sessions=terminate,
            sessions=sessions,
            instruction=instruction,
        )

    def _new_row(self, request: AccessRequest, name: str, now: datetime) -> BackendGrant:
        return BackendGrant(
            request_id=request.id,
            backend=name,
            user=request.requester,
            backend_type=self.backend_type(name),
            status="applying",
            created_at=now,
            updated_at=now,
            detail=rows.next_instruction({}),
        )

    def _failed(
        self,
        uow: EnforcementUnitOfWork,
        request: AccessRequest,
        row: BackendGrant,
        action: str,
        error: str,
        now: datetime,
    ) -> None:
        row.attempts += 1
        row.in_flight = False
        row.last_error = error
        row.next_attempt_at = now + rows.backoff(row.attempts)
        row.updated_at = now
        if action == "grant":
            row.status = "failed"
        uow.backend_grants.save(row)
        event = rows.event(
            "backend.failed",
            request.id,
            backend=row.backend,
            type=row.backend_type,
            action=action,
            error=error,
            attempt=row.attempts,
            retry_at=row.next_attempt_at.isoformat(),
        )
        self.ctx.publish(uow, [event], request, now)
        log.warning(
            "backend %s failed to %s request %s: %s", row.backend, action, request.id, error
        )

    def _call(self, action: Callable[[GrantSpec], Receipt], spec: GrantSpec) -> Receipt | str:
        try:
            return action(spec)
        except BackendError as exc:
            return str(exc) or type(exc).__name__
        except Exception as exc:
            log.exception("backend %s raised unexpectedly", spec.backend)
            return f"unexpected {type(exc).__name__} in backend {spec.backend}"

    def _revoke_outliving(self, request: AccessRequest, name: str, backend: Backend) -> None:
        """The grant's end moved (in, when an extension was revoked): if ``name`` issued a
        certificate for it valid past the end it now has, the grant's key id is listed in
        the KRL now, not when the grant ends, so no certificate is honoured past
        ``ends_at`` whatever the scheduler's lag (SPEC §9.6). The KRL revokes by key id,
        the request id: the grant's later certificates too (``issue_certificate`` refuses
        them). Audited once, as ``ssh.certificates_revoked``."""
        if not isinstance(backend, CertificateAuthority) or request.ends_at is None:
            return
        now = self.ctx.clock.now()
        with self.uow() as uow:
            uow.backend_grants.get(request.id, name, for_update=True)  # one replica at a time
            issued = certificates_issued(uow, request.id, name)
            outliving = [c for c in issued if c.valid_before > request.ends_at]
            if not outliving or certificates_revoked(uow, request.id, name):
                uow.commit()  # nothing written: release SQLite's write lock
                return
            revocation = Revocation(backend.ca_public_key(), request.id)
            uow.backend_grants.add_revoked_keys(name, request.id, (revocation,), now)
            event = rows.certificates_revoked_event(request, name, outliving)
            self.ctx.publish(uow, [event], request, now)
            uow.commit()
