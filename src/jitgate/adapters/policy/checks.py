"""Typed readers for plain policy data; each reports a problem instead of raising.

Invariants:
- a reader returns the typed value, or ``None`` after recording exactly one
  problem at the path it was given (never raises for bad input);
- ``None`` input to an optional section reads as empty;
- emails are returned lower-cased; datetimes are returned timezone-aware in UTC
  (a naive one is taken as UTC; one that is not in the years 1 to 9999 once in UTC,
  or names no real day or time, is a problem);
- messages quote keys and short scalar values, never a whole mapping.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from jitgate.adapters.plugin_config import EMAIL, short
from jitgate.adapters.policy.problems import (
    Location,
    Path,
    PolicyProblem,
    locate,
    render_path,
)
from jitgate.domain.durations import parse_duration

_CLOSE = 0.6  # difflib.get_close_matches' cutoff
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")


class Checker:
    """Collects problems against the locations of one (possibly merged) document."""

    def __init__(
        self, locs: Mapping[Path, Location], file: str, written: Mapping[Path, str] | None = None
    ) -> None:
        self.locs = locs
        self.file = file
        self.written = written or {}
        self.problems: list[PolicyProblem] = []
        self.warnings: list[PolicyProblem] = []

    def error(self, path: Path, message: str) -> None:
        self.problems.append(self._at(path, message))

    def warn(self, path: Path, message: str) -> None:
        """Something a valid policy may still get wrong (``adapters.policy.lint``)."""
        self.warnings.append(self._at(path, message))

    def _at(self, path: Path, message: str) -> PolicyProblem:
        where = locate(self.locs, path, self.file)
        return PolicyProblem(where.file, where.line, render_path(path), message)

    def mapping(
        self,
        value: Any,
        path: Path,
        allowed: Collection[str],
        required: Collection[str] = (),
    ) -> dict[str, Any] | None:
        """A mapping whose keys are all in ``allowed`` and include ``required``."""
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping with keys {', '.join(sorted(allowed))}")
            return None
        self.known_keys(value, path, allowed)
        for key in required:
            if key not in value:
                self.error((*path, key), f"{key!r} is required")
        return value

    def known_keys(self, value: Mapping[str, Any], path: Path, allowed: Collection[str]) -> None:
        """Report each key of ``value`` not in ``allowed``, suggesting the closest one."""
        for key in value:
            if key not in allowed:
                self.error((*path, key), _unknown(key, allowed))

    def section(self, value: Any, path: Path) -> dict[str, Any]:
        """An optional mapping of named entries; absent or empty reads as ``{}``."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, "must be a mapping of names to entries")
            return {}
        return value

    def items(self, value: Any, path: Path, *, non_empty: bool = False) -> list[Any] | None:
        if not isinstance(value, list):
            self.error(path, "must be a list")
            return None
        if non_empty and not value:
            self.error(path, "must not be empty")
            return None
        return value

    def text(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.error(path, f"must be a non-empty string, not {short(value)}")
            return None
        return value.strip()

    def name(self, value: Any, path: Path) -> str | None:
        text = self.text(value, path)
        if text is not None and not _NAME.match(text):
            self.error(path, f"{text!r} is not a valid name (letters, digits, . _ - : / @ +)")
            return None
        return text

    def email(self, value: Any, path: Path) -> str | None:
        text = self.text(value, path)
        if text is not None and not EMAIL.match(text):
            self.error(path, f"{text!r} is not an email address")
            return None
        return text.lower() if text is not None else None

    def names(self, value: Any, path: Path, *, non_empty: bool = False) -> tuple[str, ...]:
        listed = self.items(value, path, non_empty=non_empty)
        if listed is None:
            return ()
        found = (self.name(item, (*path, i)) for i, item in enumerate(listed))
        return tuple(dict.fromkeys(n for n in found if n is not None))

    def emails(self, value: Any, path: Path, *, non_empty: bool = False) -> tuple[str, ...]:
        listed = self.items(value, path, non_empty=non_empty)
        if listed is None:
            return ()
        found = (self.email(item, (*path, i)) for i, item in enumerate(listed))
        return tuple(e for e in found if e is not None)

    def flag(self, value: Any, path: Path) -> bool | None:
        if not isinstance(value, bool):
            self.error(path, f"must be true or false, not {short(value)}")
            return None
        return value

    def integer(self, value: Any, path: Path, *, minimum: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.error(path, f"must be a whole number >= {minimum}, not {short(value)}")
            return None
        return value

    def choice(self, value: Any, path: Path, choices: Collection[str]) -> str | None:
        if value not in choices:
            self.error(path, f"must be one of {', '.join(choices)}, not {short(value)}")
            return None
        return str(value)

    def duration(self, value: Any, path: Path) -> timedelta | None:
        try:
            return parse_duration(value)
        except ValueError as exc:
            text = self.written.get(path)
            if text is not None:  # 1:30:00 is a YAML 1.1 sexagesimal number
                self.error(
                    path,
                    f"{text} is read by YAML as the number {value}, not as a duration: "
                    "write durations like 1h30m, 45s or PT2H",
                )
            else:
                self.error(path, str(exc))
            return None

    def instant(self, value: Any, path: Path) -> datetime | None:
        """An ISO-8601 date and time (YAML timestamp or string); naive means UTC."""
        moment, why = (value, "") if isinstance(value, datetime) else _iso_datetime(value)
        if moment is None:
            self.error(
                path,
                "must be an ISO-8601 date and time like 2026-01-05T09:00:00Z, "
                f"not {short(value)}{why}",
            )
            return None
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        try:
            return moment.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:59:59-01:00 is in the year 10000 in UTC
            self.error(path, f"{short(value)} is outside the years 1 to 9999 in UTC")
            return None

    def ordered(
        self, low: timedelta | None, high: timedelta | None, path: Path, message: str
    ) -> None:
        """Report ``message`` at ``path`` when both bounds are known and ``low > high``."""
        if low is not None and high is not None and low > high:
            self.error(path, message)


def _iso_datetime(value: Any) -> tuple[datetime | None, str]:
    """A string holding a date *and* a time (a bare date is not an instant), or why not."""
    text = value.strip() if isinstance(value, str) else ""
    if "T" not in text.upper() and " " not in text:
        return None, ""
    try:
        return datetime.fromisoformat(text), ""
    except ValueError as exc:
        reason = str(exc)
        if "offset must be" in reason:
            reason = "a UTC offset must be less than 24 hours"
        # "Invalid isoformat string: ..." repeats the value; a range error says what is wrong
        return None, "" if reason.startswith("Invalid isoformat") else f" ({reason})"


def closest(word: str, known: Collection[str]) -> str | None:
    """The one of ``known`` that ``word`` was most likely meant to be, if any is close."""
    close = difflib.get_close_matches(word, sorted(known), n=1)
    return close[0] if close else None


def near_hint(word: str, known: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` when ``word`` is close to one of ``known``, else ``""``."""
    near = closest(word, known)
    return f" (did you mean {near!r}?)" if near else ""


def near_email_hint(email: str, known: Collection[str]) -> str:
    """``near_hint`` for emails: both the name and the domain must be close, else every
    address of one domain would look like every other."""
    name, _, domain = email.partition("@")
    best, score = "", 0.0
    for other in sorted(known):
        other_name, _, other_domain = other.partition("@")
        pair = [
            difflib.SequenceMatcher(None, a, b).ratio()
            for a, b in ((name, other_name), (domain, other_domain))
        ]
        if min(pair) >= _CLOSE and sum(pair) > score:
            best, score = other, sum(pair)
    return f" (did you mean {best!r}?)" if best else ""


def _unknown(key: str, allowed: Collection[str]) -> str:
    near = closest(key, allowed)
    hint = f"; did you mean {near!r}?" if near else ""
    return f"unknown key {key!r}{hint} (allowed: {', '.join(sorted(allowed))})"
