"""``jitgate notifications``: the notification outbox, read and requeued on the database.

Shows channel, recipient, event, status, attempts and the last error; never a payload
(payloads are facts only, but the list is meant for operators' terminals and tickets).
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from jitgate.entrypoints.cli.common import db_option, emit_json, friendly, opened, table


@click.group()
def notifications() -> None:
    """The notification outbox: what was sent, what is retrying, what failed for good.

    Notifications are written in the same transaction as the change that causes them and
    delivered by `jitgate serve` or `jitgate worker` with exponential backoff; after the
    last attempt they are dead until retried here.
    """


@notifications.command("ls")
@db_option
@click.option(
    "--failed",
    is_flag=True,
    help="Only notifications that failed at least once and are not sent (dead or retrying).",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@friendly
def ls(db_url: str, failed: bool, limit: int, as_json: bool) -> None:
    """List notifications, newest first."""
    from jitgate.adapters.db.notify_repos import deliveries_of
    from jitgate.adapters.db.uow import SqlUnitOfWorkFactory
    from jitgate.service.delivery import list_notifications

    with opened(db_url) as database:
        items = list_notifications(
            SqlUnitOfWorkFactory(database), deliveries_of, failed_only=failed, limit=limit
        )
    if as_json:
        emit_json([_row(item) for item in items])
        return
    rows = [
        [
            i.id,
            i.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            i.event,
            i.channel,
            i.recipient or "-",
            i.status,
            i.attempts,
            i.last_error or "",
        ]
        for i in items
    ]
    headers = ["id", "created", "event", "channel", "recipient", "status", "attempts", "error"]
    click.echo(table(rows, headers))


def _row(item: object) -> dict[str, object]:
    fields = (
        "id",
        "created_at",
        "event",
        "request_id",
        "channel",
        "recipient",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "last_status",
        "delivered_at",
    )
    return {name: getattr(item, name) for name in fields}


@notifications.command()
@db_option
@click.argument("notification_id")
@friendly
def retry(db_url: str, notification_id: str) -> None:
    """Queue a failed or dead notification again, with a fresh set of attempts.

    A notification being sent right now is refused: retry it once it has failed."""
    from jitgate.adapters.db.notify_repos import deliveries_of
    from jitgate.adapters.db.uow import SqlUnitOfWorkFactory
    from jitgate.service.delivery import retry_notification

    with opened(db_url) as database:
        item = retry_notification(
            SqlUnitOfWorkFactory(database),
            deliveries_of,
            item_id=notification_id,
            now=datetime.now(UTC),
        )
    click.echo(f"{item.id} queued again ({item.channel}, {item.event})")
