"""On-call schedules (SPEC §2): rotation by shift from ``starts``, overrides win."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jitgate.domain.policy import Directory, OncallSchedule, Override, Policy

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
TICK = timedelta(microseconds=1)


def _schedule(*overrides: Override) -> OncallSchedule:
    return OncallSchedule("sre", ("a@x", "b@x", "c@x"), WEEK, T0, overrides)


def test_nobody_is_on_call_before_the_rotation_starts() -> None:
    assert _schedule().on_call(T0 - TICK) is None


def test_rotation_hands_over_exactly_at_each_shift_boundary() -> None:
    s = _schedule()
    assert s.on_call(T0) == "a@x"
    assert s.on_call(T0 + WEEK - TICK) == "a@x"
    assert s.on_call(T0 + WEEK) == "b@x"
    assert s.on_call(T0 + 2 * WEEK) == "c@x"
    assert s.on_call(T0 + 3 * WEEK) == "a@x"  # wraps around
    assert s.on_call(T0 + 100 * WEEK + timedelta(days=3)) == ("a@x", "b@x", "c@x")[100 % 3]


def test_override_wins_inside_its_half_open_window_only() -> None:
    o = Override("z@x", T0 + timedelta(days=2), T0 + timedelta(days=3))
    s = _schedule(o)
    assert s.on_call(o.starts - TICK) == "a@x"
    assert s.on_call(o.starts) == "z@x"
    assert s.on_call(o.until - TICK) == "z@x"
    assert s.on_call(o.until) == "a@x"


def test_override_applies_even_before_the_rotation_starts() -> None:
    o = Override("z@x", T0 - timedelta(days=1), T0)
    assert _schedule(o).on_call(T0 - timedelta(hours=1)) == "z@x"


def test_an_empty_rotation_has_nobody_on_call() -> None:
    assert OncallSchedule("x", (), WEEK, T0).on_call(T0 + WEEK) is None


def test_directory_on_call_of_an_unknown_schedule_is_nobody() -> None:
    directory = Directory(oncall={"sre": _schedule()})
    assert directory.on_call("sre", T0) == "a@x"
    assert directory.on_call("dba", T0) is None


def test_example_policy_rotation_and_override(example_policy: Policy) -> None:
    d = example_policy.directory
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert d.on_call("sre", start) == "sam@example.com"
    assert d.on_call("sre", start + WEEK) == "sue@example.com"
    # sue covers one day of sam's week (2026-02-02 09:00 .. 2026-02-03 09:00)
    override_from = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
    override_until = datetime(2026, 2, 3, 9, 0, tzinfo=UTC)
    assert d.on_call("sre", override_from - TICK) == "sue@example.com"  # end of sue's week
    assert d.on_call("sre", override_from) == "sue@example.com"
    assert d.on_call("sre", override_until - TICK) == "sue@example.com"
    assert d.on_call("sre", override_until) == "sam@example.com"
    assert d.on_call("dba", start + WEEK) == "dave@example.com"
