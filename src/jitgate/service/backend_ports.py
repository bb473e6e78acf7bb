"""Ports of enforcement (SPEC §7): what a backend is given, what it answers, and where the
service keeps the state of each grant on each backend.

Invariants:
- a backend never sees the mutable ``AccessRequest``: it gets a frozen ``GrantSpec`` whose
  ``config`` is a read-only copy of its policy entry;
- ``grant``, ``revoke`` and ``check`` are idempotent: calling one again changes nothing more;
- a ``Receipt``'s ``detail`` and a ``BackendError``'s text are audited as they are, so they
  never hold a secret (passwords, keys, DSNs, URLs with tokens).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, Protocol, runtime_checkable

from jitgate.service.ports import UnitOfWork

GrantStatus = Literal["pending", "applying", "applied", "failed", "removing", "removed"]


class BackendError(Exception):
    """A grant, revoke or check did not happen. ``str()`` is safe to audit and show."""


class BackendUnavailable(BackendError):
    """The backend cannot be used at all: not configured, unknown type, secret missing."""


def frozen_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only deep copy: a plugin can never change the policy it was given."""

    def freeze(value: Any) -> Any:
        if isinstance(value, Mapping):
            return MappingProxyType({k: freeze(v) for k, v in value.items()})
        if isinstance(value, list | tuple):
            return tuple(freeze(v) for v in value)
        return value

    return freeze(copy.deepcopy(dict(config)))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class SessionRef:
    """An open session of a grant, as a gateway may need it to end it."""

    id: str
    user: str
    resource: str | None
    kind: str
    started_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "resource": self.resource,
            "kind": self.kind,
            "started_at": self.started_at.isoformat(),
        }


@dataclass(frozen=True)
class GrantSpec:
    """One grant on one backend: who, what, the window, and the backend's own config."""

    request_id: str
    user: str
    roles: tuple[str, ...]
    resources: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime
    backend: str
    backend_type: str
    config: Mapping[str, Any]
    ended_early: bool = False
    terminate_sessions: bool = False
    sessions: tuple[SessionRef, ...] = ()
    #: names the instruction this call carries out: the same on every retry of it, new for
    #: every new one (even one that repeats an earlier one's content); ``""`` when unknown
    instruction: str = ""


@dataclass(frozen=True)
class Revocation:
    """A certificate key id to list in the KRL, with the CA (OpenSSH public key line)."""

    ca_public_key: str
    key_id: str


@dataclass(frozen=True)
class Receipt:
    backend: str
    action: Literal["grant", "revoke"]
    changed: bool
    detail: Mapping[str, Any] = field(default_factory=dict)
    revocations: tuple[Revocation, ...] = ()


@runtime_checkable
class Backend(Protocol):
    """The port every backend plugin implements (entry point group ``jitgate.backends``).

    ``shares_grants``: grants of one user on this backend are one thing (a role membership),
    so ending one grant must not remove it while another live grant still covers it.
    ``verifiable``: ``check`` looks at the real system (reconciliation trusts it) and says
    whether the grant is there as given: a grant that outlasts its window is drift too.
    """

    name: str
    shares_grants: bool
    verifiable: bool

    def grant(self, spec: GrantSpec) -> Receipt: ...
    def revoke(self, spec: GrantSpec) -> Receipt: ...
    def check(self, spec: GrantSpec) -> bool: ...


@runtime_checkable
class SessionTerminator(Protocol):
    """A backend that can end a grant's sessions on their own, for when the grant itself
    stays in place because another live grant still covers it (``session.terminate``)."""

    def terminate_sessions(self, spec: GrantSpec) -> Receipt: ...


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: str
    key_id: str
    serial: int
    principals: tuple[str, ...]
    valid_after: datetime
    valid_before: datetime
    ca_fingerprint: str
    key_fingerprint: str


@runtime_checkable
class CertificateAuthority(Protocol):
    """A backend that signs OpenSSH user certificates for a grant (``ssh-ca``)."""

    def issue(self, spec: GrantSpec, public_key: str, now: datetime) -> IssuedCertificate: ...
    def ca_public_key(self) -> str: ...


