"""The tick loop while the database is away: one WARNING line per kind of failure (its
traceback at DEBUG only), one line when it is back; a bug keeps its traceback at ERROR on
every tick."""

from __future__ import annotations

import logging

import psycopg
import pytest
import sqlalchemy as sa

from jitgate.entrypoints import scheduler as scheduler_module
from jitgate.entrypoints.scheduler import Scheduler
from jitgate.service.lifecycle import TickReport

REFUSED = 'connection failed: connection to server at "127.0.0.1" failed: Connection refused'
SHUTTING = "the database system is shutting down"


def unavailable(said: str) -> sa.exc.OperationalError:
    return sa.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError(said))


def ticks(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    outcomes: list[Exception | None],
) -> list[logging.LogRecord]:
    """Run the loop for one tick per outcome (raised, or ``None``: the tick works); the
    scheduler's log records."""
    loop = Scheduler(None, 0)  # type: ignore[arg-type]
    pending = list(outcomes)

    def tick(_: object) -> TickReport:
        outcome = pending.pop(0)
        if not pending:
            loop.stopped.set()
        if outcome is not None:
            raise outcome
        return TickReport()

    monkeypatch.setattr(scheduler_module.lifecycle, "tick", tick)
    caplog.set_level(logging.DEBUG, logger="jitgate.scheduler")
    loop.run_forever()
    assert not pending
    return [r for r in caplog.records if r.name == "jitgate.scheduler"]


def test_an_outage_is_one_line_per_kind_not_a_traceback_per_tick(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes: list[Exception | None] = [unavailable(REFUSED)] * 8 + [unavailable(SHUTTING)] * 2
    logged = ticks(monkeypatch, caplog, [*outcomes, unavailable(REFUSED), None, None])
    above_debug = [r for r in logged if r.levelno > logging.DEBUG]
    assert [(r.levelname, r.getMessage()) for r in above_debug] == [
        ("WARNING", f"database unavailable: OperationalError: {REFUSED}; retrying"),
        ("WARNING", f"database unavailable: OperationalError: {SHUTTING}; retrying"),
        ("WARNING", "database available again; the tick runs"),
    ]
    assert all(r.exc_info is None for r in above_debug)
    tracebacks = [r for r in logged if r.exc_info is not None]
    assert len(tracebacks) == 11 and all(r.levelno == logging.DEBUG for r in tracebacks)


def test_a_later_outage_is_said_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    logged = ticks(monkeypatch, caplog, [unavailable(REFUSED), None, unavailable(REFUSED)])
    warned = [r.getMessage() for r in logged if r.levelno == logging.WARNING]
    assert len(warned) == 3 and warned[0] == warned[2]


def test_a_bug_keeps_its_traceback_at_error_on_every_tick(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    logged = ticks(monkeypatch, caplog, [RuntimeError("a bug")] * 3)
    assert [(r.levelname, r.getMessage()) for r in logged] == [
        ("ERROR", "tick failed; retrying on the next one")
    ] * 3
    assert all(r.exc_info is not None and r.exc_info[0] is RuntimeError for r in logged)
