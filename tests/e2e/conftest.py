"""End-to-end fixtures: ``served`` is a real jitgate server (uvicorn, loopback) on SQLite
and on PostgreSQL; ``on_call`` is who the example policy puts on call for ``sre`` then."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from jitgate.domain.policy import Policy
from served import EXAMPLE_POLICY_PATH, Served, serve


@pytest.fixture
def served(db_url: str, start: datetime) -> Iterator[Served]:
    running = serve(db_url, EXAMPLE_POLICY_PATH, start)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def on_call(example_policy: Policy, start: datetime) -> str:
    person = example_policy.directory.on_call("sre", start)
    assert person is not None
    return person
