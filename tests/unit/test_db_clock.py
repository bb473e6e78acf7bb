"""The database clock: the server's time at the last read, counted on by the monotonic
clock; a read takes its round trip's midpoint; a failed read keeps counting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jitgate.adapters.db.clock import DatabaseClock

SERVER = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Ticks:
    def __init__(self) -> None:
        self.value = 100.0

    def __call__(self) -> float:
        return self.value


def test_now_counts_on_from_the_server_s_time_by_the_monotonic_clock() -> None:
    ticks = Ticks()
    reads = iter([SERVER, SERVER + timedelta(seconds=40)])

    def read() -> datetime:
        ticks.value += 0.5  # a round trip of 0.5 s, counted at its midpoint
        return next(reads)

    clock = DatabaseClock(read, monotonic=ticks)
    assert clock.now() == SERVER + timedelta(seconds=0.25)
    ticks.value += 29.75
    assert clock.now() == SERVER + timedelta(seconds=30)
    clock.sync()  # the server says 40 s at the read's midpoint
    assert clock.now() == SERVER + timedelta(seconds=40.25)


def test_a_failed_read_keeps_counting_from_the_last_one(caplog: pytest.LogCaptureFixture) -> None:
    ticks = Ticks()
    calls = 0

    def read() -> datetime:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError("connection refused")
        return SERVER

    clock = DatabaseClock(read, monotonic=ticks)
    ticks.value += 60
    clock.sync()
    assert clock.now() == SERVER + timedelta(seconds=60)
    assert "cannot read the database's time" in caplog.text
