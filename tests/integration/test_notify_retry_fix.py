"""``jitgate notifications`` on rows in flight (README "Outbox"): ``retry`` gives a fresh set
of attempts only to a row that failed, never to one being sent (which would send it twice at
once), and ``ls --failed`` lists the rows that failed at least once, not a first send under
way."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from click.testing import CliRunner, Result
from notify_sinks import HttpSink, Notify, channels, peer_env, with_notifications

from jitgate.domain.policy import Policy
from jitgate.entrypoints.cli.main import cli
from jitgate.service.delivery import OutboxItem

pytest_plugins = ["conftest_notify"]

ROUTES = {"request.created": ("approvers", ("siem",))}


def run(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["notifications", *args, "--db", db_url])


def rows(n: Notify) -> dict[str, OutboxItem]:
    with n.ctx.uow(write=False) as uow:
        return {i.id: i for i in n.rt.delivery.store_of(uow).find(failed_only=False, limit=50)}


def claim(n: Notify) -> OutboxItem:
    """What a deliverer does when it starts a send (``jitgate worker`` mid-send)."""
    delivery = n.rt.delivery
    with n.ctx.uow() as uow:
        (item,) = delivery.store_of(uow).claim(n.clock.now(), 1, delivery.options.lease, ["siem"])
        uow.commit()
    return item


def fail(n: Notify, item: OutboxItem, error: str = "HTTP 503") -> None:
    with n.ctx.uow() as uow:
        n.rt.delivery.store_of(uow).retry_at(
            item.id, n.clock.now() + timedelta(seconds=5), error, 503
        )
        uow.commit()


def test_a_row_being_sent_is_neither_retried_nor_listed_as_failed(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    policy = with_notifications(example_policy, channels(http_sink), ROUTES)
    n = notify(db_url, policy, peer_env(http_sink))
    n.create()
    (queued,) = rows(n).values()

    refused = run(db_url, "retry", queued.id)  # never tried: nothing to retry
    assert refused.exit_code == 1
    assert f"row {queued.id} has not failed; it is queued to be sent" in refused.output

    sending = claim(n)  # a first attempt under way
    assert (sending.status, sending.attempts) == ("sending", 1)
    assert sending.id not in run(db_url, "ls", "--failed").output
    listed = run(db_url, "ls")
    assert sending.id in listed.output and "sending" in listed.output
    refused = run(db_url, "retry", sending.id)
    assert refused.exit_code == 1
    assert refused.output.strip().endswith(
        f"row {sending.id} is being sent now; retry it once it has failed"
    )
    assert len(refused.output.strip().splitlines()) == 1
    after = rows(n)[sending.id]
    assert (after.status, after.attempts, after.next_attempt_at) == (
        "sending",
        1,
        sending.next_attempt_at,
    )

    fail(n, sending)  # it failed: now it is listed, and may be retried
    failed = run(db_url, "ls", "--failed")
    assert sending.id in failed.output and "HTTP 503" in failed.output
    n.later(10)
    again = claim(n)  # its second attempt under way: listed (it failed before), not retried
    assert again.attempts == 2 and sending.id in run(db_url, "ls", "--failed").output
    assert "being sent now" in run(db_url, "retry", sending.id).output
    fail(n, again)
    retried = run(db_url, "retry", sending.id)
    assert retried.exit_code == 0 and "queued again" in retried.output
    assert (rows(n)[sending.id].status, rows(n)[sending.id].attempts) == ("pending", 0)


def test_a_sent_row_is_not_retried(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    policy = with_notifications(example_policy, channels(http_sink), ROUTES)
    n = notify(db_url, policy, peer_env(http_sink))
    n.create()
    n.deliver()
    (sent,) = rows(n).values()
    assert sent.status == "sent"
    refused = run(db_url, "retry", sent.id)
    assert refused.exit_code == 1 and f"no unsent notification {sent.id}" in refused.output
    assert len(http_sink.paths("/hook")) == 1
