"""The outbox worker's values and ports (SPEC §6); ``jitgate.service.delivery`` re-exports them.

Invariants of ``DeliveryOptions``: every send has a total deadline (``send_timeout``), and
the claim lease of a row always outlasts it, with the time to give up on a send that
ignores its deadline and to record the outcome on top (``minimum_lease``): a row is never
claimed by a second deliverer while its send may still be under way. A lease left at 0 is
derived from the deadline; one set too short is refused when the options are made.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from jitgate.domain.policy import Policy
from jitgate.service.notifications import Message
from jitgate.service.ports import UnitOfWork

#: Seconds past its deadline that the worker still waits for a send before giving up on it.
GIVE_UP_GRACE = 2.0
#: Seconds, past giving up on a send, allowed for recording its outcome within the lease.
RECORD_MARGIN = 10.0
DEFAULT_LEASE = timedelta(seconds=60)


@dataclass(frozen=True)
class OutboxItem:
    id: str
    created_at: datetime
    event: str
    request_id: str | None
    channel: str
    recipient: str | None
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None = None
    last_status: int | None = None
    delivered_at: datetime | None = None


class DeliveryStore(Protocol):
    def claim(
        self, now: datetime, limit: int, lease: timedelta, channels: Collection[str]
    ) -> list[OutboxItem]: ...
    def abandon(
        self, now: datetime, known: Collection[str], queued_before: datetime, limit: int
    ) -> list[OutboxItem]: ...
    def sent(self, item_id: str, now: datetime, status: int | None) -> None: ...
    def retry_at(self, item_id: str, when: datetime, error: str, status: int | None) -> None: ...
    def dead(self, item_id: str, now: datetime, error: str, status: int | None) -> None: ...
    def find(self, *, failed_only: bool, limit: int) -> list[OutboxItem]: ...
    def get(self, item_id: str) -> OutboxItem | None: ...
    def requeue(self, item_id: str, now: datetime) -> bool:
        """Give a failed (retrying) or dead row a fresh set of attempts, due at ``now``;
        False, changing nothing, for any other row (sent, being sent, never tried)."""
        ...


StoreOf = Callable[[UnitOfWork], DeliveryStore]


class DeliveryFailed(Exception):
    """A send that did not go through. ``reason`` is safe to store and show (no secrets)."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class Sent:
    status: int | None = None


Outcome = Sent | DeliveryFailed


class Notifier(Protocol):
    """One configured channel. ``send`` raises ``DeliveryFailed``; it never logs secrets.

    It returns by the deadline of ``jitgate.service.delivery_deadline.seconds_left()``;
    one that does not is given up on (and its row left alone for a whole lease)."""

    def send(self, message: Message) -> Sent: ...


class Channels(Protocol):
    def get(self, name: str, policy: Policy) -> Notifier | None: ...
    def sendable(self, policy: Policy) -> Collection[str]:
        """The channels of ``policy`` this process can send (configured and enabled here)."""
        ...


def minimum_lease(send_timeout: float) -> timedelta:
    """The shortest claim lease for sends limited to ``send_timeout`` seconds in all."""
    return timedelta(seconds=send_timeout + GIVE_UP_GRACE + RECORD_MARGIN)


def lease_for(send_timeout: float) -> timedelta:
    """The lease derived from the send deadline: a minute, or twice the minimum."""
    return max(DEFAULT_LEASE, 2 * minimum_lease(send_timeout))


@dataclass(frozen=True)
class DeliveryOptions:
    batch: int = 200
    #: Seconds a send may take in all (connecting, sending, reading the answer).
    send_timeout: float = 10.0
    #: How long a claimed row is left to its deliverer; 0: derived from ``send_timeout``.
    lease: timedelta = timedelta(0)
    max_attempts: int = 10
    base_delay: float = 2.0
    max_delay: float = 300.0
    #: Sends at once, per channel: each channel has threads of its own.
    concurrency: int = 8
    #: How long one drain claims; sends still under way then are recorded by the next one.
    drain_seconds: float = 5.0
    poll_seconds: float = 0.25
    view_ttl: timedelta = timedelta(days=7)
    #: How long a row of a channel missing from this process's policy waits for a process
    #: that has it (a rolling deploy adding the channel) before it is dead (it was removed).
    unknown_channel_grace: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if not self.send_timeout > 0:
            raise ValueError(f"send_timeout must be positive, not {self.send_timeout}")
        if self.lease <= timedelta(0):
            object.__setattr__(self, "lease", lease_for(self.send_timeout))
        shortest = minimum_lease(self.send_timeout)
        if self.lease < shortest:
            raise ValueError(
                f"the claim lease ({self.lease.total_seconds():g}s) must outlast a send "
                f"({self.send_timeout:g}s) by {(shortest.total_seconds() - self.send_timeout):g}s"
                " at least, or a second deliverer could send a row while it is being sent"
            )

    @property
    def give_up_after(self) -> float:
        """Seconds after its start when the worker stops waiting for a send."""
        return self.send_timeout + GIVE_UP_GRACE


@dataclass(frozen=True)
class DeliveryReport:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    dead: int = 0

    def plus(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            self.claimed + other.claimed,
            self.sent + other.sent,
            self.retrying + other.retrying,
            self.dead + other.dead,
        )
