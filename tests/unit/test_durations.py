"""Duration strings (SPEC §2): short forms and ISO 8601; only strictly positive values."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitgate.domain.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("7d", timedelta(days=7)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("PT2H", timedelta(hours=2)),
        ("PT30M", timedelta(minutes=30)),
        ("PT45S", timedelta(seconds=45)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("P7D", timedelta(days=7)),
        (" 2h ", timedelta(hours=2)),
    ],
)
def test_parses_short_and_iso_forms(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "-5m",
        "banana",
        "0s",
        "",
        "   ",
        "0h0m",
        "PT0S",
        "P",
        "PT",
        "2x",
        "h",
        "1.5h",
        "2 h",
        "P1H",
        "3651d",
        "999999999999d",
        "99999999999999999999h",
        "PT" + "9" * 30 + "S",
        "9" * 5000 + "s",
    ],
)
def test_rejects_malformed_zero_negative_and_absurd(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|zero|ten years"):
        parse_duration(text)


def test_rejects_a_non_string() -> None:
    with pytest.raises(ValueError):
        parse_duration(None)  # type: ignore[arg-type]


def test_zero_is_rejected_as_not_longer_than_zero() -> None:
    with pytest.raises(ValueError, match="longer than zero"):
        parse_duration("0s")


@pytest.mark.parametrize("text", ["45s", "30m", "2h", "1h30m", "7d", "1d2h3m4s"])
def test_format_round_trips_the_short_form(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


def test_format_of_iso_input_is_the_short_form() -> None:
    assert format_duration(parse_duration("PT2H")) == "2h"
    assert format_duration(parse_duration("P1DT2H")) == "1d2h"


@pytest.mark.parametrize("text", ["PT1.5S", "PT0.5S", "PT1M0.25S"])
def test_a_fraction_of_a_second_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="whole number of seconds"):
        parse_duration(text)


def test_a_whole_number_written_with_a_point_is_accepted() -> None:
    assert parse_duration("PT90.0S") == timedelta(seconds=90)
