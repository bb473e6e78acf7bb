"""What a notification peer answers is not trusted text (SPEC §9.8): an error string with
control bytes and line breaks reaches neither the server log nor the outbox row raw (no
terminal escape, no forged log line, a bounded length), and a permanent Slack error code is
recognised as such from the ``error`` field alone, whatever whitespace surrounds it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest
from notify_sinks import HttpSink, Notify, Received, channels, peer_env, with_notifications

from jitgate.domain.policy import Policy
from jitgate.service.delivery import OutboxItem

pytest_plugins = ["conftest_notify"]

ROUTES = {"request.created": ("approvers", ("slack-dm",))}
FORGED = "\x1b[2K\x07\n2026-03-02 10:00:00 INFO jitgate.delivery notification sent\r\n"


def slack_says(error: str) -> Callable[[Received], tuple[int, dict[str, str], bytes]]:
    def answer(_: Received) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps({"ok": False, "error": error}).encode()
        return 200, {"content-type": "application/json"}, body

    return answer


def rows(n: Notify) -> list[OutboxItem]:
    with n.ctx.uow(write=False) as uow:
        return n.rt.delivery.store_of(uow).find(failed_only=False, limit=50)


def test_junk_from_a_peer_is_escaped_and_bounded_in_the_log_and_the_row(
    notify: Callable[..., Notify],
    db_url: str,
    example_policy: Policy,
    http_sink: HttpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    http_sink.responder = slack_says("ratelimited" + FORGED + "x" * 5000)
    n = notify(
        db_url, with_notifications(example_policy, channels(http_sink), ROUTES), peer_env(http_sink)
    )
    n.create()
    with caplog.at_level(logging.WARNING, logger="jitgate.delivery"):
        n.deliver()
    said = [r.getMessage() for r in caplog.records if r.name == "jitgate.delivery"]
    assert said, caplog.records
    for line in said:
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in line), repr(line)
        assert "\\x1b" in line and "\\n" in line  # shown as escapes, not lost
        assert len(line) < 600
    failed = [r for r in rows(n) if r.last_error]
    assert failed
    for row in failed:
        error = row.last_error or ""
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in error), repr(error)
        assert len(error) <= 200


@pytest.mark.parametrize("error", ["invalid_auth\n", " channel_not_found ", "\x07is_archived\x1b"])
def test_a_permanent_slack_error_is_not_retried_whatever_surrounds_it(
    notify: Callable[..., Notify],
    db_url: str,
    example_policy: Policy,
    http_sink: HttpSink,
    error: str,
) -> None:
    http_sink.responder = slack_says(error)
    n = notify(
        db_url, with_notifications(example_policy, channels(http_sink), ROUTES), peer_env(http_sink)
    )
    n.create()
    n.deliver()
    assert {r.status for r in rows(n)} == {"dead"}, [(r.status, r.last_error) for r in rows(n)]
    assert all(r.attempts == 1 for r in rows(n))
