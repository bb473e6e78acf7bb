"""Settings from the environment: defaults, accepted values, and refusals that name the
variable (the CLI turns them into one line and exit 1)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from jitgate.adapters.notifiers.wiring import delivery_options
from jitgate.config import ConfigError, NotifySettings, Settings
from jitgate.service.delivery import DeliveryOptions


def test_defaults_when_unset_or_empty() -> None:
    for env in ({}, {"JITGATE_TICK_SECONDS": "", "JITGATE_RECONCILE_SECONDS": " "}):
        settings = Settings.from_env(env)
        assert settings.tick_seconds == 1.0
        assert settings.reconcile_seconds == 60.0


def test_numbers_are_read() -> None:
    settings = Settings.from_env(
        {"JITGATE_TICK_SECONDS": "0.25", "JITGATE_RECONCILE_SECONDS": "300"}
    )
    assert settings.tick_seconds == 0.25
    assert settings.reconcile_seconds == 300.0


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("JITGATE_TICK_SECONDS", "banana", "must be a number"),
        ("JITGATE_TICK_SECONDS", "-1", "must be at least"),
        ("JITGATE_TICK_SECONDS", "0", "must be at least"),
        ("JITGATE_TICK_SECONDS", "nan", "must be at least"),
        ("JITGATE_RECONCILE_SECONDS", "inf", "finite"),
        ("JITGATE_RECONCILE_SECONDS", "0.5", "must be at least 1"),
    ],
)
def test_unusable_values_are_refused_by_name(name: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})
    assert name in str(raised.value) and words in str(raised.value)
    assert repr(value) in str(raised.value)


def test_delivery_tuning_takes_whole_numbers_only() -> None:
    options = options_of({"JITGATE_NOTIFY_MAX_ATTEMPTS": "3", "JITGATE_NOTIFY_CONCURRENCY": "2"})
    assert (options.max_attempts, options.concurrency) == (3, 2)
    for value in ("2.5", "zero", "0"):
        with pytest.raises(ConfigError, match="JITGATE_NOTIFY_CONCURRENCY"):
            options_of({"JITGATE_NOTIFY_CONCURRENCY": value})


def test_serve_and_worker_reconcile_at_the_configured_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jitgate.entrypoints.cli import server

    seen: list[float] = []

    def jobs(ctx: object, *, interval: float) -> list[object]:
        seen.append(interval)
        return []

    monkeypatch.setattr("jitgate.service.reconcile.scheduler_jobs", jobs)
    monkeypatch.setattr("jitgate.service.policy.policy_jobs", lambda ctx: [])
    settings = Settings.from_env({"JITGATE_RECONCILE_SECONDS": "300"})
    app = SimpleNamespace(notify=None, ctx=object(), settings=settings)
    assert server._jobs(app) == []  # type: ignore[arg-type]
    assert seen == [300.0]


def test_serve_and_worker_watch_the_policy_in_force(monkeypatch: pytest.MonkeyPatch) -> None:
    from jitgate.entrypoints.cli import server

    def watch() -> None:
        return None

    monkeypatch.setattr("jitgate.service.reconcile.scheduler_jobs", lambda ctx, interval: [])
    monkeypatch.setattr("jitgate.service.policy.policy_jobs", lambda ctx: [watch])
    app = SimpleNamespace(notify=None, ctx=object(), settings=Settings.from_env({}))
    assert server._jobs(app) == [watch]  # type: ignore[arg-type]


def options_of(env: dict[str, str]) -> DeliveryOptions:
    return delivery_options(NotifySettings.from_env(env))
