"""The tick loop: runs ``lifecycle.tick`` every ``interval`` seconds until stopped.

A failing tick is logged and retried on the next one; it never stops the loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

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
        while not self.stopped.is_set():
            try:
                report = self.run_once()
                if report.total:
                    log.info("tick: %s", report)
            except Exception:
                log.exception("tick failed; retrying on the next one")
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
