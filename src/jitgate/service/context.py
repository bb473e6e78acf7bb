"""What every handler is given: how to open a transaction, the clock, the current policy,
and the hooks through which notifications are planned and grants applied.

Invariant: ``persist`` writes a request, its audit events and its planned notifications in
the caller's transaction; nothing here commits.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from jitgate.domain.events import DomainEvent
from jitgate.domain.policy import Policy
from jitgate.domain.request import AccessRequest
from jitgate.service.ports import Clock, Notification, UnitOfWork, UnitOfWorkFactory


@dataclass(frozen=True)
class PolicyInForce:
    """The policy in force across the deployment: the one named by the latest
    ``policy.loaded`` event that took force (see ``service.policy``)."""

    digest: str
    at: str  # the event's audit time (UTC, ``Z``)
    replica: str | None  # ``host:pid`` of the replica that loaded it
    via: str | None
    seq: int


@dataclass(frozen=True)
class PolicyLoads:
    """What this replica last read of the ``policy.loaded`` events: up to ``seq``, the one
    in force and every digest ever loaded; ``checked`` is when (monotonic seconds)."""

    seq: int = 0
    in_force: PolicyInForce | None = None
    seen: frozenset[str] = frozenset()
    checked: float | None = None


class PolicyHolder:
    """This replica's policy, replaced whole on reload, never mutated; and what it last
    read of the policy in force across the deployment (``loads``), which only moves on."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._lock = threading.Lock()
        self._loads = PolicyLoads()
        self._noted: tuple[str, str] | None = None

    @property
    def current(self) -> Policy:
        return self._policy

    def replace(self, policy: Policy) -> None:
        with self._lock:
            self._policy = policy

    @property
    def loads(self) -> PolicyLoads:
        return self._loads

    def learn(self, loads: PolicyLoads) -> PolicyLoads:
        """Keep ``loads`` unless what is kept was read further on; returns what is kept."""
        with self._lock:
            if loads.seq >= self._loads.seq:
                self._loads = loads
            return self._loads

    def note(self, key: tuple[str, str]) -> bool:
        """Whether ``key`` (this replica's digest, the one in force) differs from the one
        noted last; notes it. So a change of step is logged once."""
        with self._lock:
            changed, self._noted = key != self._noted, key
            return changed


class NotificationPlanner(Protocol):
    def plan(
        self, event: DomainEvent, request: AccessRequest | None, policy: Policy, now: datetime
    ) -> Sequence[Notification]: ...


class GrantApplier(Protocol):
    """Applies a request's grant on its backends; returns whether it is now in place."""

    def apply(self, request: AccessRequest, now: datetime) -> bool: ...
    def remove(self, request: AccessRequest, now: datetime) -> bool: ...


class NoNotifications:
    def plan(
        self, event: DomainEvent, request: AccessRequest | None, policy: Policy, now: datetime
    ) -> Sequence[Notification]:
        return ()


class NoBackends:
    def apply(self, request: AccessRequest, now: datetime) -> bool:
        return True

    def remove(self, request: AccessRequest, now: datetime) -> bool:
        return True


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Context:
    uow: UnitOfWorkFactory
    clock: Clock
    policy: PolicyHolder
    planner: NotificationPlanner = field(default_factory=NoNotifications)
    grants: GrantApplier = field(default_factory=NoBackends)
    ids: Callable[[], str] = new_id

    def persist(self, uow: UnitOfWork, request: AccessRequest, now: datetime) -> None:
        """Save ``request`` and write out the events it recorded, in ``uow``'s transaction."""
        uow.requests.save(request)
        self._publish_recorded(uow, [request], now)

    def persist_new(self, uow: UnitOfWork, request: AccessRequest, now: datetime) -> None:
        """Insert a new request with what happened to it so far: one write, not two."""
        uow.requests.add(request)
        self._publish_recorded(uow, [request], now)

    def persist_many(
        self, uow: UnitOfWork, requests: Sequence[AccessRequest], now: datetime
    ) -> None:
        """``persist`` for a batch: one round of writes for all of them."""
        uow.requests.save_many(requests)
        self._publish_recorded(uow, requests, now)

    def _publish_recorded(
        self, uow: UnitOfWork, requests: Sequence[AccessRequest], now: datetime
    ) -> None:
        """Audit every event the requests recorded (one append), plan their notifications,
        and clear them so nothing is written twice."""
        self._write(uow, [(e, r) for r in requests for e in r.events], now)
        for request in requests:
            request.events.clear()

    def publish(
        self,
        uow: UnitOfWork,
        events: Sequence[DomainEvent],
        request: AccessRequest | None,
        now: datetime,
    ) -> None:
        self._write(uow, [(e, request) for e in events], now)

    def _write(
        self,
        uow: UnitOfWork,
        events: Sequence[tuple[DomainEvent, AccessRequest | None]],
        now: datetime,
    ) -> None:
        if not events:
            return
        uow.audit.append([event for event, _ in events], now)
        policy = self.policy.current
        planned = [n for e, r in events for n in self.planner.plan(e, r, policy, now)]
        if planned:
            uow.outbox.add(planned, now)
