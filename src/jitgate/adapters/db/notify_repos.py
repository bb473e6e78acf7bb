"""The outbox as the delivery worker sees it, and single-use link records. None commits.

Invariants: ``claim`` leases rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one
writer) and never hands out a row while an earlier row of the same request, channel and
recipient is still undelivered, so a PagerDuty ``resolve`` never overtakes its ``trigger``;
``claim`` hands out only rows of the channels it is given (those the caller can send), and
``abandon`` only rows of channels it is not given, so a process never takes a row it
cannot send; ``requeue`` resets only rows that failed, never one being sent; ``reserve``
inserts a use once and reports whether it was the first, ``release`` takes back a use whose
decision did not happen.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from jitgate.adapters.db import tables as t
from jitgate.adapters.db.misc_repos import SqlOutbox
from jitgate.service.delivery import OutboxItem
from jitgate.service.links import LinkUse
from jitgate.service.ports import UnitOfWork

OUT = t.outbox
U = t.link_uses
WAITING = ("pending", "sending")


def _connection(uow: UnitOfWork) -> sa.Connection:
    outbox = uow.outbox
    if not isinstance(outbox, SqlOutbox):
        raise TypeError("the SQL notification stores need a SQL unit of work")
    return outbox._conn


def deliveries_of(uow: UnitOfWork) -> SqlDeliveries:
    """The ``DeliveryStore`` on ``uow``'s transaction."""
    return SqlDeliveries(_connection(uow))


def link_uses_of(uow: UnitOfWork) -> SqlLinkUses:
    """The ``LinkUses`` on ``uow``'s transaction."""
    return SqlLinkUses(_connection(uow))


def _item(row: Any) -> OutboxItem:
    m = row._mapping
    return OutboxItem(
        id=m["id"],
        created_at=m["created_at"],
        event=m["event"],
        request_id=m["request_id"],
        channel=m["channel"],
        recipient=m["recipient"],
        payload=m["payload"],
        status=m["status"],
        attempts=m["attempts"],
        next_attempt_at=m["next_attempt_at"],
        last_error=m["last_error"],
        last_status=m["last_status"],
        delivered_at=m["delivered_at"],
    )


