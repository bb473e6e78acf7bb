"""Real components the suite runs against: a missing one skips a test on a developer's
machine, and fails it under ``CI=true``, where `make test` must have installed it."""

from __future__ import annotations

import os

import pytest


def require(available: bool, what: str) -> None:
    """Go on if ``available``; otherwise skip, or fail when ``CI`` is ``true`` (any case;
    ``1`` and ``yes`` count too, so a CI that spells it differently never skips)."""
    if available:
        return
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(f"CI=true and {what}", pytrace=False)
    pytest.skip(what)
