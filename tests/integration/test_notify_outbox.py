"""The outbox (SPEC §6, §9.7): same transaction, retries with backoff, dead letters, ordering,
replicas, and the ``jitgate notifications`` commands; against a real local HTTP sink."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner
from notify_sinks import FAST, HttpSink, Notify, channels, peer_env, with_notifications

from jitgate.adapters.db import tables as t
from jitgate.adapters.notifiers.wiring import runtime
from jitgate.domain.creation import Draft, open_request
from jitgate.domain.policy import Policy
from jitgate.entrypoints.cli.main import cli
from jitgate.service import decisions
from jitgate.service.delivery import DeliveryOptions, backoff, drain, list_notifications
from jitgate.service.ports import AuditQuery

pytest_plugins = ["conftest_notify"]

HOOK_ONLY = {
    "request.created": ("approvers", ("siem",)),
    "request.urgent": ("oncall", ("pagerduty",)),
}


def hook_setup(
    notify: Callable[..., Notify],
    db_url: str,
    policy: Policy,
    sink: HttpSink,
    options: DeliveryOptions = FAST,
) -> Notify:
    return notify(
        db_url, with_notifications(policy, channels(sink), HOOK_ONLY), peer_env(sink), options
    )


def outbox_rows(n: Notify) -> list[sa.Row[tuple[object, ...]]]:
    with n.ctx.uow(write=False) as uow:
        return list(uow.outbox._conn.execute(sa.select(t.outbox)))  # type: ignore[attr-defined]


def test_notifications_commit_with_the_state_change_or_not_at_all(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    n = hook_setup(notify, db_url, example_policy, http_sink)
    now = n.clock.now()
    draft = Draft(roles=("sre-oncall",), reason="rolled back")
    with n.ctx.uow() as uow:
        request = open_request(
            n.ctx.policy.current,
            draft,
            requester="jane.doe@example.com",
            request_id="11111111-1111-4111-8111-111111111111",
            now=now,
        )
        uow.requests.add(request)
        n.ctx.persist(uow, request, now)
        assert len(list(uow.outbox._conn.execute(sa.select(t.outbox)))) == 1  # type: ignore[attr-defined]
        # leaving without commit rolls back
    assert outbox_rows(n) == []
    created = n.create()
    rows = outbox_rows(n)
    assert [(r.request_id, r.status) for r in rows] == [(created.id, "pending")]
    assert http_sink.received == []  # written, not yet sent: delivery is the worker's job


def test_a_channel_down_for_a_minute_gets_everything_once_back(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    n = hook_setup(notify, db_url, example_policy, http_sink, DeliveryOptions())
    http_sink.stop()
    created = [n.create(reason=f"outage {i}") for i in range(5)]
    for _ in range(12):  # a minute of retries against a dead peer
        n.deliver()
        n.later(5)
    assert all(r.status == "pending" and r.attempts >= 2 for r in outbox_rows(n))
    http_sink.start()
    for _ in range(14):
        n.later(10)
        n.deliver()
    hooks = http_sink.paths("/hook")
    ids = [h.headers["webhook-id"] for h in hooks]
    assert len(ids) == len(set(ids)) == 5
    assert sorted(h.json()["data"]["request"]["id"] for h in hooks) == sorted(r.id for r in created)
    assert {r.status for r in outbox_rows(n)} == {"sent"}


def test_a_failing_peer_sees_repeats_only_under_the_same_webhook_id(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    n = hook_setup(notify, db_url, example_policy, http_sink)
    http_sink.responder.status["/hook"] = 503  # type: ignore[attr-defined]
    n.create()
    n.create()
    n.deliver()
    n.later(3)
    n.deliver()
    del http_sink.responder.status["/hook"]  # type: ignore[attr-defined]
    n.later(10)
    n.deliver()
    n.later(60)
    n.deliver()
    hooks = http_sink.paths("/hook")
    assert len(hooks) == 6  # two notifications, three tries each
    outbox_ids = sorted(r.id for r in outbox_rows(n))
    assert sorted({h.headers["webhook-id"] for h in hooks}) == outbox_ids
    rows = outbox_rows(n)
    assert [(r.status, r.attempts) for r in rows] == [("sent", 3), ("sent", 3)]


def test_backoff_is_exponential_capped_and_jittered() -> None:
    import random

    rng = random.Random(7)
    options = DeliveryOptions(base_delay=2.0, max_delay=60.0)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (9, 60.0), (30, 60.0)]:
        delays = [backoff(attempt, options, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_dead_letters_are_audited_listed_and_retried(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    n = hook_setup(notify, db_url, example_policy, http_sink)
    http_sink.responder.status["/hook"] = 500  # type: ignore[attr-defined]
    request = n.create()
    for _ in range(FAST.max_attempts + 2):
        n.deliver()
        n.later(FAST.max_delay + 1)
    (row,) = outbox_rows(n)
    assert (row.status, row.attempts, row.last_error) == ("dead", FAST.max_attempts, "HTTP 500")
    with n.ctx.uow(write=False) as uow:
        failed = uow.audit.find(AuditQuery(type="notification.failed"))
    assert len(failed) == 1 and failed[0].request_id == request.id
    assert failed[0].data["attempt"] == FAST.max_attempts and failed[0].data["status"] == 500

    runner = CliRunner()
    listed = runner.invoke(cli, ["notifications", "ls", "--failed", "--db", db_url])
    assert listed.exit_code == 0, listed.output
    assert row.id in listed.output and "dead" in listed.output and "HTTP 500" in listed.output
    del http_sink.responder.status["/hook"]  # type: ignore[attr-defined]
    retried = runner.invoke(cli, ["notifications", "retry", row.id, "--db", db_url])
    assert retried.exit_code == 0 and "queued again" in retried.output
    missing = runner.invoke(cli, ["notifications", "retry", "no-such-id", "--db", db_url])
    assert missing.exit_code == 1 and "no unsent notification" in missing.output
    n.clock.set(max(n.clock.now(), row.next_attempt_at) + timedelta(seconds=1))
    import datetime as dt

    n.clock.set(dt.datetime.now(dt.UTC) + timedelta(seconds=1))  # the CLI used the wall clock
    n.deliver()
    (row,) = outbox_rows(n)
    assert row.status == "sent"
    assert (
        runner.invoke(cli, ["notifications", "ls", "--failed", "--db", db_url]).output.count(row.id)
        == 0
    )


def test_a_permanent_refusal_is_dead_at_once(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    n = hook_setup(notify, db_url, example_policy, http_sink)
    http_sink.responder.status["/hook"] = 410  # type: ignore[attr-defined]
    n.create()
    n.deliver()
    (row,) = outbox_rows(n)
    assert (row.status, row.attempts, row.last_status) == ("dead", 1, 410)


def test_a_resolve_never_overtakes_its_trigger(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    n = hook_setup(notify, db_url, example_policy, http_sink)
    http_sink.responder.status["/pagerduty"] = 503  # type: ignore[attr-defined]
    request = n.create(urgency="high")
    n.deliver()
    n.later(1)
    decisions.approve_request(n.ctx, request_id=request.id, approver="sam@example.com")
    decisions.approve_request(n.ctx, request_id=request.id, approver="mark.lee@example.com")
    for _ in range(3):
        n.later(FAST.max_delay)
        n.deliver()
    assert {r.json()["event_action"] for r in http_sink.paths("/pagerduty")} == {"trigger"}
    del http_sink.responder.status["/pagerduty"]  # type: ignore[attr-defined]
    for _ in range(3):
        n.later(FAST.max_delay)
        n.deliver()
    delivered = [r.json()["event_action"] for r in http_sink.paths("/pagerduty")]
    assert delivered[-2:] == ["trigger", "resolve"] and delivered.count("resolve") == 1


def test_the_messages_of_one_change_keep_their_order_through_failures(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    """An urgent request makes request.created and request.urgent in one transaction, at
    one ``now``; to one webhook they arrive in that order even when it fails at first."""
    routes = {
        "request.created": ("approvers", ("siem",)),
        "request.urgent": ("oncall", ("siem",)),
    }
    policy = with_notifications(example_policy, channels(http_sink), routes)
    n = notify(db_url, policy, peer_env(http_sink), FAST)
    http_sink.responder.status["/hook"] = 503  # type: ignore[attr-defined]
    n.create(urgency="high")
    n.deliver()
    assert [r.json()["type"] for r in http_sink.paths("/hook")] == ["request.created"]
    del http_sink.responder.status["/hook"]  # type: ignore[attr-defined]
    for _ in range(3):
        n.later(FAST.max_delay)
        n.deliver()
    delivered = [r.json()["type"] for r in http_sink.paths("/hook")]
    assert delivered == ["request.created", "request.created", "request.urgent"]


def test_a_hanging_peer_does_not_hold_up_a_page_to_another_channel(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    """While a webhook takes 3 s to answer, the page of an urgent request created meanwhile
    goes out at once: delivery claims more as slots free up, not batch after batch."""
    n = hook_setup(notify, db_url, example_policy, http_sink)
    peers = http_sink.responder

    def slow_hook(got: Any) -> Any:
        if got.path.startswith("/hook"):
            time.sleep(3)
        return peers(got)

    http_sink.responder = slow_hook
    n.create()
    worker = threading.Thread(target=drain, args=(n.rt.delivery,), kwargs={"budget_seconds": 8})
    worker.start()
    assert http_sink.wait_for("/hook", 1, timeout=5)  # the first webhook is now hanging
    created = time.monotonic()
    n.create(urgency="high")
    (page,) = http_sink.wait_for("/pagerduty", 1, timeout=5)
    paged_after = time.monotonic() - created
    worker.join(timeout=15)
    assert page.json()["event_action"] == "trigger"
    assert paged_after < 1.5, f"the page waited {paged_after:.1f} s behind the hanging webhook"
    assert len(http_sink.paths("/hook")) == 2  # the webhook got both requests in the end


def test_two_workers_never_send_the_same_notification(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    options = DeliveryOptions(batch=7, concurrency=4)
    n = hook_setup(notify, db_url, example_policy, http_sink, options)
    for i in range(60):
        n.create(reason=f"load {i}")
    other = runtime(n.ctx, env=n.rt.env, options=options)  # a second replica's worker
    try:
        threads = [threading.Thread(target=drain, args=(rt.delivery,)) for rt in (n.rt, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        other.close()
    ids = [h.headers["webhook-id"] for h in http_sink.paths("/hook")]
    assert len(ids) == 60 and len(set(ids)) == 60
    sent = list_notifications(n.ctx.uow, n.rt.delivery.store_of, failed_only=False, limit=100)
    assert {i.status for i in sent} == {"sent"} and {i.attempts for i in sent} == {1}