class SqlDeliveries:
    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self._postgres = conn.dialect.name == "postgresql"

    def claim(
        self, now: datetime, limit: int, lease: timedelta, channels: Collection[str]
    ) -> list[OutboxItem]:
        earlier = OUT.alias("earlier")
        blocked = (
            sa.select(sa.literal(1))
            .select_from(earlier)
            .where(
                earlier.c.request_id == OUT.c.request_id,
                earlier.c.channel == OUT.c.channel,
                sa.or_(
                    earlier.c.recipient == OUT.c.recipient,
                    sa.and_(earlier.c.recipient.is_(None), OUT.c.recipient.is_(None)),
                ),
                earlier.c.status.in_(WAITING),
                earlier.c.created_at < OUT.c.created_at,
            )
            .exists()
        )
        stmt = (
            sa.select(OUT)
            .where(OUT.c.status.in_(WAITING), OUT.c.next_attempt_at <= now, ~blocked)
            .where(OUT.c.channel.in_(sorted(channels)))
            .order_by(OUT.c.next_attempt_at, OUT.c.created_at)
            .limit(limit)
        )
        if self._postgres:
            stmt = stmt.with_for_update(skip_locked=True, of=OUT)
        rows = [_item(r) for r in self._conn.execute(stmt)]
        if not rows:
            return []
        until = now + lease
        ids = [r.id for r in rows]
        for start in range(0, len(ids), 500):
            self._conn.execute(
                OUT.update()
                .where(OUT.c.id.in_(ids[start : start + 500]))
                .values(status="sending", attempts=OUT.c.attempts + 1, next_attempt_at=until)
            )
        return [
            OutboxItem(
                **{
                    **r.__dict__,
                    "status": "sending",
                    "attempts": r.attempts + 1,
                    "next_attempt_at": until,
                }
            )
            for r in rows
        ]

    def abandon(
        self, now: datetime, known: Collection[str], queued_before: datetime, limit: int
    ) -> list[OutboxItem]:
        """Due rows of channels not in ``known``, queued before ``queued_before``, locked
        for the caller to dead-letter (skipping rows a peer has locked)."""
        stmt = (
            sa.select(OUT)
            .where(OUT.c.status.in_(WAITING), OUT.c.next_attempt_at <= now)
            .where(OUT.c.channel.not_in(sorted(known)), OUT.c.created_at < queued_before)
            .order_by(OUT.c.created_at)
            .limit(limit)
        )
        if self._postgres:
            stmt = stmt.with_for_update(skip_locked=True, of=OUT)
        return [_item(r) for r in self._conn.execute(stmt)]

    def sent(self, item_id: str, now: datetime, status: int | None) -> None:
        self._conn.execute(
            OUT.update()
            .where(OUT.c.id == item_id)
            .values(status="sent", delivered_at=now, last_error=None, last_status=status)
        )

    def retry_at(self, item_id: str, when: datetime, error: str, status: int | None) -> None:
        self._conn.execute(
            OUT.update()
            .where(OUT.c.id == item_id)
            .values(
                status="pending", next_attempt_at=when, last_error=error[:500], last_status=status
            )
        )

    def dead(self, item_id: str, now: datetime, error: str, status: int | None) -> None:
        self._conn.execute(
            OUT.update()
            .where(OUT.c.id == item_id)
            .values(status="dead", next_attempt_at=now, last_error=error[:500], last_status=status)
        )

    def find(self, *, failed_only: bool, limit: int) -> list[OutboxItem]:
        stmt = sa.select(OUT)
        if failed_only:  # failed at least once and not sent; not a first send under way
            stmt = stmt.where(_failed())
        stmt = stmt.order_by(OUT.c.created_at.desc(), OUT.c.id).limit(limit)
        return [_item(r) for r in self._conn.execute(stmt)]

    def get(self, item_id: str) -> OutboxItem | None:
        row = self._conn.execute(sa.select(OUT).where(OUT.c.id == item_id)).first()
        return _item(row) if row else None

    def requeue(self, item_id: str, now: datetime) -> bool:
        """Only a dead row, or one waiting to retry after a failure: never one being sent
        (the condition is part of the UPDATE, so a row claimed meanwhile is left alone)."""
        retrying = sa.and_(OUT.c.status == "pending", OUT.c.last_error.is_not(None))
        result = self._conn.execute(
            OUT.update()
            .where(OUT.c.id == item_id, sa.or_(OUT.c.status == "dead", retrying))
            .values(status="pending", attempts=0, next_attempt_at=now)
        )
        return bool(result.rowcount)


def _failed() -> sa.ColumnElement[bool]:
    """Rows that failed at least once and are not sent: dead, retrying, or being sent again
    after a failure (``last_error`` is kept until the row is sent)."""
    return sa.or_(
        OUT.c.status == "dead", sa.and_(OUT.c.status != "sent", OUT.c.last_error.is_not(None))
    )


class SqlLinkUses:
    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def reserve(self, use: LinkUse) -> bool:
        values = {
            "key": use.key,
            "request_id": use.request_id,
            "subject": use.subject,
            "action": use.action,
            "used_at": use.used_at,
        }
        if self._conn.dialect.name == "postgresql":
            stmt: Any = postgresql.insert(U).values(**values).on_conflict_do_nothing()
        else:
            stmt = sqlite.insert(U).values(**values).on_conflict_do_nothing()
        # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING
        return self._conn.execute(stmt.returning(U.c.key)).first() is not None

    def release(self, use: LinkUse) -> None:
        self._conn.execute(
            U.delete().where(
                U.c.key == use.key, U.c.subject == use.subject, U.c.action == use.action
            )
        )

    def find(self, key: str) -> LinkUse | None:
        row = self._conn.execute(sa.select(U).where(U.c.key == key)).first()
        if row is None:
            return None
        m = row._mapping
        return LinkUse(m["key"], m["request_id"], m["subject"], m["action"], m["used_at"])
