"""Reading times, durations and the version (``adapters.policy.checks``, ``lines``,
``load``): a value out of range is a problem with file, line and key path, never an
exception; and overlapping on-call overrides (``OncallSchedule.on_call``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jitgate.adapters.policy import PolicyError, load_policy, load_policy_text
from jitgate.domain.policy import OncallSchedule, Override

ONCALL = """\
version: 1
directory:
  oncall:
    sre:
      rotation: [sam@example.com]
      shift: 7d
      starts: {starts}
      overrides: [{{user: sam@example.com, from: {start}, until: {until}}}]
"""
GOOD = "2026-01-05T09:00:00Z"


def _problems(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(PolicyError) as caught:
        load_policy_text(text, "p.yaml")
    return [(p.line, p.path, p.message) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("key", "path", "line"),
    [
        ("starts", "directory.oncall.sre.starts", 7),
        ("start", "directory.oncall.sre.overrides[0].from", 8),
        ("until", "directory.oncall.sre.overrides[0].until", 8),
    ],
)
@pytest.mark.parametrize(
    "edge",
    ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "'9999-12-31T23:30:00-01:00'"],
)
def test_a_time_whose_utc_falls_outside_the_calendar_is_a_problem(
    key: str, path: str, line: int, edge: str
) -> None:
    times = {"starts": GOOD, "start": GOOD, "until": "2026-01-06T09:00:00Z", key: edge}
    found = _problems(ONCALL.format(**times))
    assert (line, path) in [(n, p) for n, p, _ in found]
    message = next(m for n, p, m in found if p == path)
    assert message == f"{edge} is outside the years 1 to 9999 in UTC"  # a string stays quoted


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ("2026-02-30T09:00:00Z", "(day is out of range for month)"),
        ("0000-01-01T00:00:00Z", "(year 0 is out of range)"),
        ("2026-01-05T09:00:00+25:00", "(a UTC offset must be less than 24 hours)"),
        ("'2026-01-05T25:00:00Z'", "(hour must be in 0..23)"),
    ],
)
def test_a_time_that_does_not_exist_is_a_problem_saying_why(written: str, why: str) -> None:
    found = _problems(ONCALL.format(starts=written, start=GOOD, until="2026-01-06T09:00:00Z"))
    assert found == [
        (
            7,
            "directory.oncall.sre.starts",
            "must be an ISO-8601 date and time like 2026-01-05T09:00:00Z, "
            f"not {written.strip(chr(39))!r} {why}",
        )
    ]


def test_a_bad_timestamp_anywhere_else_is_plain_text() -> None:
    policy = load_policy_text(
        "version: 1\nroles:\n  r:\n    description: 2026-02-30T09:00:00Z\n"
        "    grants: [{type: ssh, environment: development}]\n"
    )
    assert policy.roles["r"].description == "2026-02-30T09:00:00Z"


def test_a_duration_yaml_reads_as_a_sexagesimal_number_is_explained() -> None:
    found = _problems("version: 1\nsettings:\n  pending_ttl: 1:30:00\n  escalate_after: 90\n")
    assert found == [
        (
            3,
            "settings.pending_ttl",
            "1:30:00 is read by YAML as the number 5400, not as a duration: write durations "
            "like 1h30m, 45s or PT2H",
        ),
        (
            4,
            "settings.escalate_after",
            "90 is not a duration (use forms like 45s, 30m, 2h, 1h30m, 7d or PT2H)",
        ),
    ]


@pytest.mark.parametrize("version", ["1.0", "'1'", "true"])
def test_version_must_be_the_integer_one(version: str) -> None:
    (problem,) = _problems(f"version: {version}\n")
    assert problem[:2] == (1, "version")
    assert problem[2].startswith("unsupported version ")
    assert problem[2].endswith("this jitgate reads version 1 (the integer 1)")


def test_folder_files_must_agree_on_the_integer_version(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("version: 1\n")
    (tmp_path / "b.yaml").write_text("version: 1.0\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path)
    (problem,) = caught.value.problems
    assert (problem.file, problem.path) == (str(tmp_path / "b.yaml"), "version")
    assert problem.message.startswith("files disagree on version")


T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_of_overlapping_overrides_the_one_that_started_latest_wins() -> None:
    week = Override("week@x", T0, T0 + 7 * DAY)
    half_day = Override("half@x", T0 + 2 * DAY, T0 + 2 * DAY + timedelta(hours=12))
    for overrides in ((week, half_day), (half_day, week)):
        schedule = OncallSchedule("sre", ("a@x",), 7 * DAY, T0, overrides)
        assert schedule.on_call(T0 + DAY) == "week@x"
        assert schedule.on_call(half_day.starts) == "half@x"
        assert schedule.on_call(half_day.until - timedelta(microseconds=1)) == "half@x"
        assert schedule.on_call(half_day.until) == "week@x"


def test_of_overrides_starting_together_the_one_listed_last_wins() -> None:
    first = Override("first@x", T0, T0 + 2 * DAY)
    last = Override("last@x", T0, T0 + DAY)
    schedule = OncallSchedule("sre", ("a@x",), 7 * DAY, T0, (first, last))
    assert schedule.on_call(T0) == "last@x"
    assert schedule.on_call(T0 + DAY) == "first@x"
