"""The outbox worker (SPEC §6): delivers queued notifications, retries, dead-letters.

Invariants:
- a notification row was written in the transaction of the state change that caused it;
  this worker only reads and updates rows, so a decision never waits for a channel;
- a row is claimed with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so replicas never
  send it twice at once; a worker that dies mid-send leaves it to be sent again when the
  lease ends, under the same id (the Standard Webhooks ``webhook-id``, the PagerDuty
  ``dedup_key`` is the request id), so a peer sees at most a repeat it can recognise;
- rows of one request, channel and recipient go out in the order they were written;
- a process claims only rows of the channels it can send (in its policy and enabled here,
  ``Channels.sendable``); the rows of any other channel stay pending for the replicas that
  can (a worker without a channel's ``*_env`` variables, a replica on an older policy
  during a rolling deploy). A row whose channel is not in this process's policy at all and
  that is older than ``unknown_channel_grace`` (a channel removed from the policy) is dead,
  audited and shown by ``jitgate notifications ls --failed``, and can be retried;
- a failed attempt is retried with exponential backoff and jitter up to ``max_attempts``,
  then the row is dead; ``notification.sent`` and the final ``notification.failed`` are
  audited with channel, recipient, event, attempt and status code only: never a link,
  a token, a URL or a peer's answer.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from jitgate.domain.events import DomainEvent
from jitgate.domain.policy import Policy
from jitgate.service.context import Context
from jitgate.service.links import Link, LinkSigner
from jitgate.service.notifications import Links, Message
from jitgate.service.ports import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("jitgate.delivery")
SYSTEM = "system"


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
    def requeue(self, item_id: str, now: datetime) -> bool: ...


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


class Notifier(Protocol):
    """One configured channel. ``send`` raises ``DeliveryFailed``; it never logs secrets."""

    def send(self, message: Message) -> Sent: ...


class Channels(Protocol):
    def get(self, name: str, policy: Policy) -> Notifier | None: ...
    def sendable(self, policy: Policy) -> Collection[str]:
        """The channels of ``policy`` this process can send (configured and enabled here)."""
        ...


@dataclass(frozen=True)
class DeliveryOptions:
    batch: int = 200
    lease: timedelta = timedelta(seconds=60)
    max_attempts: int = 10
    base_delay: float = 2.0
    max_delay: float = 300.0
    concurrency: int = 8
    view_ttl: timedelta = timedelta(days=7)
    #: How long a row of a channel missing from this process's policy waits for a process
    #: that has it (a rolling deploy adding the channel) before it is dead (it was removed).
    unknown_channel_grace: timedelta = timedelta(hours=1)


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


@dataclass
class Delivery:
    """What the worker needs; built once by the wiring, shared by every run."""

    ctx: Context
    store_of: StoreOf
    channels: Channels
    signer: LinkSigner
    options: DeliveryOptions = field(default_factory=DeliveryOptions)
    rng: random.Random = field(default_factory=random.Random)
    _pool: ThreadPoolExecutor | None = None

    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.options.concurrency, "jitgate-notify")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def backoff(attempt: int, options: DeliveryOptions, rng: random.Random) -> float:
    """Seconds before the next try after ``attempt`` failed: exponential, capped, jittered."""
    ceiling = min(options.max_delay, options.base_delay * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def deliver_due(d: Delivery) -> DeliveryReport:
    """Claim a batch of due notifications, send them, record each outcome; one batch."""
    total = abandon_unknown(d)
    started = _start(d, d.options.batch)
    return total.plus(_record(d, [f.result() for f in started])) if started else total


Attempt = Future[tuple[OutboxItem, "Sent | DeliveryFailed"]]


def _start(d: Delivery, limit: int) -> list[Attempt]:
    """Claim up to ``limit`` due notifications of the channels this process can send and
    start sending each in the pool."""
    ctx = d.ctx
    now = ctx.clock.now()
    policy = ctx.policy.current
    sendable = d.channels.sendable(policy)
    if not sendable:
        return []
    with ctx.uow() as uow:
        items = d.store_of(uow).claim(now, limit, d.options.lease, sendable)
        uow.commit()
    return [d.pool().submit(_attempt, d, item, policy, now) for item in items]


def abandon_unknown(d: Delivery) -> DeliveryReport:
    """Dead-letter (audited) due rows of channels missing from this process's policy that
    waited longer than ``unknown_channel_grace``: their channel was removed. Younger ones
    are left alone: a replica with a newer policy may have the channel."""
    ctx = d.ctx
    now = ctx.clock.now()
    known = ctx.policy.current.notifications.channels.keys()
    with ctx.uow() as uow:
        store = d.store_of(uow)
        items = store.abandon(now, known, now - d.options.unknown_channel_grace, d.options.batch)
        events = []
        for item in items:
            failed = DeliveryFailed(
                f"channel {item.channel!r} is not in the policy (removed?); not sent "
                f"(`jitgate notifications retry` once it is back)",
                retryable=False,
            )
            store.dead(item.id, now, failed.reason, None)
            events.append(_event("notification.failed", item, None, failed))
            log.error("notification %s is dead: %s", item.id, failed.reason)
        ctx.publish(uow, events, None, now)
        uow.commit()
    return DeliveryReport(claimed=len(items), dead=len(items))


def drain(
    d: Delivery, *, budget_seconds: float = 5.0, poll_seconds: float = 0.25
) -> DeliveryReport:
    """Send what is due, ``concurrency`` at a time, until nothing is due or in flight.

    More is claimed as sends finish, and every ``poll_seconds`` while one is slow, so a peer
    that hangs until its timeout holds up only its own messages (and the later ones of
    the same request, channel and recipient, which wait for it by design), never an
    urgent page to another channel. Nothing new is claimed after ``budget_seconds``."""
    total = abandon_unknown(d)
    started = time.monotonic()
    in_flight: set[Attempt] = set()
    while True:
        room = d.options.concurrency - len(in_flight)
        if room > 0 and time.monotonic() - started <= budget_seconds:
            in_flight.update(_start(d, room))
        if not in_flight:
            return total
        done, in_flight = wait(in_flight, timeout=poll_seconds, return_when=FIRST_COMPLETED)
        if done:
            total = total.plus(_record(d, [f.result() for f in done]))


def _attempt(
    d: Delivery, item: OutboxItem, policy: Policy, now: datetime
) -> tuple[OutboxItem, Sent | DeliveryFailed]:
    notifier = d.channels.get(item.channel, policy)
    if notifier is None:  # claimed as sendable: only a policy replaced meanwhile gets here
        return item, DeliveryFailed(f"channel {item.channel!r} is not available here now")
    try:
        message = Message.from_payload(
            item.payload,
            id=item.id,
            channel=item.channel,
            recipient=item.recipient,
            attempt=item.attempts,
        )
        message = replace(message, links=make_links(d, message, policy, now))
        return item, notifier.send(message)
    except DeliveryFailed as failed:
        return item, failed
    except Exception as exc:  # a notifier bug must not stop the batch
        log.error("notifier %s failed: %s", item.channel, type(exc).__name__)
        return item, DeliveryFailed(f"internal error ({type(exc).__name__})")


def make_links(d: Delivery, message: Message, policy: Policy, now: datetime) -> Links:
    """Links for this recipient: bound to them on a personal channel, to nobody otherwise."""
    base = policy.settings.public_url.rstrip("/")
    facts = message.request
    subject = message.recipient or ""

    def url(action: str, expires: datetime) -> str:
        link = Link(facts.id, action, subject, expires, message.channel)  # type: ignore[arg-type]
        return f"{base}/l/{d.signer.mint(link)}"

    view = url("view", now + d.options.view_ttl)
    if not message.asks_decision:
        return Links(view=view)
    expires = datetime.fromisoformat(facts.expires_at)
    return Links(view=view, approve=url("approve", expires), deny=url("deny", expires))


def _record(
    d: Delivery, results: Sequence[tuple[OutboxItem, Sent | DeliveryFailed]]
) -> DeliveryReport:
    ctx = d.ctx
    now = ctx.clock.now()
    sent = retrying = dead = 0
    events: list[DomainEvent] = []
    with ctx.uow() as uow:
        store = d.store_of(uow)
        for item, outcome in results:
            if isinstance(outcome, Sent):
                store.sent(item.id, now, outcome.status)
                events.append(_event("notification.sent", item, outcome.status))
                sent += 1
            elif outcome.retryable and item.attempts < d.options.max_attempts:
                delay = backoff(item.attempts, d.options, d.rng)
                delay = max(delay, min(outcome.retry_after or 0.0, d.options.max_delay))
                store.retry_at(
                    item.id, now + timedelta(seconds=delay), outcome.reason, outcome.status
                )
                _warn(item, outcome, delay)
                retrying += 1
            else:
                store.dead(item.id, now, outcome.reason, outcome.status)
                events.append(_event("notification.failed", item, outcome.status, outcome))
                log.error(
                    "notification %s to channel %s is dead after %d attempts: %s",
                    item.id,
                    item.channel,
                    item.attempts,
                    outcome.reason,
                )
                dead += 1
        ctx.publish(uow, events, None, now)
        uow.commit()
    return DeliveryReport(len(results), sent, retrying, dead)


def _warn(item: OutboxItem, failed: DeliveryFailed, delay: float) -> None:
    log.warning(
        "notification %s to channel %s failed (attempt %d): %s; retrying in %.0fs",
        item.id,
        item.channel,
        item.attempts,
        failed.reason,
        delay,
    )


def _event(
    kind: str, item: OutboxItem, status: int | None, failed: DeliveryFailed | None = None
) -> DomainEvent:
    data: dict[str, Any] = {
        "notification": item.id,
        "channel": item.channel,
        "recipient": item.recipient,
        "event": item.event,
        "attempt": item.attempts,
        "status": status,
    }
    if failed is not None:
        data["error"] = failed.reason
    return DomainEvent(kind, SYSTEM, item.request_id, data)


class DeliveryJob:
    """The scheduler's job: starts a drain in the background unless one is running, so a
    slow channel never holds up the tick loop (and never a decision)."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="jitgate-delivery", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            report = drain(self.delivery)
            if report.claimed:
                log.info("notifications: %s", report)
        except Exception:
            log.exception("notification delivery failed; retrying on the next tick")

    def wait(self, timeout: float = 30.0) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)


# -- operators' use cases (``jitgate notifications``) -----------------------------------------


def list_notifications(
    uow_factory: UnitOfWorkFactory, store_of: StoreOf, *, failed_only: bool, limit: int = 100
) -> list[OutboxItem]:
    with uow_factory(write=False) as uow:
        return store_of(uow).find(failed_only=failed_only, limit=limit)


def retry_notification(
    uow_factory: UnitOfWorkFactory, store_of: StoreOf, *, item_id: str, now: datetime
) -> OutboxItem | None:
    """Queue a failed or dead notification again, with a fresh set of attempts."""
    with uow_factory() as uow:
        store = store_of(uow)
        if not store.requeue(item_id, now):
            return None
        item = store.get(item_id)
        uow.commit()
    return item
