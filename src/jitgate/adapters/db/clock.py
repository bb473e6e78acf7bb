"""The database server's clock, shared by every replica (SPEC §9.6: a grant is never
honoured outside its window, "whatever … a replica's clock").

Each process reads the server's time (``clock_timestamp()``) at start and every
``RESYNC_SECONDS`` after, and between reads counts from it with its own monotonic clock,
which no change of the host's wall clock moves. So every replica, whatever its host's clock
says, decides windows, runs its scheduler and stamps audit events by one clock: the
database's. A read takes the midpoint of its round trip; a failed read keeps the last one
(the monotonic count goes on), logged once per failure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

log = logging.getLogger("jitgate.clock")

RESYNC_SECONDS = 30.0


def server_time(engine: sa.Engine) -> datetime:
    """The PostgreSQL server's current time (not its transaction's start)."""
    with engine.connect() as conn:
        value = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


class DatabaseClock:
    """``now()`` = the server's time at the last read + the monotonic time since."""

    def __init__(
        self,
        read: Callable[[], datetime],
        *,
        every: float = RESYNC_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read, self._every, self._monotonic = read, every, monotonic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # (the server's time, the monotonic time it was read at): one tuple, replaced
        # whole, so a reader never sees a base of one read with the moment of another
        self._synced = self._measure()

    def _measure(self) -> tuple[datetime, float]:
        before = self._monotonic()
        server = self._read()
        after = self._monotonic()
        return server, (before + after) / 2

    def now(self) -> datetime:
        base, at = self._synced
        return base + timedelta(seconds=self._monotonic() - at)

    def sync(self) -> None:
        """Read the server's time again (the clock's own thread does, every ``every``)."""
        try:
            self._synced = self._measure()
        except Exception as exc:  # keep counting from the last read
            log.warning("clock: cannot read the database's time (%s); counting on", exc)

    def start(self) -> DatabaseClock:
        """Re-read the server's time every ``every`` seconds in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="jitgate-clock", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.sync()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
