"""Replicas that cannot all send every channel (SPEC §6: delivery is never lost).

A process claims only the outbox rows of channels it can send (in its policy and enabled
here, i.e. with their ``*_env`` variables set) and leaves the others to the processes that
can: a worker without ``SLACK_URL``, or a replica still on an older policy during a rolling
deploy, never dead-letters Slack messages a peer can deliver. Rows of a channel that is in
no process's policy (removed from it) are dead-lettered, loudly and retryably, once they
are older than ``DeliveryOptions.unknown_channel_grace``; until then they stay pending.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from notify_sinks import HttpSink, Notify, channels, peer_env, with_notifications

from jitgate.domain.policy import Policy
from jitgate.service.delivery import OutboxItem, list_notifications, retry_notification
from jitgate.service.ports import AuditQuery

pytest_plugins = ["conftest_notify"]

ROUTES = {"request.created": ("approvers", ("slack", "siem"))}
SIEM_ONLY = {"request.created": ("approvers", ("siem",))}
MESSAGES = 20


def _policy(base: Policy, sink: HttpSink, *, slack: bool = True) -> Policy:
    config = {k: v for k, v in channels(sink).items() if k in ("slack", "siem")}
    if not slack:
        del config["slack"]
    return with_notifications(base, config, ROUTES if slack else SIEM_ONLY)


def _outbox(n: Notify) -> list[OutboxItem]:
    store = n.rt.delivery.store_of
    return list_notifications(n.ctx.uow, store, failed_only=False, limit=1000)


def _by_status(n: Notify, channel: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in _outbox(n):
        if item.channel == channel:
            counts[item.status] = counts.get(item.status, 0) + 1
    return counts


def test_a_worker_without_the_slack_url_leaves_slack_to_the_replicas_that_have_it(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    env = peer_env(http_sink)
    api = notify(db_url, _policy(example_policy, http_sink), env)
    lacking = {k: v for k, v in env.items() if k != "SLACK_URL"}
    worker = notify(db_url, _policy(example_policy, http_sink), lacking)
    for i in range(MESSAGES):
        api.create(reason=f"INC-{i} slack and siem")
    worker.deliver(3)  # the worker runs first: it sends what it can, and only that
    assert _by_status(worker, "slack") == {"pending": MESSAGES}
    assert all(i.attempts == 0 for i in _outbox(worker) if i.channel == "slack")
    assert _by_status(worker, "siem") == {"sent": MESSAGES}
    api.deliver()
    assert _by_status(api, "slack") == {"sent": MESSAGES}
    assert len(http_sink.paths("/slack/webhook")) == MESSAGES
    assert len(http_sink.paths("/hook")) == MESSAGES


def test_a_replica_on_the_older_policy_leaves_a_new_channel_alone_during_a_rollout(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    env = peer_env(http_sink)
    new = notify(db_url, _policy(example_policy, http_sink), env)
    old = notify(db_url, _policy(example_policy, http_sink, slack=False), env)
    for i in range(MESSAGES):
        new.create(reason=f"INC-{i} during the rollout")
    old.deliver(2)
    old.later(30 * 60)  # a slow rollout: still well inside the grace period
    new.later(30 * 60)
    old.deliver(2)
    assert _by_status(old, "slack") == {"pending": MESSAGES}
    new.deliver()
    assert _by_status(new, "slack") == {"sent": MESSAGES}
    assert len(http_sink.paths("/slack/webhook")) == MESSAGES


def test_rows_of_a_channel_removed_from_the_policy_die_loudly_after_the_grace_period(
    notify: Callable[..., Notify], db_url: str, example_policy: Policy, http_sink: HttpSink
) -> None:
    env = peer_env(http_sink)
    before = notify(db_url, _policy(example_policy, http_sink), env)
    http_sink.stop()  # slack is down while the channel is being removed
    created = [before.create(reason=f"INC-{i} removed channel") for i in range(3)]
    after = notify(db_url, _policy(example_policy, http_sink, slack=False), env)
    after.deliver()
    assert _by_status(after, "slack") == {"pending": 3}
    grace = after.rt.delivery.options.unknown_channel_grace
    after.later((grace + timedelta(minutes=1)).total_seconds())
    after.deliver()
    slack = [i for i in _outbox(after) if i.channel == "slack"]
    assert {i.status for i in slack} == {"dead"}
    assert all("'slack' is not in the policy" in (i.last_error or "") for i in slack)
    failed = list_notifications(after.ctx.uow, after.rt.delivery.store_of, failed_only=True)
    assert {i.id for i in slack} <= {i.id for i in failed}  # `notifications ls --failed`
    with after.ctx.uow(write=False) as uow:
        audited = uow.audit.find(AuditQuery(request_id=created[0].id, type="notification.failed"))
    assert [e.data["channel"] for e in audited] == ["slack"]
    assert "not in the policy" in audited[0].data["error"]
    # an operator who puts the channel back can send them after all
    http_sink.start()
    retry_notification(
        before.ctx.uow, before.rt.delivery.store_of, item_id=slack[0].id, now=before.clock.now()
    )
    before.later((grace + timedelta(minutes=2)).total_seconds())
    before.deliver()
    assert len(http_sink.paths("/slack/webhook")) == 1
