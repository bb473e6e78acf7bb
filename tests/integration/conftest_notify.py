"""Fixtures of the notification tests; test modules load them with
``pytest_plugins = ["conftest_notify"]`` (helpers live in ``notify_sinks``).

- ``http_sink``: one ``HttpSink`` playing Slack (webhook and Web API), Teams, PagerDuty, a
  Standard Webhooks receiver and Slack's ``response_url``, by path;
- ``smtp_sink``: aiosmtpd with STARTTLS and AUTH required;
- ``notify``: a factory building a service context on a migrated database, with the
  notification runtime wired to those peers (``Notify`` bundles them).
Without aiosmtpd the e-mail tests skip, or fail when ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from notify_sinks import FAST, FakePeers, HttpSink, Notify, SmtpSink

import components
from jitgate.adapters.clock import ManualClock
from jitgate.adapters.notifiers.wiring import NotifyRuntime, runtime
from jitgate.domain.policy import Policy
from jitgate.service.context import Context
from jitgate.service.delivery import DeliveryOptions


def require(available: bool, what: str) -> None:
    components.require(available, f"{what} is missing")


@pytest.fixture
def http_sink(example_policy: Policy) -> Iterator[HttpSink]:
    sink = HttpSink(FakePeers(sorted(example_policy.directory.users)))
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[SmtpSink]:
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        require(False, "aiosmtpd")
    sink = SmtpSink(tmp_path)
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def notify(make_ctx: Callable[..., tuple[Context, ManualClock]]) -> Iterator[Callable[..., Notify]]:
    built: list[NotifyRuntime] = []

    def make(
        db_url: str,
        policy: Policy,
        env: dict[str, str],
        options: DeliveryOptions = FAST,
        http: httpx.Client | None = None,
    ) -> Notify:
        ctx, clock = make_ctx(db_url, policy)
        rt = runtime(ctx, env=env, http=http, options=options)
        built.append(rt)
        return Notify(ctx, clock, rt)

    yield make
    for rt in built:
        rt.close()