@dataclass(frozen=True)
class Credential:
    backend: str
    username: str
    password: str
    dsn: str


@runtime_checkable
class CredentialIssuer(Protocol):
    """A backend that hands the requester a login of their own (``ephemeral_user``)."""

    def issues_credentials(self) -> bool: ...
    def credentials(self, spec: GrantSpec) -> Credential: ...


@dataclass(frozen=True)
class MadeGrant:
    """A grant found on the real system that jitgate made (it carries jitgate's marker)."""

    request_id: str
    user: str
    key: str  # the backend's own name for it (a login, a binding)


@runtime_checkable
class Inventory(Protocol):
    """A backend that can list the grants jitgate made on it, and remove one it found."""

    def made(self) -> Sequence[MadeGrant]: ...
    def remove_made(self, grant: MadeGrant, *, terminate: bool) -> Receipt: ...


@runtime_checkable
class RoleMembers(Protocol):
    """A backend whose grants are memberships of a role (``postgres`` in ``grant_role``
    mode): it lists the role's members, so reconciliation can report the ones no grant of
    jitgate explains (standing access)."""

    def member_scope(self) -> str | None: ...  # the role on its server; None: no such role
    def members(self) -> Sequence[str]: ...
    def member_name(self, user: str) -> str: ...


class BackendProvider(Protocol):
    """One backend instance per configured backend; raises ``BackendUnavailable``."""

    def get(self, name: str, config: Mapping[str, Any]) -> Backend: ...


@dataclass
class BackendGrant:
    """Where one request's grant stands on one backend (persisted, survives restarts)."""

    request_id: str
    backend: str
    user: str
    backend_type: str
    status: GrantStatus
    created_at: datetime
    updated_at: datetime
    in_flight: bool = False
    called: bool = False
    terminate: bool = False
    ended_early: bool = False
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    covered_by: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    applied_at: datetime | None = None
    removed_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "request_id": self.request_id,
            "backend": self.backend,
            "type": self.backend_type,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": iso(self.next_attempt_at),
            "last_error": self.last_error,
            "covered_by": self.covered_by,
            "applied_at": iso(self.applied_at),
            "removed_at": iso(self.removed_at),
            "updated_at": iso(self.updated_at),
        }


@dataclass(frozen=True)
class RevokedKey:
    ca_public_key: str
    key_id: str
    revoked_at: datetime


class BackendGrants(Protocol):
    """The repository of ``BackendGrant`` rows and the KRL entries. Never commits."""

    def get(
        self, request_id: str, backend: str, *, for_update: bool = False
    ) -> BackendGrant | None: ...
    def of_request(self, request_id: str) -> list[BackendGrant]: ...
    def save(self, grant: BackendGrant) -> None: ...
    def covering(self, user: str, backend: str, exclude: str, now: datetime) -> str | None: ...
    def due_removals(self, now: datetime, limit: int) -> list[BackendGrant]: ...
    def unsettled_of_ended(self, now: datetime, limit: int) -> list[BackendGrant]: ...
    def of_live(
        self, now: datetime, limit: int, after: tuple[str, str] | None = None
    ) -> list[BackendGrant]: ...
    def removed_since(self, since: datetime, limit: int) -> list[BackendGrant]: ...
    def holders(self, backend: str) -> set[str]: ...
    def add_revoked_keys(
        self, backend: str, request_id: str, keys: Sequence[Revocation], now: datetime
    ) -> None: ...
    def revoked_keys(self) -> list[RevokedKey]: ...


class EnforcementUnitOfWork(UnitOfWork, Protocol):
    @property
    def backend_grants(self) -> BackendGrants: ...

    def __enter__(self) -> EnforcementUnitOfWork: ...


class EnforcementUnitOfWorkFactory(Protocol):
    def __call__(self, *, write: bool = True, snapshot: bool = True) -> EnforcementUnitOfWork: ...
