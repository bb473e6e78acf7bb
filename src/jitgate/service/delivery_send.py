"""One send and its outcome (SPEC §6): the worker's dependencies, an attempt within its
deadline, the recipient's links, and recording what happened.

Invariants: an attempt never raises (a notifier's bug is a failed attempt) and runs inside
its send deadline; an outcome is recorded with its audit event in one transaction:
``notification.sent``, or when given up ``notification.failed``, with channel, recipient,
event, attempt and status code only, never a link, a token, a URL or a peer's answer; a
failure's reason is ``peer_text`` before it is logged or stored (a peer may answer anything:
control bytes and line breaks become visible escapes, and it is cut to ``REASON_LIMIT``); a
retry waits the backoff or the peer's ``Retry-After`` (capped), and a whole lease after a
send given up on while it may still be going on.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from jitgate.domain.events import DomainEvent
from jitgate.domain.policy import Policy
from jitgate.domain.text import line_safe
from jitgate.service.context import Context
from jitgate.service.delivery_deadline import send_deadline
from jitgate.service.delivery_flight import Finished, Flight
from jitgate.service.delivery_model import (
    Channels,
    DeliveryFailed,
    DeliveryOptions,
    DeliveryReport,
    OutboxItem,
    Outcome,
    Sent,
    StoreOf,
)
from jitgate.service.links import Link, LinkSigner
from jitgate.service.notifications import Links, Message

log = logging.getLogger("jitgate.delivery")
SYSTEM = "system"
REASON_LIMIT = 200


def peer_text(text: object, limit: int = REASON_LIMIT) -> str:
    """``text`` safe to log and store on one line (``line_safe``), cut to ``limit``."""
    raw = line_safe(text)
    return raw if len(raw) <= limit else raw[: limit - 1] + "…"


@dataclass
class Delivery:
    """What the worker needs; built once by the wiring, shared by every run."""

    ctx: Context
    store_of: StoreOf
    channels: Channels
    signer: LinkSigner
    options: DeliveryOptions = field(default_factory=DeliveryOptions)
    rng: random.Random = field(default_factory=random.Random)
    _flight: Flight | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def flight(self) -> Flight:
        with self._lock:
            if self._flight is None:
                self._flight = Flight(self.options.concurrency, self.options.give_up_after)
            return self._flight

    def close(self) -> None:
        """Let the sends under way end (each by its deadline) and record what they did."""
        with self._lock:
            flight, self._flight = self._flight, None
        if flight is None:
            return
        flight.close()
        try:
            record(self, flight.outcomes())
        except Exception as exc:  # the rows' leases end, and they are sent again
            log.warning("notification outcomes not recorded at shutdown: %s", exc)


def backoff(attempt: int, options: DeliveryOptions, rng: random.Random) -> float:
    """Seconds before the next try after ``attempt`` failed: exponential, capped, jittered."""
    ceiling = min(options.max_delay, options.base_delay * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def send_item(d: Delivery, item: OutboxItem, policy: Policy, now: datetime) -> Outcome:
    """One send of ``item``, within the send deadline; never raises."""
    notifier = d.channels.get(item.channel, policy)
    if notifier is None:  # claimed as sendable: only a policy replaced meanwhile gets here
        return DeliveryFailed(f"channel {item.channel!r} is not available here now")
    try:
        message = Message.from_payload(
            item.payload,
            id=item.id,
            channel=item.channel,
            recipient=item.recipient,
            attempt=item.attempts,
        )
        message = replace(message, links=make_links(d, message, policy, now))
        with send_deadline(d.options.send_timeout):
            return notifier.send(message)
    except DeliveryFailed as failed:
        return failed
    except Exception as exc:  # a notifier bug must not stop the batch
        log.error("notifier %s failed: %s", item.channel, type(exc).__name__)
        return DeliveryFailed(f"internal error ({type(exc).__name__})")


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


def record(d: Delivery, results: Sequence[Finished]) -> DeliveryReport:
    if not results:
        return DeliveryReport()
    ctx = d.ctx
    now = ctx.clock.now()
    sent = retrying = dead = 0
    events: list[DomainEvent] = []
    with ctx.uow() as uow:
        store = d.store_of(uow)
        for done in results:
            item, outcome = done.item, _safe(done.outcome)
            if isinstance(outcome, Sent):
                store.sent(item.id, now, outcome.status)
                events.append(event("notification.sent", item, outcome.status))
                sent += 1
            elif outcome.retryable and item.attempts < d.options.max_attempts:
                delay = retry_delay(
                    item.attempts, outcome, d.options, d.rng, still_running=done.still_running
                )
                store.retry_at(
                    item.id, now + timedelta(seconds=delay), outcome.reason, outcome.status
                )
                _warn(item, outcome, delay)
                retrying += 1
            else:
                store.dead(item.id, now, outcome.reason, outcome.status)
                events.append(event("notification.failed", item, outcome.status, outcome))
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


def _safe(outcome: Outcome) -> Outcome:
    """The outcome with a reason fit to log and store (``peer_text``)."""
    if isinstance(outcome, Sent):
        return outcome
    safe = peer_text(outcome.reason)
    if safe == outcome.reason:
        return outcome
    return DeliveryFailed(
        safe,
        status=outcome.status,
        retryable=outcome.retryable,
        retry_after=outcome.retry_after,
    )


def retry_delay(
    attempt: int,
    failed: DeliveryFailed,
    options: DeliveryOptions,
    rng: random.Random,
    *,
    still_running: bool = False,
) -> float:
    """Seconds before the next try: backoff, or the peer's ``Retry-After`` (capped at
    ``max_delay``) when longer; a whole lease at least after a send given up on while it
    may still be going on, so that it is not sent twice at once."""
    delay = backoff(attempt, options, rng)
    delay = max(delay, min(failed.retry_after or 0.0, options.max_delay))
    if still_running:
        delay = max(delay, options.lease.total_seconds())
    return delay


def _warn(item: OutboxItem, failed: DeliveryFailed, delay: float) -> None:
    log.warning(
        "notification %s to channel %s failed (attempt %d): %s; retrying in %.0fs",
        item.id,
        item.channel,
        item.attempts,
        failed.reason,
        delay,
    )


def event(
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
