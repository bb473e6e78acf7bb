"""Operators' use cases on the outbox (``jitgate notifications``): list, retry.

Invariant: only a row that has failed (retrying, or dead) gets a fresh set of attempts; a
row being sent now is refused, so a retry never makes a second send of it at once.
"""

from __future__ import annotations

from datetime import datetime

from jitgate.domain.errors import Conflict, NotFound
from jitgate.service.delivery_model import OutboxItem, StoreOf
from jitgate.service.ports import UnitOfWorkFactory


def list_notifications(
    uow_factory: UnitOfWorkFactory, store_of: StoreOf, *, failed_only: bool, limit: int = 100
) -> list[OutboxItem]:
    """Newest first; ``failed_only``: rows not sent that failed at least once."""
    with uow_factory(write=False) as uow:
        return store_of(uow).find(failed_only=failed_only, limit=limit)


def retry_notification(
    uow_factory: UnitOfWorkFactory, store_of: StoreOf, *, item_id: str, now: datetime
) -> OutboxItem:
    """Queue a failed or dead notification again, with a fresh set of attempts.

    ``NotFound`` for no such row; ``Conflict``, changing nothing, for a row that was sent,
    is being sent now, or has not failed yet."""
    with uow_factory() as uow:
        store = store_of(uow)
        if store.requeue(item_id, now):
            item = store.get(item_id)
            uow.commit()
            assert item is not None
            return item
        item = store.get(item_id)
    if item is None:
        raise NotFound(f"no unsent notification {item_id}")
    if item.status == "sent":
        raise Conflict(f"no unsent notification {item_id}: it was sent")
    if item.status == "sending":
        raise Conflict(f"row {item_id} is being sent now; retry it once it has failed")
    raise Conflict(f"row {item_id} has not failed; it is queued to be sent")
