"""``verify`` of the audit chain while other units of work append to it, on SQLite and
PostgreSQL: it must never call a chain broken that only grew while it was being read, and it
must still find the tampering it found before (an edit, a cut-off end, an event the head does
not cover, a head that was moved)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from jitgate.adapters.db import tables as t
from jitgate.adapters.db.uow import SqlUnitOfWorkFactory
from jitgate.domain.audit import chain_hash
from jitgate.domain.events import DomainEvent
from jitgate.service.context import Context
from jitgate.service.ports import AuditQuery

WRITERS = 4
SECONDS = 3.0


def _append(ctx: Context, n: int, start: object, tag: str = "w") -> None:
    with ctx.uow() as uow:
        uow.audit.append(
            [DomainEvent("approval.recorded", f"{tag}@x", None, {"i": i}) for i in range(n)],
            start,  # type: ignore[arg-type]
        )
        uow.commit()


def _engine(ctx: Context) -> sa.Engine:
    factory = ctx.uow
    assert isinstance(factory, SqlUnitOfWorkFactory)
    return factory.db.engine


@pytest.mark.parametrize("snapshot", [True, False], ids=["snapshot", "statements"])
def test_verify_is_ok_while_the_chain_grows(db_url: str, make_ctx, start, snapshot: bool) -> None:
    ctx, _clock = make_ctx(db_url)
    _append(ctx, 3, start)
    stop = threading.Event()
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            while not stop.is_set():
                _append(ctx, 1 + n % 2, start + timedelta(seconds=n), tag=f"w{n}")
        except BaseException as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for thread in writers:
        thread.start()
    broken, runs = [], 0
    deadline = time.monotonic() + SECONDS
    try:
        while time.monotonic() < deadline and not errors:
            with ctx.uow(write=False, snapshot=snapshot) as uow:
                check = uow.audit.verify()
            runs += 1
            if not check.ok:
                broken.append(check)
    finally:
        stop.set()
        for thread in writers:
            thread.join(timeout=30)
    assert not errors, errors
    assert runs > 10
    assert broken == [], f"{len(broken)} of {runs} runs: {broken[:3]}"
    with ctx.uow(write=False) as uow:
        final = uow.audit.verify()
        events = uow.audit.find(AuditQuery(limit=1_000_000))
    assert final.ok and final.events == len(events) and final.head == events[-1].hash


def test_an_event_the_head_does_not_cover_is_found(db_url: str, make_ctx, start) -> None:
    """A well-chained event inserted after the last one without moving the head."""
    ctx, _clock = make_ctx(db_url)
    _append(ctx, 3, start)
    with ctx.uow(write=False) as uow:
        last = uow.audit.find(AuditQuery())[-1]
    fields = {
        "seq": 4,
        "id": "forged",
        "at": last.at,
        "type": "approval.recorded",
        "actor": "mallory@x",
        "request_id": None,
        "data": {},
    }
    digest = chain_hash(last.hash, fields)
    with _engine(ctx).begin() as conn:
        conn.execute(
            t.audit_events.insert()
            .values(**fields, prev_hash=last.hash, hash=digest)
            .values(data="{}")
        )
    with ctx.uow(write=False) as uow:
        check = uow.audit.verify()
    assert not check.ok and check.broken_at == 4
    assert "head" in (check.problem or "")


def test_a_moved_head_is_found(db_url: str, make_ctx, start) -> None:
    ctx, _clock = make_ctx(db_url)
    _append(ctx, 3, start)
    with _engine(ctx).begin() as conn:
        conn.execute(t.audit_head.update().values(hash="f" * 64))
    with ctx.uow(write=False) as uow:
        check = uow.audit.verify()
    assert not check.ok and check.broken_at == 3


def test_a_cut_off_end_is_found_without_a_snapshot(db_url: str, make_ctx, start) -> None:
    ctx, _clock = make_ctx(db_url)
    _append(ctx, 5, start)
    with _engine(ctx).begin() as conn:
        conn.execute(t.audit_events.delete().where(t.audit_events.c.seq >= 4))
    with ctx.uow(write=False, snapshot=False) as uow:
        check = uow.audit.verify()
    assert not check.ok and check.events == 3 and check.broken_at == 4
    assert "missing at the end" in (check.problem or "")
