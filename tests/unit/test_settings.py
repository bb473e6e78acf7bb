"""Every JITGATE_* setting of a process is read and checked by ``Settings.from_env``, before
anything runs: delivery tuning, the delivery switch, the SSO header, the cookie flag."""

from __future__ import annotations

import pytest

from jitgate.config import ConfigError, NotifySettings, Settings


def test_notification_settings_are_read_with_the_rest() -> None:
    settings = Settings.from_env(
        {
            "JITGATE_NOTIFY_TIMEOUT": "2.5",
            "JITGATE_NOTIFY_MAX_ATTEMPTS": "3",
            "JITGATE_NOTIFY_CONCURRENCY": "4",
            "JITGATE_DELIVERY": "off",
            "JITGATE_WEB_USER_HEADER": "X-Forwarded-Email",
            "JITGATE_COOKIE_SECURE": "Yes",
        }
    )
    assert settings.notify == NotifySettings(
        enabled=False,
        max_attempts=3,
        concurrency=4,
        send_timeout=2.5,
        web_user_header="X-Forwarded-Email",
        cookie_secure=True,
    )
    assert Settings.from_env({}).notify == NotifySettings()  # the delivery's own defaults


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("JITGATE_NOTIFY_TIMEOUT", "abc", "must be a number"),
        ("JITGATE_NOTIFY_TIMEOUT", "0", "must be at least 0.1"),
        ("JITGATE_NOTIFY_MAX_ATTEMPTS", "2.5", "whole number"),
        ("JITGATE_NOTIFY_CONCURRENCY", "0", "must be at least 1"),
        ("JITGATE_DELIVERY", "banana", "must be 1 or 0"),
        ("JITGATE_COOKIE_SECURE", "maybe", "must be 1 or 0"),
        ("JITGATE_WEB_USER_HEADER", "X Forwarded: Email", "HTTP header name"),
    ],
)
def test_an_unusable_notification_setting_is_refused_by_name(
    name: str, value: str, words: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})
    assert name in str(raised.value) and words in str(raised.value)
