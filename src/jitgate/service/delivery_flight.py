"""The sends under way in one process, each channel on threads of its own.

Invariants:
- a channel never has more than ``concurrency`` sends started and not ended (one given up
  on counts until it really ends), and each channel has its own threads: a slow or hanging
  peer takes up only its own channel's room, never a page's on another channel;
- the outcome of every attempt is handed out exactly once (``outcomes``), whichever drain
  asks, when the send ends or, if it runs past ``give_up_after`` seconds, as
  ``timed out after Ns`` with ``still_running`` set (the send is left to end by itself, and
  whatever it returns then is dropped).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from jitgate.service.delivery_model import DeliveryFailed, OutboxItem, Outcome


@dataclass(eq=False)
class Attempt:
    item: OutboxItem
    future: Future[Outcome] = field(init=False)
    started: float | None = None  # time.monotonic() when a thread began the send
    reported: bool = False


@dataclass(frozen=True)
class Finished:
    item: OutboxItem
    outcome: Outcome
    still_running: bool = False  # given up on: the send may still be going on


class Flight:
    def __init__(
        self,
        concurrency: int,
        give_up_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._concurrency = concurrency
        self._give_up_after = give_up_after
        self._clock = clock
        self._changed = threading.Condition()
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._running: dict[str, set[Attempt]] = {}
        self._unreported: set[Attempt] = set()

    def rooms(self, channels: Collection[str]) -> dict[str, int]:
        """How many more sends each of ``channels`` may start now (only those with room)."""
        with self._changed:
            rooms = {c: self._concurrency - len(self._running.get(c, ())) for c in channels}
        return {c: room for c, room in rooms.items() if room > 0}

    def start(self, item: OutboxItem, send: Callable[[], Outcome]) -> Attempt:
        """Start ``send`` on a thread of ``item``'s channel."""
        attempt = Attempt(item)

        def run() -> Outcome:
            attempt.started = self._clock()
            return send()

        with self._changed:
            pool = self._pools.get(item.channel)
            if pool is None:
                name = f"jitgate-notify-{item.channel}"[:40]
                pool = self._pools[item.channel] = ThreadPoolExecutor(self._concurrency, name)
            self._running.setdefault(item.channel, set()).add(attempt)
            self._unreported.add(attempt)
            attempt.future = pool.submit(run)
        attempt.future.add_done_callback(lambda _: self._ended(attempt))
        return attempt

    def _ended(self, attempt: Attempt) -> None:
        with self._changed:
            running = self._running.get(attempt.item.channel)
            if running is not None:
                running.discard(attempt)
            self._changed.notify_all()

    def outcomes(self) -> list[Finished]:
        """The attempts that ended, and those running past ``give_up_after``; each once."""
        now = self._clock()
        out: list[Finished] = []
        with self._changed:
            for attempt in list(self._unreported):
                if attempt.future.done():
                    out.append(Finished(attempt.item, _result(attempt.future)))
                elif attempt.started is not None and now - attempt.started > self._give_up_after:
                    failed = DeliveryFailed(f"timed out after {self._give_up_after:g}s")
                    out.append(Finished(attempt.item, failed, still_running=True))
                else:
                    continue
                attempt.reported = True
                self._unreported.discard(attempt)
        return out

    def unreported(self) -> int:
        with self._changed:
            return len(self._unreported)

    def wait(self, timeout: float, attempts: Collection[Attempt] | None = None) -> None:
        """Until a send ends (one of ``attempts``, when given) or ``timeout`` seconds pass."""
        with self._changed:
            watched = self._unreported if attempts is None else attempts
            if any(a.future.done() for a in watched if not a.reported):
                return
            self._changed.wait(timeout)

    def close(self) -> None:
        """Wait for the sends under way (each ends by its deadline), then stop the threads."""
        with self._changed:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.shutdown(wait=True)


def _result(future: Future[Outcome]) -> Outcome:
    error = future.exception()
    if error is None:
        return future.result()
    return DeliveryFailed(f"internal error ({type(error).__name__})")
