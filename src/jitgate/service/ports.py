"""Ports: what the service needs from the outside world, as Protocols."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, NamedTuple, Protocol

from jitgate.domain.audit import AuditRecord, ChainCheck
from jitgate.domain.events import DomainEvent
from jitgate.domain.policy import Scope
from jitgate.domain.request import AccessRequest, grant_covers

PrincipalKind = Literal["user", "service"]
DueKind = Literal["pending_expired", "escalate", "activate", "expiring", "ended"]


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    subject: str


TOKEN_ID_LENGTH = 12


@dataclass(frozen=True)
class TokenInfo:
    """A stored API token as an operator sees it: never the token itself. ``id`` is the
    start of the token's SHA-256 hash, which says nothing about the token (256 random bits)
    but names it in ``jitgate token ls`` / ``revoke`` and in the audit trail."""

    token_hash: str
    principal: Principal
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None = None

    @property
    def id(self) -> str:
        return self.token_hash[:TOKEN_ID_LENGTH]


class GrantView(NamedTuple):
    """The part of an active grant that authorization needs; read on the hot path (a
    named tuple: immutable, and cheaper to build than a frozen dataclass)."""

    id: str
    roles: tuple[str, ...]
    resources: tuple[str, ...]
    scopes: tuple[Scope, ...]
    starts_at: datetime
    ends_at: datetime

    def honoured(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def covers(self, scope: Scope, resource: str | None) -> bool:
        return grant_covers(self.resources, self.scopes, scope, resource)


@dataclass(frozen=True)
class RequestQuery:
    state: str | None = None
    requester: str | None = None
    ids: tuple[str, ...] | None = None
    after: tuple[str, str] | None = None  # (created_at iso, id) cursor, newest first
    limit: int = 50


@dataclass(frozen=True)
class AuditQuery:
    since: datetime | None = None
    type: str | None = None
    actor: str | None = None
    request_id: str | None = None
    after_seq: int | None = None
    limit: int = 100


@dataclass
class Session:
    id: str
    request_id: str
    user: str
    resource: str | None
    kind: str
    started_at: datetime
    ended_at: datetime | None = None
    recording_url: str | None = None
    end_reason: str | None = None
    opened_by: str | None = None  # the gateway (``service:NAME``) that opened it
    # jitgate asked for its end (grant revoked, or ended under ``sessions_at_expiry:
    # terminate``); ``ended_at`` is set only once its gateway confirms the end
    termination_requested_at: datetime | None = None
    termination_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "request_id": self.request_id,
            "user": self.user,
            "resource": self.resource,
            "kind": self.kind,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "recording_url": self.recording_url,
            "end_reason": self.end_reason,
            "opened_by": self.opened_by,
            "termination_requested_at": (
                self.termination_requested_at.isoformat() if self.termination_requested_at else None
            ),
            "termination_reason": self.termination_reason,
        }


@dataclass(frozen=True)
class Notification:
    """One message to one recipient over one channel, queued in the outbox."""

    event: str
    request_id: str | None
    channel: str
    recipient: str | None
    payload: dict[str, Any]


class Clock(Protocol):
    def now(self) -> datetime: ...


class Requests(Protocol):
    def add(self, request: AccessRequest) -> None: ...
    def get(self, request_id: str, *, for_update: bool = False) -> AccessRequest | None: ...
    def get_family(self, request_id: str) -> tuple[AccessRequest | None, AccessRequest | None]: ...
    def live_grants(self, user: str, now: datetime) -> list[GrantView]: ...
    def save(self, request: AccessRequest) -> None: ...
    def save_many(self, requests: Sequence[AccessRequest]) -> None: ...
    def find(self, query: RequestQuery) -> list[AccessRequest]: ...
    def due(
        self, kind: DueKind, now: datetime, limit: int, *, horizon: datetime | None = None
    ) -> list[AccessRequest]: ...
    def extensions_of(
        self, request_id: str, *, for_update: bool = False
    ) -> list[AccessRequest]: ...
    def save_rules(self, request: AccessRequest) -> None:
        """Write the request's rules (a reloaded policy changed them; see ``follow_rules``)."""
        ...

    def pending_extensions(self, request_ids: Sequence[str]) -> list[AccessRequest]:
        """The pending extensions of any of ``request_ids``, locked."""
        ...


class AuditLog(Protocol):
    def append(self, events: Sequence[DomainEvent], at: datetime) -> None: ...
    def find(self, query: AuditQuery) -> list[AuditRecord]: ...
    def verify(self) -> ChainCheck: ...


class Sessions(Protocol):
    def add(self, session: Session) -> None: ...
    def get(self, session_id: str, *, for_update: bool = False) -> Session | None: ...
    def save(self, session: Session) -> None: ...
    def of_request(self, request_id: str, *, open_only: bool = False) -> list[Session]: ...
    def open_by_request(
        self, request_ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, list[Session]]: ...


class Tokens(Protocol):
    def add(
        self, token_hash: str, principal: Principal, now: datetime, expires_at: datetime | None
    ) -> None: ...
    def find(self, token_hash: str, now: datetime) -> TokenInfo | None:
        """The token if it works at ``now``: not revoked, not expired."""
        ...

    def infos(
        self,
        *,
        hash_prefix: str | None = None,
        principal: Principal | None = None,
        working_at: datetime | None = None,
    ) -> list[TokenInfo]:
        """Stored tokens, oldest first, optionally only those whose hash starts with
        ``hash_prefix`` (lower-case hex), that belong to ``principal``, or that work at
        ``working_at``."""
        ...

    def revoke(self, token_hashes: Sequence[str], now: datetime) -> None: ...
    def revoked_count(self) -> int:
        """How many tokens were ever revoked: it only grows (tokens are never deleted)."""
        ...


class IdempotencyKeys(Protocol):
    """``claim`` is atomic: of racing claims of one key exactly one wins (returns ``None``);
    the others get the winner's ``(body_hash, request_id)`` once it has committed."""

    def get(self, subject: str, key: str) -> tuple[str, str] | None: ...
    def claim(
        self, subject: str, key: str, body_hash: str, request_id: str, now: datetime
    ) -> tuple[str, str] | None: ...


class Outbox(Protocol):
    def add(self, notifications: Sequence[Notification], now: datetime) -> None: ...


class UnitOfWork(Protocol):
    """One transaction. Repositories are read-only attributes of it; none of them commits."""

    @property
    def requests(self) -> Requests: ...
    @property
    def audit(self) -> AuditLog: ...
    @property
    def sessions(self) -> Sessions: ...
    @property
    def tokens(self) -> Tokens: ...
    @property
    def idempotency(self) -> IdempotencyKeys: ...
    @property
    def outbox(self) -> Outbox: ...

    def __enter__(self) -> UnitOfWork: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def commit(self) -> None: ...


class AsyncGrantReader(Protocol):
    """``live_grants`` awaited on the event loop, for a database reached over the network."""

    async def live_grants(self, user: str, now: datetime) -> list[GrantView]: ...


class UnitOfWorkFactory(Protocol):
    """``write=False`` for reads; ``snapshot=False`` for a read of one statement, which
    needs no transaction of its own."""

    def __call__(self, *, write: bool = True, snapshot: bool = True) -> UnitOfWork: ...

    def live_grants(self, user: str, now: datetime) -> list[GrantView]:
        """``Requests.live_grants`` as one read of its own, outside any unit of work."""
        ...
