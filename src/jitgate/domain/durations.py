"""Duration strings of the policy and the API: ``45s``, ``30m``, ``2h``, ``1h30m``, ``PT2H``.

Invariants: a parsed duration is always strictly positive; a duration is written in ASCII
(digits 0-9 only).
"""

from __future__ import annotations

import re
from datetime import timedelta

# ASCII digits only: ``\d`` alone also takes Arabic-Indic, fullwidth or mathematical
# digits, which ``int()`` then reads
_SHORT = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
_ISO = re.compile(
    r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?",
    re.ASCII,
)
_MAX = timedelta(days=3650)


class _NotWhole(Exception):
    """An ISO duration with a fraction of a second (``PT1.5S``): grants are whole seconds."""


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raise ``ValueError`` with a readable message when it is not one."""
    raw = text.strip() if isinstance(text, str) else ""
    try:
        value = _parse(raw)
    except _NotWhole:
        raise ValueError(f"{text!r} is not a whole number of seconds") from None
    except (OverflowError, ValueError):  # digits past what timedelta (or int) can hold
        raise ValueError(f"{text!r} is longer than ten years") from None
    if value is None:
        raise ValueError(
            f"{text!r} is not a duration (use forms like 45s, 30m, 2h, 1h30m, 7d or PT2H)"
        )
    if value <= timedelta(0):
        raise ValueError(f"{text!r} must be longer than zero")
    if value > _MAX:
        raise ValueError(f"{text!r} is longer than ten years")
    return value


def _parse(raw: str) -> timedelta | None:
    if not raw or not raw.isascii():  # nor a letter that upper() makes ASCII (long s: S)
        return None
    short = _SHORT.fullmatch(raw)
    if short and any(short.groups()):
        w, d, h, m, s = (int(x) if x else 0 for x in short.groups())
        return timedelta(weeks=w, days=d, hours=h, minutes=m, seconds=s)
    iso = _ISO.fullmatch(raw.upper())
    if iso and any(iso.groups()):
        w, d, h, m = (int(x) if x else 0 for x in iso.groups()[:4])
        seconds = float(iso.group(5)) if iso.group(5) else 0.0
        if not seconds.is_integer():
            raise _NotWhole
        return timedelta(weeks=w, days=d, hours=h, minutes=m, seconds=seconds)
    return None


def format_duration(value: timedelta) -> str:
    """Render a duration the way people write it: ``2h``, ``1h30m``, ``45s``."""
    total = int(value.total_seconds())
    if total <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
