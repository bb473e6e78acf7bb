"""Send deadlines and claim leases (SPEC §6): a row's lease always outlasts its send, and a
slow channel takes up only its own room."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from jitgate.adapters.notifiers.wiring import delivery_options
from jitgate.config import NotifySettings
from jitgate.service.delivery import (
    DeliveryFailed,
    DeliveryOptions,
    OutboxItem,
    Sent,
    retry_delay,
)
from jitgate.service.delivery_deadline import seconds_left, send_deadline, timeout_reason, within
from jitgate.service.delivery_flight import Flight
from jitgate.service.delivery_model import GIVE_UP_GRACE, minimum_lease


def item(channel: str, n: int = 0) -> OutboxItem:
    now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    return OutboxItem(
        f"{channel}-{n}", now, "request.created", "r1", channel, None, {}, "sending", 1, now
    )


@pytest.mark.parametrize("send_timeout", [0.1, 1.0, 10.0, 29.0, 60.0, 300.0, 3600.0])
def test_the_lease_always_outlasts_a_send(send_timeout: float) -> None:
    options = DeliveryOptions(send_timeout=send_timeout)
    lease = options.lease.total_seconds()
    assert lease >= options.give_up_after + 10 > send_timeout + GIVE_UP_GRACE
    assert options.lease >= minimum_lease(send_timeout)


def test_the_default_lease_is_a_minute_and_a_short_one_is_refused() -> None:
    assert DeliveryOptions().lease == timedelta(seconds=60)
    assert DeliveryOptions(send_timeout=10, lease=timedelta(seconds=30)).lease.seconds == 30
    with pytest.raises(ValueError, match="must outlast a send"):
        DeliveryOptions(send_timeout=10, lease=timedelta(seconds=15))
    with pytest.raises(ValueError, match="must outlast a send"):
        DeliveryOptions(send_timeout=120, lease=timedelta(seconds=60))
    with pytest.raises(ValueError, match="positive"):
        DeliveryOptions(send_timeout=0)


def test_a_longer_send_timeout_from_the_environment_lengthens_the_lease() -> None:
    options = options_of({"JITGATE_NOTIFY_TIMEOUT": "120"})
    assert options.send_timeout == 120 and options.lease > timedelta(seconds=120 + GIVE_UP_GRACE)
    assert options_of({}).send_timeout == 10


def test_a_deadline_belongs_to_the_send_inside_it() -> None:
    assert seconds_left() is None and within(10) == 10 and timeout_reason() == "timed out"
    with send_deadline(2.5):
        left = seconds_left()
        assert left is not None and 2.0 < left <= 2.5
        assert within(10) <= 2.5 and within(1) == 1
        assert timeout_reason() == "timed out after 2.5s"
        seen: list[float | None] = []
        other = threading.Thread(target=lambda: seen.append(seconds_left()))
        other.start()
        other.join()
        assert seen == [None]  # another thread's send is not limited by this one's deadline
    assert seconds_left() is None


def test_a_slow_channel_takes_only_its_own_room() -> None:
    flight = Flight(concurrency=2, give_up_after=60)
    release = threading.Event()

    def hang() -> Sent:
        release.wait(5)
        return Sent(200)

    try:
        for n in range(2):
            flight.start(item("slack", n), hang)
        assert flight.rooms(["slack", "pagerduty"]) == {"pagerduty": 2}
        page = flight.start(item("pagerduty"), lambda: Sent(202))
        page.future.result(1)
        (done,) = flight.outcomes()
        assert done.item.channel == "pagerduty" and done.outcome == Sent(202)
        assert flight.outcomes() == []  # handed out once
    finally:
        release.set()
        flight.close()
    assert {f.item.id for f in flight.outcomes()} == {"slack-0", "slack-1"}


def test_a_send_that_ignores_its_deadline_is_given_up_on_but_keeps_its_room() -> None:
    flight = Flight(concurrency=1, give_up_after=0.2)
    release = threading.Event()

    def ignore_the_deadline() -> Sent:
        release.wait(5)
        return Sent(200)

    try:
        flight.start(item("teams"), ignore_the_deadline)
        time.sleep(0.3)
        (given_up,) = flight.outcomes()
        assert given_up.still_running
        assert isinstance(given_up.outcome, DeliveryFailed)
        assert given_up.outcome.reason == "timed out after 0.2s"
        assert flight.rooms(["teams"]) == {}  # its thread is still busy: no pile-up
        release.set()
        deadline = time.monotonic() + 2
        while not flight.rooms(["teams"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert flight.rooms(["teams"]) == {"teams": 1}
        assert flight.outcomes() == []  # what it returned late is dropped
    finally:
        release.set()
        flight.close()


def test_a_send_given_up_on_is_not_tried_again_within_a_lease() -> None:
    options = DeliveryOptions(base_delay=1.0, max_delay=8.0, send_timeout=1.0)
    rng = random.Random(3)
    failed = DeliveryFailed("timed out after 3s")
    assert retry_delay(1, failed, options, rng) <= 1.0
    given_up = retry_delay(1, failed, options, rng, still_running=True)
    assert given_up >= options.lease.total_seconds() > options.max_delay


def options_of(env: dict[str, str]) -> DeliveryOptions:
    return delivery_options(NotifySettings.from_env(env))
