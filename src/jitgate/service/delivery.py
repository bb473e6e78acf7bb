"""The outbox worker (SPEC §6): delivers queued notifications, retries, dead-letters.

Invariants:
- a notification row was written in the transaction of the state change that caused it;
  this worker only reads and updates rows, so a decision never waits for a channel;
- every send has a total deadline (``DeliveryOptions.send_timeout``, however a peer trickles
  its answer) and each channel sends on threads of its own (``delivery_flight``); a drain
  claims only into a channel's free room and never waits for a send past its budget, so a
  peer that hangs holds up only its own messages, never a page on another channel;
- a row is claimed with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) that outlasts its
  send's deadline, so replicas never send it twice at once; a worker that dies mid-send
  leaves it to be sent again when the lease ends, under the same id (the Standard Webhooks
  ``webhook-id``, the PagerDuty ``dedup_key`` is the request id), so a peer sees at most a
  repeat it can recognise;
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
  a token, a URL or a peer's answer (``delivery_send``).

The values and ports are in ``delivery_model``, one send and its outcome in
``delivery_send``, the sends under way in ``delivery_flight``, the operators' commands in
``delivery_ops``; this module re-exports what callers use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from functools import partial

from jitgate.service.delivery_flight import Attempt
from jitgate.service.delivery_model import (
    Channels,
    DeliveryFailed,
    DeliveryOptions,
    DeliveryReport,
    DeliveryStore,
    Notifier,
    OutboxItem,
    Sent,
    StoreOf,
)
from jitgate.service.delivery_ops import list_notifications, retry_notification
from jitgate.service.delivery_send import (
    Delivery,
    backoff,
    event,
    make_links,
    peer_text,
    record,
    retry_delay,
    send_item,
)

__all__ = [
    "Channels",
    "Delivery",
    "DeliveryFailed",
    "DeliveryJob",
    "DeliveryOptions",
    "DeliveryReport",
    "DeliveryStore",
    "Notifier",
    "OutboxItem",
    "Sent",
    "StoreOf",
    "abandon_unknown",
    "backoff",
    "deliver_due",
    "drain",
    "list_notifications",
    "make_links",
    "peer_text",
    "retry_delay",
    "retry_notification",
]

log = logging.getLogger("jitgate.delivery")


def deliver_due(d: Delivery) -> DeliveryReport:
    """One pass over what is due, waiting for every send it starts (each ends by its
    deadline): as many at a time as each channel's room, more as sends end, until each
    channel has nothing more due or ``batch`` rows were claimed."""
    total = abandon_unknown(d)
    claimed, exhausted = 0, set[str]()
    mine: list[Attempt] = []
    while True:
        if claimed < d.options.batch:
            started, drained = _start(d, d.options.batch - claimed, exhausted)
            claimed += len(started)
            mine += started
            exhausted |= drained
        mine = [a for a in mine if not a.reported]
        if not mine:
            return total
        d.flight.wait(d.options.poll_seconds, mine)
        total = total.plus(record(d, d.flight.outcomes()))


def drain(
    d: Delivery, *, budget_seconds: float | None = None, poll_seconds: float | None = None
) -> DeliveryReport:
    """Send what is due until nothing is due or under way, for ``budget_seconds`` at most.

    More is claimed as sends end, and every ``poll_seconds``, into each channel's free room.
    At the end of its budget a drain returns without waiting for the sends under way: the
    next drain (or ``Delivery.close``) records them, so a slow channel holds up neither
    another channel nor the next drain."""
    budget = d.options.drain_seconds if budget_seconds is None else budget_seconds
    poll = d.options.poll_seconds if poll_seconds is None else poll_seconds
    total = abandon_unknown(d)
    began = time.monotonic()
    while True:
        total = total.plus(record(d, d.flight.outcomes()))
        if time.monotonic() - began >= budget:
            return total
        started, _ = _start(d, d.options.batch)
        if not started and d.flight.unreported() == 0:
            return total
        d.flight.wait(poll)


def _start(
    d: Delivery, limit: int, exclude: Collection[str] = ()
) -> tuple[list[Attempt], set[str]]:
    """Claim up to ``limit`` due notifications of the channels this process can send (but
    ``exclude``), no more per channel than its free room, and start sending each on its
    channel's threads. Also returns the channels that had fewer due than asked for."""
    ctx = d.ctx
    now = ctx.clock.now()
    policy = ctx.policy.current
    rooms = d.flight.rooms([c for c in d.channels.sendable(policy) if c not in exclude])
    if not rooms:
        return [], set()
    items: list[OutboxItem] = []
    exhausted: set[str] = set()
    with ctx.uow() as uow:
        store = d.store_of(uow)
        for channel, room in sorted(rooms.items()):
            asked = min(room, limit - len(items))
            if asked <= 0:
                break
            claimed = store.claim(now, asked, d.options.lease, [channel])
            if len(claimed) < asked:
                exhausted.add(channel)
            items += claimed
        uow.commit()
    started = [d.flight.start(item, partial(send_item, d, item, policy, now)) for item in items]
    return started, exhausted


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
                peer_text(
                    f"channel {item.channel!r} is not in the policy (removed?); not sent "
                    f"(`jitgate notifications retry` once it is back)",
                    limit=500,
                ),
                retryable=False,
            )
            store.dead(item.id, now, failed.reason, None)
            events.append(event("notification.failed", item, None, failed))
            log.error("notification %s is dead: %s", item.id, failed.reason)
        ctx.publish(uow, events, None, now)
        uow.commit()
    return DeliveryReport(claimed=len(items), dead=len(items))


class DeliveryJob:
    """The scheduler's job: starts a drain in the background unless one is running. A drain
    ends within its budget (``drain_seconds``) whatever its sends do, so the next tick
    starts the next one: a slow channel never holds up the tick loop, a decision, or
    another channel's messages."""

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
