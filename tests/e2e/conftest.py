"""End-to-end fixtures: ``served`` is a real jitgate server (uvicorn, loopback) on SQLite
and on PostgreSQL; ``on_call`` is who the example policy puts on call for ``sre`` then;
``fast`` counts the ``/v1/authorize`` calls the fast path answered itself; ``editable``
serves a copy of the example policy that a test may rewrite (for reloads)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from fast_count import fast  # noqa: F401  (the fixture, for the e2e tests)
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


@pytest.fixture
def editable(tmp_path: Path, start: datetime) -> Iterator[tuple[Served, Path]]:
    policy = tmp_path / "policy.yaml"
    shutil.copy(EXAMPLE_POLICY_PATH, policy)
    running = serve(f"sqlite:///{tmp_path}/jg.db", policy, start)
    try:
        yield running, policy
    finally:
        running.stop()
