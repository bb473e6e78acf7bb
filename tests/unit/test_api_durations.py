"""Durations the API and the policy take are written in ASCII: a digit of another script
(Arabic-Indic, fullwidth, mathematical bold) is not a duration, though ``int()`` reads it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitgate.domain.durations import parse_duration


@pytest.mark.parametrize(
    "text",
    [
        "\u0662h",  # ARABIC-INDIC DIGIT TWO
        "\U0001d7d0h",  # MATHEMATICAL BOLD DIGIT TWO
        "PT\uff12H",  # FULLWIDTH DIGIT TWO
        "1h\uff130m",  # a fullwidth three inside an otherwise ASCII duration
        "\u0967\u0966m",  # DEVANAGARI ONE, ZERO
        "P\u0662D",
        "PT2\u017f",  # LATIN SMALL LETTER LONG S, which upper() makes "S"
        "\uff12\uff48",  # fullwidth "2h" as a whole
    ],
)
def test_digits_of_other_scripts_are_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2h", timedelta(hours=2)), ("1h30m", timedelta(minutes=90)), ("pt2h", timedelta(hours=2))],
)
def test_ascii_durations_still_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
