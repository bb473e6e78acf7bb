"""The tick loop: runs ``lifecycle.tick`` every ``interval`` seconds until stopped.

A failing tick is logged and retried on the next one; it never stops the loop. While the
database is unavailable that is one line per kind of failure, not a traceback per tick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from jitgate.entrypoints.api.problems import DATABASE_UNAVAILABLE, first_line
from jitgate.service import lifecycle
from jitgate.service.context import Context

log = logging.getLogger("jitgate.scheduler")


class Scheduler:
    def __init__(
        self, ctx: Context, interval: float, extra: list[Callable[[], object]] | None = None
    ) -> None:
        self.ctx = ctx
        self.interval = interval
        self.extra = extra or []
        self.stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> lifecycle.TickReport:
        report = lifecycle.tick(self.ctx)
        for job in self.extra:
            job()
        return report

    def run_forever(self) -> None:
        outage = Outage()
        while not self.stopped.is_set():
            try:
                report = self.run_once()
            except DATABASE_UNAVAILABLE as exc:
                outage.failed(exc)
            except Exception:
                log.exception("tick failed; retrying on the next one")
            else:
                outage.over()
                if report.total:
                    log.info("tick: %s", report)
            self.stopped.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.run_forever, name="jitgate-scheduler", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


class Outage:
    """The log of the database being unavailable to the tick: one WARNING line per kind of
    failure (its first line) until a tick works again, then one line; each traceback at
    DEBUG only. An outage of a minute is two or three lines, not sixty tracebacks."""

    KINDS = 50  # kinds remembered at most; past that, they are said again

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def failed(self, exc: Exception) -> None:
        said = first_line(exc)
        if said not in self.seen:
            if len(self.seen) >= self.KINDS:
                self.seen.clear()
            self.seen.add(said)
            log.warning("database unavailable: %s; retrying", said)
        log.debug("the traceback of that failure", exc_info=exc)

    def over(self) -> None:
        if self.seen:
            self.seen.clear()
            log.warning("database available again; the tick runs")
